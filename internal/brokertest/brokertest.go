// Package brokertest starts a real airlock broker for tests of the parts
// built on it (hooks, the MCP proxy, the SSH console): an embedded NATS
// server with JetStream on a random loopback port, a real SQLite audit log
// in a temporary directory, the real policy engine and risk scorer.
package brokertest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/risk"
)

// Broker is a running broker and a client connected to it. Everything is
// stopped at the end of the test.
type Broker struct {
	Dir    string
	Srv    *server.Server
	NC     *nats.Conn
	B      *broker.Broker
	Log    *audit.Log
	Client *client.Client
}

// Start boots a broker on policyYAML. adjust, when given, may change the
// broker's configuration before it starts.
func Start(t testing.TB, policyYAML string, adjust ...func(*broker.Config)) *Broker {
	t.Helper()
	h := &Broker{Dir: t.TempDir()}
	pol, err := policy.Parse("test.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	h.Srv, err = broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(h.Dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Srv.Shutdown(); h.Srv.WaitForShutdown() })
	h.Log, err = audit.Open(audit.PathIn(h.Dir))
	if err != nil {
		t.Fatal(err)
	}
	h.NC, err = nats.Connect(h.Srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.Config{Policy: pol, Audit: h.Log, Scorer: risk.New(pol), Name: "test-broker"}
	for _, a := range adjust {
		a(&cfg)
	}
	h.B, err = broker.New(h.NC, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.B.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.B.Close(ctx)
		h.NC.Close()
		_ = h.Log.Close(ctx)
	})
	h.Client, err = client.New(h.NC)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// WaitPending polls the pending queue until a call matching match waits.
func (h *Broker) WaitPending(t testing.TB, what string, match func(airlock.Pending) bool) airlock.Pending {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if ps, err := h.Client.Pending(context.Background()); err == nil {
			for _, p := range ps {
				if match(p) {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became pending", what)
	return airlock.Pending{}
}

// WaitPendingID waits for the call with this id.
func (h *Broker) WaitPendingID(t testing.TB, id string) airlock.Pending {
	t.Helper()
	return h.WaitPending(t, "call "+id, func(p airlock.Pending) bool { return p.Call.ID == id })
}

// WaitPendingTool waits for the first call to this tool.
func (h *Broker) WaitPendingTool(t testing.TB, tool string) airlock.Pending {
	t.Helper()
	return h.WaitPending(t, "a call to "+tool, func(p airlock.Pending) bool { return p.Call.Tool == tool })
}

// Review sends a verdict and fails the test unless it is accepted.
func (h *Broker) Review(t testing.TB, r airlock.Review) airlock.ReviewReply {
	t.Helper()
	rep, err := h.Client.Review(context.Background(), r)
	if err != nil || !rep.Accepted {
		t.Fatalf("review %+v: %+v %v", r, rep, err)
	}
	return rep
}

package webhook_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/risk"
	"github.com/airlock/airlock/internal/webhook"
)

// TestWatchRealQueue follows a real broker's pending queue: a call that
// starts waiting is announced, with its id and summary and without its
// arguments.
func TestWatchRealQueue(t *testing.T) {
	dir := t.TempDir()
	pol, err := policy.Parse("w.yaml", []byte("version: 1\ndefaults: {unknown_tool: deny, pending_ttl: 1m}\ntools:\n  execute_sql: {tier: approve}\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	log, err := audit.Open(audit.PathIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(nc, broker.Config{Policy: pol, Audit: log, Scorer: risk.New(pol), Name: "webhook-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
		nc.Close()
		_ = log.Close(ctx)
	}()
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	s := newSink(t)
	n := start(t, s, webhook.WithMinBand(airlock.BandLow))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Watch(c.WatchPending(ctx))

	done := make(chan struct{})
	go func() {
		defer close(done)
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		_, _ = c.Submit(sctx, &airlock.ToolCall{ID: "wh-call-1", Agent: "billing-bot", User: "alice", Tool: "execute_sql",
			Arguments: map[string]any{"query": "SELECT card_number FROM cards"}})
	}()
	msg := s.next(t)
	for _, want := range []string{"wh-call-1", "execute_sql", "billing-bot", "alice"} {
		if !strings.Contains(msg, want) {
			t.Errorf("got %q, want it to mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "card_number") {
		t.Errorf("got %q: the arguments leaked", msg)
	}
	if rep, err := c.Review(ctx, airlock.Review{CallID: "wh-call-1", Action: airlock.ActionDeny, Reviewer: "bob"}); err != nil || !rep.Accepted {
		t.Fatalf("review: %+v %v", rep, err)
	}
	<-done
}

package fleettest_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/auditstream"
	"github.com/airlock/airlock/internal/fleettest"
)

// TestAuditStreamOnCluster runs the fleet audit log on a real three-node
// cluster with replicas 3: two writers campaign from connections to
// different nodes, events are published through a third, the elected
// writer applies all of them, and after the writer's node is killed the
// log still completes without gap or duplicate.
//
// The writers run under a context with a deadline, as a caller's often
// has: nats.go then adds no default timeout to their JetStream requests,
// so a request left unanswered by the dying node (a consumer placed on
// it) stalled the new writer until that deadline, unless the writer
// bounds each request itself. The log must complete within
// takeoverTimeout of the kill.
func TestAuditStreamOnCluster(t *testing.T) {
	testenv.Chaos(t)
	const takeoverTimeout = 20 * time.Second
	c := fleettest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	jsOn := func(i int) jetstream.JetStream {
		js, err := jetstream.New(c.ConnectTo(t, c.URLs()))
		if i >= 0 {
			js, err = jetstream.New(c.ConnectTo(t, c.Nodes[i].URL))
		}
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	ttl := 2 * time.Second
	if err := auditstream.Setup(ctx, jsOn(0), 3, ttl); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "audit.db")
	var events [2]chan string
	var logBuf syncBuffer
	defer func() {
		t.Logf("writers' log:\n%s", logBuf.String())
		if t.Failed() {
			t.Logf("nodes' logs:\n%s", c.Logs())
		}
	}()
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for i := range 2 {
		w := auditstream.NewWriter(jsOn(-1), dbPath, fmt.Sprintf("w%d", i), ttl, logger)
		events[i] = make(chan string, 64)
		w.Events = events[i]
		wctx, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		go w.Run(wctx)
	}
	pub := auditstream.NewPublisher(jsOn(-1)) // any node: the one it uses may be killed
	appendN := func(from, n int) {
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("c%04d", i)
				for {
					actx, cancel := context.WithTimeout(ctx, 3*time.Second) // an ack lost with its node is retried
					_, err := pub.Append(actx, airlock.Event{Kind: airlock.EventDecision, CallID: id, TS: time.Now(),
						Payload: airlock.DecisionRecord{Call: airlock.ToolCall{ID: id, Agent: "a", Tool: "t", Arguments: map[string]any{"i": i}},
							Decision: airlock.Decision{CallID: id, Verdict: airlock.VerdictApproved, DecidedBy: "policy"}}})
					cancel()
					if err == nil || ctx.Err() != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	appendN(0, 100)
	waitHead(t, ctx, dbPath, 100, events)
	// Kill the node leading the audit stream; the log goes on.
	js := jsOn(-1)
	leader, err := fleettest.StreamLeader(ctx, js, auditstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	logger.Info("test: killing the audit stream's leader", "node", leader)
	c.Kill(c.Index(leader))
	appendN(100, 100)
	tctx, tcancel := context.WithDeadline(ctx, killed.Add(takeoverTimeout))
	defer tcancel()
	waitHead(t, tctx, dbPath, 200, events)
	t.Logf("the log was complete %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	r, err := audit.OpenReadOnly(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := audit.Verify(ctx, r, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	var n, distinct int
	if err := r.DB().QueryRow(`select count(*), count(distinct call_id) from events`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != 200 || distinct != 200 {
		t.Fatalf("%d events for %d calls, want 200 and 200", n, distinct)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitHead waits until the SQLite log holds want events.
func waitHead(t *testing.T, ctx context.Context, path string, want int64, events [2]chan string) {
	t.Helper()
	var seq int64
	transitions := 0
	for ctx.Err() == nil {
		for _, ch := range events {
			for len(ch) > 0 {
				<-ch
				transitions++
			}
		}
		if r, err := audit.OpenReadOnly(path); err == nil {
			seq, _, _ = r.Head(ctx)
			r.Close()
			if seq >= want {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the audit log holds %d events, want %d (%d leader/follower transitions meanwhile)", seq, want, transitions)
}

package auditstream_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auditstream"
)

// TestWriterTakeover appends events from many goroutines while the elected
// writer dies halfway: the second writer takes over from the last applied
// sequence, and the SQLite chain ends up complete, in stream order, with no
// gap and no duplicate.
func TestWriterTakeover(t *testing.T) {
	dir := t.TempDir()
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	ttl := 1500 * time.Millisecond
	if err := auditstream.Setup(ctx, js, 1, ttl); err != nil {
		t.Fatal(err)
	}
	dbPath := audit.PathIn(dir)
	w1 := auditstream.NewWriter(js, dbPath, "w1", ttl, nil)
	w2 := auditstream.NewWriter(js, dbPath, "w2", ttl, nil)
	w1.Events, w2.Events = make(chan string, 8), make(chan string, 8)
	ctx1, stop1 := context.WithCancel(ctx)
	ctx2, stop2 := context.WithCancel(ctx)
	defer stop2()
	go w1.Run(ctx1)
	if got := <-w1.Events; got != "leader" {
		t.Fatalf("w1: %s", got)
	}
	go w2.Run(ctx2)

	pub := auditstream.NewPublisher(js)
	appendN := func(from, n int) {
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				id := fmt.Sprintf("c%04d", i)
				if _, err := pub.Append(ctx, airlock.Event{Kind: airlock.EventDecision, CallID: id, TS: time.Now(),
					Payload: airlock.DecisionRecord{Call: airlock.ToolCall{ID: id, Agent: "a", Tool: "t", Arguments: map[string]any{"i": i}},
						Decision: airlock.Decision{CallID: id, Verdict: airlock.VerdictApproved, DecidedBy: "policy"}}}); err != nil {
					t.Error(err)
				}
			}(i)
		}
		wg.Wait()
	}
	appendN(0, 200)
	stop1() // the leader dies
	if got := <-w2.Events; got != "leader" {
		t.Fatalf("w2: %s", got)
	}
	appendN(200, 200)

	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := audit.OpenReadOnly(dbPath)
		if err == nil {
			seq, _, _ := r.Head(ctx)
			if seq == 400 {
				rep, err := audit.Verify(ctx, r, nil)
				if err != nil || !rep.OK() {
					t.Fatalf("verify: %+v %v", rep, err)
				}
				var n, distinct int
				_ = r.DB().QueryRow(`select count(*), count(distinct call_id) from events`).Scan(&n, &distinct)
				r.Close()
				if n != 400 || distinct != 400 {
					t.Fatalf("%d events, %d distinct calls, want 400 and 400", n, distinct)
				}
				return
			}
			r.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never reached 400 events")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

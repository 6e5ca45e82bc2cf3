package auditstream_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// startServer runs an embedded JetStream server with the audit stream set
// up, and returns a connection to it.
func startServer(t *testing.T, ttl time.Duration) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := auditstream.Setup(ctx, js, 1, ttl); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// publish appends events c<from>..c<from+n-1>.
func publish(t *testing.T, js jetstream.JetStream, from, n int) {
	t.Helper()
	pub := auditstream.NewPublisher(js)
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("c%04d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := pub.Append(ctx, airlock.Event{Kind: airlock.EventDecision, CallID: id, TS: time.Now(),
			Payload: airlock.DecisionRecord{Call: airlock.ToolCall{ID: id, Agent: "a", Tool: "t"},
				Decision: airlock.Decision{CallID: id, Verdict: airlock.VerdictApproved, DecidedBy: "policy"}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitLog polls the audit log until it holds want events (then verifies
// the chain and that every call appears once) or the timeout passes.
func waitLog(t *testing.T, path string, want int64, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var seq int64
	for time.Now().Before(deadline) {
		r, err := audit.OpenReadOnly(path)
		if err == nil {
			seq, _, _ = r.Head(ctx)
			if seq >= want {
				defer r.Close()
				rep, err := audit.Verify(ctx, r, nil)
				if err != nil || !rep.OK() {
					t.Fatalf("verify: %+v %v", rep, err)
				}
				var n, distinct int64
				if err := r.DB().QueryRow(`select count(*), count(distinct call_id) from events`).Scan(&n, &distinct); err != nil {
					t.Fatal(err)
				}
				if n != want || distinct != want {
					t.Fatalf("got %d events for %d calls, want %d and %d", n, distinct, want, want)
				}
				return
			}
			r.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("got %d events in the log after %v, want %d", seq, timeout, want)
}

// TestWriterUnansweredConsumerCreate routes the writer's JetStream API
// through a relay that swallows its first consumer create, as a cluster
// does when it places the consumer on a node that just died. Run's context
// carries a far deadline (as a caller's often does), so nats.go adds no
// default timeout of its own: the writer must bound the request itself and
// retry, not wait for that deadline.
func TestWriterUnansweredConsumerCreate(t *testing.T) {
	ttl := 1500 * time.Millisecond
	nc, js := startServer(t, ttl)
	const prefix = "relay."
	var swallowed atomic.Int32
	relay, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, prefix)
		if strings.HasPrefix(rest, "CONSUMER.CREATE.") && swallowed.Add(1) == 1 {
			return // never answered
		}
		subj := "$JS.API." + rest
		if strings.HasPrefix(rest, "$KV.") {
			subj = rest // KV puts carry the API prefix too
		}
		_ = nc.PublishMsg(&nats.Msg{Subject: subj, Reply: m.Reply, Header: m.Header, Data: m.Data})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Unsubscribe()
	relayed, err := jetstream.NewWithAPIPrefix(nc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	dbPath := audit.PathIn(t.TempDir())
	w := auditstream.NewWriter(relayed, dbPath, "w1", ttl, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	publish(t, js, 0, 20)
	waitLog(t, dbPath, 20, 15*time.Second)
	if got := swallowed.Load(); got < 2 {
		t.Fatalf("got %d consumer creates, want at least 2 (the first one swallowed)", got)
	}
}

// TestWriterReplacesLostConsumer deletes the writer's consumer under it
// (as when its node dies): the writer creates a new one after the last
// applied event and the log completes without gap or duplicate.
func TestWriterReplacesLostConsumer(t *testing.T) {
	ttl := 1500 * time.Millisecond
	_, js := startServer(t, ttl)
	dbPath := audit.PathIn(t.TempDir())
	w := auditstream.NewWriter(js, dbPath, "w1", ttl, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	publish(t, js, 0, 30)
	waitLog(t, dbPath, 30, 15*time.Second)
	names := func() []string {
		s, err := js.Stream(context.Background(), auditstream.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		var ns []string
		l := s.ConsumerNames(context.Background())
		for n := range l.Name() {
			ns = append(ns, n)
		}
		if err := l.Err(); err != nil {
			t.Fatal(err)
		}
		return ns
	}
	before := names()
	if len(before) != 1 {
		t.Fatalf("got consumers %v, want one", before)
	}
	if err := js.DeleteConsumer(context.Background(), auditstream.StreamName, before[0]); err != nil {
		t.Fatal(err)
	}
	publish(t, js, 30, 30)
	waitLog(t, dbPath, 60, 15*time.Second)
	if after := names(); len(after) != 1 || after[0] == before[0] {
		t.Fatalf("got consumers %v after deleting %s, want one new one", after, before[0])
	}
}

// TestPublisherLastDecision: the decision audited for a call is read back
// from the stream (what a broker taking over a dead broker's call relies
// on); other events and other calls do not answer for it; a second
// decision for the call is refused (ErrDecisionExists) unless it is the
// same append retried under its key; a rejected resubmission does not
// count as the call's decision; and an event appended twice under one Key
// is stored once.
func TestPublisherLastDecision(t *testing.T) {
	_, js := startServer(t, time.Second)
	ctx := t.Context()
	pub := auditstream.NewPublisher(js)
	event := func(id string, v airlock.Verdict, key string) airlock.Event {
		return airlock.Event{Kind: airlock.EventDecision, CallID: id, TS: time.Now(), Key: key,
			Payload: airlock.DecisionRecord{Call: airlock.ToolCall{ID: id, Agent: "a", Tool: "t", Arguments: map[string]any{}},
				Decision: airlock.Decision{CallID: id, Verdict: v, DecidedBy: "policy"}}}
	}
	if _, err := pub.Append(ctx, airlock.Event{Kind: airlock.EventPending, CallID: "c.1 weird/id", TS: time.Now(), Payload: map[string]any{"x": 1}}); err != nil {
		t.Fatal(err)
	}
	if d, err := pub.LastDecision(ctx, "c.1 weird/id"); err != nil || d != nil {
		t.Fatalf("before any decision: %+v %v, want nothing", d, err)
	}
	first := event("c.1 weird/id", airlock.VerdictApproved, "decision:c.1 weird/id:7")
	want, err := pub.Append(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := pub.Append(ctx, first); err != nil || again.Seq != want.Seq {
		t.Fatalf("the same append retried: seq %d, %v; want seq %d, no error", again.Seq, err, want.Seq)
	}
	if _, err := pub.Append(ctx, event("c.1 weird/id", airlock.VerdictDenied, "decision:c.1 weird/id:9")); !errors.Is(err, airlock.ErrDecisionExists) {
		t.Fatalf("a second decision for the call: %v, want ErrDecisionExists", err)
	}
	if _, err := pub.Append(ctx, event("c.1 weird/id", airlock.VerdictRejected, "")); err != nil {
		t.Fatalf("a rejected resubmission under the call's id: %v, want it audited", err)
	}
	if _, err := pub.Append(ctx, event("c2", airlock.VerdictDenied, "")); err != nil {
		t.Fatal(err)
	}
	d, err := pub.LastDecision(ctx, "c.1 weird/id")
	if err != nil || d == nil || d.Verdict != airlock.VerdictApproved || d.AuditSeq != want.Seq {
		t.Fatalf("got %+v %v, want the approval at seq %d", d, err, want.Seq)
	}

	ev := airlock.Event{Kind: airlock.EventExecution, CallID: "c2", TS: time.Now(), Payload: map[string]any{"exit": 0}, Key: "execution:c2:abc"}
	r1, err := pub.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := pub.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, auditstream.StreamName)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Seq != r2.Seq || info.State.Msgs != uint64(r1.Seq) {
		t.Fatalf("appended twice under one key: seqs %d and %d, stream holds %d messages; want one", r1.Seq, r2.Seq, info.State.Msgs)
	}
}

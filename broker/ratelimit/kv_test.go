package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// runServer starts an embedded NATS server with JetStream storing in dir.
func runServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// bucket connects to s and opens (creating) the rate-limit bucket.
func bucket(t testing.TB, s *server.Server, limits []policy.Limit) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
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
	kv, err := js.CreateOrUpdateKeyValue(ctx, BucketConfig("airlock_ratelimit", limits))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func usedOf(us []Usage, scope, dim string) float64 {
	for _, u := range us {
		if u.Scope == scope && u.Dimension == dim {
			return u.Used
		}
	}
	return -1
}

func TestKVRestartKeepsUsage(t *testing.T) {
	dir := t.TempDir()
	limits := []policy.Limit{{Scope: "user", RequestsPerMinute: 5, TokensPerMinute: 1000}, {Scope: "org", Requests: 100, Window: 24 * time.Hour}}
	clk := newClock()
	s1 := runServer(t, dir)
	l1 := New(limits, NewKVStore(bucket(t, s1, limits)), WithClock(clk.Now))
	mk := func(int) *airlock.ToolCall { c := call("alice", "acme", "s1"); c.InputTokens = 100; return c }
	if n, _ := admit(t, l1, 3, mk); n != 3 {
		t.Fatalf("before restart: got %d, want 3", n)
	}
	s1.Shutdown()
	s1.WaitForShutdown()

	s2 := runServer(t, dir)
	l2 := New(limits, NewKVStore(bucket(t, s2, limits)), WithClock(clk.Now))
	ctx := context.Background()
	us := l2.Usage(ctx, "user", "alice")
	if got := usedOf(us, "user", DimRequests); got != 3 {
		t.Fatalf("requests after restart: got %v, want 3 (%+v)", got, us)
	}
	if got := usedOf(us, "user", DimTokens); got != 300 {
		t.Fatalf("tokens after restart: got %v, want 300", got)
	}
	if got := usedOf(l2.Usage(ctx, "org", "acme"), "org", DimRequests); got != 3 {
		t.Fatalf("org after restart: got %v, want 3", got)
	}
	n, rl := admit(t, l2, 5, mk)
	if n != 2 || rl == nil || rl.Scope != "user" || rl.Dimension != DimRequests {
		t.Fatalf("after restart: got %d approved, %+v; want 2 then requests", n, rl)
	}
}

func TestKVFleetExact(t *testing.T) {
	tests := []struct {
		name    string
		limits  []policy.Limit
		release bool
		want    int
	}{
		{"requests", []policy.Limit{{Scope: "user", RequestsPerMinute: 20}, {Scope: "org", RequestsPerMinute: 1000}}, true, 20},
		{"org-over-many-users", []policy.Limit{{Scope: "org", RequestsPerMinute: 20}}, true, 20},
		{"concurrent", []policy.Limit{{Scope: "user", Concurrent: 7}}, false, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := runServer(t, t.TempDir())
			clk := newClock()
			// Two brokers: two connections, two limiters, one bucket.
			ls := []*Limiter{
				New(tt.limits, NewKVStore(bucket(t, s, tt.limits)), WithClock(clk.Now)),
				New(tt.limits, NewKVStore(bucket(t, s, tt.limits)), WithClock(clk.Now)),
			}
			offered := 3 * tt.want
			var ok atomic.Int64
			var wg sync.WaitGroup
			for i := range offered {
				l := ls[i%2]
				wg.Go(func() {
					user := "alice"
					if tt.name == "org-over-many-users" {
						user = fmt.Sprintf("u%d", i)
					}
					r, rl, err := l.Reserve(context.Background(), call(user, "acme", ""))
					if err != nil {
						t.Error(err)
						return
					}
					if rl == nil {
						ok.Add(1)
						if tt.release {
							r.Release(context.Background())
						}
					}
				})
			}
			wg.Wait()
			if got := ok.Load(); got != int64(tt.want) {
				t.Fatalf("got %d approved of %d offered across two brokers, want exactly %d", got, offered, tt.want)
			}
		})
	}
}

func TestKVLostRaceError(t *testing.T) {
	s := runServer(t, t.TempDir())
	kv := bucket(t, s, nil)
	ctx := context.Background()
	rev, err := kv.Create(ctx, "u.x", []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "u.x", []byte(`{"v":1}`), rev); err != nil {
		t.Fatal(err)
	}
	_, errUpdate := kv.Update(ctx, "u.x", []byte(`{"v":1}`), rev) // stale revision: lost the race
	_, errCreate := kv.Create(ctx, "u.x", []byte(`{"v":1}`))
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"stale-update", errUpdate, true},
		{"create-existing", errCreate, true},
		{"replicated-code-10164", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}, true},
		{"wrapped-10071", fmt.Errorf("x: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}), true},
		{"other-error", jetstream.ErrKeyNotFound, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isConflict(tt.err); got != tt.want {
				t.Fatalf("isConflict(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if !errors.Is(errUpdate, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("stale update: got %v, want ErrKeyRevisionMismatch", errUpdate)
	}
}

func TestKVContentionRetried(t *testing.T) {
	// A writer racing the limiter on the same key: every lost race is
	// retried and the counts stay exact.
	s := runServer(t, t.TempDir())
	limits := []policy.Limit{{Scope: "user", Requests: 1000, Window: time.Hour}}
	kv := bucket(t, s, limits)
	clk := newClock()
	store := NewKVStore(kv)
	l := New(limits, store, WithClock(clk.Now))
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if _, rl, err := l.Reserve(context.Background(), call("alice", "", "")); err != nil {
					t.Error(err)
				} else if rl == nil {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := usedOf(l.Usage(context.Background(), "user", "alice"), "user", DimRequests); got != 160 || ok.Load() != 160 {
		t.Fatalf("got %v counted and %d approved, want 160 and 160", got, ok.Load())
	}
	if store.Conflicts() == 0 {
		t.Fatal("16 writers on one key lost no compare-and-set race: the retry path went untested")
	}
	t.Logf("%d lost races retried", store.Conflicts())
}

func TestKVCancelReleaseAndPressure(t *testing.T) {
	s := runServer(t, t.TempDir())
	limits := []policy.Limit{{Scope: "user", Concurrent: 1, TokensPerMinute: 1000, RequestsPerMinute: 10}, {Scope: "session", SessionMessages: 5}}
	clk := newClock()
	l := New(limits, NewKVStore(bucket(t, s, limits)), WithClock(clk.Now))
	ctx := context.Background()
	c := call("alice", "acme", "s1")
	c.InputTokens = 800
	r, rl, err := l.Reserve(ctx, c)
	if err != nil || rl != nil {
		t.Fatalf("first: %v %+v", err, rl)
	}
	if _, rl, _ := l.Reserve(ctx, call("alice", "acme", "s1")); rl == nil || rl.Dimension != DimConcurrent {
		t.Fatalf("second in flight: got %+v, want concurrent", rl)
	}
	r.Cancel(ctx)
	r2, rl, _ := l.Reserve(ctx, c)
	if rl != nil {
		t.Fatalf("after cancel: got %+v, want approved (tokens and slot given back)", rl)
	}
	r2.Release(ctx)
	us := l.Usage(ctx, "user", "alice")
	if got := usedOf(us, "user", DimTokens); got != 800 {
		t.Fatalf("tokens: got %v, want 800", got)
	}
	if got := usedOf(us, "user", DimConcurrent); got != 0 {
		t.Fatalf("concurrent: got %v, want 0", got)
	}
	if got := usedOf(us, "session", DimSessionMessages); got != 1 {
		t.Fatalf("session messages: got %v, want 1 (%+v)", got, us)
	}
	// Slow and steady through the KV store.
	for i := range 60 * 60 * 2 / 13 {
		if r, rl, err := l.Reserve(ctx, call("mallory", "evil", fmt.Sprint(i))); err == nil && rl == nil {
			r.Release(ctx)
		}
		clk.Advance(6500 * time.Millisecond)
	}
	if f := l.Pressure(call("mallory", "evil", "")); f == nil {
		t.Fatal("mallory at ~92% of 10/min for an hour: got no pressure factor")
	}
}

func TestKVRestoreReleasesAfterRestart(t *testing.T) {
	s := runServer(t, t.TempDir())
	limits := []policy.Limit{{Scope: "user", Concurrent: 1}}
	kv := bucket(t, s, limits)
	clk := newClock()
	ctx := context.Background()
	old := New(limits, NewKVStore(kv), WithClock(clk.Now))
	c := call("alice", "", "")
	if _, rl, err := old.Reserve(ctx, c); err != nil || rl != nil {
		t.Fatalf("%v %+v", err, rl)
	}
	// The broker restarts while the call waits for a reviewer; the new one
	// decides it and releases the slot it never reserved itself.
	l := New(limits, NewKVStore(kv), WithClock(clk.Now))
	if _, rl, _ := l.Reserve(ctx, c); rl == nil || rl.Dimension != DimConcurrent {
		t.Fatalf("after restart: got %+v, want the slot still taken", rl)
	}
	l.Restore(c).Release(ctx)
	if _, rl, _ := l.Reserve(ctx, c); rl != nil {
		t.Fatalf("after Restore+Release: got %+v, want a slot", rl)
	}
}

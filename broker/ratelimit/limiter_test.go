package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// t0 is aligned to a 7-day window boundary (Unix weeks start on Thursday).
var t0 = time.Unix(0, 0).UTC().Add(2940 * 7 * 24 * time.Hour)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimiter(t testing.TB, limits []policy.Limit, opts ...Option) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newClock()
	return New(limits, NewMemoryStore(), append([]Option{WithClock(clk.Now)}, opts...)...), clk
}

func call(user, org, session string) *airlock.ToolCall {
	return &airlock.ToolCall{ID: "c", Agent: "bot", User: user, Org: org, Session: session, Tool: "search_web"}
}

// admit reserves n calls made by mk and returns how many passed, failing on
// a store error.
func admit(t testing.TB, l *Limiter, n int, mk func(i int) *airlock.ToolCall) (int, *airlock.RateLimit) {
	t.Helper()
	ok := 0
	var last *airlock.RateLimit
	for i := range n {
		r, rl, err := l.Reserve(context.Background(), mk(i))
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		if rl != nil {
			last = rl
			continue
		}
		if r == nil {
			t.Fatal("got nil reservation and nil refusal")
		}
		ok++
	}
	return ok, last
}

func TestNilAndEmptyAllowEverything(t *testing.T) {
	var nilL *Limiter
	for name, l := range map[string]*Limiter{"nil-limiter": nilL, "no-limits": New(nil, nil)} {
		t.Run(name, func(t *testing.T) {
			r, rl, err := l.Reserve(context.Background(), call("a", "o", "s"))
			if err != nil || rl != nil || r == nil {
				t.Fatalf("got %v, %v, %v; want a reservation", r, rl, err)
			}
			r.Release(context.Background())
			r.Cancel(context.Background())
			if f := l.Pressure(call("a", "o", "s")); f != nil {
				t.Fatalf("got factor %v, want nil", f)
			}
		})
	}
}

func TestBurstAndWindowEdge(t *testing.T) {
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", RequestsPerMinute: 5}})
	n, rl := admit(t, l, 7, func(int) *airlock.ToolCall { return call("alice", "acme", "s1") })
	if n != 5 {
		t.Fatalf("burst: got %d approved, want 5", n)
	}
	want := airlock.RateLimit{Scope: "user", Key: "alice", Dimension: "requests", Window: "1m", Limit: 5, Used: 5,
		RetryAfter: "1m12s", RetryAfterMS: 72000}
	if *rl != want {
		t.Fatalf("got refusal %+v, want %+v", *rl, want)
	}
	// Past the window edge the previous bucket still weighs (1 - f): at
	// 1m11.9s the estimate is 5 × 0.802 + 1 > 5.
	clk.Advance(71900 * time.Millisecond)
	if n, _ := admit(t, l, 1, func(int) *airlock.ToolCall { return call("alice", "", "") }); n != 0 {
		t.Fatalf("before retry_after: got %d approved, want 0", n)
	}
	clk.Advance(100 * time.Millisecond)
	if n, _ := admit(t, l, 2, func(int) *airlock.ToolCall { return call("alice", "", "") }); n != 1 {
		t.Fatalf("at retry_after: got %d approved, want 1", n)
	}
	// Two windows later everything has drained: a full burst again.
	clk.Advance(2 * time.Minute)
	if n, _ := admit(t, l, 7, func(int) *airlock.ToolCall { return call("alice", "", "") }); n != 5 {
		t.Fatalf("after two windows: got %d approved, want 5", n)
	}
}

func TestBurstAtEndOfBucket(t *testing.T) {
	// A burst at the end of one bucket cannot be repeated at the start of
	// the next (the fixed-window edge bypass).
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", Requests: 10, Window: time.Minute}})
	clk.Advance(59 * time.Second)
	if n, _ := admit(t, l, 10, func(int) *airlock.ToolCall { return call("bob", "", "") }); n != 10 {
		t.Fatalf("first burst: got %d, want 10", n)
	}
	clk.Advance(2 * time.Second) // 1s into the next bucket
	if n, _ := admit(t, l, 10, func(int) *airlock.ToolCall { return call("bob", "", "") }); n != 0 {
		t.Fatalf("second burst at the edge: got %d, want 0", n)
	}
	clk.Advance(29 * time.Second) // half-way: the old bucket weighs 0.5
	if n, _ := admit(t, l, 10, func(int) *airlock.ToolCall { return call("bob", "", "") }); n != 5 {
		t.Fatalf("half a window later: got %d, want 5", n)
	}
}

func TestSessionRotation(t *testing.T) {
	tests := []struct {
		name   string
		limits []policy.Limit
		want   int
	}{
		{"per-user-limit", []policy.Limit{{Scope: "user", RequestsPerMinute: 5}}, 5},
		{"session-limit-counted-per-user-too", []policy.Limit{{Scope: "session", RequestsPerMinute: 5}}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLimiter(t, tt.limits)
			n, rl := admit(t, l, 7, func(i int) *airlock.ToolCall { return call("mallory", "acme", fmt.Sprintf("s-%d", i)) })
			if n != tt.want {
				t.Fatalf("got %d approved over 7 sessions, want %d", n, tt.want)
			}
			if rl == nil || rl.Dimension != "requests" {
				t.Fatalf("got refusal %+v, want requests", rl)
			}
		})
	}
	t.Run("session-limit-key", func(t *testing.T) {
		l, _ := newLimiter(t, []policy.Limit{{Scope: "session", RequestsPerMinute: 5}})
		_, rl := admit(t, l, 6, func(i int) *airlock.ToolCall { return call("mallory", "", fmt.Sprintf("s-%d", i)) })
		if rl.Scope != "session" || rl.Key != "mallory/*" {
			t.Fatalf("got %s %s, want session mallory/*", rl.Scope, rl.Key)
		}
	})
}

func TestSessionMessages(t *testing.T) {
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", SessionMessages: 3}}, WithSessionTTL(time.Hour))
	n, rl := admit(t, l, 5, func(int) *airlock.ToolCall { return call("alice", "", "s1") })
	if n != 3 || rl.Dimension != DimSessionMessages || rl.Key != "alice/s1" || rl.RetryAfter != "1h0m0s" {
		t.Fatalf("got %d approved, refusal %+v; want 3, session_messages alice/s1 retry 1h", n, rl)
	}
	// Another user's session of the same name is its own.
	if n, _ := admit(t, l, 1, func(int) *airlock.ToolCall { return call("bob", "", "s1") }); n != 1 {
		t.Fatalf("bob's s1: got %d, want 1", n)
	}
	clk.Advance(time.Hour)
	if n, _ := admit(t, l, 1, func(int) *airlock.ToolCall { return call("alice", "", "s1") }); n != 1 {
		t.Fatalf("after the session TTL: got %d, want 1", n)
	}
}

func TestOrgAggregate(t *testing.T) {
	l, _ := newLimiter(t, []policy.Limit{{Scope: "user", RequestsPerMinute: 5}, {Scope: "org", RequestsPerMinute: 10}})
	n, rl := admit(t, l, 50, func(i int) *airlock.ToolCall { return call(fmt.Sprintf("u%d", i), "acme", "") })
	if n != 10 || rl.Scope != "org" || rl.Key != "acme" {
		t.Fatalf("got %d approved, refusal %+v; want 10 then org acme", n, rl)
	}
	if n, _ := admit(t, l, 1, func(int) *airlock.ToolCall { return call("u0", "globex", "") }); n != 1 {
		t.Fatalf("another org: got %d, want 1", n)
	}
	// Leaving the org out does not escape: all org-less calls share one key.
	n, _ = admit(t, l, 20, func(i int) *airlock.ToolCall { return call(fmt.Sprintf("x%d", i), "", "") })
	if n != 10 {
		t.Fatalf("empty org: got %d approved, want 10", n)
	}
}

func TestAgentAndGlobal(t *testing.T) {
	l, _ := newLimiter(t, []policy.Limit{{Scope: "agent", RequestsPerMinute: 3}, {Scope: "global", RequestsPerMinute: 5}})
	n, rl := admit(t, l, 5, func(i int) *airlock.ToolCall { return call(fmt.Sprintf("u%d", i), "", "") })
	if n != 3 || rl.Scope != "agent" || rl.Key != "bot" {
		t.Fatalf("got %d, %+v; want 3 then agent bot", n, rl)
	}
	n, rl = admit(t, l, 5, func(i int) *airlock.ToolCall {
		c := call("u", "", "")
		c.Agent = fmt.Sprintf("a%d", i)
		return c
	})
	if n != 2 || rl.Scope != "global" || rl.Key != "*" {
		t.Fatalf("got %d, %+v; want 2 then global *", n, rl)
	}
}

func TestConcurrency(t *testing.T) {
	ctx := context.Background()
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", Concurrent: 2}}, WithInflightTTL(10*time.Minute))
	get := func() (*Reservation, *airlock.RateLimit) {
		t.Helper()
		r, rl, err := l.Reserve(ctx, call("alice", "", ""))
		if err != nil {
			t.Fatal(err)
		}
		return r, rl
	}
	r1, _ := get()
	r2, _ := get()
	if _, rl := get(); rl == nil || rl.Dimension != DimConcurrent || rl.Used != 2 || rl.RetryAfter != "" {
		t.Fatalf("third in flight: got %+v, want concurrent 2/2", rl)
	}
	r1.Release(ctx)
	r1.Cancel(ctx) // after Release: must not free a second slot
	r1.Release(ctx)
	r3, rl := get()
	if rl != nil {
		t.Fatalf("after release: got %+v, want a slot", rl)
	}
	if _, rl := get(); rl == nil {
		t.Fatal("Cancel after Release freed a second slot")
	}
	r3.Cancel(ctx) // cancel frees the slot of an unreleased reservation
	if _, rl := get(); rl != nil {
		t.Fatalf("after cancel: got %+v, want a slot", rl)
	}
	_ = r2
	// Slots never released (a broker died) are void after the TTL.
	clk.Advance(10*time.Minute + time.Second)
	if _, rl := get(); rl != nil {
		t.Fatalf("after the in-flight TTL: got %+v, want a slot", rl)
	}
	if us := l.Usage(ctx, "user", "alice"); len(us) != 1 || us[0].Used != 1 {
		t.Fatalf("usage: got %+v, want concurrent 1", us)
	}
}

func TestCancelGivesBack(t *testing.T) {
	ctx := context.Background()
	l, _ := newLimiter(t, []policy.Limit{{Scope: "user", Requests: 3, Tokens: 1000, CostUSD: 1, Window: time.Hour, SessionMessages: 2}})
	big := func() *airlock.ToolCall {
		c := call("alice", "", "s1")
		c.InputTokens, c.OutputTokens, c.CostUSD = 400, 200, 0.6
		return c
	}
	r, rl, err := l.Reserve(ctx, big())
	if err != nil || rl != nil {
		t.Fatalf("first: %v %+v", err, rl)
	}
	if _, rl, _ := l.Reserve(ctx, big()); rl == nil || rl.Dimension != DimTokens {
		t.Fatalf("second before cancel: got %+v, want tokens refusal", rl)
	}
	r.Cancel(ctx)
	r.Cancel(ctx) // twice: no double refund
	r2, rl, _ := l.Reserve(ctx, big())
	if rl != nil {
		t.Fatalf("after cancel: got %+v, want approved", rl)
	}
	got := map[string]float64{}
	for _, u := range l.Usage(ctx, "user", "alice") {
		got[u.Dimension] = u.Used
	}
	want := map[string]float64{DimRequests: 2, DimTokens: 600, DimCost: 0.6, DimSessionMessages: 1}
	for d, w := range want {
		if got[d] != w {
			t.Errorf("%s: got %v, want %v (requests stay counted, the rest is given back)", d, got[d], w)
		}
	}
	r2.Release(ctx)
	r2.Cancel(ctx)
	if _, rl, _ := l.Reserve(ctx, call("alice", "", "s1")); rl != nil {
		t.Fatalf("third request: got %+v", rl)
	}
	if _, rl, _ := l.Reserve(ctx, call("alice", "", "s1")); rl == nil || rl.Dimension != DimRequests {
		t.Fatalf("fourth request: got %+v, want requests refusal (cancelled requests stay counted)", rl)
	}
}

func TestPerCallSizes(t *testing.T) {
	l, _ := newLimiter(t, []policy.Limit{{Scope: "user", MaxInputTokens: 4096, MaxOutputTokens: 1000, TokensPerMinute: 10000}})
	tests := []struct {
		name    string
		in, out int64
		dim     string
		used    float64
	}{
		{"input-too-large", 5000, 1, DimInputTokens, 5000},
		{"output-too-large", 10, 1001, DimOutputTokens, 1001},
		{"at-the-limits", 4096, 1000, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := call("alice", "", "")
			c.InputTokens, c.OutputTokens = tt.in, tt.out
			_, rl, err := l.Reserve(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if tt.dim == "" {
				if rl != nil {
					t.Fatalf("got %+v, want approved", rl)
				}
				return
			}
			if rl == nil || rl.Dimension != tt.dim || rl.Used != tt.used || rl.RetryAfter != "" || rl.RetryAfterMS != 0 {
				t.Fatalf("got %+v, want %s used %v and no retry_after", rl, tt.dim, tt.used)
			}
		})
	}
	t.Run("call-larger-than-the-budget", func(t *testing.T) {
		l, _ := newLimiter(t, []policy.Limit{{Scope: "user", TokensPerMinute: 5000}})
		c := call("alice", "", "")
		c.InputTokens = 6000
		_, rl, _ := l.Reserve(context.Background(), c)
		if rl == nil || rl.Dimension != DimTokens || rl.RetryAfter != "" {
			t.Fatalf("got %+v, want tokens refusal without retry_after", rl)
		}
	})
}

func TestCost(t *testing.T) {
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", CostPerHourUSD: 1}})
	mk := func(int) *airlock.ToolCall { c := call("alice", "", ""); c.CostUSD = 0.3; return c }
	n, rl := admit(t, l, 5, mk)
	if n != 3 || rl.Dimension != DimCost || rl.Window != "1h" || rl.Used != 0.9 {
		t.Fatalf("got %d, %+v; want 3 then cost_usd 0.9/1 per 1h", n, rl)
	}
	clk.Advance(time.Duration(rl.RetryAfterMS) * time.Millisecond)
	if n, _ := admit(t, l, 1, mk); n != 1 {
		t.Fatalf("after retry_after %s: got %d, want 1", rl.RetryAfter, n)
	}
}

func TestLongWindows(t *testing.T) {
	for _, w := range []time.Duration{24 * time.Hour, 7 * 24 * time.Hour} {
		t.Run(FormatWindow(w), func(t *testing.T) {
			l, clk := newLimiter(t, []policy.Limit{{Scope: "user", Requests: 3, Window: w}})
			mk := func(int) *airlock.ToolCall { return call("alice", "", "") }
			if n, _ := admit(t, l, 4, mk); n != 3 {
				t.Fatalf("got %d, want 3", n)
			}
			clk.Advance(w - time.Minute)
			if n, rl := admit(t, l, 1, mk); n != 0 || rl.Window != FormatWindow(w) {
				t.Fatalf("late in the window: got %d, %+v; want refused", n, rl)
			}
			clk.Advance(w/3 + time.Minute) // a third into the next bucket: 3 × 2/3 = 2 counted
			if n, _ := admit(t, l, 3, mk); n != 1 {
				t.Fatalf("a third into the next window: got %d, want 1", n)
			}
			clk.Advance(2 * w)
			if n, _ := admit(t, l, 4, mk); n != 3 {
				t.Fatalf("two windows later: got %d, want 3", n)
			}
		})
	}
}

func TestEvictionBounded(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := NewMemoryStore(WithMaxKeys(128))
	l := New([]policy.Limit{{Scope: "user", RequestsPerMinute: 2}}, store, WithClock(clk.Now))
	// mallory uses up her budget; a flood of fresh users must not evict her.
	admit(t, l, 2, func(int) *airlock.ToolCall { return call("mallory", "", "") })
	refusedKeys := 0
	for i := range 10000 {
		_, rl, err := l.Reserve(ctx, call(fmt.Sprintf("u%d", i), "", ""))
		if err != nil {
			t.Fatal(err)
		}
		if rl != nil && rl.Dimension == DimKeys {
			refusedKeys++
		}
		if n := store.Len(); n > 128 {
			t.Fatalf("store holds %d keys, want ≤ 128", n)
		}
	}
	if refusedKeys == 0 {
		t.Fatal("a full store of live keys admitted new keys: it must have evicted live usage")
	}
	if _, rl, _ := l.Reserve(ctx, call("mallory", "", "")); rl == nil || rl.Dimension != DimRequests {
		t.Fatalf("mallory after the flood: got %+v, want still refused on requests", rl)
	}
	// Once the flood's keys are idle they are evicted and new users pass.
	n, _ := admit(t, l, 1000, func(i int) *airlock.ToolCall {
		clk.Advance(2 * time.Minute)
		return call(fmt.Sprintf("v%d", i), "", "")
	})
	if n != 1000 {
		t.Fatalf("users arriving after the flood went idle: got %d of 1000 approved", n)
	}
	if got := store.Len(); got > 128 {
		t.Fatalf("store holds %d keys, want ≤ 128", got)
	}
}

func TestSessionFloodEvictsSessionsNotUsers(t *testing.T) {
	// One user opens a new session per call: session cells hold their
	// message count for the session TTL, but when the store is full they
	// give way (the user's own budgets stay).
	clk := newClock()
	store := NewMemoryStore(WithMaxKeys(256))
	l := New([]policy.Limit{{Scope: "user", RequestsPerMinute: 100000, SessionMessages: 5}, {Scope: "org", RequestsPerMinute: 3000}}, store, WithClock(clk.Now))
	n, rl := admit(t, l, 3000, func(i int) *airlock.ToolCall { return call("mallory", "evil", fmt.Sprintf("s-%d", i)) })
	if n != 3000 {
		t.Fatalf("got %d approved, want 3000 (last refusal %+v)", n, rl)
	}
	if _, rl, _ := l.Reserve(context.Background(), call("mallory", "evil", "new")); rl == nil || rl.Scope != "org" {
		t.Fatalf("got %+v, want the org budget still counted", rl)
	}
	if got := store.Len(); got > 256 {
		t.Fatalf("store holds %d keys, want ≤ 256", got)
	}
}

func TestManyUsersOverTime(t *testing.T) {
	// 20,000 distinct users, one call a second: keys go idle two windows
	// after their call and make room; the store stays bounded and nobody
	// is refused.
	clk := newClock()
	store := NewMemoryStore(WithMaxKeys(2048))
	l := New([]policy.Limit{{Scope: "user", RequestsPerMinute: 2}}, store, WithClock(clk.Now))
	n, rl := admit(t, l, 20000, func(i int) *airlock.ToolCall {
		clk.Advance(time.Second)
		return call(fmt.Sprintf("u%d", i), "", "")
	})
	if n != 20000 {
		t.Fatalf("got %d approved, want 20000 (last refusal %+v)", n, rl)
	}
	if got := store.Len(); got > 2048 {
		t.Fatalf("store holds %d keys, want ≤ 2048", got)
	}
}

func TestPressure(t *testing.T) {
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", RequestsPerMinute: 10}, {Scope: "org", RequestsPerMinute: 1000}})
	ctx := context.Background()
	// mallory runs at ~92% of 10/min for 90 minutes; alice at 50%.
	for i := range 90 * 60 / 6 {
		if i%1000 == 999 || i%13 != 12 {
			l.Reserve(ctx, call("mallory", "evil", ""))
		}
		if i%2 == 0 {
			l.Reserve(ctx, call("alice", "acme", ""))
		}
		clk.Advance(6 * time.Second)
	}
	t.Logf("%+v", l.Usage(ctx, "user", "mallory"))
	f := l.Pressure(call("mallory", "evil", ""))
	if f == nil || f.Name != FactorName || f.Points != 20 || !strings.HasPrefix(f.Detail, "user mallory ran at ≥90% of requests/1m for ") {
		t.Fatalf("mallory: got %+v, want a rate_pressure factor", f)
	}
	t.Log(f.Detail)
	if f := l.Pressure(call("alice", "acme", "")); f != nil {
		t.Fatalf("alice: got %+v, want nil", f)
	}
	var p float64
	for _, u := range l.Usage(ctx, "user", "mallory") {
		if u.Dimension == DimRequests {
			p = u.Pressure
		}
	}
	if p < 0.5 {
		t.Fatalf("usage pressure of mallory: got %v, want ≥ 0.5", p)
	}
	// Quiet for two hours: the pressure is gone.
	clk.Advance(2 * time.Hour)
	if f := l.Pressure(call("mallory", "evil", "")); f != nil {
		t.Fatalf("after two quiet hours: got %+v, want nil", f)
	}
}

func TestConcurrentReserveExact(t *testing.T) {
	l, _ := newLimiter(t, []policy.Limit{{Scope: "user", RequestsPerMinute: 50, Concurrent: 1000}, {Scope: "org", Requests: 10000, Window: time.Hour}})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				r, rl, err := l.Reserve(context.Background(), call("alice", "acme", fmt.Sprintf("s%d-%d", g, i)))
				if err != nil {
					t.Error(err)
					return
				}
				if rl == nil {
					ok.Add(1)
					r.Release(context.Background())
				}
			}
		})
	}
	wg.Wait()
	if got := ok.Load(); got != 50 {
		t.Fatalf("got %d approved of 400 offered, want exactly 50", got)
	}
}

func TestBudgets(t *testing.T) {
	p := compile([]policy.Limit{
		{Scope: "user", RequestsPerMinute: 20, TokensPerMinute: 40000, CostPerHourUSD: 10, Requests: 20, Window: time.Minute},
		{Scope: "user", Window: 24 * time.Hour, Requests: 5000},
		{Scope: "bogus", Requests: 1},
	}, New(nil, nil).cfg.log)
	var got []string
	for _, r := range p.kinds[kindUser].rates {
		got = append(got, r.sig+fmt.Sprintf("=%g", r.amount))
	}
	want := "requests/1m=20 tokens/1m=40000 cost_usd/1h=10 requests/24h=5000"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestCancelInTheNextWindow(t *testing.T) {
	ctx := context.Background()
	l, clk := newLimiter(t, []policy.Limit{{Scope: "user", TokensPerMinute: 1000}})
	clk.Advance(30 * time.Second)
	c := call("alice", "", "")
	c.InputTokens = 600
	r, rl, _ := l.Reserve(ctx, c)
	if rl != nil {
		t.Fatal(rl)
	}
	clk.Advance(40 * time.Second) // 10 s into the next bucket: 600 × 5/6 = 500 still counted
	if got := usedOf(l.Usage(ctx, "user", "alice"), "user", DimTokens); got != 500 {
		t.Fatalf("before cancel: got %v, want 500", got)
	}
	r.Cancel(ctx) // taken out of the previous bucket
	if got := usedOf(l.Usage(ctx, "user", "alice"), "user", DimTokens); got != 0 {
		t.Fatalf("after cancel: got %v, want 0", got)
	}
	// Two windows later there is nothing left to give back, and nothing
	// is given back twice.
	r2, _, _ := l.Reserve(ctx, c)
	clk.Advance(2 * time.Minute)
	c.InputTokens = 1000
	r3, rl, _ := l.Reserve(ctx, c)
	if rl != nil {
		t.Fatal(rl)
	}
	r2.Cancel(ctx)
	if got := usedOf(l.Usage(ctx, "user", "alice"), "user", DimTokens); got != 1000 {
		t.Fatalf("a cancel two windows late: got %v, want 1000 (the later call untouched)", got)
	}
	_ = r3
}

func TestUsageUnknownScope(t *testing.T) {
	l, _ := newLimiter(t, []policy.Limit{{Scope: "user", RequestsPerMinute: 1}})
	if us, err := l.usage(context.Background(), "planet", ""); err == nil {
		t.Fatalf("got %+v, want an error", us)
	}
}

func TestOrgPressure(t *testing.T) {
	l, clk := newLimiter(t, []policy.Limit{{Scope: "org", RequestsPerMinute: 100}})
	// 30 users of acme, together at ~95 calls a minute, for an hour.
	for i := range 95 * 60 {
		l.Reserve(context.Background(), call(fmt.Sprintf("u%d", i%30), "acme", ""))
		clk.Advance(time.Minute / 95)
	}
	f := l.Pressure(call("u0", "acme", ""))
	if f == nil || !strings.HasPrefix(f.Detail, "org acme ran at ≥90% of requests/1m") {
		t.Fatalf("got %+v, want org pressure", f)
	}
}

package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// listLimiter is a Go port of the list-of-timestamps limiter in
// ../shared/REFERENCE.md (AIRateLimiter.check_and_record): a list of the
// request times of each user, filtered on every check. It checks requests
// per minute, input size and the session length the caller reports.
type listLimiter struct {
	requestsPerMinute  int
	maxInputTokens     int64
	maxSessionMessages int
	windows            map[string][]time.Time
}

func newListLimiter(rpm int) *listLimiter {
	return &listLimiter{requestsPerMinute: rpm, maxInputTokens: 4096, maxSessionMessages: 50, windows: map[string][]time.Time{}}
}

func (l *listLimiter) checkAndRecord(userID string, inputTokens int64, sessionMessages int, now time.Time) (bool, string) {
	windowStart := now.Add(-time.Minute)
	key := "rpm:" + userID
	var recent []time.Time
	for _, t := range l.windows[key] {
		if t.After(windowStart) {
			recent = append(recent, t)
		}
	}
	if len(recent) >= l.requestsPerMinute {
		return false, "Rate limit exceeded: too many requests"
	}
	if inputTokens > l.maxInputTokens {
		return false, fmt.Sprintf("input too large: %d tokens", inputTokens)
	}
	if sessionMessages > l.maxSessionMessages {
		return false, "Session message limit reached"
	}
	recent = append(recent, now)
	l.windows[key] = recent
	return true, "OK"
}

// benchLimits turns every dimension on, in every scope: requests, tokens
// and cost per window, largest input and output, concurrency and session
// messages, per user, org, agent, (user, session) and globally. The budgets
// are large enough that the benchmark measures admitted calls.
var benchLimits = []policy.Limit{
	{Scope: "user", RequestsPerMinute: 1000, TokensPerMinute: 1e12, CostPerHourUSD: 1e9, MaxInputTokens: 4096,
		MaxOutputTokens: 4096, Concurrent: 1000, SessionMessages: 1 << 40},
	{Scope: "user", Window: 24 * time.Hour, Requests: 1 << 40},
	{Scope: "org", RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50},
	{Scope: "agent", RequestsPerMinute: 1 << 40},
	{Scope: "session", RequestsPerMinute: 1 << 40},
	{Scope: "global", RequestsPerMinute: 1 << 50, Concurrent: 1 << 40},
}

func benchCalls(n int) []*airlock.ToolCall {
	calls := make([]*airlock.ToolCall, n)
	for i := range calls {
		calls[i] = &airlock.ToolCall{ID: "c", Agent: "agent-" + strconv.Itoa(i%16), User: "user-" + strconv.Itoa(i),
			Org: "org-" + strconv.Itoa(i%1000), Session: "s-" + strconv.Itoa(i%7), Tool: "search_web",
			InputTokens: 1200, OutputTokens: 300, CostUSD: 0.004}
	}
	return calls
}

// BenchmarkCheck: one admitted call (Reserve, then Release) with all
// dimensions on, at 1 key and at 1,000,000 keys (users), beside the
// list-of-timestamps port at the same rate: each key calls at 1000/min
// (1 key) or once a second (1M keys).
func BenchmarkCheck(b *testing.B) {
	for _, keys := range []int{1, 1_000_000} {
		calls := benchCalls(keys)
		step := time.Minute / 900 // 1 key: 900/min, under the limit of 1000/min
		if keys > 1 {
			step = time.Second / time.Duration(keys) // each key once a second
		}
		b.Run("limiter=airlock/keys="+strconv.Itoa(keys), func(b *testing.B) {
			ctx := context.Background()
			now := t0
			l := New(benchLimits, NewMemoryStore(WithMaxKeys(4*keys+1024)), WithClock(func() time.Time { return now }))
			for _, c := range calls { // create every key first
				r, rl, err := l.Reserve(ctx, c)
				if err != nil || rl != nil {
					b.Fatalf("warm-up: %v %+v", err, rl)
				}
				r.Release(ctx)
			}
			now = now.Add(2 * time.Minute)
			runtime.GC() // collect the warm-up (and earlier runs) before timing
			b.ReportAllocs()
			defer cpuPerOp(b)()
			i := 0
			for b.Loop() {
				r, rl, err := l.Reserve(ctx, calls[i])
				if err != nil || rl != nil {
					b.Fatalf("refused: %v %+v", err, rl)
				}
				r.Release(ctx)
				now = now.Add(step)
				if i++; i == keys {
					i = 0
				}
			}
		})
		b.Run("limiter=airlock-user-only/keys="+strconv.Itoa(keys), func(b *testing.B) {
			// The same dimensions as the list port (requests per minute and
			// the largest input, per user), for a like-for-like comparison.
			ctx := context.Background()
			now := t0
			l := New([]policy.Limit{{Scope: "user", RequestsPerMinute: 1000, MaxInputTokens: 4096}},
				NewMemoryStore(WithMaxKeys(2*keys+1024)), WithClock(func() time.Time { return now }))
			for _, c := range calls {
				r, _, _ := l.Reserve(ctx, c)
				r.Release(ctx)
			}
			now = now.Add(2 * time.Minute)
			runtime.GC() // collect the warm-up (and earlier runs) before timing
			b.ReportAllocs()
			defer cpuPerOp(b)()
			i := 0
			for b.Loop() {
				r, rl, err := l.Reserve(ctx, calls[i])
				if err != nil || rl != nil {
					b.Fatalf("refused: %v %+v", err, rl)
				}
				r.Release(ctx)
				now = now.Add(step)
				if i++; i == keys {
					i = 0
				}
			}
		})
		b.Run("limiter=airlock-check-only/keys="+strconv.Itoa(keys), func(b *testing.B) {
			// The store's check and charge, without the *Reservation the API
			// hands back (its one allocation).
			now := t0
			l := New(benchLimits, NewMemoryStore(WithMaxKeys(4*keys+1024)), WithClock(func() time.Time { return now }))
			st := l.store.(*MemoryStore)
			var r Reservation
			prep := func(c *airlock.ToolCall) {
				r = Reservation{l: l, id: ident{c.User, c.Org, c.Agent, c.Session}, at: now.UnixNano()}
				r.am.units = [numDims]float64{1, float64(c.InputTokens + c.OutputTokens), c.CostUSD}
			}
			for _, c := range calls {
				prep(c)
				st.reserve(context.Background(), l.p, &r)
				st.refund(context.Background(), l.p, &r, refundSlot)
			}
			now = now.Add(2 * time.Minute)
			runtime.GC() // collect the warm-up (and earlier runs) before timing
			b.ReportAllocs()
			defer cpuPerOp(b)()
			i := 0
			for b.Loop() {
				prep(calls[i])
				if rl, _ := st.reserve(context.Background(), l.p, &r); rl != nil {
					b.Fatalf("refused: %+v", rl)
				}
				st.refund(context.Background(), l.p, &r, refundSlot)
				now = now.Add(step)
				if i++; i == keys {
					i = 0
				}
			}
		})
		b.Run("limiter=timestamp-list/keys="+strconv.Itoa(keys), func(b *testing.B) {
			now := t0
			l := newListLimiter(1000) // the same 1000/min
			for _, c := range calls {
				l.checkAndRecord(c.User, c.InputTokens, 1, now)
			}
			now = now.Add(2 * time.Minute)
			runtime.GC() // collect the warm-up (and earlier runs) before timing
			b.ReportAllocs()
			defer cpuPerOp(b)()
			i := 0
			for b.Loop() {
				c := calls[i]
				if ok, why := l.checkAndRecord(c.User, c.InputTokens, 1, now); !ok {
					b.Fatal(why)
				}
				now = now.Add(step)
				if i++; i == keys {
					i = 0
				}
			}
		})
	}
}

// BenchmarkCheckParallel: BenchmarkCheck's airlock case from every core at
// once (b.RunParallel): each goroutine walks its own share of the users;
// the org, agent and global keys are shared, so their shards' locks are
// contended.
func BenchmarkCheckParallel(b *testing.B) {
	for _, keys := range []int{1000, 1_000_000} {
		b.Run("limiter=airlock/keys="+strconv.Itoa(keys), func(b *testing.B) {
			ctx := context.Background()
			calls := benchCalls(keys)
			var clock atomic.Int64
			clock.Store(t0.UnixNano())
			l := New(benchLimits, NewMemoryStore(WithMaxKeys(8*keys+4096)), // room for uneven shards
				WithClock(func() time.Time { return time.Unix(0, clock.Load()) }))
			for _, c := range calls {
				r, rl, err := l.Reserve(ctx, c)
				if err != nil || rl != nil {
					b.Fatalf("warm-up: %v %+v", err, rl)
				}
				r.Release(ctx)
			}
			clock.Add(int64(2 * time.Minute))
			var next atomic.Int64
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			defer cpuPerOp(b)()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) * 7919 % keys
				for pb.Next() {
					r, rl, err := l.Reserve(ctx, calls[i])
					if err != nil || rl != nil {
						b.Errorf("refused: %v %+v", err, rl)
						return
					}
					r.Release(ctx)
					clock.Add(int64(time.Second) / int64(keys))
					if i++; i == keys {
						i = 0
					}
				}
			})
		})
	}
}

// cpuPerOp reports the process's CPU time (user + system, all threads, GC
// included) per iteration as "cpu-ns/op": on a shared, loaded machine wall
// time (ns/op) mostly measures waiting for a core.
func cpuPerOp(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIdleKeyBytes: heap per key held, for users who made 1 call or
// 20 (the limit of 20/min), in the airlock store (user budgets: requests,
// tokens, cost, 24h requests, concurrency, with the pressure buckets) and in
// the list port (one timestamp per call in the window).
func BenchmarkIdleKeyBytes(b *testing.B) {
	const n = 200_000
	calls := benchCalls(n)
	limits := []policy.Limit{{Scope: "user", RequestsPerMinute: 20, TokensPerMinute: 40000, CostPerHourUSD: 10, Concurrent: 4},
		{Scope: "user", Window: 24 * time.Hour, Requests: 5000}}
	for _, perKey := range []int{1, 20} {
		b.Run("limiter=airlock/calls-per-key="+strconv.Itoa(perKey), func(b *testing.B) {
			for b.Loop() {
				before := heapAlloc()
				l := New(limits, NewMemoryStore(WithMaxKeys(2*n)), WithClock(func() time.Time { return t0 }))
				for range perKey {
					for _, c := range calls {
						if r, _, _ := l.Reserve(context.Background(), c); r != nil {
							r.Release(context.Background())
						}
					}
				}
				b.ReportMetric(float64(heapAlloc()-before)/n, "bytes/key")
				runtime.KeepAlive(l)
			}
		})
		b.Run("limiter=timestamp-list/calls-per-key="+strconv.Itoa(perKey), func(b *testing.B) {
			for b.Loop() {
				before := heapAlloc()
				l := newListLimiter(20)
				for range perKey {
					for _, c := range calls {
						l.checkAndRecord(c.User, c.InputTokens, 1, t0)
					}
				}
				b.ReportMetric(float64(heapAlloc()-before)/n, "bytes/key")
				runtime.KeepAlive(l)
			}
		})
	}
}

// BenchmarkFlood: 1,000,000 distinct users, one call each, 1 ms apart (a
// key-rotation flood), into a store capped at 262,144 keys. With 1-minute
// budgets a key is idle two minutes after its call and is evicted, so the
// store holds about 120,000 keys and admits everyone; with a 1-hour budget
// too (cost_per_hour_usd) keys stay live for two hours, the store fills up
// and refuses new keys rather than forget usage (reported as refused-keys).
// The list port keeps every key. Reported: live heap after 100k and 1M users.
func BenchmarkFlood(b *testing.B) {
	const n = 1_000_000
	calls := benchCalls(n)
	run := func(b *testing.B, admit func(c *airlock.ToolCall, now time.Time)) {
		for b.Loop() {
			base := heapAlloc()
			now := t0
			var at100k uint64
			for i, c := range calls {
				admit(c, now)
				now = now.Add(time.Millisecond)
				if i == 100_000 {
					at100k = heapAlloc() - base
				}
			}
			b.ReportMetric(float64(at100k)/(1<<20), "heapMB@100k")
			b.ReportMetric(float64(heapAlloc()-base)/(1<<20), "heapMB@1M")
		}
	}
	for _, tc := range []struct {
		name   string
		limits []policy.Limit
	}{
		{"windows=1m", []policy.Limit{{Scope: "user", RequestsPerMinute: 20, TokensPerMinute: 40000, Concurrent: 4},
			{Scope: "org", RequestsPerMinute: 1 << 40}}},
		{"windows=1m+1h", []policy.Limit{{Scope: "user", RequestsPerMinute: 20, TokensPerMinute: 40000, CostPerHourUSD: 10, Concurrent: 4},
			{Scope: "org", RequestsPerMinute: 1 << 40}}},
	} {
		b.Run("limiter=airlock/"+tc.name, func(b *testing.B) {
			var now time.Time
			store := NewMemoryStore()
			l := New(tc.limits, store, WithClock(func() time.Time { return now }))
			refused := 0
			run(b, func(c *airlock.ToolCall, t time.Time) {
				now = t
				r, rl, err := l.Reserve(context.Background(), c)
				switch {
				case err != nil:
					b.Fatal(err)
				case rl != nil && rl.Dimension == DimKeys:
					refused++
				case rl != nil:
					b.Fatalf("refused: %+v", rl)
				default:
					r.Release(context.Background())
				}
			})
			b.ReportMetric(float64(store.Len()), "keys-held")
			b.ReportMetric(float64(refused)/float64(b.N), "refused-keys")
		})
	}
	b.Run("limiter=timestamp-list", func(b *testing.B) {
		l := newListLimiter(20)
		run(b, func(c *airlock.ToolCall, now time.Time) { l.checkAndRecord(c.User, c.InputTokens, 1, now) })
		b.ReportMetric(float64(len(l.windows)), "keys-held")
	})
}

// BenchmarkKVCheck: one admitted call (Reserve, then Release) through the
// JetStream KV store on an embedded server over loopback TCP: user budgets
// (requests, tokens, cost, concurrency) and an org budget, so two keys and
// a compare-and-set on each; with and without the store's cache of the last
// entry (which saves the read before each write).
func BenchmarkKVCheck(b *testing.B) {
	limits := []policy.Limit{{Scope: "user", RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50, CostPerHourUSD: 1e12, Concurrent: 1 << 30},
		{Scope: "org", RequestsPerMinute: 1 << 40}}
	s := runServer(b, b.TempDir())
	kv := bucket(b, s, limits)
	for _, cache := range []bool{true, false} {
		b.Run("cache="+strconv.FormatBool(cache), func(b *testing.B) {
			store := NewKVStore(kv)
			store.noCache = !cache
			l := New(limits, store)
			c := &airlock.ToolCall{Agent: "bot", User: "alice", Org: "acme", InputTokens: 1200, OutputTokens: 300, CostUSD: 0.004}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r, rl, err := l.Reserve(ctx, c)
				if err != nil || rl != nil {
					b.Fatalf("%v %+v", err, rl)
				}
				r.Release(ctx)
			}
		})
	}
}

package ratelimit

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// collect's hashes and shards (shared between kinds) must agree with
// locate, which Pressure uses to find a cell, and the hashes must differ
// between the kinds of one call.
func TestCollectAgreesWithLocate(t *testing.T) {
	l := New([]policy.Limit{{Scope: "user", Requests: 1}, {Scope: "org", Requests: 1}, {Scope: "agent", Requests: 1},
		{Scope: "session", Requests: 1}, {Scope: "global", Requests: 1}}, nil)
	s := l.store.(*MemoryStore)
	for _, id := range []ident{{"alice", "acme", "bot", "s1"}, {"", "", "", ""}, {"b", "o", "a", "a"}, {"x", "x", "x", "x"}} {
		var ss slots
		s.collect(l.p, &id, &ss, false)
		if ss.n != int(numKinds) {
			t.Fatalf("got %d cells, want %d", ss.n, numKinds)
		}
		for i := 0; i < ss.n; i++ {
			key := id.key(ss.s[i].kp.kind)
			h, sh := s.locate(key)
			if got := ss.s[i].h; got != h {
				t.Fatalf("%+v: collect hash %x, locate %x", key, got, h)
			}
			if got := ss.s[i].sh; got != sh {
				t.Fatalf("%+v: collect shard %d, locate %d", key, got, sh)
			}
			for j := 0; j < i; j++ {
				if ss.s[j].h == ss.s[i].h {
					t.Fatalf("%+v and %+v share a hash", ss.s[j].kp.kind, key)
				}
			}
		}
	}
}

func TestHashKeysDistinct(t *testing.T) {
	s := NewMemoryStore()
	seen := map[hkey]ckey{}
	for _, k := range []ckey{
		{k: kindSession, a: "ab", b: "c"}, {k: kindSession, a: "a", b: "bc"}, {k: kindSession, a: "", b: "abc"},
		{k: kindSession, a: "abc", b: ""}, {k: kindUser, a: "abc"}, {k: kindSessionUser, a: "abc"},
		{k: kindOrg, a: "abc"}, {k: kindAgent, a: "abc"}, {k: kindGlobal, a: "*"}, {k: kindUser, a: "*"},
	} {
		h, _ := s.locate(k)
		if o, dup := seen[h]; dup {
			t.Fatalf("%+v and %+v share hash %x", o, k, h)
		}
		seen[h] = k
	}
}

// The index agrees with a Go map through random puts and deletes (deletes
// as the sweep does them, by slot), including hashes that share a home
// slot and runs that wrap around the end of the table.
func TestIndexAgainstMap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		space uint64 // distinct h1 values drawn from (small: many shared homes)
	}{
		{"spread", 1 << 62},
		{"crowded", 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var x index
			want := map[hkey]*cell{}
			for step := range 200_000 {
				h := hkey{rng.Uint64N(tc.space) * 0x9E3779B97F4A7C15, rng.Uint64N(4)}
				switch c := x.get(h); {
				case c != want[h]:
					t.Fatalf("step %d: get %x: got %p, want %p", step, h, c, want[h])
				case c == nil && len(want) < 3000:
					c = &cell{h: h}
					x.put(c)
					want[h] = c
				case c != nil:
					for i, sl := range x.slots {
						if sl.c == c {
							x.deleteAt(i)
							break
						}
					}
					delete(want, h)
				}
				if x.n != len(want) {
					t.Fatalf("step %d: index holds %d, want %d", step, x.n, len(want))
				}
			}
			for h, c := range want {
				if got := x.get(h); got != c {
					t.Fatalf("get %x: got %p, want %p", h, got, c)
				}
			}
		})
	}
}

// A cell with up to inlineRates budgets fills the 320-byte size class (five
// whole cache lines) and no more: bytes per idle key must not grow.
func TestCellSize(t *testing.T) {
	if got := unsafe.Sizeof(cell{}); got > 320 {
		t.Fatalf("cell is %d bytes, want ≤ 320", got)
	}
}

// A kind with more budgets than a cell holds inline keeps them in cellExt,
// and a recycled cell starts from zero.
func TestMoreBudgetsThanInline(t *testing.T) {
	limits := []policy.Limit{
		{Scope: "user", RequestsPerMinute: 5, TokensPerMinute: 1e6, CostPerHourUSD: 100},
		{Scope: "user", Window: 24 * time.Hour, Requests: 1000},
		{Scope: "user", Window: time.Hour, Tokens: 1e7},
		{Scope: "user", Window: 7 * 24 * time.Hour, CostUSD: 1000},
	}
	clk := &struct{ now time.Time }{t0}
	store := NewMemoryStore(WithMaxKeys(64))
	l := New(limits, store, WithClock(func() time.Time { return clk.now }))
	if n := len(l.p.kinds[kindUser].rates); n <= inlineRates {
		t.Fatalf("got %d budgets, want more than %d", n, inlineRates)
	}
	for round := range 3 {
		for _, user := range []string{"alice", "bob"} {
			for i := range 6 {
				r, rl, err := l.Reserve(context.Background(), &airlock.ToolCall{User: user, InputTokens: 10, CostUSD: 0.01})
				switch {
				case err != nil:
					t.Fatal(err)
				case i < 5 && rl != nil:
					t.Fatalf("round %d %s call %d: got %+v, want admitted", round, user, i, rl)
				case i == 5 && (rl == nil || rl.Dimension != DimRequests || rl.Window != "1m"):
					t.Fatalf("round %d %s call %d: got %+v, want refused on requests/1m", round, user, i, rl)
				}
				r.Release(context.Background())
			}
		}
		// Every budget of alice's cell counted the five calls.
		for _, u := range l.Usage(context.Background(), "user", "alice") {
			if u.Dimension == DimRequests && u.Window == 24*time.Hour && u.Used != float64(5*(round+1)) {
				t.Fatalf("round %d: requests/24h used %v, want %d", round, u.Used, 5*(round+1))
			}
		}
		// Forget the 1-minute usage: a sweep evicts nothing (longer budgets
		// hold usage), the cells are not recycled.
		clk.now = clk.now.Add(3 * time.Minute)
	}
	if got := store.Len(); got != 2 {
		t.Fatalf("store holds %d keys, want 2", got)
	}
	// Once every budget is idle a sweep evicts both cells to their shard's
	// free list; alice's next call gets her old cell back, from zero.
	clk.now = clk.now.Add(15 * 24 * time.Hour)
	for i := range store.shards {
		sh := &store.shards[i]
		sh.mu.Lock()
		store.sweep(sh, clk.now.UnixNano(), -1, true)
		sh.mu.Unlock()
	}
	if got := store.Len(); got != 0 {
		t.Fatalf("after the sweep the store holds %d keys, want 0", got)
	}
	for range 5 {
		if _, rl, _ := l.Reserve(context.Background(), &airlock.ToolCall{User: "alice"}); rl != nil {
			t.Fatalf("alice in a recycled cell: got %+v, want admitted", rl)
		}
	}
	_, shi := store.locate(ckey{k: kindUser, a: "alice"})
	if n := len(store.shards[shi].free[kindUser]); n != 0 && store.shards[shi].m.n == 1 {
		t.Fatalf("alice's shard still has %d free cells: her cell was not recycled", n)
	}
	for _, u := range l.Usage(context.Background(), "user", "alice") {
		if u.Dimension == DimRequests && u.Used != 5 {
			t.Fatalf("alice %s/%s used %v, want 5", u.Dimension, FormatWindow(u.Window), u.Used)
		}
	}
}

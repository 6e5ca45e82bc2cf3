package ratelimit

import (
	"math/rand/v2"
	"testing"

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

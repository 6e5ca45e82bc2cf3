package ratelimit

import (
	"testing"

	"github.com/airlock/airlock/broker/policy"
)

// collect's hashes (shared between kinds) must agree with hkeyOf, which
// Pressure uses to find a cell, and differ between the kinds of one call.
func TestCollectShardAgreesWithShardOf(t *testing.T) {
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
			if got, want := ss.s[i].h, s.hkeyOf(ss.s[i].key); got != want {
				t.Fatalf("%+v: collect hash %x, hkeyOf %x", ss.s[i].key, got, want)
			}
			for j := 0; j < i; j++ {
				if ss.s[j].h == ss.s[i].h {
					t.Fatalf("%+v and %+v share a hash", ss.s[j].key, ss.s[i].key)
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
		h := s.hkeyOf(k)
		if o, dup := seen[h]; dup {
			t.Fatalf("%+v and %+v share hash %x", o, k, h)
		}
		seen[h] = k
	}
}

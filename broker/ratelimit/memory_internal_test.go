package ratelimit

import (
	"testing"

	"github.com/airlock/airlock/broker/policy"
)

// collect's shard (hashes shared between kinds) must agree with shardOf,
// which Pressure uses to find a cell.
func TestCollectShardAgreesWithShardOf(t *testing.T) {
	l := New([]policy.Limit{{Scope: "user", Requests: 1}, {Scope: "org", Requests: 1}, {Scope: "agent", Requests: 1},
		{Scope: "session", Requests: 1}, {Scope: "global", Requests: 1}}, nil)
	s := l.store.(*MemoryStore)
	for _, id := range []ident{{"alice", "acme", "bot", "s1"}, {"", "", "", ""}, {"b", "o", "a", "a"}} {
		var ss slots
		s.collect(l.p, &id, &ss, false)
		if ss.n != int(numKinds) {
			t.Fatalf("got %d cells, want %d", ss.n, numKinds)
		}
		for i := 0; i < ss.n; i++ {
			if got, want := ss.s[i].sh, s.shardOf(ss.s[i].key); got != want {
				t.Fatalf("%+v: collect shard %d, shardOf %d", ss.s[i].key, got, want)
			}
		}
	}
}

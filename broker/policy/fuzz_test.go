package policy

import (
	"testing"
	"time"

	"github.com/airlock/airlock"
)

// FuzzParse checks that the loader never panics or hangs, and that whatever
// it accepts keeps the product's guarantees: unknown tools and deny-tier
// tools are denied, and no result is below its tool's tier.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testPolicy))
	f.Add([]byte("version: 1\ntools: {x: {tier: auto}}\n"))
	f.Add([]byte(actorPolicy))
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan *Policy, 1)
		go func() {
			p, err := Parse("fuzz.yaml", data)
			if err == nil && p == nil {
				t.Error("nil policy without an error")
			}
			if err != nil && p != nil {
				t.Error("a policy and an error")
			}
			done <- p
		}()
		var p *Policy
		select {
		case p = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Parse did not return within 10s on %q", data)
		}
		if p == nil {
			return
		}
		if p.Defaults.UnknownTool != airlock.TierDeny {
			t.Fatalf("unknown_tool %q accepted", p.Defaults.UnknownTool)
		}
		if r := p.Evaluate(&airlock.ToolCall{Agent: "fuzz", Tool: "\x00not-a-tool"}); !r.Denied {
			t.Fatalf("unknown tool not denied: %+v", r)
		}
		for name, a := range p.Agents {
			if a.Users == nil && a.Orgs == nil && !p.Defaults.RequireUser {
				continue
			}
			for tool := range p.Tools {
				r := p.Evaluate(&airlock.ToolCall{Agent: name, Tool: tool})
				if !r.Denied {
					t.Fatalf("agent %s pinned to users %q orgs %q (require_user %v): a call naming no user or org was not denied: %+v", name, a.Users, a.Orgs, p.Defaults.RequireUser, r)
				}
			}
		}
		args := map[string]any{"path": "/etc/shadow", "to": []any{"a@b.c"}, "query": "DROP TABLE x.y", "url": "http://x/", "n": 5.0}
		for name, tool := range p.Tools {
			if !tool.Tier.Valid() {
				t.Fatalf("tool %s has tier %q", name, tool.Tier)
			}
			for _, a := range []map[string]any{nil, args} {
				r := p.Evaluate(&airlock.ToolCall{Agent: "fuzz", Tool: name, Arguments: a})
				if r.Tier.Rank() < tool.Tier.Rank() {
					t.Fatalf("tool %s: result %s below tier %s", name, r.Tier, tool.Tier)
				}
				if tool.Tier == airlock.TierDeny && !r.Denied {
					t.Fatalf("deny-tier tool %s not denied", name)
				}
			}
		}
	})
}

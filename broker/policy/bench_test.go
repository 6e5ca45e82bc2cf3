package policy

import (
	"testing"

	"github.com/airlock/airlock"
)

// BenchmarkEvaluate measures a policy decision: a tool without rules (the
// common auto/notify case), a manifest check, a tool with one and three CEL
// rules, and a scope check. Baseline: a bare map lookup of the tool, the
// least any policy check could cost.
func BenchmarkEvaluate(b *testing.B) {
	p := mustParse(b, testPolicy)
	cases := []struct {
		name string
		call airlock.ToolCall
	}{
		{"no-rules", airlock.ToolCall{Agent: "a", Tool: "search_web", Arguments: map[string]any{"query": "weather"}}},
		{"manifest", airlock.ToolCall{Agent: "support-bot", Tool: "search_web", Arguments: map[string]any{"query": "weather"}}},
		{"unknown-tool", airlock.ToolCall{Agent: "a", Tool: "nope"}},
		{"one-rule-match", airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{"path": "/etc/shadow"}}},
		{"one-rule-no-match", airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{"path": "docs/readme.md"}}},
		{"four-rules-call-vars", airlock.ToolCall{Agent: "a", Tool: "callvars", InputTokens: 10, Context: map[string]any{"reason": "x"}}},
		{"scope-sql", airlock.ToolCall{Agent: "a", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT a, b FROM public.t JOIN analytics.u ON t.id = u.id WHERE x = 'y'"}}},
		{"rules-and-scope-email", airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{"a@acme.com", "b@acme.com"}, "subject": "hi"}}},
	}
	b.Run("baseline-map-lookup", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			if t := p.Tools["search_web"]; t != nil && t.Tier == airlock.TierAuto {
				n++
			}
		}
		_ = n
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			call := c.call
			for b.Loop() {
				_ = p.Evaluate(&call)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(testPolicy)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("policy.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateExample evaluates calls against examples/policy.yaml,
// whose rules use regexes (matches), comprehensions and the helpers.
func BenchmarkEvaluateExample(b *testing.B) {
	p, err := Load("../../examples/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		call airlock.ToolCall
	}{
		{"read_file-regex-rule", airlock.ToolCall{Agent: "research-assistant", Tool: "read_file", Arguments: map[string]any{"path": "reports/2024-q3-summary.md"}}},
		{"execute_sql-regex-rules-scope", airlock.ToolCall{Agent: "data-analyst", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT plan, count(*) FROM analytics.subscriptions GROUP BY plan"}}},
		{"http_request-hostOf-rules", airlock.ToolCall{Agent: "data-analyst", Tool: "http_request", Arguments: map[string]any{"method": "POST", "url": "https://api.acme.com/v1/reports"}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			call := c.call
			for b.Loop() {
				_ = p.Evaluate(&call)
			}
		})
	}
}

package grant

import (
	"testing"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// TestSuggestCoversItsCallOnly: the suggested constraint compiles, matches
// the call it came from, and refuses the variations a grant must not cover.
func TestSuggestCoversItsCallOnly(t *testing.T) {
	tests := []struct {
		name    string
		tool    string
		args    map[string]any
		outside map[string]any
	}{
		{"email-list", "send_email", map[string]any{"to": []any{"dana@acme.com"}, "subject": "s", "body": "b"},
			map[string]any{"to": []any{"dana@acme.com", "x@evil.example"}, "subject": "s", "body": "b"}},
		{"email-string", "send_email", map[string]any{"to": "dana@acme.com", "subject": "s"},
			map[string]any{"to": "x@evil.example", "subject": "s"}},
		{"url", "http_request", map[string]any{"method": "GET", "url": "https://api.acme.com/v1/orders?x=1"},
			map[string]any{"method": "GET", "url": "https://api.acme.com.evil.example/v1"}},
		{"path", "read_file", map[string]any{"path": "/srv/reports/2026-11.csv"},
			map[string]any{"path": "/srv/reports/../../etc/shadow"}},
		{"sql", "execute_sql", map[string]any{"query": "SELECT count(*) FROM orders"},
			map[string]any{"query": "SELECT 1 FROM orders; DROP TABLE orders"}},
		{"transfer", "transfer_funds", map[string]any{"from": "a", "to": "acme-payroll", "amount": 1200.0},
			map[string]any{"from": "a", "to": "acme-payroll", "amount": 99000.0}},
		{"fallback", "create_ticket", map[string]any{"title": "t1"}, map[string]any{"title": "t2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := &airlock.ToolCall{Agent: "a", Tool: tt.tool, Arguments: tt.args}
			expr := Suggest(call)
			cond, err := policy.CompileCond(expr)
			if err != nil {
				t.Fatalf("suggestion %q does not compile: %v", expr, err)
			}
			if ok, err := cond.Match(call); err != nil || !ok {
				t.Fatalf("suggestion %q does not cover its own call (%v)", expr, err)
			}
			other := &airlock.ToolCall{Agent: "a", Tool: tt.tool, Arguments: tt.outside}
			if ok, _ := cond.Match(other); ok {
				t.Fatalf("suggestion %q also covers %v", expr, tt.outside)
			}
		})
	}
}

package risk

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock/airlock"
)

// typicalCalls are the shapes agents send most; the benchmark compares
// scoring them with json.Marshal of the same call (the broker marshals every
// call at least once anyway).
func typicalCalls() map[string]*airlock.ToolCall {
	mk := func(tool string, args map[string]any) *airlock.ToolCall {
		return &airlock.ToolCall{ID: "01JBENCH", Agent: "bench-agent", User: "u", Org: "globex", Session: "s-bench", Tool: tool, Arguments: args}
	}
	return map[string]*airlock.ToolCall{
		"send_email": mk("send_email", map[string]any{"to": []any{"dana@globex.io", "ops@globex.io"}, "subject": "Weekly numbers",
			"body": "Hi Dana, churn was 2.1% this week (down from 2.4%). The breakdown by plan is in the dashboard."}),
		"execute_sql": mk("execute_sql", map[string]any{"query": "SELECT id, body FROM support_notes WHERE body ILIKE '%refund%' ORDER BY created_at DESC LIMIT 50;"}),
		"run_shell":   mk("run_shell", map[string]any{"command": "rm -rf ./build ./dist && npm ci && npm run build 2>&1 | tail -n 20"}),
		"http_request": mk("http_request", map[string]any{"method": "POST", "url": "https://api.globex.io/v1/reports",
			"headers": map[string]any{"Content-Type": "application/json", "Authorization": "Bearer 8fK2mQ9xLp4RtZ7vWb3NcY6s"},
			"body":    map[string]any{"report": "weekly", "churn_pct": 2.1, "new_signups": 412}}),
		"create_ticket_2kb": mk("create_ticket", map[string]any{"title": "Crash on startup",
			"body": strings.Repeat("Traceback (most recent call last):\n  File \"worker.py\", line 88, in <module>\n", 25)}),
	}
}

func BenchmarkScore(b *testing.B) {
	for name, c := range typicalCalls() {
		b.Run(name, func(b *testing.B) {
			s := New(testPolicy())
			for range 20 {
				s.Observe(c, airlock.VerdictApproved)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Score(c)
			}
		})
		b.Run("baseline_json_marshal/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkScoreParallel(b *testing.B) {
	calls := typicalCalls()
	list := make([]*airlock.ToolCall, 0, len(calls))
	for _, c := range calls {
		list = append(list, c)
	}
	s := New(testPolicy())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c := list[i%len(list)]
			_ = s.Score(c)
			if i%8 == 0 {
				s.Observe(c, airlock.VerdictApproved)
			}
			i++
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	c := typicalCalls()["send_email"]
	s := New(testPolicy())
	b.ReportAllocs()
	for b.Loop() {
		s.Observe(c, airlock.VerdictApproved)
	}
}

package audit

import (
	"testing"
	"time"

	"github.com/airlock/airlock"
)

// TestCanonicalPayloadMatchesCanonicalJSON: the hash chain covers the
// payload as stored, so the pooled encoder must write exactly what
// airlock.CanonicalJSON writes, also after a larger payload used the buffer.
func TestCanonicalPayloadMatchesCanonicalJSON(t *testing.T) {
	big := make([]any, 2000)
	for i := range big {
		big[i] = map[string]any{"k": i, "s": "<&>\u2028"}
	}
	tests := []struct {
		name string
		v    any
	}{
		{"decision-record", airlock.DecisionRecord{Call: airlock.ToolCall{ID: "c1", Agent: "a", Tool: "t",
			Arguments: map[string]any{"q": "<b>&amp;</b> é \u2028", "n": 1.25, "z": nil, "a": []any{true, "x"}}},
			Decision: airlock.Decision{CallID: "c1", Verdict: airlock.VerdictApproved, DecidedAt: time.Date(2026, 12, 4, 0, 0, 0, 5, time.UTC)}}},
		{"big", map[string]any{"rows": big}},
		{"small-after-big", map[string]any{"b": 2, "a": "x"}},
		{"string", "plain"},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := airlock.CanonicalJSON(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := canonicalPayload(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
	if _, err := canonicalPayload(map[string]any{"f": func() {}}); err == nil {
		t.Fatalf("got no error for an unencodable payload, want one")
	}
}

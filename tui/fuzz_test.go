package tui

import (
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// checkFrameSafe fails unless the only escape sequences in a frame are the
// console's own SGR styling (ESC [ params m), and no other control, C1, bidi
// or invisible format character is present.
func checkFrameSafe(t *testing.T, raw string) {
	t.Helper()
	if !utf8.ValidString(raw) {
		t.Fatalf("frame is not valid UTF-8")
	}
	for i := 0; i < len(raw); {
		r, size := utf8.DecodeRuneInString(raw[i:])
		switch {
		case r == 0x1b:
			j := i + 1
			if j >= len(raw) || raw[j] != '[' {
				t.Fatalf("escape that is not SGR at %d: %q", i, raw[i:min(i+20, len(raw))])
			}
			j++
			for j < len(raw) && (raw[j] >= '0' && raw[j] <= '9' || raw[j] == ';' || raw[j] == ':') {
				j++
			}
			if j >= len(raw) || raw[j] != 'm' {
				t.Fatalf("CSI that is not SGR at %d: %q", i, raw[i:min(i+20, len(raw))])
			}
			i = j + 1
			continue
		case r == '\n':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			t.Fatalf("control %U in frame at %d", r, i)
		case r == 0x200d:
			// allowed between emoji
		case unicode.Is(unicode.Cf, r) || r == 0x2028 || r == 0x2029:
			t.Fatalf("format character %U in frame at %d", r, i)
		}
		i += size
	}
}

// FuzzRender puts arbitrary agent text in every field an agent controls and
// checks the frame carries none of it as terminal instructions.
func FuzzRender(f *testing.F) {
	f.Add("billing-bot", "send_email", "to", "ops@acme.com", "weekly report", 30)
	f.Add("bot\u202e", "execute_sql\x1b]0;t\x07", "query", "DELETE FROM t\x1b[2J", "\x1b]52;c;ZXZpbA==\x07", 95)
	f.Add("a\x00b", "run_python", "code", "print(1)\r\n\x9b31m\u200b", "\xff\xfe", 60)
	f.Add("👩\u200d💻", "read_file", "path\u2066", "/etc/\u2069passwd\x7f", "\u0085", 10)
	f.Fuzz(func(t *testing.T, agent, tool, key, value, reason string, score int) {
		h := newHarness(t, policy.Review{Batch: true})
		p := pending("id-"+agent, agent, tool, score%101, map[string]any{key: value, "n": []any{value, 1.5, nil, true}})
		p.Call.Context = map[string]any{"reason": reason}
		p.Reason = reason
		p.Risk.Band = reason
		p.Risk.Factors = []airlock.Factor{{Name: key, Points: 1, Detail: value}}
		p.Sandbox = map[string]string{key: value}
		p.Approvals = []string{agent}
		h.b.recent = map[string][]airlock.DecisionRecord{"s-1": {{Call: p.Call, Decision: airlock.Decision{Verdict: airlock.Verdict(reason), DecidedBy: agent}}}}
		q := pending("id2", agent, tool, 5, map[string]any{key: value + "x"})
		h.add(p, q)
		h.send(Event{Kind: EventFeed, Call: &p.Call, Decision: &airlock.Decision{Verdict: airlock.Verdict(reason), DecidedBy: agent, DecidedAt: t0}})
		for _, w := range []int{40, 120} {
			h.send(windowSize(w, 40))
			checkFrameSafe(t, h.m.View().Content)
			h.press("tab") // feed
			checkFrameSafe(t, h.m.View().Content)
			h.press("tab", "tab", "tab")
		}
		h.wait(3 * time.Second)
		h.press("e")
		checkFrameSafe(t, h.m.View().Content)
		h.press("esc", "v")
		checkFrameSafe(t, h.m.View().Content)
	})
}

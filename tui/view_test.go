package tui

import (
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// updating reports whether -update was given (the flag is registered by
// charmbracelet/x/exp/golden, which teatest imports).
func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// scene fills a console with a realistic queue at a fixed time.
func scene(t *testing.T, w, h int) *harness {
	t.Helper()
	hs := newHarness(t, policy.Review{Batch: true})
	hs.b.recent = map[string][]airlock.DecisionRecord{"s-42": {{
		Call: airlock.ToolCall{ID: "01JPREV", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT count(*) FROM invoices"}},
		Decision: airlock.Decision{Verdict: airlock.VerdictApproved, DecidedBy: "reviewer:bob",
			DecidedAt: t0.Add(-3 * time.Minute)},
	}}}
	hs.m.SetSize(w, h)
	sql := pending("01JSQL", "billing-bot", "execute_sql", 92, map[string]any{
		"query": "delete from invoices where created_at < '2024-01-01' and status = 'void'", "database": "prod"})
	sql.Call.Session = "s-42"
	sql.Call.Context = map[string]any{"reason": "clean up voided invoices older than a year"}
	sql.Reason, sql.Rule = "destructive SQL on prod", "execute_sql#1"
	sql.Risk.Factors = []airlock.Factor{
		{Name: "destructive_sql", Points: 50, Detail: "DELETE on invoices"},
		{Name: "prod_database", Points: 30, Detail: "database=prod"},
		{Name: "off_hours", Points: 12, Detail: "03:12 local time"},
	}
	sql.ReceivedAt = t0.Add(-95 * time.Second)
	mail := pending("01JMAIL", "support-bot", "send_email", 64, map[string]any{
		"to": []any{"ceo@acme.com", "dropbox@files-share.example"}, "subject": "Q3 numbers",
		"body": "Hi,\nplease find the Q3 numbers attached.\nThanks"})
	mail.Risk.Factors = []airlock.Factor{{Name: "external_recipient", Points: 40, Detail: "files-share.example"}}
	py := pending("01JPY", "data-agent", "run_python", 35, map[string]any{
		"code": "import pandas as pd\ndf = pd.read_csv('/data/sales.csv')\nprint(df.describe())"})
	py.Sandbox = map[string]string{"backend": "bwrap", "network": "off", "memory": "256MiB", "timeout": "10s"}
	var reads []airlock.Pending
	for i := range 3 {
		p := pending(fmt.Sprintf("01JREAD%d", i), "docs-bot", "read_file", 5, map[string]any{"path": fmt.Sprintf("/srv/docs/page-%d.md", i)})
		p.ReceivedAt = t0.Add(-time.Duration(30-i) * time.Second)
		reads = append(reads, p)
	}
	hs.add(append([]airlock.Pending{sql, mail, py}, reads...)...)
	return hs
}

func TestGolden(t *testing.T) {
	for _, sz := range [][2]int{{40, 24}, {80, 24}, {120, 32}} {
		name := fmt.Sprintf("queue-%dx%d", sz[0], sz[1])
		t.Run(name, func(t *testing.T) {
			h := scene(t, sz[0], sz[1])
			got := h.screen()
			checkFrame(t, got, sz[0], sz[1])
			golden(t, name, got)
		})
	}
	t.Run("batch-80x24", func(t *testing.T) {
		h := scene(t, 80, 24)
		h.press("G")
		h.press("enter")
		golden(t, "batch-80x24", h.screen())
	})
	t.Run("help-80x24", func(t *testing.T) {
		h := scene(t, 80, 24)
		h.press("?")
		golden(t, "help-80x24", h.screen())
	})
	t.Run("grant-form-80x24", func(t *testing.T) {
		h := scene(t, 80, 24)
		h.press("G") // the batch of reads
		h.wait(time.Second)
		h.press("A")
		got := h.screen()
		checkFrame(t, got, 80, 24)
		golden(t, "grant-form-80x24", got)
	})
	t.Run("grants-80x24", func(t *testing.T) {
		h := scene(t, 80, 24)
		h.b.grants = []airlock.Grant{{ID: "g7f3k", Agent: "docs-bot", Tool: "read_file", When: `args.path.startsWith("/srv/docs/") && !args.path.contains("..")`,
			Uses: 2, MaxUses: 10, MaxRisk: 50, CreatedBy: "reviewer:alice", CreatedAt: t0.Add(-5 * time.Minute), ExpiresAt: t0.Add(10 * time.Minute), FromCall: "01JREAD0"}}
		h.b.replayRes = ReplaySummary{Replayed: 40, Matched: 37, MatchedApproved: 37}
		h.m.opts.SuggestAfter = 3
		h.press("G")
		h.wait(time.Second)
		h.press("a")
		for h.m.tab != tabGrants {
			h.press("tab")
		}
		got := h.screen()
		checkFrame(t, got, 80, 24)
		golden(t, "grants-80x24", got)
		h.press("j")
		golden(t, "grants-suggestion-80x24", h.screen())
	})
}

// checkFrame checks the frame fills the terminal exactly, no line wider.
func checkFrame(t *testing.T, s string, w, h int) {
	t.Helper()
	lines := strings.Split(s, "\n")
	if len(lines) != h {
		t.Errorf("got %d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if lw := ansi.StringWidth(l); lw > w {
			t.Errorf("line %d is %d cells wide, want ≤ %d: %q", i, lw, w, l)
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tui -run TestGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("screen differs from %s (review, then -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestResize(t *testing.T) {
	h := scene(t, 80, 24)
	for _, sz := range [][2]int{{200, 50}, {40, 12}, {20, 8}, {80, 24}, {160, 40}} {
		h.send(windowSize(sz[0], sz[1]))
		checkFrame(t, h.screen(), max(sz[0], 20), max(sz[1], 8))
	}
}

// TestHostileTextIsShownNotObeyed: an agent's escape sequences (OSC 52
// clipboard write, clear screen, title), bidi override and zero-width
// characters reach the screen only as visible escapes.
func TestHostileTextIsShownNotObeyed(t *testing.T) {
	h := newHarness(t, policy.Review{})
	p := pending("evil\x1b[2J", "bot\u202e", "send_email\x1b]0;pwned\x07", 40, map[string]any{
		"to":          "x@acme.com\u202egpj.exe",
		"subject":     "\x1b]52;c;ZXZpbA==\x07hello",
		"body":        "line one\x1b[2J\x1b[H\u200bline two\r\nfake prompt\x9b31m",
		"\x1b[31mkey": "v\u0085",
	})
	p.Call.Context = map[string]any{"reason": "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\u202e"}
	p.Risk.Factors = []airlock.Factor{{Name: "x\x1b[5m", Points: 1, Detail: "\u2066iso\u2069"}}
	h.add(p)
	for _, w := range []int{40, 80, 120} {
		h.send(windowSize(w, 40))
		raw := h.m.View().Content
		for _, bad := range []string{"\x1b]", "\x1b[2J", "\x1b[H", "\x07", "\u202e", "\u2066", "\u200b", "\u0085", "\u009b", "\r", "\x1bP"} {
			if strings.Contains(raw, bad) {
				t.Errorf("width %d: View contains %q", w, bad)
			}
		}
		if strings.Contains(raw, "\x1b[5m") || strings.Contains(raw, "\x1b[31mkey") {
			t.Errorf("width %d: an agent's SGR sequence reached the screen", w)
		}
	}
	h.send(windowSize(200, 60))
	s := h.screen()
	for _, want := range []string{"␛]52;c;ZXZpbA==␇hello", "␛[2J␛[H", "⟨U+202E⟩", "⟨U+200B⟩", "␍", "⟨U+2066⟩iso⟨U+2069⟩", `"␛[31mkey": "v⟨U+0085⟩"`} {
		if !strings.Contains(s, want) {
			t.Errorf("screen does not show %q:\n%s", want, s)
		}
	}
}

func TestHugeValueIsTruncatedAndExpandable(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.m.SetSize(120, 200)
	big := strings.Repeat("A", valueLimit+5000)
	h.add(pending("a", "bot", "write_file", 10, map[string]any{"path": "/tmp/x", "content": big}))
	if s := h.screen(); !strings.Contains(s, "… 5000 more bytes (x to expand)") {
		t.Fatalf("no truncation marker:\n%s", s)
	}
	h.press("x")
	if s := h.screen(); strings.Contains(s, "more bytes") {
		t.Fatalf("still truncated after x")
	}
}

func TestNoColorKeepsMeaning(t *testing.T) {
	// Badges spell the band and the selection has a marker, so the screen
	// reads the same without colour.
	h := scene(t, 80, 24)
	s := h.screen()
	for _, want := range []string{"▶ CRIT  92", "HIGH  64", "MED   35", "LOW    5"} {
		if !strings.Contains(s, want) {
			t.Errorf("screen without colour lacks %q:\n%s", want, s)
		}
	}
}

// TestImports keeps the boundary: the console imports no NATS, no database
// and no os/exec; it talks to Backend.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range af.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.Contains(p, "nats") || p == "database/sql" || p == "os/exec" || strings.Contains(p, "sqlite") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

func TestOddArguments(t *testing.T) {
	var deep any = "bottom"
	for range 100 {
		deep = map[string]any{"k": deep}
	}
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"no-arguments", nil, "(no arguments)"},
		{"deep-nesting", map[string]any{"d": deep}, "nested deeper than the console shows"},
		{"huge-key", map[string]any{strings.Repeat("k", 1000): 1}, "(key: 744 more bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, policy.Review{})
			h.m.SetSize(120, 200)
			p := pending("a", "bot", "tool", 10, tt.args)
			p.ReceivedAt = time.Time{}
			h.add(p)
			s := h.screen()
			if !strings.Contains(s, tt.want) {
				t.Errorf("screen lacks %q:\n%s", tt.want, s)
			}
			if !strings.Contains(s, "  0s ") {
				t.Errorf("a call without received_at does not show age 0s:\n%s", s)
			}
		})
	}
}

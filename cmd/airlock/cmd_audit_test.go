package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/audit/audittest"
	"github.com/airlock/airlock/internal/testenv"
)

// auditFixture writes the audittest log into a data dir and returns the dir.
func auditFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := audit.Open(audit.PathIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := audittest.Populate(context.Background(), l, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runAuditCmd runs `airlock audit ARGS…` in process and returns stdout,
// stderr and the exit code.
func runAuditCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), append([]string{"audit"}, args...), strings.NewReader(""), &out, &errb)
	code := exitCode(err, &errb)
	return out.String(), errb.String(), code
}

func TestAuditQueryFormats(t *testing.T) {
	d := auditFixture(t)
	t.Run("json-lines", func(t *testing.T) {
		out, stderr, code := runAuditCmd(t, "query", "--tool", "search_web", "--since", "2h", "--format", "json", "--data", d)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 6 {
			t.Fatalf("got %d lines, want 6 (s1-s5, r1):\n%s", len(lines), out)
		}
		var first map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
			t.Fatal(err)
		}
		for _, k := range audit.DecisionColumns {
			if _, ok := first[k]; !ok {
				t.Errorf("json line lacks %q: %s", k, lines[0])
			}
		}
		if args, ok := first["arguments"].(map[string]any); !ok || args["query"] != "quarterly zebra forecast" {
			t.Errorf("arguments not embedded as JSON: %v", first["arguments"])
		}
		if first["call_id"] != "s1" || first["verdict"] != "approved" || first["decided_by"] != "policy" {
			t.Errorf("first line %v", first)
		}
	})
	t.Run("csv", func(t *testing.T) {
		out, stderr, code := runAuditCmd(t, "query", "--verdict", "denied", "--format", "csv", "--data", d)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 3 || strings.Join(recs[0], ",") != strings.Join(audit.DecisionColumns, ",") {
			t.Fatalf("csv:\n%s", out)
		}
		if recs[1][0] != "q3" || recs[2][0] != "d1" || recs[2][9] != "denied" {
			t.Fatalf("rows %v", recs[1:])
		}
	})
	t.Run("table", func(t *testing.T) {
		out, stderr, code := runAuditCmd(t, "query", "--agent", "ops-bot", "--data", d)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") {
			t.Fatalf("table:\n%s", out)
		}
		col := strings.Index(lines[0], "VERDICT")
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l[col:], "approved") {
				t.Errorf("VERDICT column not aligned in %q", l)
			}
		}
		if strings.Contains(out, "\x1b") {
			t.Error("table carries a raw ESC")
		}
	})
	t.Run("search", func(t *testing.T) {
		out, _, code := runAuditCmd(t, "query", "--search", "zebra", "--format", "json", "--data", d)
		if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"s4"`) {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("filters-combined", func(t *testing.T) {
		out, _, code := runAuditCmd(t, "query", "--reviewer", "bob", "--min-risk", "60", "--since", "2h", "--format", "csv", "--data", d)
		if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "q1,") || !strings.Contains(out, "q3,") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("paging", func(t *testing.T) {
		out, stderr, code := runAuditCmd(t, "query", "--limit", "2", "--format", "csv", "--data", d)
		if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(stderr, "more with --after") {
			t.Fatalf("exit %d:\n%s\n%s", code, out, stderr)
		}
	})
}

func TestAuditShow(t *testing.T) {
	d := auditFixture(t)
	// Flags after the positional argument.
	out, stderr, code := runAuditCmd(t, "show", "d1", "--data", d)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, s := range []string{"delete_record", "denied", "decided by  policy", "hash"} {
		if !strings.Contains(out, s) {
			t.Errorf("show d1 lacks %q:\n%s", s, out)
		}
	}
	out, _, _ = runAuditCmd(t, "show", "--db", audit.PathIn(d), "p1")
	if strings.ContainsAny(out, "\x1b\u202e") || !strings.Contains(out, "␛[2J") {
		t.Errorf("show p1 does not neutralise escapes:\n%q", out)
	}
	_, stderr, code = runAuditCmd(t, "show", "nope", "--data", d)
	if code != 1 || !strings.Contains(stderr, `"nope"`) {
		t.Errorf("unknown call: exit %d %q", code, stderr)
	}
}

func TestAuditVerify(t *testing.T) {
	d := auditFixture(t)
	out, stderr, code := runAuditCmd(t, "verify", "--data", d)
	if code != 0 || !strings.HasPrefix(out, "ok: 35 events, head seq 35 hash ") {
		t.Fatalf("exit %d: %q %q", code, out, stderr)
	}
	// Cut the last three events the way the shared checks do.
	py := testenv.Tool(t, "python3")
	tamper := filepath.Join("..", "..", "audit", "testdata", "tamper.py")
	if o, err := exec.Command(py, tamper, audit.PathIn(d), "truncate", "3").CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", tamper, err, o)
	}
	out, stderr, code = runAuditCmd(t, "verify", "--data", d)
	if code != 1 || out != "" || !strings.Contains(stderr, "log ends at seq 32") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("truncated log: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestAuditExportAndReport(t *testing.T) {
	d := auditFixture(t)
	out, _, code := runAuditCmd(t, "export", "--data", d)
	if code != 0 || strings.Count(out, "\n") != 35 || strings.Count(out, `"hash":`) != 35 {
		t.Fatalf("export: exit %d, %d lines", code, strings.Count(out, "\n"))
	}
	out, _, code = runAuditCmd(t, "export", "--after", "30", "--data", d)
	if code != 0 || strings.Count(out, "\n") != 5 || !strings.HasPrefix(out, `{"seq":31,`) {
		t.Fatalf("export --after 30: exit %d:\n%s", code, out)
	}
	out, stderr, code := runAuditCmd(t, "report", "--since", "7d", "--data", d)
	if code != 0 || !strings.Contains(out, "REVIEWER") || !strings.Contains(out, "EXPIRED CALLS (1)") {
		t.Fatalf("report: exit %d %s\n%s", code, stderr, out)
	}
	out, _, code = runAuditCmd(t, "report", "--format", "json", "--data", d)
	var sum audit.Summary
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || sum.Decisions != 17 {
		t.Fatalf("report json: exit %d %s", code, out)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditTail(t *testing.T) {
	d := auditFixture(t)
	out, _, code := runAuditCmd(t, "tail", "--follow=false", "-n", "3", "--data", d)
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, "33  ") {
		t.Fatalf("tail -n 3: exit %d:\n%s", code, out)
	}
	// Follow a live log: a new event shows up.
	l, err := audit.Open(audit.PathIn(d))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx, cancel := context.WithCancel(t.Context())
	var buf syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"audit", "tail", "-n", "0", "--interval", "10ms", "--data", d}, nil, &buf, &buf)
	}()
	if _, err := l.Append(t.Context(), airlock.Event{Kind: airlock.EventDecision, CallID: "live1", Payload: airlock.DecisionRecord{
		Call:     airlock.ToolCall{ID: "live1", Agent: "a", Tool: "search_web"},
		Decision: airlock.Decision{CallID: "live1", Verdict: airlock.VerdictApproved, DecidedBy: "policy"}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "live1") {
		if time.Now().After(deadline) {
			t.Fatalf("tail did not show the new event: %q", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail after cancel: %v", err)
	}
	if got := buf.String(); !strings.HasPrefix(got, "36  ") {
		t.Fatalf("tail -n 0 printed old events: %q", got)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	d := auditFixture(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no-subcommand", nil, 2, "usage"},
		{"unknown-subcommand", []string{"frob"}, 2, "unknown subcommand"},
		{"bad-format", []string{"query", "--format", "xml", "--data", d}, 2, "--format"},
		{"bad-verdict", []string{"query", "--verdict", "maybe", "--data", d}, 2, "--verdict"},
		{"bad-since", []string{"query", "--since", "yesterday", "--data", d}, 2, "--since"},
		{"unknown-flag", []string{"query", "--colour", "--data", d}, 2, "colour"},
		{"show-without-id", []string{"show", "--data", d}, 2, "CALL_ID"},
		{"missing-db", []string{"verify", "--data", t.TempDir()}, 1, "no audit log"},
		{"missing-checkpoints", []string{"verify", "--checkpoints", "/nonexistent", "--data", d}, 1, "nonexistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runAuditCmd(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tc.code, tc.want)
			}
		})
	}
	for _, sub := range []string{"query", "show", "verify", "export", "tail", "report"} {
		_, stderr, code := runAuditCmd(t, sub, "--help")
		if code != 0 || !strings.Contains(stderr, "--data") {
			t.Errorf("%s --help: exit %d %q", sub, code, stderr)
		}
	}
}

func TestAuditTime(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"1.5d", now.Add(-36 * time.Hour)},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-12-01T10:00:00Z", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-12-01T10:00:00+02:00", time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)},
		{"2026-12-01T10:00:00", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := auditTime(tc.in, now)
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"yesterday", "d", "-3x"} {
		if _, err := auditTime(bad, now); err == nil {
			t.Errorf("auditTime(%q) accepted", bad)
		}
	}
}

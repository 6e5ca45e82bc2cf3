package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/internal/testenv"
)

// tmuxSession is one console running in a real terminal.
type tmuxSession struct {
	t    *testing.T
	tmux string
	name string
	env  []string
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(s.tmux, args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p", "-t", s.name) }

func (s *tmuxSession) keys(keys ...string) {
	s.run(append([]string{"send-keys", "-t", s.name}, keys...)...)
}

func (s *tmuxSession) text(txt string) { s.run("send-keys", "-t", s.name, "-l", txt) }

// waitFor polls the screen until pred holds.
func (s *tmuxSession) waitFor(what string, pred func(string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var scr string
	for time.Now().Before(deadline) {
		scr = s.screen()
		if pred(scr) {
			return scr
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s: never happened; screen:\n%s", what, scr)
	return ""
}

func startConsole(t *testing.T, tmux, sockDir, name, url, reviewer, editor string) *tmuxSession {
	argv, env := selfCommand(t, "console", "--nats", url, "--reviewer", reviewer, "--log", filepath.Join(sockDir, name+".log"))
	env = append(env, "TMUX_TMPDIR="+sockDir, "EDITOR="+editor, "TERM=xterm-256color")
	s := &tmuxSession{t: t, tmux: tmux, name: name, env: env}
	cmdline := "env AIRLOCK_TEST_MAIN=1 EDITOR='" + editor + "' " + strings.Join(quoteAll(argv), " ") + " 2>" + filepath.Join(sockDir, name+".err")
	s.run("-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmdline)
	t.Cleanup(func() {
		cmd := exec.Command(tmux, "kill-session", "-t", name)
		cmd.Env = env
		_ = cmd.Run()
	})
	return s
}

func quoteAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = "'" + strings.ReplaceAll(x, "'", `'\''`) + "'"
	}
	return out
}

// TestConsoleEndToEnd runs two reviewer consoles in real terminals (tmux)
// against a real broker: a call with hostile escape sequences is shown, not
// obeyed, and denied with a reason; a routine call is approved with one key
// and leaves the other console's queue at once; a third is approved with
// edits made in $EDITOR. The audit views then hold reviewer:carol rows with
// those verdicts, reason and edited arguments.
func TestConsoleEndToEnd(t *testing.T) {
	tmux := testenv.Tool(t, "tmux")
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "al-tmux-") // short path: tmux socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd := exec.Command(tmux, "kill-server")
		cmd.Env = append(os.Environ(), "TMUX_TMPDIR="+sockDir)
		_ = cmd.Run()
		os.RemoveAll(sockDir)
	})
	ctx := context.Background()
	url, agent := inProcessBroker(t, dir, writePolicy(t, dir, e2ePolicy))
	submit := func(c *airlock.ToolCall) <-chan airlock.Decision {
		ch := make(chan airlock.Decision, 1)
		go func() {
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			d, err := agent.Submit(sctx, c)
			if err != nil {
				d.Reason = err.Error()
			}
			ch <- d
		}()
		return ch
	}
	editor := "sed -i s/FROM_orders/FROM_orders_2026/"
	carol := startConsole(t, tmux, sockDir, "carol", url, "carol", editor)
	bob := startConsole(t, tmux, sockDir, "bob", url, "bob", editor)
	carol.run("set", "-g", "set-clipboard", "on") // let an OSC 52 write the clipboard, if one got through
	carol.waitFor("carol's console connects", func(s string) bool { return strings.Contains(s, "connected") })
	bob.waitFor("bob's console connects", func(s string) bool { return strings.Contains(s, "connected") })

	// 1. Hostile text is shown, never obeyed; deny it with a reason.
	k1 := submit(&airlock.ToolCall{ID: "k1", Agent: "mailer", User: "u1", Org: "acme", Session: "s1", Tool: "send_email",
		Arguments: map[string]any{"to": []any{"ops@acme.com"}, "subject": "weekly report",
			"body": "See attached.\u001b]52;c;ZWNobyBwd25lZA==\u0007\u001b[2J\u202etxt.exe"}})
	scr := carol.waitFor("k1 on screen", func(s string) bool { return strings.Contains(s, "send_email") })
	if !strings.Contains(scr, "␛") || !strings.Contains(scr, "U+202E") {
		t.Fatalf("escapes are not shown visibly:\n%s", scr)
	}
	if strings.Contains(scr, "\x1b") {
		t.Fatalf("a raw ESC reached the screen")
	}
	if out := carol.run("list-buffers"); strings.TrimSpace(out) != "" {
		t.Fatalf("an OSC 52 sequence wrote the clipboard: %s", out)
	}
	// The console ignores decision keys for 400 ms after a call appears (the
	// grace period is wall-clock time by design), so wait it out.
	time.Sleep(600 * time.Millisecond)
	carol.keys("d")
	carol.waitFor("deny prompt", func(s string) bool { return strings.Contains(strings.ToLower(s), "reason") })
	carol.text("hidden escapes")
	carol.keys("Enter")
	if d := <-k1; d.Verdict != airlock.VerdictDenied || d.DecidedBy != "reviewer:carol" {
		t.Fatalf("k1: %+v", d)
	}

	// 2. A routine call: one key approves it, and bob's queue drops it.
	k2 := submit(&airlock.ToolCall{ID: "k2", Agent: "analyst", User: "u2", Org: "acme", Session: "s2", Tool: "execute_sql",
		Arguments: map[string]any{"query": "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'"}})
	bob.waitFor("k2 in bob's queue", func(s string) bool { return strings.Contains(s, "execute_sql") })
	carol.waitFor("k2 in carol's queue", func(s string) bool { return strings.Contains(s, "execute_sql") })
	time.Sleep(600 * time.Millisecond)
	carol.keys("a")
	if d := <-k2; d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:carol" {
		t.Fatalf("k2: %+v", d)
	}
	bob.waitFor("k2 leaves bob's queue", func(s string) bool { return !strings.Contains(s, "execute_sql") && strings.Contains(s, "0 pending") })

	// 3. Approve with edits made in $EDITOR.
	k3 := submit(&airlock.ToolCall{ID: "k3", Agent: "analyst", User: "u2", Org: "acme", Session: "s2", Tool: "execute_sql",
		Arguments: map[string]any{"query": "SELECT * FROM_orders"}})
	carol.waitFor("k3 on screen", func(s string) bool { return strings.Contains(s, "FROM_orders") })
	time.Sleep(600 * time.Millisecond)
	carol.keys("E")
	carol.waitFor("the edit's diff", func(s string) bool { return strings.Contains(s, "FROM_orders_2026") })
	carol.keys("y")
	d3 := <-k3
	if d3.Verdict != airlock.VerdictApproved || d3.UpdatedArguments["query"] != "SELECT * FROM_orders_2026" {
		t.Fatalf("k3: %+v", d3)
	}

	// The audit views hold all three under carol's name.
	db, err := sql.Open("sqlite3", "file:"+audit.PathIn(dir)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`select call_id, verdict, decided_by, coalesce(reason,'') from decisions where call_id in ('k1','k2','k3') order by call_id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, v, by, reason string
		_ = rows.Scan(&id, &v, &by, &reason)
		got = append(got, id+"|"+v+"|"+by+"|"+reason)
	}
	rows.Close()
	if len(got) != 3 || !strings.HasPrefix(got[0], "k1|denied|reviewer:carol|hidden escapes") ||
		!strings.HasPrefix(got[1], "k2|approved|reviewer:carol") || !strings.HasPrefix(got[2], "k3|approved|reviewer:carol") {
		t.Fatalf("audit rows: %q", got)
	}
	var edited string
	if err := db.QueryRow(`select json_extract(payload, '$.decision.updated_arguments.query') from events where kind='decision' and call_id='k3'`).Scan(&edited); err != nil || edited != "SELECT * FROM_orders_2026" {
		t.Fatalf("audited edit: %q %v", edited, err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
)

const hookPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 1m}
tools:
  Read: {tier: auto}
  Grep: {tier: auto}
  Bash: {tier: approve}
`

// startTestBroker runs `serve`'s wiring in-process on a random port and
// returns it with a reviewer's client (for policies without auth).
func startTestBroker(t *testing.T, policyText string) (*service, *client.Client) {
	t.Helper()
	srv := startTestServe(t, policyText)
	c, err := client.Connect(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return srv, c
}

// startTestServe runs `serve`'s wiring in-process on a random port.
func startTestServe(t *testing.T, policyText string) *service {
	t.Helper()
	dir := t.TempDir()
	cfg := serveConfig{Data: dir, Policy: writePolicy(t, dir, policyText), Listen: "127.0.0.1:-1",
		Prefix: "airlock", Limits: "memory", Replicas: 1, MaxBytes: broker.DefaultMaxBytes}
	srv, err := startServe(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return srv
}

func hookPayload(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "claudehook", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type hookRun struct {
	stdout, stderr string
	err            error
	took           time.Duration
}

func runHookCmd(stdin string, args ...string) hookRun {
	var out, errb bytes.Buffer
	start := time.Now()
	err := run(context.Background(), append([]string{"hook"}, args...), strings.NewReader(stdin), &out, &errb)
	return hookRun{out.String(), errb.String(), err, time.Since(start)}
}

// preDecision parses PreToolUse output.
func preDecision(t *testing.T, out string) (decision, reason string, updated map[string]any) {
	t.Helper()
	var m struct {
		H struct {
			Event    string         `json:"hookEventName"`
			Decision string         `json:"permissionDecision"`
			Reason   string         `json:"permissionDecisionReason"`
			Updated  map[string]any `json:"updatedInput"`
		} `json:"hookSpecificOutput"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("stdout is not the hook JSON: %q: %v", out, err)
	}
	if m.H.Event != "PreToolUse" {
		t.Fatalf("got hookEventName %q, want PreToolUse in %s", m.H.Event, out)
	}
	return m.H.Decision, m.H.Reason, m.H.Updated
}

// waitPendingCall returns the first waiting call that match accepts.
func waitPendingCall(t *testing.T, c *client.Client, what string, match func(airlock.ToolCall) bool) airlock.Pending {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ps, err := c.Pending(context.Background())
		if err == nil {
			for _, p := range ps {
				if match(p.Call) {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became pending", what)
	return airlock.Pending{}
}

func TestHookClaudeCode(t *testing.T) {
	srv, rc := startTestBroker(t, hookPolicy)
	base := []string{"claude-code", "--nats", srv.URL, "--agent", "claude-code", "--user", "alice"}

	t.Run("allow", func(t *testing.T) {
		r := runHookCmd(hookPayload(t, "pretooluse-read.json"), base...)
		if r.err != nil {
			t.Fatalf("exit: %v (%s)", r.err, r.stderr)
		}
		if d, _, _ := preDecision(t, r.stdout); d != "allow" {
			t.Fatalf("got %q, want allow: %s", d, r.stdout)
		}
	})
	t.Run("deny-absent-tool", func(t *testing.T) {
		r := runHookCmd(hookPayload(t, "pretooluse-webfetch.json"), base...)
		d, reason, _ := preDecision(t, r.stdout)
		if r.err != nil || d != "deny" || !strings.Contains(reason, "airlock") {
			t.Fatalf("got %q %q (%v), want deny", d, reason, r.err)
		}
	})
	t.Run("reviewer-edit", func(t *testing.T) {
		done := make(chan hookRun, 1)
		go func() { done <- runHookCmd(hookPayload(t, "pretooluse-bash.json"), base...) }()
		p := waitPendingCall(t, rc, "toolu_01BASHrebuild", func(c airlock.ToolCall) bool { return c.ID == "toolu_01BASHrebuild" })
		if p.Call.ID != "toolu_01BASHrebuild" || p.Call.Session != "abc123-sess" || p.Call.Agent != "claude-code" || p.Call.User != "alice" {
			t.Errorf("got pending call %+v, want id, session, agent and user from the hook", p.Call)
		}
		rep, err := rc.Review(context.Background(), airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob",
			UpdatedArguments: map[string]any{"command": "make", "description": "Rebuild"}})
		if err != nil || !rep.Accepted {
			t.Fatalf("review: %+v %v", rep, err)
		}
		r := <-done
		d, _, upd := preDecision(t, r.stdout)
		if r.err != nil || d != "allow" || upd["command"] != "make" {
			t.Fatalf("got %q %v (%v), want allow with updatedInput.command make", d, upd, r.err)
		}
	})
	t.Run("permission-request-edit", func(t *testing.T) {
		done := make(chan hookRun, 1)
		go func() { done <- runHookCmd(hookPayload(t, "permissionrequest-bash.json"), base...) }()
		p := waitPendingCall(t, rc, "npm publish", func(c airlock.ToolCall) bool { return c.Arguments["command"] == "npm publish" })
		rep, err := rc.Review(context.Background(), airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob",
			UpdatedArguments: map[string]any{"command": "npm publish --dry-run"}})
		if err != nil || !rep.Accepted {
			t.Fatalf("review: %+v %v", rep, err)
		}
		r := <-done
		var m struct {
			H struct {
				Event    string `json:"hookEventName"`
				Decision struct {
					Behavior string         `json:"behavior"`
					Updated  map[string]any `json:"updatedInput"`
				} `json:"decision"`
			} `json:"hookSpecificOutput"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.H.Event != "PermissionRequest" ||
			m.H.Decision.Behavior != "allow" || m.H.Decision.Updated["command"] != "npm publish --dry-run" {
			t.Fatalf("got %s (%v), want a PermissionRequest allow with the edited command", r.stdout, err)
		}
	})
	t.Run("timeout-denies", func(t *testing.T) {
		in := strings.Replace(hookPayload(t, "pretooluse-bash.json"), "toolu_01BASHrebuild", "toolu_timeout1", 1)
		r := runHookCmd(in, append(base, "--timeout", "500ms")...)
		if d, reason, _ := preDecision(t, r.stdout); r.err != nil || d != "deny" || !strings.Contains(reason, "timeout") {
			t.Fatalf("got %q %q (%v), want a timeout denial", d, reason, r.err)
		}
	})
	t.Run("timeout-asks-when-configured", func(t *testing.T) {
		in := strings.Replace(hookPayload(t, "pretooluse-bash.json"), "toolu_01BASHrebuild", "toolu_timeout2", 1)
		r := runHookCmd(in, append(base, "--timeout", "500ms", "--on-timeout", "ask")...)
		if d, _, _ := preDecision(t, r.stdout); r.err != nil || d != "ask" {
			t.Fatalf("got %q (%v), want ask", d, r.err)
		}
	})
	t.Run("codex-approval", func(t *testing.T) {
		done := make(chan hookRun, 1)
		go func() {
			done <- runHookCmd(hookPayload(t, "codex-pretooluse.json"), "codex", "--nats", srv.URL, "--user", "alice")
		}()
		p := waitPendingCall(t, rc, "call_Xk2f9", func(c airlock.ToolCall) bool { return c.ID == "call_Xk2f9" })
		if p.Call.Agent != "codex" || p.Call.ID != "call_Xk2f9" {
			t.Errorf("got pending call %+v, want agent codex and the Codex call id", p.Call)
		}
		if rep, err := rc.Review(context.Background(), airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob"}); err != nil || !rep.Accepted {
			t.Fatalf("review: %+v %v", rep, err)
		}
		r := <-done
		if r.err != nil || strings.TrimSpace(r.stdout) != "{}" {
			t.Fatalf("got %q (%v), want {} (Codex proceeds)", r.stdout, r.err)
		}
	})
}

func TestHookBrokerDown(t *testing.T) {
	payload := hookPayload(t, "pretooluse-read.json")
	t.Run("deny", func(t *testing.T) {
		r := runHookCmd(payload, "claude-code", "--nats", "nats://127.0.0.1:1", "--agent", "claude-code")
		if d, reason, _ := preDecision(t, r.stdout); r.err != nil || d != "deny" || !strings.Contains(reason, "unreachable") {
			t.Fatalf("got %q %q (%v), want an unreachable denial", d, reason, r.err)
		}
		if r.took > 10*time.Second {
			t.Errorf("took %s, want a fast answer", r.took)
		}
	})
	t.Run("ask-when-configured", func(t *testing.T) {
		r := runHookCmd(payload, "claude-code", "--nats", "nats://127.0.0.1:1", "--on-unreachable", "ask")
		if d, _, _ := preDecision(t, r.stdout); r.err != nil || d != "ask" {
			t.Fatalf("got %q (%v), want ask", d, r.err)
		}
	})
}

func TestHookUsage(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"malformed-input", "not json", []string{"claude-code", "--nats", "nats://127.0.0.1:1"}, "not a JSON object"},
		{"unknown-hook", "{}", []string{"cursor"}, "unknown hook"},
		{"no-hook", "{}", nil, "which hook"},
		{"bad-fallback", "{}", []string{"claude-code", "--on-timeout", "allow"}, "deny or ask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runHookCmd(tt.stdin, tt.args...)
			var ee *exitError
			if !errors.As(r.err, &ee) || ee.Code != 2 || !strings.Contains(r.err.Error(), tt.want) {
				t.Fatalf("got %v, want exit 2 mentioning %q", r.err, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("got stdout %q, want nothing (exit 2 blocks the tool)", r.stdout)
			}
		})
	}
}

// TestHookWithAuth runs the hook against a broker whose policy has an auth:
// section: with the agent's nkey the call is decided, without it the bus
// refuses the connection and the hook fails closed.
func TestHookWithAuth(t *testing.T) {
	dir := t.TempDir()
	pub, keyPath, err := auth.WriteKeyFile(dir, client.RoleAgent, "claude-code")
	if err != nil {
		t.Fatal(err)
	}
	srv := startTestServe(t, hookPolicy+"auth:\n  agents:\n    claude-code: {nkey: "+pub+"}\n")
	payload := hookPayload(t, "pretooluse-read.json")

	r := runHookCmd(payload, "claude-code", "--nats", srv.URL, "--key", keyPath)
	if d, reason, _ := preDecision(t, r.stdout); r.err != nil || d != "allow" {
		t.Fatalf("with the agent's key: got %q %q (%v, %s), want allow", d, reason, r.err, r.stderr)
	}
	r = runHookCmd(strings.Replace(payload, "toolu_01ABCreadme", "toolu_nokey", 1), "claude-code", "--nats", srv.URL)
	if d, reason, _ := preDecision(t, r.stdout); r.err != nil || d != "deny" || !strings.Contains(reason, "unreachable") {
		t.Fatalf("without a key: got %q %q (%v), want deny", d, reason, r.err)
	}
}

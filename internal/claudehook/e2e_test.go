package claudehook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/brokertest"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/internal/claudehook"
)

const claudePolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 1m}
tools:
  Read: {tier: auto}
  Grep: {tier: auto}
  Bash: {tier: approve}
`

func input(t *testing.T, name string) *claudehook.Input {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	in, err := claudehook.Decode(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func decide(t *testing.T, nc *nats.Conn, in *claudehook.Input, timeout time.Duration, fb claudehook.Fallbacks) claudehook.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s := &claudehook.NATSSubmitter{Conn: nc, NoBrokerAfter: 500 * time.Millisecond}
	return claudehook.Decide(ctx, s, claudehook.Call(in, claudehook.Identity{Agent: "claude-code", User: "alice"}), fb)
}

func TestAgainstBroker(t *testing.T) {
	h := brokertest.Start(t, claudePolicy)

	t.Run("allow", func(t *testing.T) {
		o := decide(t, h.NC, input(t, "pretooluse-read.json"), 10*time.Second, claudehook.Fallbacks{})
		if o.Behavior != claudehook.Allow || o.UpdatedInput != nil {
			t.Fatalf("got %+v, want allow without updated input", o)
		}
	})
	t.Run("deny-unknown-tool", func(t *testing.T) {
		o := decide(t, h.NC, input(t, "pretooluse-webfetch.json"), 10*time.Second, claudehook.Fallbacks{})
		if o.Behavior != claudehook.Deny || !strings.Contains(o.Reason, "denied by policy") {
			t.Fatalf("got %+v, want a policy denial", o)
		}
	})
	t.Run("reviewer-edit", func(t *testing.T) {
		in := input(t, "pretooluse-bash.json")
		got := make(chan claudehook.Outcome, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s := &claudehook.NATSSubmitter{Conn: h.NC}
			got <- claudehook.Decide(ctx, s, claudehook.Call(in, claudehook.Identity{Agent: "claude-code", User: "alice"}), claudehook.Fallbacks{})
		}()
		p := h.WaitPendingID(t, "toolu_01BASHrebuild")
		if p.Call.Tool != "Bash" || p.Call.Arguments["command"] != "rm -rf build/ && make" {
			t.Fatalf("got pending call %+v", p.Call)
		}
		edited := map[string]any{"command": "make", "description": "Rebuild"}
		rep, err := h.Client.Review(context.Background(), airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob", UpdatedArguments: edited})
		if err != nil || !rep.Accepted {
			t.Fatalf("review: %+v %v", rep, err)
		}
		o := <-got
		if o.Behavior != claudehook.Allow || o.UpdatedInput["command"] != "make" {
			t.Fatalf("got %+v, want allow with the edited command", o)
		}
		out := claudehook.Encode(claudehook.EventPreToolUse, claudehook.ClientClaude, o)
		var m struct {
			H struct {
				Decision string         `json:"permissionDecision"`
				Updated  map[string]any `json:"updatedInput"`
			} `json:"hookSpecificOutput"`
		}
		if err := json.Unmarshal(out, &m); err != nil || m.H.Decision != "allow" || m.H.Updated["command"] != "make" {
			t.Fatalf("got output %s, want allow with updatedInput.command make", out)
		}
	})
	t.Run("reviewer-deny-permission-request", func(t *testing.T) {
		in := input(t, "permissionrequest-bash.json")
		in.ToolUseID = "toolu_perm_deny" // a known id so the test can find it
		got := make(chan claudehook.Outcome, 1)
		go func() { got <- decide(t, h.NC, in, 20*time.Second, claudehook.Fallbacks{}) }()
		p := h.WaitPendingID(t, "toolu_perm_deny")
		rep, err := h.Client.Review(context.Background(), airlock.Review{CallID: p.Call.ID, Action: airlock.ActionDeny, Reviewer: "bob", Reason: "not today"})
		if err != nil || !rep.Accepted {
			t.Fatalf("review: %+v %v", rep, err)
		}
		o := <-got
		out := string(claudehook.Encode(in.HookEventName, claudehook.ClientClaude, o))
		if o.Behavior != claudehook.Deny || !strings.Contains(out, `"behavior":"deny"`) || !strings.Contains(out, "not today") {
			t.Fatalf("got %s, want a PermissionRequest denial with the reviewer's reason", out)
		}
	})
	t.Run("timeout-denies", func(t *testing.T) {
		in := input(t, "pretooluse-bash.json")
		in.ToolUseID = "toolu_timeout_deny"
		o := decide(t, h.NC, in, 700*time.Millisecond, claudehook.Fallbacks{})
		if o.Behavior != claudehook.Deny || !strings.Contains(o.Reason, "timeout") {
			t.Fatalf("got %+v, want a timeout denial", o)
		}
	})
	t.Run("timeout-asks-when-configured", func(t *testing.T) {
		in := input(t, "pretooluse-bash.json")
		in.ToolUseID = "toolu_timeout_ask"
		o := decide(t, h.NC, in, 700*time.Millisecond, claudehook.Fallbacks{OnTimeout: claudehook.Ask})
		if o.Behavior != claudehook.Ask {
			t.Fatalf("got %+v, want ask", o)
		}
	})
	t.Run("retry-same-tool-use-id-is-idempotent", func(t *testing.T) {
		in := input(t, "pretooluse-read.json")
		in.ToolUseID = "toolu_twice"
		a := decide(t, h.NC, in, 10*time.Second, claudehook.Fallbacks{})
		b := decide(t, h.NC, in, 10*time.Second, claudehook.Fallbacks{})
		if a.Behavior != claudehook.Allow || a.Reason != b.Reason {
			t.Fatalf("got %q then %q, want the same recorded decision", a.Reason, b.Reason)
		}
	})
}

func TestBrokerDown(t *testing.T) {
	t.Run("nats-up-no-broker", func(t *testing.T) {
		srv, err := broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		start := time.Now()
		o := decide(t, nc, input(t, "pretooluse-read.json"), time.Minute, claudehook.Fallbacks{})
		if o.Behavior != claudehook.Deny || !strings.Contains(o.Reason, "unreachable") {
			t.Fatalf("got %+v, want an unreachable denial", o)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s to notice no broker, want about NoBrokerAfter", d)
		}
		o = decide(t, nc, input(t, "pretooluse-read.json"), time.Minute, claudehook.Fallbacks{OnUnreachable: claudehook.Ask})
		if o.Behavior != claudehook.Ask {
			t.Fatalf("got %+v, want ask", o)
		}
	})
	t.Run("nats-goes-down", func(t *testing.T) {
		srv, err := broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		start := time.Now()
		o := decide(t, nc, input(t, "pretooluse-read.json"), time.Minute, claudehook.Fallbacks{})
		if o.Behavior != claudehook.Deny || !strings.Contains(o.Reason, "unreachable") {
			t.Fatalf("got %+v, want an unreachable denial", o)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s to notice NATS was down", d)
		}
	})
	t.Run("closed-connection", func(t *testing.T) {
		srv, err := broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		o := decide(t, nc, input(t, "pretooluse-read.json"), time.Minute, claudehook.Fallbacks{})
		if o.Behavior != claudehook.Deny {
			t.Fatalf("got %+v, want deny", o)
		}
	})
}

// BenchmarkHookDecision measures the hook's path for an auto-tier call
// (decode the hook input, build the call, submit, encode the answer)
// against the Go client submitting the same call directly.
func BenchmarkHookDecision(b *testing.B) {
	h := brokertest.Start(b, claudePolicy)
	raw, err := os.ReadFile(filepath.Join("testdata", "pretooluse-read.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hook", func(b *testing.B) {
		s := &claudehook.NATSSubmitter{Conn: h.NC}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			in, err := claudehook.Decode(strings.NewReader(string(raw)))
			if err != nil {
				b.Fatal(err)
			}
			in.ToolUseID = fmt.Sprintf("toolu_bench_%d", i)
			o := claudehook.Decide(context.Background(), s, claudehook.Call(in, claudehook.Identity{Agent: "claude-code", User: "alice"}), claudehook.Fallbacks{})
			if o.Behavior != claudehook.Allow {
				b.Fatalf("got %+v", o)
			}
			_ = claudehook.Encode(in.HookEventName, claudehook.ClientClaude, o)
		}
	})
	b.Run("client-baseline", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			d, err := h.Client.Submit(context.Background(), &airlock.ToolCall{ID: fmt.Sprintf("base_%d", i), Agent: "claude-code", User: "alice",
				Session: "abc123-sess", Tool: "Read", Arguments: map[string]any{"file_path": "/home/alice/demo/README.md"}})
			if err != nil || d.Verdict != airlock.VerdictApproved {
				b.Fatalf("got %+v %v", d, err)
			}
		}
	})
}

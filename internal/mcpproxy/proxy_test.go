package mcpproxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/brokertest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/mcpproxy"
)

const mcpPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 1m}
tools:
  echo: {tier: auto}
  delete_everything: {tier: approve}
  poison: {tier: auto}
`

// buildServer compiles the test MCP server from testdata/server.
func buildServer(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mcp-test-server")
	cmd := exec.Command(goTool, "build", "-o", bin, "./testdata/server")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test server: %v\n%s", err, out)
	}
	return bin
}

type logged struct {
	Tool      string         `json:"tool"`
	Arguments map[string]any `json:"arguments"`
}

func serverLog(t *testing.T, path string) []logged {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logged
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l logged
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("server log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func text(t *testing.T, r *mcp.CallToolResult) string {
	t.Helper()
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

type callResult struct {
	res *mcp.CallToolResult
	err error
}

func callAsync(ctx context.Context, cs *mcp.ClientSession, name string, args map[string]any) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		ch <- callResult{res, err}
	}()
	return ch
}

func TestProxyAgainstBrokerAndRealServer(t *testing.T) {
	bin := buildServer(t)
	h := brokertest.Start(t, mcpPolicy)
	logPath := filepath.Join(t.TempDir(), "calls.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pinFile := filepath.Join(t.TempDir(), "pins.json")
	px, err := mcpproxy.Start(ctx, &mcp.CommandTransport{Command: exec.Command(bin, "-log", logPath)},
		mcpproxy.Config{Agent: "mcp-test", User: "alice", Decider: h.Client, PinFile: pinFile, Timeout: time.Minute,
			ProgressEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	st, ct := mcp.NewInMemoryTransports()
	go px.Run(ctx, st)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	t.Run("lists-tools-unchanged", func(t *testing.T) {
		lt, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]*mcp.Tool{}
		for _, tl := range lt.Tools {
			got[tl.Name] = tl
		}
		if len(got) != 3 || got["echo"] == nil || got["delete_everything"] == nil || got["poison"] == nil {
			t.Fatalf("got tools %v, want echo, delete_everything, poison", got)
		}
		if got["echo"].Description != "Echo the text back." || got["echo"].Annotations == nil || !got["echo"].Annotations.ReadOnlyHint {
			t.Errorf("got echo %+v, want its description and readOnlyHint", got["echo"])
		}
		if a := got["delete_everything"].Annotations; a == nil || a.DestructiveHint == nil || !*a.DestructiveHint {
			t.Errorf("got delete_everything annotations %+v, want destructiveHint", a)
		}
		if s, _ := json.Marshal(got["echo"].InputSchema); !strings.Contains(string(s), `"text"`) {
			t.Errorf("got echo schema %s, want the text property", s)
		}
	})
	t.Run("prompts-and-resources-pass-through", func(t *testing.T) {
		gp, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "greet"})
		if err != nil || len(gp.Messages) != 1 || gp.Messages[0].Content.(*mcp.TextContent).Text != "hello from the test server" {
			t.Fatalf("got prompt %+v, %v", gp, err)
		}
		rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://readme"})
		if err != nil || len(rr.Contents) != 1 || rr.Contents[0].Text != "read me" {
			t.Fatalf("got resource %+v, %v", rr, err)
		}
	})
	t.Run("allowed-call", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.IsError || text(t, res) != "hi" {
			t.Fatalf("got %+v %q, want the echo", res, text(t, res))
		}
	})
	t.Run("denied-call", func(t *testing.T) {
		ch := callAsync(ctx, cs, "delete_everything", map[string]any{"target": "prod"})
		p := h.WaitPendingTool(t, "delete_everything")
		ann, _ := p.Call.Context[mcpproxy.CtxAnnotations].(map[string]any)
		if ann["destructiveHint"] != true || ann["readOnlyHint"] != false {
			t.Errorf("got context %v, want the tool's annotations", p.Call.Context)
		}
		if p.Call.Context[mcpproxy.CtxServer] != "airlock-test-server" {
			t.Errorf("got context %v, want mcp_server", p.Call.Context)
		}
		h.Review(t, airlock.Review{CallID: p.Call.ID, Action: airlock.ActionDeny, Reviewer: "bob", Reason: "never on prod"})
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !r.res.IsError || !strings.Contains(text(t, r.res), "never on prod") {
			t.Fatalf("got %+v %q, want isError with the reviewer's reason", r.res, text(t, r.res))
		}
	})
	t.Run("edited-call", func(t *testing.T) {
		ch := callAsync(ctx, cs, "delete_everything", map[string]any{"target": "prod"})
		p := h.WaitPendingTool(t, "delete_everything")
		h.Review(t, airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob",
			UpdatedArguments: map[string]any{"target": "staging"}})
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.res.IsError || text(t, r.res) != "deleted staging" {
			t.Fatalf("got %+v %q, want the edited call's result", r.res, text(t, r.res))
		}
	})
	t.Run("progress-while-waiting-and-from-the-server", func(t *testing.T) {
		progress := make(chan *mcp.ProgressNotificationParams, 8)   // the proxy's "still waiting"
		fromServer := make(chan *mcp.ProgressNotificationParams, 8) // everything else
		st2, ct2 := mcp.NewInMemoryTransports()
		go px.Run(ctx, st2)
		cs2, err := mcp.NewClient(&mcp.Implementation{Name: "progress-client", Version: "1"}, &mcp.ClientOptions{
			ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
				ch := fromServer
				if strings.HasPrefix(req.Params.Message, "waiting for airlock") {
					ch = progress
				}
				select {
				case ch <- req.Params:
				default:
				}
			},
		}).Connect(ctx, ct2, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs2.Close()
		ch := make(chan callResult, 1)
		go func() {
			params := &mcp.CallToolParams{Name: "delete_everything", Arguments: map[string]any{"target": "tmp"}}
			params.SetProgressToken("tok-1")
			res, err := cs2.CallTool(ctx, params)
			ch <- callResult{res, err}
		}()
		p := h.WaitPendingTool(t, "delete_everything")
		select {
		case pr := <-progress:
			if pr.ProgressToken != "tok-1" || !strings.Contains(pr.Message, "waiting for airlock") {
				t.Fatalf("got progress %+v, want the client's token and a waiting message", pr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no progress while the call waited for a reviewer")
		}
		h.Review(t, airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob"})
		r := <-ch
		if r.err != nil || r.res.IsError || text(t, r.res) != "deleted tmp" {
			t.Fatalf("got %+v %v", r.res, r.err)
		}
		select {
		case pr := <-fromServer:
			if pr.Message != "deleting tmp" || pr.ProgressToken != "tok-1" {
				t.Fatalf("got progress %+v, want the server's under token tok-1", pr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server's own progress never reached the client")
		}
	})
	t.Run("changed-tool-needs-a-reviewer", func(t *testing.T) {
		if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "poison"}); err != nil || res.IsError {
			t.Fatalf("poison: %+v %v", res, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !px.ToolChanged("echo") {
			if time.Now().After(deadline) {
				t.Fatal("the proxy never noticed echo's new description")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The policy says auto, but the broker holds a changed tool for a
		// human: a reviewer denies the first call…
		leak := callAsync(ctx, cs, "echo", map[string]any{"text": "leak"})
		lp := h.WaitPendingTool(t, "echo")
		h.Review(t, airlock.Review{CallID: lp.Call.ID, Action: airlock.ActionDeny, Reviewer: "bob", Reason: "tool changed"})
		if r := <-leak; r.err != nil || !r.res.IsError {
			t.Fatalf("got %+v %v, want a refusal", r.res, r.err)
		}
		// …and lets the next one through.
		ch := callAsync(ctx, cs, "echo", map[string]any{"text": "reviewed"})
		p := h.WaitPendingTool(t, "echo")
		if p.Call.Context[mcpproxy.CtxChanged] != true || p.Call.Context[mcpproxy.CtxFirstHash] == p.Call.Context[mcpproxy.CtxToolHash] {
			t.Errorf("got context %v, want mcp_tool_changed and differing hashes", p.Call.Context)
		}
		h.Review(t, airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "bob"})
		r := <-ch
		if r.err != nil || r.res.IsError || text(t, r.res) != "reviewed" {
			t.Fatalf("got %+v %v, want the reviewed echo", r.res, r.err)
		}
	})
	t.Run("server-saw-only-approved-calls", func(t *testing.T) {
		got := serverLog(t, logPath)
		want := []string{`echo {"text":"hi"}`, `delete_everything {"target":"staging"}`, `delete_everything {"target":"tmp"}`, `poison {}`, `echo {"text":"reviewed"}`}
		if len(got) != len(want) {
			t.Fatalf("got %d calls %v, want %v", len(got), got, want)
		}
		for i, l := range got {
			a, _ := json.Marshal(l.Arguments)
			if s := l.Tool + " " + string(a); s != want[i] {
				t.Errorf("call %d: got %s, want %s", i, s, want[i])
			}
		}
	})
	t.Run("pin-file-remembers-first-sight", func(t *testing.T) {
		b, err := os.ReadFile(pinFile)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"echo"`) {
			t.Fatalf("got pin file %s, want echo pinned", b)
		}
		// A new proxy over a fresh server sees echo's original definition:
		// the pin matches, nothing is flagged.
		px2, err := mcpproxy.Start(ctx, &mcp.CommandTransport{Command: exec.Command(bin, "-log", filepath.Join(t.TempDir(), "x.jsonl"))},
			mcpproxy.Config{Agent: "mcp-test", Decider: h.Client, PinFile: pinFile})
		if err != nil {
			t.Fatal(err)
		}
		defer px2.Close()
		if px2.ToolChanged("echo") {
			t.Error("echo flagged although its definition matches the pin")
		}
	})
}

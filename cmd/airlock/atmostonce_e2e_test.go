package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
)

// TestSandboxAtMostOnce kills the broker (SIGKILL) in the middle of an
// approved sandboxed run. After a restart the call is recorded as
// interrupted, a resubmission gets that record, and the code never ran a
// second time.
func TestSandboxAtMostOnce(t *testing.T) {
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	if err := os.MkdirAll(ws, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(ws, 0o777)
	pol := fmt.Sprintf(`version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  run_shell:
    tier: auto
    sandbox: {backend: native, lang: shell, timeout: 60s, memory: 128MiB, workspace: %q, workspace_rw: true}
`, ws)
	policyPath := writePolicy(t, dir, pol)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	url := "nats://" + addr
	data := filepath.Join(dir, "data")
	first := startProcess(t, filepath.Join(dir, "serve1.log"), "serve", "--data", data, "--policy", policyPath, "--listen", addr)
	waitServing(t, addr, filepath.Join(dir, "serve1.log"))

	c, err := client.Connect(url, nil, client.WithAttemptTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func() *airlock.ToolCall {
		return &airlock.ToolCall{ID: "once1", Agent: "ops", User: "u1", Tool: "run_shell",
			Arguments: map[string]any{"command": "echo started >> /workspace/runs.log; sleep 30; echo finished >> /workspace/runs.log"}}
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.Submit(ctx, call())
	}()
	runs := filepath.Join(ws, "runs.log")
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(runs)
		if strings.Contains(string(b), "started") {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "serve1.log"))
			t.Fatalf("the sandboxed run never started; serve log: %s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, addr)

	startProcess(t, filepath.Join(dir, "serve2.log"), "serve", "--data", data, "--policy", policyPath, "--listen", addr)
	waitServing(t, addr, filepath.Join(dir, "serve2.log"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := c.Submit(ctx, call())
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != airlock.VerdictApproved || d.Execution == nil || d.Execution.LimitHit != "interrupted" {
		t.Fatalf("after the restart: %+v (execution %+v)", d, d.Execution)
	}
	// Give a (wrongly) re-run program time to write, then check it did not.
	time.Sleep(500 * time.Millisecond)
	b, _ := os.ReadFile(runs)
	if got := strings.Count(string(b), "started"); got != 1 || strings.Contains(string(b), "finished") {
		t.Fatalf("runs.log = %q: want exactly one start and no finish", b)
	}
	var out, errb strings.Builder
	if err := run(context.Background(), []string{"audit", "verify", "--data", data}, nil, &out, &errb); err != nil {
		t.Fatalf("audit verify: %v %s %s", err, out.String(), errb.String())
	}
}

func waitClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !dialable(addr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s still listening", addr)
}

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

// TestPolicyReloadOnSIGHUP: a good new policy takes effect on SIGHUP; a bad
// one is refused with the reason, and the old policy stays in force.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	policyPath := writePolicy(t, dir, e2ePolicy)
	logPath := filepath.Join(dir, "serve.log")
	proc := startProcess(t, logPath, "serve", "--data", dir, "--policy", policyPath, "--listen", addr)
	waitServing(t, addr, logPath)
	c, err := client.Connect("nats://"+addr, nil, client.WithAttemptTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	verdict := func(tool string) airlock.Verdict {
		n++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, err := c.Submit(ctx, &airlock.ToolCall{ID: fmt.Sprintf("h%d", n), Agent: "a", Tool: tool, Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		return d.Verdict
	}
	if v := verdict("get_time"); v != airlock.VerdictDenied {
		t.Fatalf("unknown tool before reload: %s", v)
	}
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(logPath); strings.Contains(string(b), want) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		b, _ := os.ReadFile(logPath)
		t.Fatalf("serve never said %q: %s", want, b)
	}
	writePolicy(t, dir, strings.Replace(e2ePolicy, "tools:\n", "tools:\n  get_time: {tier: auto}\n", 1))
	_ = proc.Process.Signal(syscall.SIGHUP)
	waitLog("policy reloaded")
	if v := verdict("get_time"); v != airlock.VerdictApproved {
		t.Fatalf("after a good reload: %s", v)
	}
	writePolicy(t, dir, "version: 1\ntools:\n  get_time: {teir: auto}\n")
	_ = proc.Process.Signal(syscall.SIGHUP)
	waitLog("keeping the old policy")
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "teir") {
		t.Fatalf("the refusal does not name the bad field: %s", b)
	}
	if v := verdict("get_time"); v != airlock.VerdictApproved {
		t.Fatalf("after a bad reload the old policy should hold: %s", v)
	}
}

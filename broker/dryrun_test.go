package broker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/sandbox"
)

// TestDryRun runs a waiting sandboxed call in a throw-away sandbox: the
// reviewer sees its output and the files it would change, the real
// workspace is untouched, the dry run is audited, and the call still waits.
func TestDryRun(t *testing.T) {
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "report.txt"), []byte("v1\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	pol := strings.Replace(testPolicy, "tools:\n", fmt.Sprintf(`tools:
  run_shell:
    tier: approve
    sandbox: {backend: native, lang: shell, timeout: 10s, memory: 128MiB, workspace: %q, workspace_rw: true}
`, ws), 1)
	h := startHarness(t, pol)
	h.stopBroker()
	h.bootWith(pol, func(c *broker.Config) {
		c.Sandbox = func(backend string) (sandbox.Runner, error) { return sandbox.Open(backend) }
	})
	h.submitAsync(&airlock.ToolCall{ID: "dr1", Agent: "ops", User: "u1", Tool: "run_shell",
		Arguments: map[string]any{"command": "echo v2 > /workspace/report.txt; echo done"}})
	h.waitPending("dr1")
	rep := h.b.DryRun(context.Background(), broker.DryRunRequest{CallID: "dr1", Reviewer: "bob"})
	if rep.Error != "" || rep.Execution == nil {
		t.Fatalf("dry run: %+v", rep)
	}
	ex := rep.Execution
	if !ex.DryRun || ex.ExitCode != 0 || !strings.Contains(ex.Stdout, "done") {
		t.Fatalf("execution %+v", ex)
	}
	if len(ex.ChangedFile) != 1 || !strings.Contains(ex.ChangedFile[0], "report.txt") {
		t.Fatalf("changed files %v, want report.txt", ex.ChangedFile)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "report.txt")); string(b) != "v1\n" {
		t.Fatalf("the dry run changed the real workspace: %q", b)
	}
	var n int
	if err := h.db().QueryRow(`select count(*) from events where kind = 'dryrun' and call_id = 'dr1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("dry run audit events: %d %v", n, err)
	}
	if _, err := h.client.GetPending(context.Background(), "dr1"); err != nil {
		t.Fatalf("the call no longer waits after a dry run: %v", err)
	}
	if rep := h.b.DryRun(context.Background(), broker.DryRunRequest{CallID: "nope", Reviewer: "bob"}); rep.Error == "" {
		t.Fatal("a dry run of an unknown call succeeded")
	}
}

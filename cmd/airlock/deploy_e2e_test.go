package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/testenv"
)

// TestDeployClusterScript runs deploy/cluster.sh as docs/deploy.md tells an
// operator to: a three-node nats-server cluster and two brokers come up,
// agents connected to any node get decisions, a broker killed with -9 is
// covered by the other and comes back under its name, and `down` stops it
// all, leaving an audit log that verifies.
func TestDeployClusterScript(t *testing.T) {
	testenv.Tool(t, "nats-server")
	testenv.Tool(t, "curl")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base := freePortBlock(t)
	script, _ := filepath.Abs("../../deploy/cluster.sh")
	cluster := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "AIRLOCK_TEST_MAIN=1", "AIRLOCK="+exe, fmt.Sprintf("AIRLOCK_FLEET_PORT=%d", base))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cluster.sh %s: %v\n%s\n%s", strings.Join(args, " "), err, out, tailLogs(dir, "*.log"))
		}
		return string(out)
	}
	if out := cluster("up", dir); !strings.Contains(out, "fleet up") {
		t.Fatalf("up: %s", out)
	}
	t.Cleanup(func() { _ = exec.Command("bash", script, "down", dir).Run() })

	submit := func(url, id string) airlock.Decision {
		t.Helper()
		c, err := client.Connect(url, nil, client.WithAttemptTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := c.Submit(ctx, &airlock.ToolCall{ID: id, Agent: "research-assistant", User: "alice", Org: "acme",
			Tool: "search_web", Arguments: map[string]any{"query": "weather in Lisbon"}})
		if err != nil {
			t.Fatalf("submit %s through %s: %v", id, url, err)
		}
		return d
	}
	for i := range 3 {
		url := fmt.Sprintf("nats://127.0.0.1:%d", base+i)
		if d := submit(url, fmt.Sprintf("deploy-n%d", i)); d.Verdict != airlock.VerdictApproved {
			t.Fatalf("through node n%d: %s %q, want approved", i, d.Verdict, d.Reason)
		}
	}
	if out := cluster("status", dir); strings.Count(out, "running") != 5 {
		t.Fatalf("status: %s, want three nodes and two brokers running", out)
	}

	cluster("kill", "b1", dir)
	if d := submit(fmt.Sprintf("nats://127.0.0.1:%d", base), "deploy-after-kill"); d.Verdict != airlock.VerdictApproved {
		t.Fatalf("with b1 killed: %s %q", d.Verdict, d.Reason)
	}
	cluster("start", "b1", dir)
	if out := cluster("status", dir); !strings.Contains(out, "b1: running") {
		t.Fatalf("status after start: %s", out)
	}
	if err := waitAuditDecisions(filepath.Join(dir, "audit.db"), 4, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	cluster("down", dir)
	if out := cluster("status", dir); strings.Contains(out, "running") {
		t.Fatalf("status after down: %s", out)
	}
	var out, errb strings.Builder
	if err := run(context.Background(), []string{"audit", "verify", "--db", filepath.Join(dir, "audit.db")}, nil, &out, &errb); err != nil {
		t.Fatalf("audit verify: %v\n%s%s", err, out.String(), errb.String())
	}
}

// freePortBlock finds a base port whose client, cluster (+2000) and
// monitoring (+4000) ports, three each, are all free (deploy/cluster.sh's
// layout).
func freePortBlock(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(20000)
		free := true
		for _, off := range []int{0, 1, 2, 2000, 2001, 2002, 4000, 4001, 4002} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free block of ports for the cluster")
	return 0
}

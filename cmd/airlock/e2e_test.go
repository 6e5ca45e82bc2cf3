package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/testenv"
)

const e2ePolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  search_web:  {tier: auto}
  read_file:   {tier: notify}
  send_email:  {tier: approve}
  execute_sql: {tier: approve}
  delete_record: {tier: deny}
`

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writePolicy(t testing.TB, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcess runs this test binary as `airlock ARGS…` in the background and
// stops it (SIGTERM, then SIGKILL) at cleanup.
func startProcess(t testing.TB, logPath string, args ...string) *exec.Cmd {
	t.Helper()
	argv, env := selfCommand(t, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

func waitListening(t testing.TB, addr string, logPath string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	t.Fatalf("nothing listens on %s: %s", addr, b)
}

// waitServing waits until an airlock serve on addr listens and its broker
// answers (the embedded NATS server accepts connections a moment before the
// broker's endpoints exist).
func waitServing(t testing.TB, addr string, logPath string) {
	t.Helper()
	waitListening(t, addr, logPath)
	nc, err := nats.Connect("nats://"+addr, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := nc.Request("$SRV.PING.airlock", nil, 500*time.Millisecond); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	t.Fatalf("the broker on %s never answered: %s", addr, b)
}

func natsReq(t testing.TB, natsCLI, url, subject, body string) airlock.Decision {
	t.Helper()
	out, err := exec.Command(natsCLI, "-s", url, "req", "--raw", "--timeout", "10s", subject, body).CombinedOutput()
	if err != nil {
		t.Fatalf("nats req: %v: %s", err, out)
	}
	var d airlock.Decision
	if err := json.Unmarshal(bytes.TrimSpace(out), &d); err != nil {
		t.Fatalf("nats req reply %q: %v", out, err)
	}
	return d
}

// TestStockNATSCLI drives `airlock serve` (embedded NATS) with the upstream
// nats CLI, as an agent nobody here wrote would, and decides a waiting call
// with `airlock review`.
func TestStockNATSCLI(t *testing.T) {
	natsCLI := testenv.Tool(t, "nats")
	dir := t.TempDir()
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	logPath := filepath.Join(dir, "serve.log")
	startProcess(t, logPath, "serve", "--data", dir, "--policy", writePolicy(t, dir, e2ePolicy), "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	waitServing(t, fmt.Sprintf("127.0.0.1:%d", port), logPath)

	if d := natsReq(t, natsCLI, url, "airlock.submit.cli", `{"id":"n1","agent":"cli","tool":"search_web","arguments":{"query":"weather"}}`); d.Verdict != airlock.VerdictApproved {
		t.Fatalf("auto tool: %+v", d)
	}
	if d := natsReq(t, natsCLI, url, "airlock.submit.cli", `{"id":"n2","agent":"cli","tool":"delete_record","arguments":{"id":1}}`); d.Verdict != airlock.VerdictDenied {
		t.Fatalf("deny tool: %+v", d)
	}
	if d := natsReq(t, natsCLI, url, "airlock.submit.cli", `{"id":"n3","agent":"cli","tool":`); d.Verdict != airlock.VerdictRejected {
		t.Fatalf("malformed: %+v", d)
	}
	// The broker is a micro service the CLI can see.
	out, err := exec.Command(natsCLI, "-s", url, "micro", "ls").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "airlock") {
		t.Fatalf("nats micro ls: %v: %s", err, out)
	}
	// A waiting call, decided from the command line.
	res := make(chan airlock.Decision, 1)
	go func() {
		out, _ := exec.Command(natsCLI, "-s", url, "req", "--raw", "--timeout", "30s", "airlock.submit.cli",
			`{"id":"n4","agent":"cli","user":"u1","tool":"execute_sql","arguments":{"query":"SELECT 1"}}`).Output()
		var d airlock.Decision
		_ = json.Unmarshal(bytes.TrimSpace(out), &d)
		res <- d
	}()
	var stdout, stderr bytes.Buffer
	deadline := time.Now().Add(15 * time.Second)
	for {
		stdout.Reset()
		_ = run(context.Background(), []string{"pending", "--nats", url}, nil, &stdout, &stderr)
		if strings.Contains(stdout.String(), "n4") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := run(context.Background(), []string{"review", "approve", "n4", "--reviewer", "dana", "--nats", url}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("review: %v %s", err, stderr.String())
	}
	if d := <-res; d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:dana" {
		t.Fatalf("after review: %+v", d)
	}
}

// TestServeWithExternalNATS runs airlock serve against a separately started
// nats-server process (--nats URL).
func TestServeWithExternalNATS(t *testing.T) {
	natsServer := testenv.Tool(t, "nats-server")
	dir := t.TempDir()
	port := freePort(t)
	srv := exec.Command(natsServer, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", filepath.Join(dir, "js"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", port), "/dev/null")
	data := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "serve.log")
	startProcess(t, logPath, "serve", "--data", data, "--policy", writePolicy(t, dir, e2ePolicy), "--nats", url)
	var out, errb bytes.Buffer
	deadline := time.Now().Add(20 * time.Second)
	for {
		out.Reset()
		errb.Reset()
		err := run(context.Background(), []string{"submit", "--nats", url, "--agent", "x", "--tool", "search_web", "--args", `{"q":"hi"}`, "--timeout", "5s"}, nil, &out, &errb)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("submit via external NATS: %v %s; serve log: %s", err, errb.String(), b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var d airlock.Decision
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || d.Verdict != airlock.VerdictApproved {
		t.Fatalf("decision %s: %v", out.String(), err)
	}
	// submit's exit codes: 1 for a denial, 2 for a usage error.
	err := run(context.Background(), []string{"submit", "--nats", url, "--agent", "x", "--tool", "delete_record", "--args", `{}`}, nil, &out, &errb)
	if got := exitCode(err, &errb); got != 1 {
		t.Fatalf("denied submit exit %d, want 1", got)
	}
	err = run(context.Background(), []string{"submit", "--nats", url, "--agent", "x"}, nil, &out, &errb)
	if got := exitCode(err, &errb); got != 2 {
		t.Fatalf("usage error exit %d, want 2", got)
	}
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func interruptSignal() os.Signal { return os.Interrupt }

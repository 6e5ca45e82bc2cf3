package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"
)

// statusOf runs `airlock status --json` and returns the report and the
// command's error (an *exitError with code 1 when it found problems).
func statusOf(t *testing.T, url string) (statusReport, error) {
	t.Helper()
	var out, errb strings.Builder
	err := run(context.Background(), []string{"status", "--nats", url, "--json"}, nil, &out, &errb)
	var rep statusReport
	if jerr := json.Unmarshal([]byte(out.String()), &rep); jerr != nil {
		t.Fatalf("status --json printed %q (%v; stderr %s)", out.String(), err, errb.String())
	}
	return rep, err
}

// TestStatusEmbedded: one embedded broker, its audit written directly, its
// buckets with one replica, a call waiting for review counted.
func TestStatusEmbedded(t *testing.T) {
	dir := t.TempDir()
	policyPath := writePolicy(t, dir, "version: 1\ntools:\n  search_web: {tier: auto}\n  send_email: {tier: approve}\n")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	lp := filepath.Join(dir, "serve.log")
	startProcess(t, lp, "serve", "--data", filepath.Join(dir, "data"), "--policy", policyPath, "--listen", addr, "--name", "solo")
	waitListening(t, addr, lp)
	url := "nats://" + addr
	var out, errb strings.Builder
	_ = run(context.Background(), []string{"submit", "--nats", url, "--agent", "a1", "--user", "u1", "--tool", "send_email",
		"--args", `{"to":"x@example.com"}`, "--timeout", "300ms"}, nil, &out, &errb)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err := statusOf(t, url)
		if err == nil && rep.Pending == 1 {
			if len(rep.Brokers) != 1 || rep.Brokers[0].Name != "solo" || rep.Audit.Mode != "direct" {
				t.Fatalf("report %+v, want broker solo writing its audit directly", rep)
			}
			calls := false
			for _, a := range rep.Assets {
				if a.Name == "airlock_calls" && a.Replicas == 1 && a.Messages >= 1 {
					calls = true
				}
			}
			if !calls {
				t.Fatalf("assets %+v, want airlock_calls with the call", rep.Assets)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %+v, %v; want healthy with one call pending", rep, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var text strings.Builder
	if err := run(context.Background(), []string{"status", "--nats", url}, nil, &text, &errb); err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, want := range []string{"brokers: 1", "solo", "written directly to SQLite", "pending review: 1", "airlock_calls"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, text.String())
		}
	}
}

// TestStatusOnFleet: two brokers on a three-node cluster: both listed, the
// audit writer named, every bucket and the audit stream with three
// replicas and a leader. With a node killed, status names the offline
// replicas and exits 1.
func TestStatusOnFleet(t *testing.T) {
	testenv.Tool(t, "nats-server")
	dir := t.TempDir()
	policyPath, _ := chaosSetup(t, dir)
	f := startFleet(t, policyPath, 2)
	url := f.cluster.URLs()
	var rep statusReport
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		rep, err = statusOf(t, url)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status on a healthy fleet: %v; %+v", err, rep)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(rep.Brokers) != 2 || rep.Brokers[0].Name != "b1" || rep.Brokers[1].Name != "b2" {
		t.Fatalf("brokers %+v, want b1 and b2", rep.Brokers)
	}
	if rep.Audit.Mode != "stream" || (rep.Audit.Writer != "b1" && rep.Audit.Writer != "b2") {
		t.Fatalf("audit %+v, want the fleet stream applied by b1 or b2", rep.Audit)
	}
	names := map[string]bool{}
	for _, a := range rep.Assets {
		names[a.Name] = true
		if a.Replicas != 3 || a.Leader == "" || len(a.Peers) != 2 {
			t.Errorf("asset %+v: want 3 replicas, a leader and two peers", a)
		}
	}
	for _, want := range []string{"airlock_calls", "airlock_pending", "airlock_grants", "airlock_state", "airlock_leases", "AIRLOCK_AUDIT"} {
		if !names[want] {
			t.Errorf("status lists no %s (got %v)", want, names)
		}
	}

	victim := 0
	f.cluster.Kill(victim)
	others := strings.Join(strings.Split(url, ",")[1:], ",")
	deadline = time.Now().Add(30 * time.Second)
	for {
		rep, err := statusOf(t, others)
		var ee *exitError
		if errors.As(err, &ee) && ee.Code == 1 && strings.Contains(strings.Join(rep.Problems, " "), "offline") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with node %d killed: status %v, problems %v; want exit 1 naming an offline replica", victim, err, rep.Problems)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

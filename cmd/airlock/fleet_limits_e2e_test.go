package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/testenv"
)

const limitsPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  search_web: {tier: auto}
limits:
  - {scope: user, requests_per_minute: 10}
`

// TestLimitsAcrossBrokers runs two airlock serve processes against one real
// nats-server and offers three times a user's limit across both: the fleet
// approves exactly the limit (usage is compare-and-set in JetStream KV).
func TestLimitsAcrossBrokers(t *testing.T) {
	natsServer := testenv.Tool(t, "nats-server")
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := exec.Command(natsServer, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", filepath.Join(dir, "js"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	waitListening(t, addr, "/dev/null")
	url := "nats://" + addr
	policyPath := writePolicy(t, dir, limitsPolicy)
	for i := 1; i <= 2; i++ {
		startProcess(t, filepath.Join(dir, fmt.Sprintf("serve%d.log", i)), "serve", "--data", filepath.Join(dir, fmt.Sprintf("data%d", i)),
			"--policy", policyPath, "--nats", url)
	}
	c, err := client.Connect(url, nil, client.WithAttemptTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitForBrokers(t, ctx, c, 2)

	var mu sync.Mutex
	verdicts := map[airlock.Verdict]int{}
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, err := c.Submit(ctx, &airlock.ToolCall{ID: fmt.Sprintf("lim%d", i), Agent: "a", User: "mallory", Org: "o",
				Session: fmt.Sprintf("s%d", i), Tool: "search_web", Arguments: map[string]any{"q": i}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			verdicts[d.Verdict]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if verdicts[airlock.VerdictApproved] != 10 || verdicts[airlock.VerdictRateLimited] != 20 {
		t.Fatalf("30 calls across two brokers, limit 10/min: %v, want 10 approved and 20 rate_limited", verdicts)
	}
}

// waitForBrokers waits until n broker instances answer the micro ping.
func waitForBrokers(t *testing.T, ctx context.Context, c *client.Client, n int) {
	t.Helper()
	for {
		inbox := c.Conn().NewRespInbox()
		sub, err := c.Conn().SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Conn().PublishRequest("$SRV.PING.airlock", inbox, nil)
		got := 0
		for {
			if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
				break
			}
			got++
		}
		_ = sub.Unsubscribe()
		if got >= n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d brokers answered", got, n)
		}
	}
}

// TestLimitsSurviveRestart: usage lives in JetStream KV, so restarting the
// broker does not reset anyone's limit.
func TestLimitsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	policyPath := writePolicy(t, dir, limitsPolicy)
	data := filepath.Join(dir, "data")
	first := startProcess(t, filepath.Join(dir, "serve1.log"), "serve", "--data", data, "--policy", policyPath, "--listen", addr)
	waitServing(t, addr, filepath.Join(dir, "serve1.log"))
	c, err := client.Connect("nats://"+addr, nil, client.WithAttemptTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	submit := func(id string) airlock.Verdict {
		d, err := c.Submit(ctx, &airlock.ToolCall{ID: id, Agent: "a", User: "trent", Tool: "search_web", Arguments: map[string]any{"q": id}})
		if err != nil {
			t.Fatal(err)
		}
		return d.Verdict
	}
	for i := 0; i < 8; i++ {
		if v := submit(fmt.Sprintf("r%d", i)); v != airlock.VerdictApproved {
			t.Fatalf("call %d before the restart: %s", i, v)
		}
	}
	_ = first.Process.Signal(interruptSignal())
	waitClosed(t, addr)
	startProcess(t, filepath.Join(dir, "serve2.log"), "serve", "--data", data, "--policy", policyPath, "--listen", addr)
	waitServing(t, addr, filepath.Join(dir, "serve2.log"))
	got := map[airlock.Verdict]int{}
	for i := 8; i < 12; i++ {
		got[submit(fmt.Sprintf("r%d", i))]++
	}
	if got[airlock.VerdictApproved] != 2 || got[airlock.VerdictRateLimited] != 2 {
		t.Fatalf("after the restart: %v, want 2 approved (10/min in all) and 2 rate_limited", got)
	}
}

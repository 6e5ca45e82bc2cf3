package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/auditstream"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/fleettest"
)

// fleet is a three-node NATS cluster (real nats-server processes) with
// `airlock serve --nats … --replicas 3` brokers as processes sharing one
// audit database, as deploy/cluster.sh runs it.
type fleet struct {
	t       *testing.T
	cluster *fleettest.Cluster
	dir     string
	policy  string
	auditDB string
	brokers map[string]*exec.Cmd
	starts  int
}

// startFleet starts the cluster and brokers named b1…bN, and waits until
// every broker answers.
func startFleet(t *testing.T, policyPath string, brokers int) *fleet {
	t.Helper()
	c := fleettest.Start(t, 3)
	dir := t.TempDir()
	f := &fleet{t: t, cluster: c, dir: dir, policy: policyPath, auditDB: filepath.Join(dir, "audit.db"), brokers: map[string]*exec.Cmd{}}
	// One after the other: brokers that create the same replicated buckets
	// at the same moment can time out (see the report in docs/bench/fleet.md).
	for i := 1; i <= brokers; i++ {
		f.startBroker(fmt.Sprintf("b%d", i))
		f.waitBrokers(i)
	}
	return f
}

// startBroker starts (or restarts, on the same data directory) the broker
// with this name.
func (f *fleet) startBroker(name string) {
	f.t.Helper()
	f.starts++
	lp := filepath.Join(f.dir, fmt.Sprintf("%s.%d.log", name, f.starts))
	f.brokers[name] = startProcess(f.t, lp, "serve", "--nats", f.cluster.URLs(), "--replicas", "3",
		"--data", filepath.Join(f.dir, name), "--audit-db", f.auditDB, "--name", name,
		"--policy", f.policy, "--log", lp+".slog")
}

// kill sends SIGKILL to a broker.
func (f *fleet) kill(name string) {
	f.t.Helper()
	cmd := f.brokers[name]
	kill9(f.t, cmd)
	delete(f.brokers, name)
	// startProcess reaps it; wait until the pid is gone.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(cmd.Process.Pid, 0) == nil {
		if time.Now().After(deadline) {
			f.t.Fatalf("broker %s survived SIGKILL", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client connects to the cluster (any node, reconnecting).
func (f *fleet) client(urls string) *client.Client {
	f.t.Helper()
	c, err := client.Connect(urls, nil, client.WithAttemptTimeout(3*time.Second))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(c.Close)
	return c
}

// waitBrokers waits until n brokers answer the micro ping.
func (f *fleet) waitBrokers(n int) {
	f.t.Helper()
	nc := f.client(f.cluster.URLs()).Conn()
	deadline := time.Now().Add(60 * time.Second)
	for len(served(f.t, nc, "submit")) < n {
		if time.Now().After(deadline) {
			f.t.Fatalf("fewer than %d brokers answer after a minute:\n%s", n, brokerLogs(f.dir))
		}
	}
}

// leaseHolder names the broker holding the audit writer lease ("" if none).
func (f *fleet) leaseHolder(ctx context.Context, nc *nats.Conn) (string, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	kv, err := js.KeyValue(ctx, auditstream.LeaseBucket)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, auditstream.LeaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// waitLeaseHolder waits until some broker other than not holds the lease.
func (f *fleet) waitLeaseHolder(nc *nats.Conn, not string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h, err := f.leaseHolder(ctx, nc)
		cancel()
		if err == nil && h != "" && h != not {
			return h, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no audit writer other than %q after %s (holder %q, %v)", not, timeout, h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// served returns how many requests each broker's endpoint has answered,
// by broker name (from the micro service's stats).
func served(t *testing.T, nc *nats.Conn, endpoint string) map[string]int {
	t.Helper()
	subj, err := micro.ControlSubject(micro.StatsVerb, "airlock", "")
	if err != nil {
		t.Fatal(err)
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for {
		m, err := sub.NextMsg(500 * time.Millisecond)
		if err != nil {
			return out
		}
		var st micro.Stats
		if json.Unmarshal(m.Data, &st) != nil {
			continue
		}
		for _, e := range st.Endpoints {
			if e.Name == endpoint {
				out[st.Metadata["broker"]] += e.NumRequests
			}
		}
	}
}

func brokerLogs(dir string) string { return tailLogs(dir, "b*.log*") }

// tailLogs returns the last lines of every log in dir matching pattern.
func tailLogs(dir, pattern string) string {
	ms, _ := filepath.Glob(filepath.Join(dir, pattern))
	s := ""
	for _, m := range ms {
		b, _ := os.ReadFile(m)
		if len(b) > 1500 {
			b = b[len(b)-1500:]
		}
		s += "--- " + filepath.Base(m) + "\n" + string(b) + "\n"
	}
	return s
}

const benchPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  search_web: {tier: auto}
`

// benchRow is one configuration's figures.
type benchRow struct {
	name          string
	decisions     int
	perSecond     float64
	p50, p95, p99 time.Duration
}

// drive submits auto-decided calls from conc agents for d and measures
// each decision's latency (after a warm-up second that is not counted).
func drive(t *testing.T, urls, tag string, conc int, d time.Duration) benchRow {
	t.Helper()
	c, err := client.Connect(urls, nil, client.WithAttemptTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	warm := time.Now().Add(time.Second)
	end := warm.Add(d)
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				start := time.Now()
				if start.After(end) {
					return
				}
				dec, err := c.Submit(ctx, &airlock.ToolCall{ID: fmt.Sprintf("%s-%d-%d", tag, w, k), Agent: fmt.Sprintf("bench%d", w),
					User: "u", Tool: "search_web", Arguments: map[string]any{"query": fmt.Sprintf("item %d", k)}})
				if err != nil {
					t.Error(err)
					return
				}
				if dec.Verdict != airlock.VerdictApproved {
					t.Errorf("%s: %+v", dec.CallID, dec)
					return
				}
				if start.After(warm) {
					lats[w] = append(lats[w], time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	return benchRow{decisions: len(all), perSecond: float64(len(all)) / d.Seconds(), p50: pct(0.50), p95: pct(0.95), p99: pct(0.99)}
}

// TestFleetBench measures decisions per second and latency percentiles of
// the embedded single process and of 1, 2 and 3 brokers on a three-node
// cluster (replicas 3), in one run. It is a measurement, not a check:
//
//	AIRLOCK_FLEET_BENCH=1 go test -tags sqlite_fts5 -run TestFleetBench -v ./cmd/airlock
//
// AIRLOCK_FLEET_BENCH_SECONDS (default 8) and AIRLOCK_FLEET_BENCH_AGENTS
// (default 16) size each measurement.
func TestFleetBench(t *testing.T) {
	if os.Getenv("AIRLOCK_FLEET_BENCH") != "1" {
		t.Skip("set AIRLOCK_FLEET_BENCH=1 to measure the fleet") // a benchmark, opt-in by design: it asserts nothing
	}
	secs, agents := 8, 16
	if v, err := strconv.Atoi(os.Getenv("AIRLOCK_FLEET_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	if v, err := strconv.Atoi(os.Getenv("AIRLOCK_FLEET_BENCH_AGENTS")); err == nil && v > 0 {
		agents = v
	}
	d := time.Duration(secs) * time.Second
	dir := t.TempDir()
	policyPath := writePolicy(t, dir, benchPolicy)
	var rows []benchRow

	// The embedded default: one process, NATS and SQLite inside.
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	lp := filepath.Join(dir, "embedded.log")
	emb := startProcess(t, lp, "serve", "--data", filepath.Join(dir, "embedded"), "--policy", policyPath, "--listen", addr)
	waitListening(t, addr, lp)
	r := drive(t, "nats://"+addr, "emb", agents, d)
	r.name = "embedded (1 process)"
	rows = append(rows, r)
	_ = emb.Process.Signal(os.Interrupt)
	waitClosed(t, addr)

	// The fleet: brokers added one at a time to the same cluster.
	f := startFleet(t, policyPath, 1)
	for n := 1; n <= 3; n++ {
		if n > 1 {
			f.startBroker(fmt.Sprintf("b%d", n))
			f.waitBrokers(n)
		}
		r := drive(t, f.cluster.URLs(), fmt.Sprintf("fleet%d", n), agents, d)
		r.name = fmt.Sprintf("cluster R3, %d broker%s", n, map[bool]string{true: "s"}[n > 1])
		rows = append(rows, r)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d agents, %s per configuration, auto-decided calls (search_web), %d CPUs\n\n", agents, d, runtime.NumCPU())
	sb.WriteString("| configuration | decisions | decisions/s | p50 | p95 | p99 |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %d | %.0f | %s | %s | %s |\n", r.name, r.decisions, r.perSecond,
			r.p50.Round(10*time.Microsecond), r.p95.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond))
	}
	t.Log("\n" + sb.String())
}

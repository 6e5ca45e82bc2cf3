package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/fleettest"
)

// chaosPolicy: one auto tool, one a human approves, one sandboxed tool that
// appends its call id to a workspace file (so a second run would show).
const chaosPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 10m}
tools:
  search_web: {tier: auto}
  send_email: {tier: approve}
  run_shell:
    tier: auto
    sandbox: {backend: native, lang: shell, timeout: 20s, memory: 128MiB, workspace: %q, workspace_rw: true}
`

// chaosWorkspace makes the sandboxed tool's workspace and the policy.
func chaosSetup(t *testing.T, dir string) (policyPath, ws string) {
	t.Helper()
	ws = filepath.Join(dir, "ws")
	if err := os.MkdirAll(ws, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(ws, 0o777)
	// Every run appends here, whichever uid the sandbox gives it.
	runs := filepath.Join(ws, "runs.log")
	if err := os.WriteFile(runs, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(runs, 0o666)
	return writePolicy(t, dir, fmt.Sprintf(chaosPolicy, ws)), ws
}

// chaosLoad is a steady load of agents submitting calls (a third auto, a
// third waiting for the scripted reviewer, a third sandboxed) and one
// reviewer approving whatever waits, each through its own connection.
type chaosLoad struct {
	t        *testing.T
	agents   *client.Client
	reviewer *client.Client
	ctx      context.Context // bounds every submit and review
	cancel   context.CancelFunc

	stopSubmit chan struct{}
	stopReview chan struct{}
	workers    sync.WaitGroup
	reviewing  sync.WaitGroup

	mu     sync.Mutex
	tools  map[string]string           // every submitted call id → its tool
	got    map[string]airlock.Decision // id → the final decision its agent received
	failed map[string]error            // id → why Submit gave up
	// decided counts the decisions agents received; reviews the verdicts
	// the reviewer had accepted.
	decided, accepted, refused atomic.Int64
	failClosed                 atomic.Int64   // unrecorded fail-closed answers, retried
	failReasons                map[string]int // their reasons, shortened (under mu)
	refusedReasons             map[string]int // why verdicts were refused (under mu)
	lastDecision               atomic.Int64   // unix nanos
}

// startLoad starts workers agents and the reviewer against urls. budget
// bounds the whole load, draining included.
func startLoad(t *testing.T, urls string, workers int, budget time.Duration) *chaosLoad {
	t.Helper()
	connect := func() *client.Client {
		c, err := client.Connect(urls, nil, client.WithAttemptTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)
	l := &chaosLoad{t: t, agents: connect(), reviewer: connect(), ctx: ctx, cancel: cancel,
		stopSubmit: make(chan struct{}), stopReview: make(chan struct{}),
		tools: map[string]string{}, got: map[string]airlock.Decision{}, failed: map[string]error{}, failReasons: map[string]int{}, refusedReasons: map[string]int{}}
	for w := range workers {
		l.workers.Add(1)
		go l.agent(w)
	}
	l.reviewing.Add(1)
	go l.review()
	return l
}

func (l *chaosLoad) agent(w int) {
	defer l.workers.Done()
	for k := 0; ; k++ {
		select {
		case <-l.stopSubmit:
			return
		default:
		}
		id := fmt.Sprintf("w%d-%04d", w, k)
		call := &airlock.ToolCall{ID: id, Agent: fmt.Sprintf("agent%d", w), User: "u1", Session: fmt.Sprintf("s%d", w)}
		switch (w + k) % 3 {
		case 0:
			call.Tool, call.Arguments = "search_web", map[string]any{"query": fmt.Sprintf("weather in town %d", k)}
		case 1:
			call.Tool, call.Arguments = "send_email", map[string]any{"to": "ops@example.com", "subject": fmt.Sprintf("report %d", k)}
		default:
			call.Tool, call.Arguments = "run_shell", map[string]any{"command": "echo " + id + " >> /workspace/runs.log"}
		}
		l.mu.Lock()
		l.tools[id] = call.Tool
		l.mu.Unlock()
		d, err := l.agents.Submit(l.ctx, call)
		// A broker that cannot reach its state or the audit log fails
		// closed without recording anything: the agent retries the same id.
		for err == nil && failedClosed(d) && l.ctx.Err() == nil {
			l.failClosed.Add(1)
			l.mu.Lock()
			l.failReasons[shortReason(d.Reason)]++
			l.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			d, err = l.agents.Submit(l.ctx, call)
		}
		l.mu.Lock()
		if err != nil {
			l.failed[id] = err
		} else {
			l.got[id] = d
		}
		l.mu.Unlock()
		if err != nil {
			return // the budget is spent
		}
		l.decided.Add(1)
		l.lastDecision.Store(time.Now().UnixNano())
	}
}

// shortReason keeps a fail-closed reason's gist: its code and the start of
// the error (ids and revisions vary).
func shortReason(r string) string {
	if len(r) > 90 {
		r = r[:90]
	}
	return r
}

// failedClosed reports an unrecorded denial a retry may turn around.
func failedClosed(d airlock.Decision) bool {
	if d.Verdict != airlock.VerdictDenied || d.AuditSeq != 0 {
		return false
	}
	for _, r := range []string{broker.ReasonStateUnavailable, broker.ReasonAuditUnavailable, broker.ReasonLimitsUnavailable} {
		if strings.HasPrefix(d.Reason, r) {
			return true
		}
	}
	return false
}

// review approves every waiting call, as a scripted reviewer would.
func (l *chaosLoad) review() {
	defer l.reviewing.Done()
	for {
		select {
		case <-l.stopReview:
			return
		case <-l.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		pctx, cancel := context.WithTimeout(l.ctx, 2*time.Second)
		ps, err := l.reviewer.Pending(pctx)
		cancel()
		if err != nil {
			continue
		}
		for _, p := range ps {
			rctx, cancel := context.WithTimeout(l.ctx, 3*time.Second)
			rep, err := l.reviewer.Review(rctx, airlock.Review{CallID: p.Call.ID, Action: airlock.ActionApprove, Reviewer: "rita", Reason: "chaos"})
			cancel()
			switch {
			case err != nil:
			case rep.Accepted:
				l.accepted.Add(1)
			default:
				l.refused.Add(1)
				l.mu.Lock()
				l.refusedReasons[shortReason(rep.Error)]++
				l.mu.Unlock()
			}
		}
	}
}

// waitDecided waits until agents received more than n decisions in all.
func (l *chaosLoad) waitDecided(n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for l.decided.Load() <= n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d decisions after %s, want more than %d", l.decided.Load(), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// drain stops new submissions and waits for every call in flight to get
// its decision (the reviewer keeps working meanwhile), then stops the
// reviewer.
func (l *chaosLoad) drain() {
	close(l.stopSubmit)
	l.workers.Wait()
	close(l.stopReview)
	l.reviewing.Wait()
}

// chaosFigures is what one chaos run reports.
type chaosFigures struct {
	Calls, Decided, Pending, Undecided int
	FailClosed                         int64
	FailReasons                        map[string]int
	RefusedReasons                     map[string]int
	Verdicts                           map[airlock.Verdict]int
	Sandboxed, Ran, Interrupted        int
	RunErrors                          map[string]int // approved runs that failed, by error
	AuditDecisions                     int
	ReviewsAccepted, ReviewsRefused    int64
}

func (f chaosFigures) String() string {
	return fmt.Sprintf("calls %d · decided %d %v · pending %d · undecided %d · fail-closed answers retried %d %v · sandboxed %d (ran %d, interrupted %d, failed %v) · audit decision events %d · reviews accepted %d, refused %d %v",
		f.Calls, f.Decided, f.Verdicts, f.Pending, f.Undecided, f.FailClosed, f.FailReasons, f.Sandboxed, f.Ran, f.Interrupted, f.RunErrors, f.AuditDecisions, f.ReviewsAccepted, f.ReviewsRefused, f.RefusedReasons)
}

// check asserts the chaos invariants: every call has exactly one final
// decision (or still waits and can be decided), no sandboxed call ran
// twice, the audit log verifies, and it holds exactly one decision event
// per call the agents saw decided.
func (l *chaosLoad) check(t *testing.T, ws, auditPath string) chaosFigures {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := chaosFigures{Calls: len(l.tools), Verdicts: map[airlock.Verdict]int{}, RunErrors: map[string]int{},
		ReviewsAccepted: l.accepted.Load(), ReviewsRefused: l.refused.Load(), FailClosed: l.failClosed.Load(), FailReasons: l.failReasons, RefusedReasons: l.refusedReasons}

	// Calls the agents gave up on must still be waiting and decidable.
	for id, err := range l.failed {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rep, rerr := l.reviewer.Review(ctx, airlock.Review{CallID: id, Action: airlock.ActionApprove, Reviewer: "rita", Reason: "after the chaos"})
		cancel()
		if rerr != nil || !rep.Accepted || rep.Decision == nil {
			t.Errorf("call %s (%s): no decision (%v), and not decidable (review: %q %v); %s", id, l.tools[id], err, rep.Error, rerr, l.diagnose(auditPath, id))
			f.Undecided++
			continue
		}
		f.Pending++
		l.got[id] = *rep.Decision
	}
	for id, d := range l.got {
		if !d.Final() || d.CallID != id {
			t.Errorf("call %s: the agent got a non-final or foreign decision %+v", id, d)
		}
		f.Verdicts[d.Verdict]++
	}
	f.Decided = len(l.got) - f.Pending

	// At most once: each sandboxed call id appears at most once in runs.log,
	// and exactly once when its run completed.
	runs := map[string]int{}
	if fh, err := os.Open(filepath.Join(ws, "runs.log")); err == nil {
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			runs[strings.TrimSpace(sc.Text())]++
		}
		fh.Close()
	}
	for id, tool := range l.tools {
		if tool != "run_shell" {
			continue
		}
		f.Sandboxed++
		n := runs[id]
		if n > 1 {
			t.Errorf("sandboxed call %s ran %d times", id, n)
		}
		d, ok := l.got[id]
		if !ok || d.Verdict != airlock.VerdictApproved {
			continue
		}
		switch {
		case d.Execution == nil:
			t.Errorf("sandboxed call %s approved without an execution: %+v", id, d)
		case d.Execution.LimitHit == "interrupted":
			f.Interrupted++
		case d.Execution.ExitCode == 0 && d.Execution.Error == "":
			f.Ran++
			if n != 1 {
				t.Errorf("sandboxed call %s completed but wrote %d lines", id, n)
			}
		default:
			e := d.Execution.Error + " " + strings.TrimSpace(d.Execution.Stderr)
			if len(e) > 80 {
				e = e[:80]
			}
			f.RunErrors[fmt.Sprintf("exit %d: %s", d.Execution.ExitCode, e)]++
		}
	}
	for id, n := range runs {
		if _, ok := l.tools[id]; !ok && id != "" {
			t.Errorf("runs.log names %q (%d runs), which nobody submitted", id, n)
		}
	}

	// The audit log: intact, one decision event per decided call.
	var out, errb strings.Builder
	if err := run(context.Background(), []string{"audit", "verify", "--db", auditPath}, nil, &out, &errb); err != nil {
		t.Errorf("audit verify: %v\n%s%s", err, out.String(), errb.String())
	}
	perCall, err := auditDecisions(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range perCall {
		f.AuditDecisions += n
		if n != 1 {
			t.Errorf("call %s (%s) has %d decision events in the audit log, want 1; %s", id, l.tools[id], n, l.diagnose(auditPath, id))
		}
		if _, ok := l.got[id]; !ok {
			t.Errorf("the audit log decides call %s, which no agent saw decided", id)
		}
	}
	for id := range l.got {
		if perCall[id] == 0 {
			t.Errorf("call %s was decided but has no decision event", id)
		}
	}
	if f.AuditDecisions != len(l.got) {
		t.Errorf("audit decision events %d, decisions the agents saw %d", f.AuditDecisions, len(l.got))
	}
	return f
}

// diagnose describes a call for a failure message: its audit events and
// the state of its record in the calls bucket.
func (l *chaosLoad) diagnose(auditPath, id string) string {
	var sb strings.Builder
	sb.WriteString("audit events:")
	if r, err := audit.OpenReadOnly(auditPath); err == nil {
		rows, _ := r.CallEvents(context.Background(), id)
		for _, row := range rows {
			fmt.Fprintf(&sb, " %d:%s@%s", row.Seq, row.Kind, row.TS)
			if row.Kind == airlock.EventDecision {
				var rec airlock.DecisionRecord
				if json.Unmarshal([]byte(row.Payload), &rec) == nil {
					fmt.Fprintf(&sb, "(%s by %s)", rec.Decision.Verdict, rec.Decision.DecidedBy)
				}
			}
		}
		r.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	js, err := jetstream.New(l.reviewer.Conn())
	if err == nil {
		if kv, err := js.KeyValue(ctx, "airlock_calls"); err == nil {
			if e, err := kv.Get(ctx, id); err == nil {
				var rec struct {
					State     string    `json:"state"`
					ClaimedBy string    `json:"claimed_by"`
					UpdatedAt time.Time `json:"updated_at"`
				}
				_ = json.Unmarshal(e.Value(), &rec)
				fmt.Fprintf(&sb, "; record: state %s, claimed by %q, updated %s", rec.State, rec.ClaimedBy, rec.UpdatedAt.UTC().Format(time.RFC3339Nano))
			}
		}
		if kv, err := js.KeyValue(ctx, "airlock_state"); err == nil {
			if _, err := kv.Get(ctx, "exec."+id); err == nil {
				sb.WriteString("; exec index present")
			} else {
				sb.WriteString("; no exec index")
			}
		}
	}
	return sb.String()
}

// auditDecisions counts decision events per call in the audit log.
func auditDecisions(path string) (map[string]int, error) {
	r, err := audit.OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rows, err := r.DB().Query(`select call_id, count(*) from decisions group by call_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// waitAuditDecisions waits until the audit log holds at least n decision
// events (the fleet's writer applies the stream asynchronously).
func waitAuditDecisions(path string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	got := 0
	for {
		m, err := auditDecisions(path)
		if err == nil {
			got = 0
			for _, c := range m {
				got += c
			}
			if got >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the audit log holds %d decision events after %s, want %d (last error %v)", got, timeout, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// keepChaosLogs copies a failed run's logs to $AIRLOCK_CHAOS_KEEP, when set.
func keepChaosLogs(t *testing.T, dir string) {
	keep := os.Getenv("AIRLOCK_CHAOS_KEEP")
	if keep == "" {
		return
	}
	ms, _ := filepath.Glob(filepath.Join(dir, "*.log*"))
	_ = os.MkdirAll(keep, 0o755)
	for _, m := range ms {
		if b, err := os.ReadFile(m); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(m)), b, 0o644)
		}
	}
	t.Logf("logs kept in %s", keep)
}

func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("min %s, median %s, max %s, mean %s", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), r(sum/time.Duration(len(s))))
}

// TestChaosEmbeddedKill9 kills the single embedded-mode `airlock serve`
// with SIGKILL ten times in a row under load, restarting it each time on
// the same --data: nothing is decided twice, nothing runs twice, nothing is
// lost, and the audit chain holds.
func TestChaosEmbeddedKill9(t *testing.T) {
	testenv.Chaos(t)
	dir := t.TempDir()
	policyPath, ws := chaosSetup(t, dir)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	data := filepath.Join(dir, "data")
	serve := func(i int) *exec.Cmd {
		lp := filepath.Join(dir, fmt.Sprintf("serve%d.log", i))
		cmd := startProcess(t, lp, "serve", "--data", data, "--policy", policyPath, "--listen", addr, "--log", lp+".slog")
		waitListening(t, addr, lp)
		return cmd
	}
	cur := serve(0)
	start := time.Now()
	l := startLoad(t, "nats://"+addr, 4, 90*time.Second)
	if err := l.waitDecided(5, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	const kills = 10
	var recoveries []time.Duration
	for k := 1; k <= kills; k++ {
		kill9(t, cur)
		killed := time.Now()
		waitClosed(t, addr)
		before := l.decided.Load()
		cur = serve(k)
		// Recovered: the first decision an agent receives after the kill.
		if err := l.waitDecided(before, 45*time.Second); err != nil {
			t.Fatalf("after kill %d: %v\n%s", k, err, tailLogs(dir, "serve*.log*"))
		}
		recoveries = append(recoveries, time.Since(killed))
		// Let the load run a little before the next kill.
		if err := l.waitDecided(l.decided.Load()+2, 45*time.Second); err != nil {
			t.Fatalf("after kill %d: %v\n%s", k, err, tailLogs(dir, "serve*.log*"))
		}
	}
	l.drain()
	elapsed := time.Since(start)
	f := l.check(t, ws, audit.PathIn(data))
	if t.Failed() {
		// Where the running broker stands: its goroutines (SIGQUIT) and logs.
		_ = cur.Process.Signal(syscall.SIGQUIT)
		time.Sleep(time.Second)
		keepChaosLogs(t, dir)
	}
	t.Logf("embedded kill -9 ×%d in %s: %s", kills, elapsed.Round(100*time.Millisecond), f)
	t.Logf("time to recover (kill to the next decision): %s", durations(recoveries))
}

// settle finishes a fleet chaos run: drain the load, wait until the
// leased writer has applied every decision to the shared audit database,
// and check the invariants.
func (f *fleet) settle(t *testing.T, l *chaosLoad, ws string) chaosFigures {
	t.Helper()
	l.drain()
	l.mu.Lock()
	n := len(l.got)
	l.mu.Unlock()
	if err := waitAuditDecisions(f.auditDB, n, 30*time.Second); err != nil {
		t.Errorf("%v\n%s", err, brokerLogs(f.dir))
	}
	return l.check(t, ws, f.auditDB)
}

// TestChaosFleetNATSNodeKill kills one NATS node of three with SIGKILL under
// load (the node leading the calls bucket, the harshest choice) and brings
// it back: two brokers keep deciding throughout, nothing is lost or decided
// twice.
func TestChaosFleetNATSNodeKill(t *testing.T) {
	testenv.Chaos(t)
	dir := t.TempDir()
	policyPath, ws := chaosSetup(t, dir)
	f := startFleet(t, policyPath, 2)
	start := time.Now()
	l := startLoad(t, f.cluster.URLs(), 4, 90*time.Second)
	if err := l.waitDecided(10, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, brokerLogs(f.dir))
	}
	js, err := jetstream.New(l.reviewer.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	leader, err := fleettest.StreamLeader(ctx, js, "KV_airlock_calls")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	victim := f.cluster.Index(leader)
	if victim < 0 {
		t.Fatalf("calls bucket led by unknown server %q", leader)
	}
	before := l.decided.Load()
	f.cluster.Kill(victim)
	killed := time.Now()
	if err := l.waitDecided(before, 45*time.Second); err != nil {
		t.Fatalf("after killing %s: %v\n%s", leader, err, brokerLogs(f.dir))
	}
	recoverKill := time.Since(killed)
	if err := l.waitDecided(l.decided.Load()+10, 45*time.Second); err != nil {
		t.Fatalf("with %s down: %v\n%s", leader, err, brokerLogs(f.dir))
	}
	downDecisions := l.decided.Load() - before
	f.cluster.Restart(victim)
	restarted := time.Now()
	mark := l.decided.Load()
	if err := l.waitDecided(mark+10, 45*time.Second); err != nil {
		t.Fatalf("after %s came back: %v\n%s\n%s", leader, err, brokerLogs(f.dir), f.cluster.Logs())
	}
	recoverBack := time.Since(restarted)
	fig := f.settle(t, l, ws)
	t.Logf("NATS node kill -9 (%s, leader of the calls bucket) in %s: %s", leader, time.Since(start).Round(100*time.Millisecond), fig)
	t.Logf("kill to the next decision %s; %d decisions while it was down; restart to 10 more decisions %s",
		recoverKill.Round(10*time.Millisecond), downDecisions, recoverBack.Round(10*time.Millisecond))
}

// TestChaosFleetBrokerKill kills brokers with SIGKILL under load: first the
// one holding the audit writer lease, then (after restarting it under the
// same name) the new writer. The other broker takes the lease over, the
// audit log continues without gap or duplicate, and nothing is decided or
// run twice.
func TestChaosFleetBrokerKill(t *testing.T) {
	testenv.Chaos(t)
	dir := t.TempDir()
	policyPath, ws := chaosSetup(t, dir)
	f := startFleet(t, policyPath, 2)
	start := time.Now()
	l := startLoad(t, f.cluster.URLs(), 4, 100*time.Second)
	if err := l.waitDecided(10, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, brokerLogs(f.dir))
	}
	nc := l.reviewer.Conn()
	var recoveries, takeovers []time.Duration
	holder := ""
	for round := 1; round <= 2; round++ {
		h, err := f.waitLeaseHolder(nc, "", 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		holder = h
		before := l.decided.Load()
		f.kill(holder)
		killed := time.Now()
		// Measure the next decision and the lease takeover side by side.
		decidedAt := make(chan error, 1)
		var recovered time.Duration
		go func() {
			err := l.waitDecided(before, 45*time.Second)
			recovered = time.Since(killed)
			decidedAt <- err
		}()
		next, err := f.waitLeaseHolder(nc, holder, 30*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, brokerLogs(f.dir))
		}
		takeovers = append(takeovers, time.Since(killed))
		if err := <-decidedAt; err != nil {
			t.Fatalf("round %d, after killing %s: %v\n%s", round, holder, err, brokerLogs(f.dir))
		}
		recoveries = append(recoveries, recovered)
		t.Logf("round %d: killed the audit writer %s; %s took the lease over", round, holder, next)
		// Back under the same name: its orphaned sandbox runs are recorded
		// interrupted at once.
		f.startBroker(holder)
		f.waitBrokers(2)
		if err := l.waitDecided(l.decided.Load()+10, 45*time.Second); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	fig := f.settle(t, l, ws)
	t.Logf("broker kill -9 ×2 (each time the audit writer) in %s: %s", time.Since(start).Round(100*time.Millisecond), fig)
	t.Logf("kill to the next decision: %s; kill to the new writer's lease: %s", durations(recoveries), durations(takeovers))
}

// TestFleetReviewRace: two reviewers decide the same calls at the same
// moment, through a fleet of two brokers (the review requests spread over
// both). For every call exactly one verdict is accepted, the other
// reviewer is told who decided, the agent gets the winner's verdict and
// the audit log holds one decision.
func TestFleetReviewRace(t *testing.T) {
	dir := t.TempDir()
	policyPath, _ := chaosSetup(t, dir)
	f := startFleet(t, policyPath, 2)
	agents := f.client(f.cluster.URLs())
	rita := f.client(f.cluster.Nodes[0].URL)
	sam := f.client(f.cluster.Nodes[1].URL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const calls = 24
	decisions := make(chan airlock.Decision, calls)
	for i := range calls {
		go func() {
			d, err := agents.Submit(ctx, &airlock.ToolCall{ID: fmt.Sprintf("race%02d", i), Agent: "mailer", User: "u1",
				Tool: "send_email", Arguments: map[string]any{"to": "ops@example.com", "n": i}})
			if err != nil {
				t.Error(err)
			}
			decisions <- d
		}()
	}
	for {
		ps, err := rita.Pending(ctx)
		if err == nil && len(ps) == calls {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d calls pending: %v", len(ps), calls, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	winners := map[string]string{}
	for i := range calls {
		id := fmt.Sprintf("race%02d", i)
		var reps [2]airlock.ReviewReply
		var errs [2]error
		var wg sync.WaitGroup
		startGun := make(chan struct{})
		for j, r := range []struct {
			c      *client.Client
			who    string
			action airlock.ReviewAction
		}{{rita, "rita", airlock.ActionApprove}, {sam, "sam", airlock.ActionDeny}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startGun
				reps[j], errs[j] = r.c.Review(ctx, airlock.Review{CallID: id, Action: r.action, Reviewer: r.who})
			}()
		}
		close(startGun)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("%s: review errors %v", id, errs)
		}
		if reps[0].Accepted == reps[1].Accepted {
			t.Fatalf("%s: accepted %v and %v, want exactly one (%+v / %+v)", id, reps[0].Accepted, reps[1].Accepted, reps[0], reps[1])
		}
		win, lose := "reviewer:rita", reps[1]
		if reps[1].Accepted {
			win, lose = "reviewer:sam", reps[0]
		}
		winners[id] = win
		if !strings.HasPrefix(lose.Error, "already") || !strings.Contains(lose.Error, win) || lose.DecidedBy != win {
			t.Errorf("%s: the loser was told %q (decided by %q), want \"already … by %s\"", id, lose.Error, lose.DecidedBy, win)
		}
	}
	for range calls {
		d := <-decisions
		if d.DecidedBy != winners[d.CallID] {
			t.Errorf("%s: the agent got a decision by %q, the accepted verdict was %s's", d.CallID, d.DecidedBy, winners[d.CallID])
		}
	}
	perBroker := served(t, agents.Conn(), "review")
	t.Logf("review requests answered per broker: %v", perBroker)
	if len(perBroker) != 2 {
		t.Errorf("review requests reached brokers %v, want both", perBroker)
	}
	if err := waitAuditDecisions(f.auditDB, calls, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	perCall, err := auditDecisions(f.auditDB)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range perCall {
		if n != 1 {
			t.Errorf("%s: %d decision events, want 1", id, n)
		}
	}
}

package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auditstream"
	"github.com/airlock/airlock/sandbox"
)

// decoded is the call as the broker decodes it from the wire.
func decoded(t *testing.T, c *airlock.ToolCall) *airlock.ToolCall {
	t.Helper()
	body, _ := json.Marshal(c)
	dc, err := broker.DecodeCall(body, c.Agent, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// stageClaim writes what a broker leaves when it dies mid-evaluation: the
// call's record "evaluating", claimed by owner, last updated at at. It
// returns the call as decoded.
func stageClaim(t *testing.T, calls jetstream.KeyValue, c *airlock.ToolCall, owner string, at time.Time) *airlock.ToolCall {
	t.Helper()
	dc := decoded(t, c)
	rec, _ := json.Marshal(map[string]any{"state": "evaluating", "fingerprint": broker.Fingerprint(dc), "call": dc,
		"claimed_by": owner, "updated_at": at.UTC()})
	if _, err := calls.Create(context.Background(), c.ID, rec); err != nil {
		t.Fatal(err)
	}
	return dc
}

// TestTakeoverOfADeadBrokersCall stages what a broker killed mid-decision
// leaves behind (a call record "evaluating", claimed by it, and perhaps a
// decision already in the audit log) and submits the call again, as its
// agent's retry does, to the broker restarted under the same name: the
// claim is taken over at once, not after evaluatingTimeout. The decision
// already audited stands and is never made twice; an approved sandboxed
// call whose run never started is recorded interrupted and not run; a call
// with nothing audited is decided afresh. Both audit logs: the embedded
// SQLite log and the fleet's audit stream.
func TestTakeoverOfADeadBrokersCall(t *testing.T) {
	for _, mode := range []string{"sqlite", "stream"} {
		t.Run(mode, func(t *testing.T) { testTakeover(t, mode) })
	}
}

// takeoverAudit is what the test needs from either audit log.
type takeoverAudit struct {
	auditor    airlock.Auditor
	decisions  func(id string) int // decision events for the call
	executions func(id string) int // execution events for the call
}

func testTakeover(t *testing.T, mode string) {
	ws := t.TempDir()
	pol := strings.Replace(testPolicy, "tools:\n", fmt.Sprintf(`tools:
  run_shell:
    tier: auto
    sandbox: {backend: native, lang: shell, timeout: 10s, memory: 64MiB, workspace: %q, workspace_rw: true}
`, ws), 1)
	h := startHarness(t, testPolicy)
	h.stopBroker()
	nc, err := nats.Connect(h.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var al takeoverAudit
	switch mode {
	case "sqlite":
		count := func(kind, id string) int {
			var n int
			if err := h.db().QueryRow(`select count(*) from events where kind = ? and call_id = ?`, kind, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		al = takeoverAudit{
			decisions:  func(id string) int { return count(airlock.EventDecision, id) },
			executions: func(id string) int { return count(airlock.EventExecution, id) },
		}
	case "stream":
		if err := auditstream.Setup(t.Context(), js, 1, time.Second); err != nil {
			t.Fatal(err)
		}
		pub := auditstream.NewPublisher(js)
		// count reads the whole (small) stream.
		count := func(kind, id string) int {
			st, err := js.Stream(t.Context(), auditstream.StreamName)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
				m, err := st.GetMsg(t.Context(), seq)
				if err == nil && m.Header.Get("Airlock-Kind") == kind && m.Header.Get("Airlock-Call") == id {
					n++
				}
			}
			return n
		}
		al = takeoverAudit{
			auditor:    pub,
			decisions:  func(id string) int { return count(airlock.EventDecision, id) },
			executions: func(id string) int { return count(airlock.EventExecution, id) },
		}
	}
	var runs atomic.Int32
	h.bootWith(pol, func(c *broker.Config) {
		if al.auditor != nil {
			c.Audit = al.auditor
		}
		al.auditor = c.Audit
		c.Sandbox = func(backend string) (sandbox.Runner, error) {
			runs.Add(1)
			return nil, fmt.Errorf("no run expected in this test")
		}
	})
	calls, err := js.KeyValue(context.Background(), "airlock_calls")
	if err != nil {
		t.Fatal(err)
	}
	// stage writes the dead broker's record, and its audited decision when
	// audited is set.
	stage := func(c *airlock.ToolCall, audited *airlock.Decision) {
		t.Helper()
		// Claimed just now by an earlier incarnation of this broker's name.
		dc := stageClaim(t, calls, c, "test-broker", time.Now())
		if audited != nil {
			if _, err := al.auditor.Append(context.Background(), airlock.Event{Kind: airlock.EventDecision, CallID: c.ID, TS: time.Now(),
				Payload: airlock.DecisionRecord{Call: *dc, Decision: *audited}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	approved := func(id string) *airlock.Decision {
		return &airlock.Decision{CallID: id, Verdict: airlock.VerdictApproved, Tier: airlock.TierAuto, DecidedBy: "policy",
			Reason: "decided by the dead broker", DecidedAt: time.Now().UTC(), Risk: airlock.Risk{Band: airlock.BandLow, Factors: []airlock.Factor{}}}
	}

	t.Run("audited-decision-stands", func(t *testing.T) {
		c := call("t-audited", "bot", "search_web", map[string]any{"query": "weather"})
		stage(c, approved(c.ID))
		d := h.submit(c)
		if d.Verdict != airlock.VerdictApproved || d.Reason != "decided by the dead broker" || d.AuditSeq == 0 {
			t.Fatalf("got %+v, want the dead broker's audited approval", d)
		}
		if n := al.decisions(c.ID); n != 1 {
			t.Fatalf("%d decision events, want exactly the one audited before the takeover", n)
		}
	})
	t.Run("audited-sandboxed-approval-is-interrupted", func(t *testing.T) {
		c := call("t-sandboxed", "bot", "run_shell", map[string]any{"command": "echo hi >> /workspace/runs.log"})
		stage(c, approved(c.ID))
		d := h.submit(c)
		if d.Verdict != airlock.VerdictApproved || d.Execution == nil || d.Execution.LimitHit != "interrupted" || d.Execution.Backend != "native" {
			t.Fatalf("got %+v (execution %+v), want the approval with an interrupted execution", d, d.Execution)
		}
		if n := al.decisions(c.ID); n != 1 {
			t.Fatalf("%d decision events, want 1", n)
		}
		if n := al.executions(c.ID); n != 1 {
			t.Fatalf("%d execution events, want the interruption recorded once", n)
		}
		if runs.Load() != 0 {
			t.Fatalf("the sandbox was opened %d times, want never", runs.Load())
		}
		if b, _ := os.ReadFile(ws + "/runs.log"); len(b) != 0 {
			t.Fatalf("the workspace shows a run: %q", b)
		}
	})
	if mode == "stream" {
		// The broker presumed dead was alive: its decision is already in
		// the stream (its record write not yet landed) when this broker
		// evaluates the call afresh. The stream refuses a second decision
		// for the call, and the first stands.
		t.Run("second-decision-refused-by-the-stream", func(t *testing.T) {
			c := call("t-fenced", "bot", "search_web", map[string]any{"query": "fenced"})
			dc := decoded(t, c)
			first := approved(c.ID)
			if _, err := al.auditor.Append(context.Background(), airlock.Event{Kind: airlock.EventDecision, CallID: c.ID, TS: time.Now(),
				Payload: airlock.DecisionRecord{Call: *dc, Decision: *first}}); err != nil {
				t.Fatal(err)
			}
			d := h.submit(c)
			if d.Verdict != airlock.VerdictApproved || d.Reason != "decided by the dead broker" {
				t.Fatalf("got %+v, want the decision audited first", d)
			}
			if n := al.decisions(c.ID); n != 1 {
				t.Fatalf("%d decision events, want 1: the stream must refuse a second", n)
			}
		})
	}
	t.Run("nothing-audited-is-decided-afresh", func(t *testing.T) {
		c := call("t-fresh", "bot", "search_web", map[string]any{"query": "news"})
		stage(c, nil)
		d := h.submit(c)
		if d.Verdict != airlock.VerdictApproved || d.DecidedBy != "policy" || d.Reason == "decided by the dead broker" {
			t.Fatalf("got %+v, want a fresh policy approval", d)
		}
		if n := al.decisions(c.ID); n != 1 {
			t.Fatalf("%d decision events, want 1", n)
		}
	})
}

// flakyAuditor fails the first n appends of one kind, as the fleet's audit
// stream does while its leader is being elected.
type flakyAuditor struct {
	next airlock.Auditor
	kind string
	n    atomic.Int32
}

func (f *flakyAuditor) Append(ctx context.Context, ev airlock.Event) (airlock.Receipt, error) {
	if ev.Kind == f.kind && f.n.Add(-1) >= 0 {
		return airlock.Receipt{}, fmt.Errorf("%w: no responders (leader election)", audit.ErrUnavailable)
	}
	return f.next.Append(ctx, ev)
}

// TestRunResultAuditedThroughAnOutage: a sandboxed run that finished while
// the audit log briefly refused appends still has its result audited
// (once), and the agent is not told it went unaudited.
func TestRunResultAuditedThroughAnOutage(t *testing.T) {
	ws := t.TempDir()
	pol := strings.Replace(testPolicy, "tools:\n", fmt.Sprintf(`tools:
  run_shell:
    tier: auto
    sandbox: {backend: native, lang: shell, timeout: 10s, memory: 128MiB, workspace: %q, workspace_rw: true}
`, ws), 1)
	h := startHarness(t, pol)
	h.stopBroker()
	flaky := &flakyAuditor{kind: airlock.EventExecution}
	flaky.n.Store(3)
	h.bootWith(pol, func(c *broker.Config) {
		c.Sandbox = func(backend string) (sandbox.Runner, error) { return sandbox.Open(backend) }
		flaky.next = c.Audit
		c.Audit = flaky
	})
	d := h.submit(call("ro1", "ops", "run_shell", map[string]any{"command": "echo ran"}))
	ex := d.Execution
	if d.Verdict != airlock.VerdictApproved || ex == nil || ex.ExitCode != 0 || ex.Error != "" || !strings.Contains(ex.Stdout, "ran") {
		t.Fatalf("got %s %q, execution %+v; want a clean run", d.Verdict, d.Reason, ex)
	}
	var n int
	if err := h.db().QueryRow(`select count(*) from events where kind = 'execution' and call_id = 'ro1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("execution events %d (%v), want 1", n, err)
	}
	if left := flaky.n.Load(); left >= 0 {
		t.Fatalf("the auditor still had %d failures to give: the outage was not exercised", left+1)
	}
}

// TestPinnedAgentCannotInventUsers: an agent pinned to users under
// `agents:` is denied for anyone else before rate-limit budget is taken,
// so inventing users neither gets calls through nor buys fresh budgets.
func TestPinnedAgentCannotInventUsers(t *testing.T) {
	pol := strings.Replace(testPolicy, "  support-bot: {tools: [search_faq, create_ticket]}",
		"  support-bot: {tools: [search_faq, create_ticket], users: [alice]}", 1) +
		"limits:\n  - {scope: user, requests_per_minute: 1}\n"
	h := startHarness(t, pol)
	c := call("pin1", "support-bot", "search_faq", map[string]any{"q": "refunds"})
	c.User = "alice"
	if d := h.submit(c); d.Verdict != airlock.VerdictApproved {
		t.Fatalf("alice's first call: %s %q, want approved", d.Verdict, d.Reason)
	}
	for i := range 3 {
		c := call(fmt.Sprintf("pin-mallory%d", i), "support-bot", "search_faq", map[string]any{"q": "refunds"})
		c.User = fmt.Sprintf("mallory%d", i)
		d := h.submit(c)
		if d.Verdict != airlock.VerdictDenied || d.DecidedBy != "policy" || !strings.Contains(d.Reason, "may not act for user") {
			t.Fatalf("call for an invented user: %s by %s %q, want denied by policy", d.Verdict, d.DecidedBy, d.Reason)
		}
	}
	// Everything with activity: alice's budget only, no invented user's.
	m, err := h.nc.Request("airlock.admin.limits", []byte(`{}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Data), "mallory") || !strings.Contains(string(m.Data), `"alice"`) {
		t.Fatalf("usage %s: want alice's budget and no invented user's", m.Data)
	}
	c = call("pin2", "support-bot", "search_faq", map[string]any{"q": "refunds"})
	c.User = "alice"
	if d := h.submit(c); d.Verdict != airlock.VerdictRateLimited {
		t.Fatalf("alice's second call in the minute: %s %q, want rate_limited", d.Verdict, d.Reason)
	}
}

// TestFleetTakeoverByLiveness: in a fleet (not Exclusive), an "evaluating"
// claim whose broker's heartbeat is gone is taken over at once, not after
// the 30 s evaluatingTimeout; a claim whose broker still beats is waited
// for, and taken over as soon as the beat stops.
func TestFleetTakeoverByLiveness(t *testing.T) {
	h := startHarness(t, testPolicy)
	js, err := jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	calls, err := js.KeyValue(ctx, broker.BucketCalls)
	if err != nil {
		t.Fatal(err)
	}
	brokers, err := js.KeyValue(ctx, broker.BucketBrokers)
	if err != nil {
		t.Fatalf("the fleet broker has no liveness bucket: %v", err)
	}
	if _, err := brokers.Get(ctx, "test-broker"); err != nil {
		t.Fatalf("the broker's own heartbeat: %v", err)
	}
	// A claim 16 s old (older than a heartbeat's life) by owner.
	stage := func(c *airlock.ToolCall, owner string) {
		t.Helper()
		stageClaim(t, calls, c, owner, time.Now().Add(-16*time.Second))
	}

	dead := call("live-dead", "bot", "search_web", map[string]any{"query": "a"})
	stage(dead, "b-dead")
	start := time.Now()
	if d := h.submit(dead); d.Verdict != airlock.VerdictApproved {
		t.Fatalf("claim of a broker without a heartbeat: %s %q, want approved", d.Verdict, d.Reason)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the takeover took %s, want at once", took)
	}

	alive := call("live-alive", "bot", "search_web", map[string]any{"query": "b"})
	if _, err := brokers.Put(ctx, "b-alive", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	stage(alive, "b-alive")
	wctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	_, err = h.client.Submit(wctx, alive)
	cancel()
	if err == nil {
		t.Fatal("a live broker's claim was taken over")
	}
	got := h.submitAsync(alive)
	if err := brokers.Delete(ctx, "b-alive"); err != nil { // it stops beating
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d.Verdict != airlock.VerdictApproved {
			t.Fatalf("after the beat stopped: %s %q, want approved", d.Verdict, d.Reason)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the claim was not taken over after its broker's heartbeat stopped")
	}
	if n := len(h.decisionRows(alive.ID)); n != 1 {
		t.Fatalf("%d decision events, want 1", n)
	}
}

// TestFleetReviewClaimReturnedByLiveness: a reviewer's claim ("deciding")
// left by a broker whose heartbeat is gone goes back to the queue on the
// next sweep (seconds), not after the 30 s evaluatingTimeout; another
// reviewer then decides the call.
func TestFleetReviewClaimReturnedByLiveness(t *testing.T) {
	h := startHarness(t, testPolicy)
	got := h.submitAsync(call("claim-dead", "bot", "send_email", map[string]any{"to": "x@acme.com"}))
	h.waitPending("claim-dead")
	js, err := jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	calls, err := js.KeyValue(t.Context(), broker.BucketCalls)
	if err != nil {
		t.Fatal(err)
	}
	e, err := calls.Get(t.Context(), "claim-dead")
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	// A reviewer's verdict was being decided by broker b-dead, which died.
	rec["state"], rec["claimed_by"], rec["broker"] = "deciding", "reviewer:rita", "b-dead"
	rec["updated_at"] = time.Now().Add(-16 * time.Second).UTC()
	data, _ := json.Marshal(rec)
	if _, err := calls.Update(t.Context(), "claim-dead", data, e.Revision()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		rep, err := h.client.Review(t.Context(), airlock.Review{CallID: "claim-dead", Action: airlock.ActionApprove, Reviewer: "carol", Reason: "ok"})
		if err == nil && rep.Accepted {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("the dead broker's claim still blocks the call: %q", rep.Error)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case d := <-got:
		if d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:carol" {
			t.Fatalf("got %s by %s, want approved by reviewer:carol", d.Verdict, d.DecidedBy)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the agent got no decision")
	}
}

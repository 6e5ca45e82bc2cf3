package broker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/ratelimit"
	"github.com/airlock/airlock/broker/risk"
)

const testPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  search_web:  {tier: auto}
  read_file:   {tier: notify,
                rules: [{when: 'args.path.startsWith("/etc/")', tier: approve, risk: 40, reason: sensitive path}]}
  send_email:  {tier: approve}
  execute_sql: {tier: approve}
  delete_record:      {tier: deny}
  search_faq: {tier: auto}
  create_ticket: {tier: auto}
agents:
  support-bot: {tools: [search_faq, create_ticket]}
orgs:
  acme: {mail_domains: [acme.com], hosts: [acme.com]}
`

// harness is a real broker: embedded NATS with JetStream on a random port, a
// real SQLite audit log, the real policy engine, scorer and limiter.
type harness struct {
	t      testing.TB
	dir    string
	srv    *server.Server
	nc     *nats.Conn
	b      *broker.Broker
	log    *audit.Log
	client *client.Client
	pol    *policy.Policy
}

func startHarness(t testing.TB, policyYAML string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	h.boot(policyYAML)
	return h
}

func (h *harness) boot(policyYAML string) { h.bootWithLog(policyYAML) }

func (h *harness) bootWithLog(policyYAML string, logOpts ...audit.Option) {
	h.bootFull(policyYAML, nil, logOpts...)
}

// bootWith boots with a hook that adjusts the broker's configuration.
func (h *harness) bootWith(policyYAML string, adjust func(*broker.Config)) {
	h.bootFull(policyYAML, adjust)
}

func (h *harness) bootFull(policyYAML string, adjust func(*broker.Config), logOpts ...audit.Option) {
	t := h.t
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	h.pol = pol
	if h.srv == nil {
		h.srv, err = broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(h.dir, "nats")})
		if err != nil {
			t.Fatal(err)
		}
	}
	h.log, err = audit.Open(audit.PathIn(h.dir), logOpts...)
	if err != nil {
		t.Fatal(err)
	}
	h.nc, err = nats.Connect(h.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	var lim *ratelimit.Limiter
	if len(pol.Limits) > 0 {
		lim = ratelimit.New(pol.Limits, ratelimit.NewMemoryStore())
	}
	cfg := broker.Config{Policy: pol, Audit: h.log, Scorer: risk.New(pol), Limiter: lim, Name: "test-broker"}
	if adjust != nil {
		adjust(&cfg)
	}
	h.b, err = broker.New(h.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.client, err = client.New(h.nc, client.WithAttemptTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
}

func (h *harness) stopBroker() {
	if h.b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.b.Close(ctx)
	h.nc.Close()
	_ = h.log.Close(ctx)
	h.b = nil
}

func (h *harness) stop() {
	h.stopBroker()
	if h.srv != nil {
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
		h.srv = nil
	}
}

// raw sends a body on the submit subject as any NATS client would.
func (h *harness) raw(agent, body string) airlock.Decision {
	h.t.Helper()
	m, err := h.nc.Request("airlock.submit."+agent, []byte(body), 10*time.Second)
	if err != nil {
		h.t.Fatalf("request: %v", err)
	}
	var d airlock.Decision
	if err := json.Unmarshal(m.Data, &d); err != nil {
		h.t.Fatalf("reply %q: %v", m.Data, err)
	}
	return d
}

func (h *harness) submit(c *airlock.ToolCall) airlock.Decision {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := h.client.Submit(ctx, c)
	if err != nil {
		h.t.Fatalf("submit %s: %v", c.ID, err)
	}
	return d
}

// submitAsync submits in the background and returns a channel with the decision.
func (h *harness) submitAsync(c *airlock.ToolCall) <-chan airlock.Decision {
	ch := make(chan airlock.Decision, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := h.client.Submit(ctx, c)
		if err != nil {
			d = airlock.Decision{Reason: "submit error: " + err.Error()}
		}
		ch <- d
	}()
	return ch
}

func (h *harness) waitPending(id string) airlock.Pending {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ps, err := h.client.Pending(context.Background())
		if err == nil {
			for _, p := range ps {
				if p.Call.ID == id {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("call %s never became pending", id)
	return airlock.Pending{}
}

func (h *harness) db() *sql.DB {
	h.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+audit.PathIn(h.dir)+"?mode=ro")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	return db
}

func (h *harness) decisionRows(id string) []string {
	h.t.Helper()
	rows, err := h.db().Query(`select verdict || '/' || decided_by from decisions where call_id = ?`, id)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

func call(id, agent, tool string, args map[string]any) *airlock.ToolCall {
	return &airlock.ToolCall{ID: id, Agent: agent, User: "u1", Org: "acme", Session: "s1", Tool: tool, Arguments: args}
}

func TestTiers(t *testing.T) {
	h := startHarness(t, testPolicy)
	tests := []struct {
		name        string
		call        *airlock.ToolCall
		wantVerdict airlock.Verdict
		wantBy      string
		wantReason  string
	}{
		{"auto-tier", call("t1", "a1", "search_web", map[string]any{"query": "weather"}), airlock.VerdictApproved, "policy", ""},
		{"notify-tier", call("t2", "a1", "read_file", map[string]any{"path": "docs/readme.md"}), airlock.VerdictApproved, "policy", ""},
		{"unknown-tool", call("t3", "a1", "launch_missiles", map[string]any{}), airlock.VerdictDenied, "policy", "launch_missiles"},
		{"deny-tier", call("t4", "a1", "delete_record", map[string]any{"id": 1}), airlock.VerdictDenied, "policy", "delete_record"},
		{"outside-manifest", call("t5", "support-bot", "search_web", map[string]any{"query": "x"}), airlock.VerdictDenied, "policy", "manifest"},
		{"inside-manifest", call("t6", "support-bot", "search_faq", map[string]any{"query": "refunds"}), airlock.VerdictApproved, "policy", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := h.submit(tt.call)
			if d.Verdict != tt.wantVerdict || d.DecidedBy != tt.wantBy {
				t.Fatalf("got %s/%s (%s), want %s/%s", d.Verdict, d.DecidedBy, d.Reason, tt.wantVerdict, tt.wantBy)
			}
			if tt.wantReason != "" && !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("reason %q does not mention %q", d.Reason, tt.wantReason)
			}
			if d.AuditSeq == 0 {
				t.Errorf("decision has no audit seq")
			}
			if rows := h.decisionRows(tt.call.ID); len(rows) != 1 {
				t.Errorf("audit rows %v, want exactly one", rows)
			}
		})
	}
}

func TestNotifyIsPublished(t *testing.T) {
	h := startHarness(t, testPolicy)
	sub, err := h.nc.SubscribeSync("airlock.notify.a1")
	if err != nil {
		t.Fatal(err)
	}
	h.submit(call("n1", "a1", "read_file", map[string]any{"path": "docs/a.md"}))
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no notify message: %v", err)
	}
	var r airlock.DecisionRecord
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Call.ID != "n1" {
		t.Fatalf("notify payload %s: %v", m.Data, err)
	}
}

func TestRuleRaisesTier(t *testing.T) {
	h := startHarness(t, testPolicy)
	ch := h.submitAsync(call("r1", "a1", "read_file", map[string]any{"path": "/etc/shadow"}))
	p := h.waitPending("r1")
	if p.Tier != airlock.TierApprove {
		t.Fatalf("tier %s, want approve", p.Tier)
	}
	found := false
	for _, f := range p.Risk.Factors {
		if f.Name == "policy_rule" && f.Points == 40 {
			found = true
		}
	}
	if !found {
		t.Errorf("risk factors %+v lack the rule's 40 points", p.Risk.Factors)
	}
	rep, err := h.client.Review(context.Background(), airlock.Review{CallID: "r1", Action: airlock.ActionDeny, Reviewer: "bob", Reason: "no"})
	if err != nil || !rep.Accepted {
		t.Fatalf("review: %+v %v", rep, err)
	}
	if d := <-ch; d.Verdict != airlock.VerdictDenied || d.DecidedBy != "reviewer:bob" {
		t.Fatalf("got %s/%s, want denied/reviewer:bob", d.Verdict, d.DecidedBy)
	}
}

func TestMalformedInput(t *testing.T) {
	h := startHarness(t, testPolicy)
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	tests := []struct {
		name, body, want string
	}{
		{"truncated-json", `{"id":"m1","agent":"a1","tool":`, "malformed JSON"},
		{"unknown-field", `{"id":"m2","agent":"a1","tool":"search_web","arguments":{},"evil":1}`, "unknown field"},
		{"wrong-type", `{"id":"m3","agent":"a1","tool":"search_web","arguments":"x"}`, "arguments"},
		{"not-utf8", "{\"id\":\"m4\",\"agent\":\"a1\",\"tool\":\"search_web\",\"arguments\":{\"q\":\"\xff\xfe\"}}", "UTF-8"},
		{"too-deep", `{"id":"m5","agent":"a1","tool":"search_web","arguments":` + deep + `}`, "deep"},
		{"too-big", `{"id":"m6","agent":"a1","tool":"search_web","arguments":{"q":"` + strings.Repeat("x", 1<<20) + `"}}`, "bytes"},
		{"agent-mismatch", `{"id":"m7","agent":"other","tool":"search_web","arguments":{}}`, "does not match"},
		{"bad-id", `{"id":"a.b c","agent":"a1","tool":"search_web","arguments":{}}`, "id"},
		{"not-an-object", `[1,2,3]`, "object"},
		{"trailing-data", `{"id":"m8","agent":"a1","tool":"search_web","arguments":{}} {}`, "trailing"},
		{"missing-tool", `{"id":"m9","agent":"a1","arguments":{}}`, "tool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := h.raw("a1", tt.body)
			if d.Verdict != airlock.VerdictRejected {
				t.Fatalf("got verdict %q (%s), want rejected", d.Verdict, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.want) {
				t.Errorf("reason %q does not mention %q", d.Reason, tt.want)
			}
			if d.AuditSeq == 0 {
				t.Errorf("rejected call not audited")
			}
		})
	}
	// The server lives on.
	if d := h.submit(call("after", "a1", "search_web", map[string]any{"q": "x"})); d.Verdict != airlock.VerdictApproved {
		t.Fatalf("after bad input: %s", d.Verdict)
	}
}

func TestIdempotency(t *testing.T) {
	h := startHarness(t, testPolicy)
	first := h.submit(call("i1", "a1", "search_web", map[string]any{"q": "x"}))
	again := h.submit(call("i1", "a1", "search_web", map[string]any{"q": "x"}))
	if again.AuditSeq != first.AuditSeq || again.Verdict != first.Verdict {
		t.Fatalf("resubmission got %+v, want the recorded %+v", again, first)
	}
	conflict := h.submit(call("i1", "a1", "search_web", map[string]any{"q": "different"}))
	if conflict.Verdict != airlock.VerdictRejected || !strings.Contains(conflict.Reason, "already used") {
		t.Fatalf("conflicting id: %s %q", conflict.Verdict, conflict.Reason)
	}
	if rows := h.decisionRows("i1"); len(rows) != 1 {
		t.Fatalf("decisions for i1: %v, want one", rows)
	}
	// Concurrent duplicates of a pending call wait on the same decision.
	var wg sync.WaitGroup
	results := make(chan airlock.Decision, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- <-h.submitAsync(call("i2", "a1", "execute_sql", map[string]any{"query": "SELECT 1"}))
		}()
	}
	h.waitPending("i2")
	if rep, _ := h.client.Review(context.Background(), airlock.Review{CallID: "i2", Action: airlock.ActionApprove, Reviewer: "dana"}); !rep.Accepted {
		t.Fatalf("review: %+v", rep)
	}
	wg.Wait()
	close(results)
	for d := range results {
		if d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:dana" {
			t.Errorf("duplicate waiter got %s/%s (%s)", d.Verdict, d.DecidedBy, d.Reason)
		}
	}
	if rows := h.decisionRows("i2"); len(rows) != 1 {
		t.Fatalf("decisions for i2: %v, want one", rows)
	}
}

func TestReviewFirstWins(t *testing.T) {
	h := startHarness(t, testPolicy)
	ch := h.submitAsync(call("f1", "a1", "send_email", map[string]any{"to": []any{"x@acme.com"}, "subject": "hi", "body": "b"}))
	h.waitPending("f1")
	ctx := context.Background()
	rep1, err := h.client.Review(ctx, airlock.Review{CallID: "f1", Action: airlock.ActionApprove, Reviewer: "alice2"})
	if err != nil || !rep1.Accepted {
		t.Fatalf("first review: %+v %v", rep1, err)
	}
	rep2, err := h.client.Review(ctx, airlock.Review{CallID: "f1", Action: airlock.ActionDeny, Reviewer: "bob"})
	if err != nil || rep2.Accepted || !strings.Contains(rep2.Error, "already decided by reviewer:alice2") {
		t.Fatalf("second review: %+v %v", rep2, err)
	}
	if d := <-ch; d.Verdict != airlock.VerdictApproved {
		t.Fatalf("agent got %s", d.Verdict)
	}
}

func TestSelfApprovalRefused(t *testing.T) {
	h := startHarness(t, testPolicy)
	c := call("sa1", "a1", "execute_sql", map[string]any{"query": "SELECT 1"})
	c.User = "mallory"
	h.submitAsync(c)
	h.waitPending("sa1")
	rep, _ := h.client.Review(context.Background(), airlock.Review{CallID: "sa1", Action: airlock.ActionApprove, Reviewer: "mallory"})
	if rep.Accepted || !strings.Contains(rep.Error, "cannot approve") {
		t.Fatalf("self-approval: %+v", rep)
	}
}

func TestApproveWithEdits(t *testing.T) {
	h := startHarness(t, testPolicy)
	ch := h.submitAsync(call("e1", "a1", "send_email", map[string]any{"to": []any{"x@evil.example"}, "subject": "s", "body": "b"}))
	h.waitPending("e1")
	edited := map[string]any{"to": []any{"ops@acme.com"}, "subject": "s", "body": "b"}
	rep, err := h.client.Review(context.Background(), airlock.Review{CallID: "e1", Action: airlock.ActionApprove, Reviewer: "bob",
		UpdatedArguments: edited, ArgsHash: airlock.ArgsHash(edited)})
	if err != nil || !rep.Accepted {
		t.Fatalf("review: %+v %v", rep, err)
	}
	d := <-ch
	if d.Verdict != airlock.VerdictApproved || d.UpdatedArguments == nil {
		t.Fatalf("got %+v, want approved with updated_arguments", d)
	}
	to := d.UpdatedArguments["to"].([]any)
	if to[0] != "ops@acme.com" {
		t.Fatalf("updated to %v", to)
	}
	// A verdict whose hash does not match the arguments is refused.
	h.submitAsync(call("e2", "a1", "send_email", map[string]any{"to": []any{"x@acme.com"}, "subject": "s", "body": "b"}))
	h.waitPending("e2")
	rep, _ = h.client.Review(context.Background(), airlock.Review{CallID: "e2", Action: airlock.ActionApprove, Reviewer: "bob", ArgsHash: "deadbeef"})
	if rep.Accepted || !strings.Contains(rep.Error, "hash") {
		t.Fatalf("mismatched hash: %+v", rep)
	}
}

func TestExpiry(t *testing.T) {
	h := startHarness(t, strings.Replace(testPolicy, "pending_ttl: 2m", "pending_ttl: 1s", 1))
	d := <-h.submitAsync(call("x1", "a1", "execute_sql", map[string]any{"query": "SELECT 1"}))
	if d.Verdict != airlock.VerdictExpired {
		t.Fatalf("got %s (%s), want expired", d.Verdict, d.Reason)
	}
	if ps, _ := h.client.Pending(context.Background()); len(ps) != 0 {
		t.Fatalf("expired call still pending: %+v", ps)
	}
}

func TestRestartKeepsPending(t *testing.T) {
	h := startHarness(t, testPolicy)
	h.submitAsync(call("rs1", "a1", "execute_sql", map[string]any{"query": "SELECT 2"}))
	h.waitPending("rs1")
	h.stopBroker()
	h.boot(testPolicy) // same NATS store, same audit file
	h.waitPending("rs1")
	ch := h.submitAsync(call("rs1", "a1", "execute_sql", map[string]any{"query": "SELECT 2"}))
	rep, err := h.client.Review(context.Background(), airlock.Review{CallID: "rs1", Action: airlock.ActionApprove, Reviewer: "dana"})
	if err != nil || !rep.Accepted {
		t.Fatalf("review after restart: %+v %v", rep, err)
	}
	if d := <-ch; d.Verdict != airlock.VerdictApproved {
		t.Fatalf("after restart got %s", d.Verdict)
	}
	if rows := h.decisionRows("rs1"); len(rows) != 1 {
		t.Fatalf("decisions %v", rows)
	}
}

// TestClientConfigAndDecision: consoles learn the review settings in force
// from the broker, and can read who decided a call.
func TestClientConfigAndDecision(t *testing.T) {
	h := startHarness(t, strings.Replace(testPolicy, "orgs:", "review: {batch: true, max_approvals_per_minute: 7}\norgs:", 1))
	ctx := context.Background()
	r, err := h.client.ReviewSettings(ctx)
	if err != nil || !r.Batch || r.MaxApprovalsPerMinute != 7 {
		t.Fatalf("review settings %+v %v", r, err)
	}
	if d, err := h.client.Decision(ctx, "nope"); err != nil || d != nil {
		t.Fatalf("unknown call: %+v %v", d, err)
	}
	h.submit(call("cd1", "a1", "delete_record", map[string]any{"id": 1}))
	d, err := h.client.Decision(ctx, "cd1")
	if err != nil || d == nil || d.Verdict != airlock.VerdictDenied || d.DecidedBy != "policy" {
		t.Fatalf("decision %+v %v", d, err)
	}
}

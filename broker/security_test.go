package broker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/ratelimit"
	"github.com/airlock/airlock/broker/risk"
)

// secPolicy is the policy of the security tests; %AUTH% is replaced by the
// auth: section with the keys made for the test.
const secPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  search_web:  {tier: auto}
  read_file:   {tier: auto}
  send_email:  {tier: approve, scope: {from: [bot@acme.com], domains: [acme.com]}}
  execute_sql: {tier: approve}
  update_record: {tier: auto, writes: true}
  http_get:    {tier: auto, scope: {hosts: [api.acme.com]}}
  delete_record:      {tier: deny}
  modify_permissions: {tier: deny}
  search_faq:    {tier: auto}
  create_ticket: {tier: auto}
agents:
  support-bot: {tools: [search_faq, create_ticket]}
orgs:
  acme: {mail_domains: [acme.com], hosts: [acme.com]}
review: {write_grant_ttl: 5m}
%EXTRA%
%AUTH%
`

// clock is an injectable clock the tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// secHarness is a real broker on an embedded NATS server that enforces the
// policy's identities, with a key file for each identity.
type secHarness struct {
	t     testing.TB
	dir   string
	srv   *server.Server
	nc    *nats.Conn // the broker's own connection (a broker identity)
	b     *broker.Broker
	log   *audit.Log
	pol   *policy.Policy
	clock *clock
	keys  map[string]*client.Key // "agent/a1", "reviewer/bob"
	files map[string]string
}

var secIdentities = []struct{ role, name string }{
	{"agent", "a1"}, {"agent", "a2"}, {"agent", "support-bot"}, {"agent", "mallory-bot"},
	{"reviewer", "bob"}, {"reviewer", "carol"}, {"reviewer", "mallory"},
}

// startSec boots the harness; extra is YAML merged into the policy (limits,
// review settings).
func startSec(t testing.TB, extra string, opts ...func(*broker.Config)) *secHarness {
	t.Helper()
	h := &secHarness{t: t, dir: t.TempDir(), keys: map[string]*client.Key{}, files: map[string]string{},
		clock: &clock{now: time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)}}
	var agents, reviewers []string
	for _, id := range secIdentities {
		kp, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		data, err := auth.KeyFile(kp, id.role, id.name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(h.dir, id.role+"-"+id.name+".nk")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := client.LoadKey(path)
		if err != nil {
			t.Fatal(err)
		}
		h.keys[id.role+"/"+id.name], h.files[id.role+"/"+id.name] = k, path
		line := fmt.Sprintf("    %s: {nkey: %s}", id.name, k.Public)
		if id.role == "agent" {
			agents = append(agents, line)
		} else {
			reviewers = append(reviewers, line)
		}
	}
	authYAML := "auth:\n  agents:\n" + strings.Join(agents, "\n") + "\n  reviewers:\n" + strings.Join(reviewers, "\n") + "\n"
	text := strings.Replace(strings.Replace(secPolicy, "%AUTH%", authYAML, 1), "%EXTRA%", extra, 1)
	pol, err := policy.Parse("sec.yaml", []byte(text))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	h.pol = pol
	self, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	selfPub, _ := self.PublicKey()
	h.srv, err = broker.StartEmbedded(broker.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(h.dir, "nats"),
		Configure: func(o *server.Options) error { return auth.Configure(o, pol, "airlock", selfPub) }})
	if err != nil {
		t.Fatal(err)
	}
	h.log, err = audit.Open(audit.PathIn(h.dir))
	if err != nil {
		t.Fatal(err)
	}
	h.nc, err = nats.Connect(h.srv.ClientURL(), nats.Nkey(selfPub, self.Sign))
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.Config{Policy: pol, Audit: h.log, Scorer: risk.New(pol), Name: "sec-broker", Clock: h.clock.Now}
	if len(pol.Limits) > 0 {
		cfg.Limiter = ratelimit.New(pol.Limits, ratelimit.NewMemoryStore(), ratelimit.WithClock(h.clock.Now))
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.b, err = broker.New(h.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.b.Close(ctx)
		h.nc.Close()
		_ = h.log.Close(ctx)
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
	})
	return h
}

// violations collects the asynchronous errors a connection receives.
type violations struct {
	ch chan error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	select {
	case v.ch <- err:
	default:
	}
}

// wait returns the first error mentioning want, or fails.
func (v *violations) wait(t testing.TB, want string) error {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-v.ch:
			if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				return err
			}
		case <-timeout:
			t.Fatalf("the server reported no %q", want)
			return nil
		}
	}
}

// none fails if any permission violation arrived.
func (v *violations) none(t testing.TB) {
	t.Helper()
	select {
	case err := <-v.ch:
		t.Fatalf("unexpected server error: %v", err)
	default:
	}
}

// connect dials as role/name with its key and returns a client and the
// connection's violations.
func (h *secHarness) connect(role, name string, extra ...client.Option) (*client.Client, *violations) {
	h.t.Helper()
	k := h.keys[role+"/"+name]
	if k == nil {
		h.t.Fatalf("no key for %s/%s", role, name)
	}
	v := &violations{ch: make(chan error, 64)}
	opts := append([]client.Option{client.WithKey(k), client.WithAttemptTimeout(5 * time.Second)}, extra...)
	if role == client.RoleReviewer {
		kp := k.KeyPair()
		opts = append(opts, client.WithReviewSigner(func(r *airlock.Review) error {
			if r.Timestamp.IsZero() || r.Timestamp.After(h.clock.Now().Add(time.Hour)) {
				r.Timestamp = h.clock.Now()
			}
			return auth.SignReview(kp, r)
		}))
	}
	c, err := client.Connect(h.srv.ClientURL(), []nats.Option{nats.ErrorHandler(v.handler)}, opts...)
	if err != nil {
		h.t.Fatalf("connect as %s %s: %v", role, name, err)
	}
	h.t.Cleanup(c.Close)
	return c, v
}

// reviewer returns a signing client for a reviewer.
func (h *secHarness) reviewer(name string) *client.Client {
	c, _ := h.connect(client.RoleReviewer, name)
	return c
}

// sign builds a verdict signed by reviewer name at the harness's time.
func (h *secHarness) sign(name string, r airlock.Review) airlock.Review {
	h.t.Helper()
	r.Reviewer = name
	if r.Timestamp.IsZero() {
		r.Timestamp = h.clock.Now()
	}
	if err := auth.SignReview(h.keys["reviewer/"+name].KeyPair(), &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *secHarness) submitAs(agent string, c *airlock.ToolCall) airlock.Decision {
	h.t.Helper()
	ac, _ := h.connect(client.RoleAgent, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := ac.Submit(ctx, c)
	if err != nil {
		h.t.Fatalf("submit %s: %v", c.ID, err)
	}
	return d
}

func (h *secHarness) submitAsync(agent string, c *airlock.ToolCall) <-chan airlock.Decision {
	h.t.Helper()
	ac, _ := h.connect(client.RoleAgent, agent)
	ch := make(chan airlock.Decision, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := ac.Submit(ctx, c)
		if err != nil {
			d = airlock.Decision{Reason: "submit error: " + err.Error()}
		}
		ch <- d
	}()
	return ch
}

func (h *secHarness) waitPending(id string) airlock.Pending {
	h.t.Helper()
	rc, _ := h.connect(client.RoleReviewer, "carol")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p, err := rc.GetPending(context.Background(), id); err == nil {
			return *p
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("call %s never became pending", id)
	return airlock.Pending{}
}

func (h *secHarness) db() *sql.DB {
	h.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+audit.PathIn(h.dir)+"?mode=ro")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	return db
}

// refusedReviews returns the audited refusal messages for a call.
func (h *secHarness) refusedReviews(id string) []string {
	h.t.Helper()
	rows, err := h.db().Query(`select json_extract(payload,'$.error') from events where kind = 'review' and call_id = ? and json_extract(payload,'$.accepted') = 0`, id)
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

func (h *secHarness) decisionRows(id string) []string {
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

func secCall(id, agent, tool string, args map[string]any) *airlock.ToolCall {
	return &airlock.ToolCall{ID: id, Agent: agent, User: "u1", Org: "acme", Session: "s1", Tool: tool, Arguments: args}
}

// TestBusPermissions: the server itself refuses what an identity may not say
// or hear.
func TestBusPermissions(t *testing.T) {
	h := startSec(t, "")
	ch := h.submitAsync("a1", secCall("p1", "a1", "execute_sql", map[string]any{"query": "SELECT 1"}))
	p := h.waitPending("p1")

	t.Run("agent-publishing-a-verdict", func(t *testing.T) {
		ac, v := h.connect(client.RoleAgent, "a1")
		r := h.sign("bob", airlock.Review{CallID: "p1", Action: airlock.ActionApprove, ArgsHash: p.ArgsHash, PolicyVersion: p.PolicyVersion})
		body, _ := json.Marshal(r)
		if err := ac.Conn().Publish("airlock.review.p1", body); err != nil {
			t.Fatal(err)
		}
		_ = ac.Conn().Flush()
		v.wait(t, "permissions violation for publish")
	})
	t.Run("agent-submitting-as-another", func(t *testing.T) {
		ac, v := h.connect(client.RoleAgent, "a1")
		body := `{"id":"imp1","agent":"a2","tool":"search_web","arguments":{"q":"x"}}`
		_ = ac.Conn().PublishRequest("airlock.submit.a2", client.InboxPrefix("agent", "a1")+".x", []byte(body))
		_ = ac.Conn().Flush()
		v.wait(t, "permissions violation for publish")
		if rows := h.decisionRows("imp1"); len(rows) != 0 {
			t.Fatalf("impersonated call reached the broker: %v", rows)
		}
	})
	t.Run("agent-reading-decisions", func(t *testing.T) {
		ac, v := h.connect(client.RoleAgent, "a2")
		if _, err := ac.Conn().SubscribeSync("airlock.decision.p1"); err != nil {
			t.Fatal(err)
		}
		_ = ac.Conn().Flush()
		v.wait(t, "permissions violation for subscription")
	})
	t.Run("agent-reading-another-agents-inbox", func(t *testing.T) {
		ac, v := h.connect(client.RoleAgent, "a2")
		if _, err := ac.Conn().SubscribeSync(client.InboxPrefix("agent", "a1") + ".>"); err != nil {
			t.Fatal(err)
		}
		_ = ac.Conn().Flush()
		v.wait(t, "permissions violation for subscription")
	})
	t.Run("agent-reading-the-queue", func(t *testing.T) {
		ac, _ := h.connect(client.RoleAgent, "a2")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if ps, err := ac.Pending(ctx); err == nil {
			t.Fatalf("an agent listed the pending queue: %d calls", len(ps))
		}
	})
	t.Run("reviewer-publishing-a-decision", func(t *testing.T) {
		rc, v := h.connect(client.RoleReviewer, "bob")
		_ = rc.Conn().Publish("airlock.decision.p1", []byte(`{"call_id":"p1","verdict":"approved"}`))
		_ = rc.Conn().Flush()
		v.wait(t, "permissions violation for publish")
	})
	t.Run("reviewer-writing-the-queue", func(t *testing.T) {
		rc, v := h.connect(client.RoleReviewer, "bob")
		_ = rc.Conn().Publish("$KV.airlock_pending.p1", []byte(`{}`))
		_ = rc.Conn().Flush()
		v.wait(t, "permissions violation for publish")
	})
	t.Run("reviewer-submitting-as-an-agent", func(t *testing.T) {
		rc, v := h.connect(client.RoleReviewer, "bob")
		_ = rc.Conn().Publish("airlock.submit.a1", []byte(`{}`))
		_ = rc.Conn().Flush()
		v.wait(t, "permissions violation for publish")
	})
	t.Run("no-credentials", func(t *testing.T) {
		nc, err := nats.Connect(h.srv.ClientURL(), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatal("an anonymous connection was accepted")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("got %v, want an authorization error", err)
		}
	})
	t.Run("unknown-key", func(t *testing.T) {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		nc, err := nats.Connect(h.srv.ClientURL(), nats.Nkey(pub, kp.Sign), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatal("a key the policy does not name was accepted")
		}
	})
	// Everything the console and the CLI do works for a reviewer, with no
	// permission violation.
	t.Run("reviewer-console-works", func(t *testing.T) {
		rc, v := h.connect(client.RoleReviewer, "bob")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dec, err := rc.WatchDecisions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		events := rc.WatchPending(ctx)
		ev := <-events
		if ev.Snapshot == nil || len(ev.Snapshot) != 1 || ev.Snapshot[0].Call.ID != "p1" {
			t.Fatalf("watch snapshot: %+v", ev)
		}
		ps, err := rc.Pending(ctx)
		if err != nil || len(ps) != 1 {
			t.Fatalf("pending: %v %v", ps, err)
		}
		if _, err := rc.Recent(ctx, "s1", 5); err != nil {
			t.Fatalf("recent: %v", err)
		}
		if m, err := rc.Conn().RequestWithContext(ctx, "airlock.admin.grants", []byte(`{}`)); err != nil || !strings.Contains(string(m.Data), "grants") {
			t.Fatalf("grants: %v", err)
		}
		rep, err := rc.Review(ctx, airlock.Review{CallID: "p1", Action: airlock.ActionApprove, Reviewer: "bob", ArgsHash: p.ArgsHash})
		if err != nil || !rep.Accepted {
			t.Fatalf("signed review: %+v %v", rep, err)
		}
		if d := <-ch; d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:bob" {
			t.Fatalf("agent got %+v", d)
		}
		select {
		case d := <-dec:
			if d.Decision.CallID != "p1" {
				t.Fatalf("decision feed: %+v", d)
			}
		case <-ctx.Done():
			t.Fatal("the reviewer saw no decision")
		}
		for {
			select {
			case e := <-events:
				if e.Removed == "p1" {
					v.none(t)
					return
				}
			case <-ctx.Done():
				t.Fatal("the reviewer's watch never saw p1 leave the queue")
			}
		}
	})
}

// TestSignedVerdicts: each forged, altered, replayed, stale or self-made
// verdict is refused and audited; a good one is accepted and its signature
// is audited and verifiable.
func TestSignedVerdicts(t *testing.T) {
	h := startSec(t, "")
	bob := h.reviewer("bob")
	ch := h.submitAsync("a1", &airlock.ToolCall{ID: "v1", Agent: "a1", User: "mallory", Org: "acme", Session: "s1",
		Tool: "execute_sql", Arguments: map[string]any{"query": "UPDATE t SET x = 1 WHERE id = 7"}})
	p := h.waitPending("v1")
	base := airlock.Review{CallID: "v1", Action: airlock.ActionApprove, ArgsHash: p.ArgsHash, PolicyVersion: p.PolicyVersion}
	ctx := context.Background()

	forged := h.sign("carol", base)
	forged.Reviewer = "bob" // carol's signature under bob's name
	tampered := h.sign("bob", base)
	tampered.Reason = "approved, and also grant me everything"
	randomKey := func() airlock.Review {
		kp, _ := nkeys.CreateUser()
		r := base
		r.Reviewer = "bob"
		r.Timestamp = h.clock.Now()
		_ = auth.SignReview(kp, &r)
		return r
	}()
	changedArgs := base
	changedArgs.UpdatedArguments = map[string]any{"query": "DROP TABLE t"}
	changedArgs = h.sign("bob", changedArgs)
	changedArgs.UpdatedArguments = map[string]any{"query": "DROP TABLE customers"} // swapped after signing
	wrongHash := base
	wrongHash.ArgsHash = airlock.ArgsHash(map[string]any{"query": "DROP TABLE t"})
	wrongHash = h.sign("bob", wrongHash)
	stale := base
	stale.Timestamp = h.clock.Now().Add(-10 * time.Minute)
	stale = h.sign("bob", stale)
	oldPolicy := base
	oldPolicy.PolicyVersion = "0000000000000000000000000000000000000000000000000000000000000000"
	oldPolicy = h.sign("bob", oldPolicy)
	self := h.sign("mallory", base)
	unsigned := base
	unsigned.Reviewer = "bob"
	unknown := base
	unknown.Reviewer = "eve"

	tests := []struct {
		name string
		r    airlock.Review
		want string
	}{
		{"unsigned", unsigned, "unsigned"},
		{"not-a-reviewer", unknown, "not a reviewer"},
		{"forged-signature-of-another-reviewer", forged, "not reviewer bob's"},
		{"signed-by-an-unknown-key", randomKey, "not reviewer bob's"},
		{"altered-after-signing", tampered, "signature does not verify"},
		{"edited-arguments-swapped-after-signing", changedArgs, "args hash mismatch"},
		{"verdict-for-changed-arguments", wrongHash, "args hash mismatch"},
		{"stale", stale, "stale"},
		{"other-policy-version", oldPolicy, "policy version"},
		{"self-approval", self, "cannot approve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := h.b.Review(ctx, tt.r)
			if rep.Accepted || !strings.Contains(rep.Error, tt.want) {
				t.Fatalf("got %+v, want refused with %q", rep, tt.want)
			}
			found := false
			for _, e := range h.refusedReviews("v1") {
				if strings.Contains(e, tt.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("refusal %q not audited: %v", tt.want, h.refusedReviews("v1"))
			}
		})
	}
	// Over the bus, the reviewer's own signed verdict is accepted.
	good := h.sign("bob", base)
	body, _ := json.Marshal(good)
	m, err := bob.Conn().Request("airlock.review.v1", body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep airlock.ReviewReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || !rep.Accepted {
		t.Fatalf("good verdict: %s %v", m.Data, err)
	}
	if d := <-ch; d.Verdict != airlock.VerdictApproved {
		t.Fatalf("agent got %+v", d)
	}
	t.Run("replayed", func(t *testing.T) {
		rep := h.b.Review(ctx, good)
		if rep.Accepted || !strings.Contains(rep.Error, "replayed") {
			t.Fatalf("replay: %+v", rep)
		}
		if got := h.refusedReviews("v1"); !strings.Contains(strings.Join(got, "|"), "replayed") {
			t.Fatalf("replay not audited: %v", got)
		}
	})
	t.Run("audit-proves-who-approved", func(t *testing.T) {
		n, err := auth.VerifyAuditedReviews(h.db(), auth.ReviewerKeys(h.pol))
		if err != nil || n != 1 {
			t.Fatalf("verify signatures: %d checked, %v; want 1, nil", n, err)
		}
		keys := auth.ReviewerKeys(h.pol)
		keys["bob"] = keys["carol"]
		if _, err := auth.VerifyAuditedReviews(h.db(), keys); err == nil {
			t.Fatal("a verdict verified against the wrong reviewer key")
		}
	})
}

// TestReadBeforeWrite: a writes tool is refused until the session holds a
// write grant a reviewer approved, allowed while it lasts, refused after.
func TestReadBeforeWrite(t *testing.T) {
	h := startSec(t, "")
	upd := func(id, session string) *airlock.ToolCall {
		c := secCall(id, "a1", "update_record", map[string]any{"table": "tickets", "id": 7, "status": "closed"})
		c.Session = session
		return c
	}
	d := h.submitAs("a1", upd("w1", "s1"))
	if d.Verdict != airlock.VerdictDenied || !strings.Contains(d.Reason, broker.ElevateTool) {
		t.Fatalf("write without a grant: %s %q, want denied naming %s", d.Verdict, d.Reason, broker.ElevateTool)
	}
	ch := h.submitAsync("a1", &airlock.ToolCall{ID: "el1", Agent: "a1", User: "u1", Session: "s1", Tool: broker.ElevateTool,
		Arguments: map[string]any{"reason": "close resolved tickets", "minutes": 3.0}})
	p := h.waitPending("el1")
	if p.Tier != airlock.TierApprove {
		t.Fatalf("elevation tier %s, want approve", p.Tier)
	}
	rep := h.reviewerReview("bob", p, airlock.ActionApprove)
	if !rep.Accepted {
		t.Fatalf("approve elevation: %+v", rep)
	}
	if d := <-ch; d.Verdict != airlock.VerdictApproved {
		t.Fatalf("elevation: %+v", d)
	}
	if d := h.submitAs("a1", upd("w2", "s1")); d.Verdict != airlock.VerdictApproved || !strings.Contains(d.Reason, "write grant") {
		t.Fatalf("write within the grant: %s %q", d.Verdict, d.Reason)
	}
	if d := h.submitAs("a1", upd("w3", "s2")); d.Verdict != airlock.VerdictDenied {
		t.Fatalf("another session used the grant: %s %q", d.Verdict, d.Reason)
	}
	h.clock.Add(3*time.Minute + time.Second)
	if d := h.submitAs("a1", upd("w4", "s1")); d.Verdict != airlock.VerdictDenied || !strings.Contains(d.Reason, "no live write grant") {
		t.Fatalf("write after the grant expired: %s %q", d.Verdict, d.Reason)
	}
	var n int
	if err := h.db().QueryRow(`select count(*) from events where kind = 'grant' and call_id = 'el1' and json_extract(payload,'$.grant.tool') = 'writes'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("write grant audited %d times (%v), want 1", n, err)
	}
	t.Run("elevation-never-auto-or-granted", func(t *testing.T) {
		ch := h.submitAsync("a1", &airlock.ToolCall{ID: "el2", Agent: "a1", User: "u1", Session: "s3", Tool: broker.ElevateTool,
			Arguments: map[string]any{"reason": "again"}})
		p := h.waitPending("el2")
		r := airlock.Review{CallID: "el2", Action: airlock.ActionApprove, ArgsHash: p.ArgsHash, PolicyVersion: p.PolicyVersion,
			Grant: &airlock.GrantRequest{For: "1h"}}
		rep := h.b.Review(context.Background(), h.sign("bob", r))
		if !rep.Accepted || rep.Grant != nil {
			t.Fatalf("elevation with a grant request: %+v, want approved without a grant", rep)
		}
		<-ch
	})
	t.Run("elevation-needs-a-reason", func(t *testing.T) {
		d := h.submitAs("a1", &airlock.ToolCall{ID: "el3", Agent: "a1", Session: "s1", Tool: broker.ElevateTool, Arguments: map[string]any{}})
		if d.Verdict != airlock.VerdictDenied {
			t.Fatalf("elevation without a reason: %s", d.Verdict)
		}
	})
}

// reviewerReview decides a pending call as a reviewer over the bus, signed.
func (h *secHarness) reviewerReview(name string, p airlock.Pending, a airlock.ReviewAction) airlock.ReviewReply {
	h.t.Helper()
	rc := h.reviewer(name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := rc.Review(ctx, airlock.Review{CallID: p.Call.ID, Action: a, Reviewer: name, ArgsHash: p.ArgsHash})
	if err != nil {
		h.t.Fatalf("review: %v", err)
	}
	return rep
}

// TestScopedCredentials: a call outside its tool's scope is denied before
// any reviewer sees it, and an edit that moves an approval out of scope is
// refused.
func TestScopedCredentials(t *testing.T) {
	h := startSec(t, "")
	out := secCall("sc1", "a1", "send_email", map[string]any{"from": "bot@acme.com", "to": []any{"x@evil.example"}, "subject": "s", "body": "b"})
	d := h.submitAs("a1", out)
	if d.Verdict != airlock.VerdictDenied || !strings.Contains(d.Reason, "outside scope") {
		t.Fatalf("out of scope: %s %q", d.Verdict, d.Reason)
	}
	rc := h.reviewer("bob")
	if _, err := rc.GetPending(context.Background(), "sc1"); err == nil {
		t.Fatal("an out-of-scope call reached the reviewers' queue")
	}
	rep := h.b.Review(context.Background(), h.sign("bob", airlock.Review{CallID: "sc1", Action: airlock.ActionApprove, ArgsHash: airlock.ArgsHash(out.Arguments), PolicyVersion: h.pol.Digest}))
	if rep.Accepted {
		t.Fatalf("a reviewer approved a call denied as out of scope: %+v", rep)
	}
	ch := h.submitAsync("a1", secCall("sc2", "a1", "send_email", map[string]any{"from": "bot@acme.com", "to": []any{"ops@acme.com"}, "subject": "s", "body": "b"}))
	p := h.waitPending("sc2")
	edited := map[string]any{"from": "ceo@acme.com", "to": []any{"x@evil.example"}, "subject": "s", "body": "b"}
	r := h.sign("bob", airlock.Review{CallID: "sc2", Action: airlock.ActionApprove, UpdatedArguments: edited, PolicyVersion: p.PolicyVersion})
	rep = h.b.Review(context.Background(), r)
	if rep.Accepted || !strings.Contains(rep.Error, "outside scope") {
		t.Fatalf("edit out of scope: %+v", rep)
	}
	if got := h.refusedReviews("sc2"); len(got) != 1 {
		t.Fatalf("out-of-scope edit audited %v, want one refusal", got)
	}
	deny := h.sign("bob", airlock.Review{CallID: "sc2", Action: airlock.ActionDeny, ArgsHash: p.ArgsHash, PolicyVersion: p.PolicyVersion})
	if rep := h.b.Review(context.Background(), deny); !rep.Accepted {
		t.Fatalf("deny: %+v", rep)
	}
	<-ch
}

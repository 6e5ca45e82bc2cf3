// Package audittest builds realistic audit logs for tests and benchmarks:
// decisions by policy, reviewers, grants and rate limits with every verdict,
// pending, review, execution and canary events.
package audittest

import (
	"context"
	"fmt"
	"time"

	"github.com/airlock/airlock"
)

// Appender is what Populate writes to (an *audit.Log).
type Appender interface {
	Append(ctx context.Context, ev airlock.Event) (airlock.Receipt, error)
}

// call is a small constructor for fixture tool calls.
func call(id, agent, user, tool string, args map[string]any) airlock.ToolCall {
	return airlock.ToolCall{ID: id, Agent: agent, User: user, Org: "acme", Session: "sess-" + user, Tool: tool, Arguments: args}
}

func risk(score int, factors ...airlock.Factor) airlock.Risk {
	band := airlock.BandLow
	switch {
	case score >= 90:
		band = airlock.BandCritical
	case score >= 70:
		band = airlock.BandHigh
	case score >= 40:
		band = airlock.BandMedium
	}
	if factors == nil {
		factors = []airlock.Factor{}
	}
	return airlock.Risk{Score: score, Band: band, Factors: factors}
}

var (
	destructive = airlock.Factor{Name: "destructive_sql", Points: 40, Detail: "DELETE or DROP statement"}
	noWhere     = airlock.Factor{Name: "unbounded_write", Points: 30, Detail: "no WHERE clause"}
	external    = airlock.Factor{Name: "external_recipient", Points: 30, Detail: "recipient outside acme.com"}
	secretPath  = airlock.Factor{Name: "sensitive_path", Points: 40, Detail: "path under /etc"}
	offHours    = airlock.Factor{Name: "off_hours", Points: 10, Detail: "outside 08:00-20:00"}
)

// Populate appends the fixture log. Recent events start at base and go
// forward a few seconds apart; two "old" calls lie ten days before base.
// Call ids: s1-s5 (search_web, auto), q1-q3 (execute_sql by reviewers),
// e1 (send_email approved with edits), f1 (read_file by grant g1), r1
// (rate limited), x1 (expired), d1 (denied by policy), bad1 (rejected),
// p1 (run_python that hit its timeout, hostile output), old1-old2.
func Populate(ctx context.Context, l Appender, base time.Time) error {
	t := base
	tick := func(d time.Duration) time.Time { t = t.Add(d); return t }
	var evs []airlock.Event
	add := func(kind, id string, ts time.Time, payload any) {
		evs = append(evs, airlock.Event{Kind: kind, CallID: id, TS: ts, Payload: payload})
	}
	decision := func(c airlock.ToolCall, ts time.Time, v airlock.Verdict, by string, tier airlock.Tier, r airlock.Risk, reason string) airlock.DecisionRecord {
		return airlock.DecisionRecord{Call: c, PolicyVersion: "p1", Decision: airlock.Decision{
			CallID: c.ID, Verdict: v, DecidedBy: by, Tier: tier, Risk: r, Reason: reason, DecidedAt: ts}}
	}
	pending := func(c airlock.ToolCall, ts time.Time, r airlock.Risk, rule, reason string) {
		add(airlock.EventPending, c.ID, ts, airlock.PendingRecord{Pending: airlock.Pending{
			Call: c, Tier: airlock.TierApprove, Risk: r, Rule: rule, Reason: reason,
			ReceivedAt: ts, ExpiresAt: ts.Add(10 * time.Minute), ArgsHash: airlock.ArgsHash(c.Arguments), PolicyVersion: "p1"}})
	}
	// review records a reviewer's verdict and returns a fresh copy for the
	// decision (payloads are encoded at Append, after all are built).
	review := func(c airlock.ToolCall, ts time.Time, who string, act airlock.ReviewAction, shown int64, reason string, edit map[string]any) *airlock.Review {
		rv := airlock.Review{CallID: c.ID, Action: act, Reviewer: who, Reason: reason, ShownMS: shown, Timestamp: ts, UpdatedArguments: edit}
		add(airlock.EventReview, c.ID, ts, airlock.ReviewRecord{Review: rv, Accepted: true})
		return &rv
	}

	// Two old calls, ten days back.
	old := base.Add(-10 * 24 * time.Hour)
	c := call("old1", "billing-bot", "dave", "execute_sql", map[string]any{"query": "DELETE FROM invoices WHERE year < 2020"})
	pending(c, old, risk(75, destructive, offHours), "", "tool requires approval")
	rv := review(c, old.Add(20*time.Second), "carol", airlock.ActionApprove, 3000, "", nil)
	rec := decision(c, old.Add(20*time.Second), airlock.VerdictApproved, "reviewer:carol", airlock.TierApprove, risk(75, destructive, offHours), "")
	rec.Review, rec.WaitedMS = rv, 20000
	add(airlock.EventDecision, c.ID, old.Add(20*time.Second), rec)
	c = call("old2", "research-bot", "alice", "search_web", map[string]any{"query": "old news"})
	add(airlock.EventDecision, c.ID, old.Add(time.Minute), decision(c, old.Add(time.Minute), airlock.VerdictApproved, "policy", airlock.TierAuto, risk(0), ""))

	// Auto-approved searches.
	queries := []string{"quarterly zebra forecast", "weather in Lisbon", "migrate penguin colony", "zebra crossing rules", "go generics tutorial"}
	for i, q := range queries {
		c := call(fmt.Sprintf("s%d", i+1), "research-bot", []string{"alice", "bob-user"}[i%2], "search_web", map[string]any{"query": q})
		ts := tick(time.Second)
		add(airlock.EventDecision, c.ID, ts, decision(c, ts, airlock.VerdictApproved, "policy", airlock.TierAuto, risk(0), ""))
	}

	// q1: execute_sql approved by bob after a wait, then run in the sandbox.
	c = call("q1", "billing-bot", "dave", "execute_sql", map[string]any{"query": "DELETE FROM sessions WHERE expires < now()"})
	r := risk(72, destructive, offHours, airlock.Factor{Name: "large_table", Points: 22, Detail: "sessions has 2M rows"})
	held := tick(time.Second)
	pending(c, held, r, "", "tool requires approval")
	rv = review(c, tick(12*time.Second), "bob", airlock.ActionApprove, 4200, "expected nightly cleanup", nil)
	rec = decision(c, t, airlock.VerdictApproved, "reviewer:bob", airlock.TierApprove, r, "expected nightly cleanup")
	rec.Review, rec.WaitedMS = rv, 12000
	rec.RateLimits = []airlock.RateLimit{{Scope: "user", Key: "dave", Dimension: "requests", Window: "1m", Limit: 20, Used: 3}}
	add(airlock.EventDecision, c.ID, t, rec)
	add(airlock.EventExecStart, c.ID, tick(100*time.Millisecond), airlock.ExecRecord{CallID: c.ID, Profile: map[string]string{"backend": "native", "network": "off"}})
	add(airlock.EventExecution, c.ID, tick(31*time.Millisecond), airlock.ExecRecord{CallID: c.ID, Execution: &airlock.Execution{
		Backend: "native", ExitCode: 0, Stdout: "DELETE 1204\n", DurationMS: 31}})

	// q2: execute_sql approved by carol, high risk.
	c = call("q2", "billing-bot", "erin", "execute_sql", map[string]any{"query": "DROP TABLE tmp_import"})
	r = risk(85, destructive, airlock.Factor{Name: "schema_change", Points: 45, Detail: "DROP TABLE"})
	pending(c, tick(time.Second), r, "", "tool requires approval")
	rv = review(c, tick(30*time.Second), "carol", airlock.ActionApprove, 2500, "", nil)
	rec = decision(c, t, airlock.VerdictApproved, "reviewer:carol", airlock.TierApprove, r, "")
	rec.Review, rec.WaitedMS = rv, 30000
	add(airlock.EventDecision, c.ID, t, rec)

	// q3: denied by bob.
	c = call("q3", "billing-bot", "erin", "execute_sql", map[string]any{"query": "DELETE FROM users"})
	r = risk(95, destructive, noWhere, offHours, airlock.Factor{Name: "pii_table", Points: 15, Detail: "users holds personal data"})
	pending(c, tick(time.Second), r, "", "tool requires approval")
	rv = review(c, tick(8*time.Second), "bob", airlock.ActionDeny, 6100, "DELETE without WHERE on users", nil)
	rec = decision(c, t, airlock.VerdictDenied, "reviewer:bob", airlock.TierApprove, r, "DELETE without WHERE on users")
	rec.Review, rec.WaitedMS = rv, 8000
	add(airlock.EventDecision, c.ID, t, rec)

	// e1: send_email approved by carol with edits (recipient changed).
	c = call("e1", "support-bot", "frank", "send_email", map[string]any{"to": []any{"someone@example.org"}, "subject": "Your refund", "body": "Refund approved"})
	c.Context = map[string]any{"reason": "customer asked for a refund"}
	r = risk(30, external)
	pending(c, tick(time.Second), r, "send_email.rules[0]", "external recipient")
	edit := map[string]any{"to": []any{"refunds@acme.com"}, "subject": "Your refund", "body": "Refund approved"}
	rv = review(c, tick(40*time.Second), "carol", airlock.ActionApprove, 9000, "send to the refunds desk instead", edit)
	rec = decision(c, t, airlock.VerdictApproved, "reviewer:carol", airlock.TierApprove, r, "send to the refunds desk instead")
	rec.Review, rec.WaitedMS, rec.Edited, rec.Rule = rv, 40000, true, "send_email.rules[0]"
	rec.Decision.UpdatedArguments = edit
	add(airlock.EventDecision, c.ID, t, rec)

	// f1: read_file approved by grant g1.
	c = call("f1", "ops-bot", "gina", "read_file", map[string]any{"path": "/etc/nginx/nginx.conf"})
	r = risk(40, secretPath)
	ts := tick(time.Second)
	rec = decision(c, ts, airlock.VerdictApproved, "grant:g1", airlock.TierApprove, r, "standing grant g1 for ops-bot on /etc/nginx")
	rec.Grant, rec.Rule = "g1", "read_file.rules[0]"
	add(airlock.EventDecision, c.ID, ts, rec)

	// r1: rate limited.
	c = call("r1", "research-bot", "alice", "search_web", map[string]any{"query": "zebra stripes why"})
	ts = tick(time.Second)
	rec = decision(c, ts, airlock.VerdictRateLimited, "ratelimit", airlock.TierAuto, risk(0), "user alice: 20 requests per minute")
	rl := airlock.RateLimit{Scope: "user", Key: "alice", Dimension: "requests", Window: "1m", Limit: 20, Used: 20, RetryAfter: "12s", RetryAfterMS: 12000}
	rec.Decision.RateLimit = &rl
	rec.RateLimits = []airlock.RateLimit{rl}
	add(airlock.EventDecision, c.ID, ts, rec)

	// x1: expired unanswered.
	c = call("x1", "billing-bot", "dave", "execute_sql", map[string]any{"query": "UPDATE plans SET price = 0"})
	r = risk(70, noWhere, airlock.Factor{Name: "pricing", Points: 40, Detail: "touches prices"})
	pending(c, tick(time.Second), r, "", "tool requires approval")
	ts = tick(10 * time.Minute)
	rec = decision(c, ts, airlock.VerdictExpired, "policy", airlock.TierApprove, r, "pending_ttl 10m elapsed without a decision")
	rec.WaitedMS = 600000
	add(airlock.EventDecision, c.ID, ts, rec)

	// d1: denied by policy.
	c = call("d1", "support-bot", "frank", "delete_record", map[string]any{"table": "users", "id": 3})
	ts = tick(time.Second)
	add(airlock.EventDecision, c.ID, ts, decision(c, ts, airlock.VerdictDenied, "policy", airlock.TierDeny, risk(60, destructive, airlock.Factor{Name: "deny_tier", Points: 20, Detail: "tool is forbidden"}), "tool delete_record is denied by policy"))

	// bad1: rejected malformed body.
	ts = tick(time.Second)
	rec = airlock.DecisionRecord{Call: airlock.ToolCall{ID: "bad1", Agent: "support-bot"}, Raw: `{"id":"bad1","agent":"support-bot","tool":`,
		Decision: airlock.Decision{CallID: "bad1", Verdict: airlock.VerdictRejected, DecidedBy: "policy", Risk: risk(0), Reason: "malformed JSON: unexpected end of input", DecidedAt: ts}}
	add(airlock.EventDecision, "bad1", ts, rec)

	// p1: run_python approved by bob; the run hit its timeout and printed
	// terminal escapes that must be shown, not obeyed.
	c = call("p1", "ops-bot", "gina", "run_python", map[string]any{"code": "print('\x1b[2Jcleared')\nwhile True: pass"})
	r = risk(50, airlock.Factor{Name: "code_execution", Points: 50, Detail: "arbitrary Python"})
	pending(c, tick(time.Second), r, "", "tool requires approval \u202eevil\u202c")
	rv = review(c, tick(5*time.Second), "bob", airlock.ActionApprove, 3100, "", nil)
	rec = decision(c, t, airlock.VerdictApproved, "reviewer:bob", airlock.TierApprove, r, "")
	rec.Review, rec.WaitedMS = rv, 5000
	add(airlock.EventDecision, c.ID, t, rec)
	add(airlock.EventExecution, c.ID, tick(10*time.Second), airlock.ExecRecord{CallID: c.ID, Execution: &airlock.Execution{
		Backend: "native", ExitCode: -1, Signal: "SIGKILL", Stdout: "\x1b[2Jcleared\n", Stderr: "killed: timeout 10s\n", DurationMS: 10000, LimitHit: "timeout"}})

	// Canary checks.
	add(airlock.EventCanary, "canary-1", tick(time.Second), map[string]any{"reviewer": "bob", "caught": true})
	add(airlock.EventCanary, "canary-2", tick(time.Second), map[string]any{"reviewer": "carol", "caught": false})

	for _, ev := range evs {
		if _, err := l.Append(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// Synthetic returns the i-th event of a large generated log (for benchmarks):
// a decision with realistic size and varied agents, tools and verdicts.
func Synthetic(i int, base time.Time) airlock.Event {
	tools := []string{"search_web", "read_file", "execute_sql", "send_email", "run_python"}
	verdicts := []airlock.Verdict{airlock.VerdictApproved, airlock.VerdictApproved, airlock.VerdictApproved, airlock.VerdictDenied, airlock.VerdictRateLimited, airlock.VerdictExpired}
	by := []string{"policy", "policy", "reviewer:bob", "reviewer:carol", "grant:g1", "ratelimit"}
	ts := base.Add(time.Duration(i) * time.Millisecond)
	id := fmt.Sprintf("c%07d", i)
	c := airlock.ToolCall{ID: id, Agent: fmt.Sprintf("agent-%d", i%20), User: fmt.Sprintf("user-%d", i%200), Org: fmt.Sprintf("org-%d", i%5),
		Session: fmt.Sprintf("sess-%d", i/10), Tool: tools[i%len(tools)],
		Arguments: map[string]any{"query": fmt.Sprintf("select * from t%d where id = %d", i%50, i), "limit": i % 100}}
	score := (i * 37) % 101
	return airlock.Event{Kind: airlock.EventDecision, CallID: id, TS: ts, Payload: airlock.DecisionRecord{
		Call: c, PolicyVersion: "p1",
		Decision: airlock.Decision{CallID: id, Verdict: verdicts[i%len(verdicts)], DecidedBy: by[i%len(by)], Tier: airlock.TierApprove,
			Risk:   airlock.Risk{Score: score, Factors: []airlock.Factor{{Name: "synthetic", Points: score, Detail: "generated"}}},
			Reason: "generated for a benchmark", DecidedAt: ts},
	}}
}

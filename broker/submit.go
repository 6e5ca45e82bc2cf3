package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/risk"
)

// Reasons a broker gives when it fails closed.
const (
	ReasonAuditUnavailable  = "audit_unavailable"
	ReasonStateUnavailable  = "state_unavailable"
	ReasonLimitsUnavailable = "ratelimit_unavailable"
)

// evaluatingTimeout is how long a call may sit in "evaluating" before another
// broker assumes its evaluator died and takes it over.
const evaluatingTimeout = 30 * time.Second

const stateEvaluating = "evaluating"

func (b *Broker) handleSubmit(req micro.Request) {
	agent := lastToken(req.Subject())
	body := append([]byte(nil), req.Data()...)
	b.spawn(func() {
		d, reply, ok := b.submit(b.ctx, agent, body)
		if !ok {
			return // shutting down: no answer; the agent retries with the same id
		}
		if reply != nil {
			_ = req.Respond(reply)
			return
		}
		respondJSON(req, d)
	})
}

// Submit decides one call from its raw body as it arrived on
// airlock.submit.<agent>. ok is false when the broker is shutting down
// before the call was decided.
func (b *Broker) Submit(ctx context.Context, agent string, body []byte) (airlock.Decision, bool) {
	d, _, ok := b.submit(ctx, agent, body)
	return d, ok
}

// submit is Submit that also returns the decision's JSON when deciding it
// already encoded it (to publish it), so the reply is not encoded again;
// nil otherwise.
func (b *Broker) submit(ctx context.Context, agent string, body []byte) (airlock.Decision, []byte, bool) {
	call, err := DecodeCall(body, agent, b.cfg.MaxBytes, b.cfg.MaxDepth)
	if err != nil {
		return b.reject(ctx, agent, body, err), nil, true
	}
	if call.ID == "" {
		call.ID = newID()
	}
	// One handler per call id in this process: a duplicate (the agent's
	// retry while the first attempt is still at work) waits for the
	// decision. The handler that holds the slot therefore knows that an
	// "evaluating" claim in this broker's name is nobody's work any more
	// (a claim whose write timed out yet landed, say).
	if _, busy := b.handling.LoadOrStore(call.ID, struct{}{}); busy {
		d, ok := b.waitBehind(ctx, call.ID)
		return d, nil, ok
	}
	defer b.handling.Delete(call.ID)
	fp := fingerprint(call)
	w := &callWork{fp: fp}
	b.deciding.Store(call, w)
	defer b.deciding.Delete(call)
	d, ok := b.decide(ctx, call, fp)
	if w.reply != nil && w.replyFor == replyKeyOf(d) {
		return d, w.reply, ok
	}
	return d, nil, ok
}

// decide claims and decides a call this broker holds the handling slot of.
func (b *Broker) decide(ctx context.Context, call *airlock.ToolCall, fp string) (airlock.Decision, bool) {
	for attempt := 0; attempt < 8; attempt++ {
		// New ids are the common case: claim first, read only on a clash.
		rev, created, err := b.st.create(ctx, call.ID, callRecord{
			State: stateEvaluating, Fingerprint: fp, Call: *call, ClaimedBy: b.cfg.Name, UpdatedAt: b.now(),
			callJSON: b.callJSONOf(call),
		})
		if err != nil {
			return b.failClosed(call, ReasonStateUnavailable, err), true
		}
		if created {
			return b.evaluate(ctx, call, rev)
		}
		rec, rev, found, err := b.st.get(ctx, call.ID)
		if err != nil {
			return b.failClosed(call, ReasonStateUnavailable, err), true
		}
		if !found {
			continue // forgotten meanwhile (an unrecorded decision): claim again
		}
		if rec.Fingerprint != fp {
			return b.conflict(ctx, call), true
		}
		switch rec.State {
		case stateDecided:
			return *rec.Decision, true
		case stateEvaluating:
			// Another broker's evaluation is orphaned after a while; this
			// broker's own at once (it holds the only handling slot); and
			// with Exclusive (the embedded broker, alone on its NATS) any,
			// since only an earlier process of it could have claimed it.
			orphaned := b.now().Sub(rec.UpdatedAt) > evaluatingTimeout || rec.ClaimedBy == b.cfg.Name || b.cfg.Exclusive ||
				b.presumedDead(ctx, rec.ClaimedBy, rec.UpdatedAt)
			if orphaned {
				rec.UpdatedAt = b.now()
				rec.ClaimedBy = b.cfg.Name
				nrev, err := b.st.update(ctx, call.ID, rec, rev)
				if err != nil {
					continue
				}
				// Its evaluator died. If it got as far as auditing a
				// decision, that decision stands: never decide twice.
				d, err := b.auditedDecision(ctx, call.ID)
				if err != nil {
					// Unknown whether it was decided: decide nothing, and
					// leave the claim for the next attempt to take at once.
					rec.UpdatedAt = time.Time{}
					_, _ = b.st.update(ctx, call.ID, rec, nrev)
					return b.failClosed(call, ReasonAuditUnavailable, err), true
				}
				if d != nil {
					return b.recordAudited(ctx, call, nrev, *d), true
				}
				return b.evaluate(ctx, call, nrev)
			}
		}
		if rec.State == stateEvaluating {
			// Wait for its decision, but try the claim again as soon as
			// its owner is presumed dead.
			d, ok, stale := b.waitFor(ctx, call.ID, func(r callRecord) bool {
				return r.State == stateEvaluating && b.presumedDead(ctx, r.ClaimedBy, r.UpdatedAt)
			})
			if !stale {
				return d, ok
			}
			continue
		}
		return b.wait(ctx, call.ID)
	}
	return b.failClosed(call, ReasonStateUnavailable, errors.New("too much contention on the call id")), true
}

// evaluate runs limits, policy and risk on a call this broker owns (the
// record is "evaluating" at rev) and routes it.
func (b *Broker) evaluate(ctx context.Context, call *airlock.ToolCall, rev uint64) (airlock.Decision, bool) {
	pol := b.pol.Load()
	d := airlock.Decision{CallID: call.ID}
	rec := airlock.DecisionRecord{Call: *call, PolicyVersion: pol.Digest}

	// An agent acting for a user or org its policy entry does not pin is
	// denied before any budget is reserved: invented users get no buckets.
	if rule, reason := pol.CheckActor(call.Agent, call.User, call.Org); reason != "" {
		rec.Rule = rule
		d.Verdict, d.DecidedBy, d.Tier, d.Reason = airlock.VerdictDenied, "policy", airlock.TierDeny, reason
		d.Risk = airlock.Risk{Band: airlock.BandLow, Factors: []airlock.Factor{}}
		return b.finalize(ctx, call, rev, d, rec, nil), true
	}

	// Rate limits first: a refused call costs nothing further.
	var pressure *airlock.Factor
	if lim := b.cfg.Limiter; lim != nil {
		resv, refused, err := lim.Reserve(ctx, call)
		if err != nil {
			return b.finishUnrecorded(ctx, call, rev, b.failClosed(call, ReasonLimitsUnavailable, err))
		}
		if refused != nil {
			b.cfg.Metrics.RateLimited(refused.Dimension)
			d.Verdict = airlock.VerdictRateLimited
			d.DecidedBy = "ratelimit"
			d.RateLimit = refused
			d.Reason = rateLimitReason(refused)
			d.Risk = airlock.Risk{Score: 0, Band: airlock.BandLow, Factors: []airlock.Factor{}}
			return b.finalize(ctx, call, rev, d, rec, nil), true
		}
		b.res.Store(call.ID, resv)
		pressure = lim.Pressure(call)
	}

	if call.Tool == ElevateTool {
		return b.evaluateElevate(ctx, call, rev, d, rec)
	}

	pr := pol.Evaluate(call)
	d.Tier = pr.Tier
	rec.Rule = pr.Rule
	extra := append([]airlock.Factor(nil), pr.Factors...)
	if pressure != nil {
		extra = append(extra, *pressure)
	}
	d.Risk = b.scoreKept(call, extra)

	switch {
	case pr.Denied || pr.Tier == airlock.TierDeny:
		d.Verdict = airlock.VerdictDenied
		d.DecidedBy = "policy"
		d.Tier = airlock.TierDeny
		d.Reason = pr.Reason
		b.cancelReservation(ctx, call.ID)
		return b.finalize(ctx, call, rev, d, rec, pr.Tool), true
	}
	// Read before write: a tool that writes needs the session's write grant.
	writeNote := ""
	if pr.Tool != nil && pr.Tool.Writes {
		refusal, g := b.checkWrites(ctx, call)
		if refusal != "" {
			d.Verdict, d.DecidedBy, d.Tier, d.Reason = airlock.VerdictDenied, "policy", airlock.TierDeny, refusal
			b.cancelReservation(ctx, call.ID)
			return b.finalize(ctx, call, rev, d, rec, pr.Tool), true
		}
		writeNote = fmt.Sprintf(" (write grant %s until %s)", g.ID, g.ExpiresAt.UTC().Format(time.RFC3339))
	}

	tier := pr.Tier
	reason := pr.Reason
	// A high risk score holds any call for a human, whatever the tier says:
	// a tool may be routine, its arguments need not be.
	if high := bandHigh(pol); d.Risk.Score >= high && tier.Rank() < airlock.TierApprove.Rank() {
		reason = fmt.Sprintf("risk %d (%s) holds this %s-tier call for review", d.Risk.Score, d.Risk.Band, tier)
		tier = airlock.TierApprove
	}
	// An MCP tool whose definition changed after first sight (possible
	// tool poisoning) always waits for a human.
	if changed, _ := call.Context["mcp_tool_changed"].(bool); changed && tier.Rank() < airlock.TierApprove.Rank() {
		reason = "the MCP server changed this tool's definition since it was first seen"
		tier = airlock.TierApprove
	}
	d.Tier = tier

	if tier == airlock.TierApprove {
		if g, ok := b.matchGrant(ctx, call, d.Risk, pr.Tool); ok {
			d.Verdict = airlock.VerdictApproved
			d.DecidedBy = "grant:" + g.ID
			d.Reason = "approved by grant " + g.ID + ": " + g.Describe()
			rec.Grant = g.ID
			return b.finalize(ctx, call, rev, d, rec, pr.Tool), true
		}
		b.maybeCanary(ctx, call)
		return b.hold(ctx, call, rev, d, rec, reason, pr.Tool)
	}
	d.Verdict = airlock.VerdictApproved
	d.DecidedBy = "policy"
	if reason == "" {
		reason = fmt.Sprintf("%s is a %s-tier tool", call.Tool, tier)
	}
	d.Reason = reason + writeNote
	out := b.finalize(ctx, call, rev, d, rec, pr.Tool)
	if tier == airlock.TierNotify && out.Verdict == airlock.VerdictApproved {
		b.publishRecord(b.subject("notify", call.Agent), airlock.DecisionRecord{Call: *call, Decision: out, Rule: rec.Rule, PolicyVersion: rec.PolicyVersion})
	}
	return out, true
}

// assessingScorer is a Scorer that can keep a call's analysis from scoring
// for observing its verdict (risk.Scorer), so that it is analysed once.
type assessingScorer interface {
	ScoreAssessed(call *airlock.ToolCall, extra ...airlock.Factor) (airlock.Risk, *risk.Assessment)
	ObserveAssessed(call *airlock.ToolCall, as *risk.Assessment, verdict airlock.Verdict)
}

// callWork is what Submit computes once for the call it decides and uses
// more than once: the fingerprint (claim and record), the call's JSON (both
// record writes) and its risk analysis (score and observe). Only the
// goroutine running that Submit touches it; it is found by the call's
// pointer, so a call decoded elsewhere (a review, another broker) never
// sees another's.
type callWork struct {
	fp       string
	callJSON []byte
	assessed *risk.Assessment
	// reply is the decision finalize published, encoded, for the decision
	// replyFor identifies.
	reply    []byte
	replyFor replyKey
}

// replyKey tells the decision a reply was encoded from from any other.
type replyKey struct {
	callID    string
	verdict   airlock.Verdict
	auditSeq  int64
	decidedAt time.Time
}

func replyKeyOf(d airlock.Decision) replyKey {
	return replyKey{d.CallID, d.Verdict, d.AuditSeq, d.DecidedAt}
}

func (b *Broker) workOf(call *airlock.ToolCall) *callWork {
	if v, ok := b.deciding.Load(call); ok {
		return v.(*callWork)
	}
	return nil
}

// fingerprintOf is fingerprint(call), computed once for a call Submit decides.
func (b *Broker) fingerprintOf(call *airlock.ToolCall) string {
	if w := b.workOf(call); w != nil {
		return w.fp
	}
	return fingerprint(call)
}

// callJSONOf is json.Marshal(call), computed once for a call Submit decides
// (nil for any other call: the record encodes it then).
func (b *Broker) callJSONOf(call *airlock.ToolCall) []byte {
	w := b.workOf(call)
	if w == nil {
		return nil
	}
	if w.callJSON == nil {
		w.callJSON, _ = json.Marshal(call)
	}
	return w.callJSON
}

// scoreKept is score for the call Submit decides: the analysis is kept
// for afterDecision's Observe.
func (b *Broker) scoreKept(call *airlock.ToolCall, extra []airlock.Factor) airlock.Risk {
	if sc, ok := b.scorer().(assessingScorer); ok {
		r, as := sc.ScoreAssessed(call, extra...)
		if w := b.workOf(call); w != nil {
			w.assessed = as
		}
		return r
	}
	return b.score(call, extra)
}

func bandHigh(p *policy.Policy) int {
	if p != nil && p.Risk.Bands.High > 0 {
		return p.Risk.Bands.High
	}
	return 50
}

func (b *Broker) score(call *airlock.ToolCall, extra []airlock.Factor) airlock.Risk {
	if sc := b.scorer(); sc != nil {
		return sc.Score(call, extra...)
	}
	r := airlock.Risk{Factors: append([]airlock.Factor{}, extra...)}
	for _, f := range extra {
		r.Score += f.Points
	}
	if r.Score > 100 {
		r.Score = 100
	}
	r.Band = bandOf(b.pol.Load(), r.Score)
	return r
}

func bandOf(p *policy.Policy, score int) string {
	bands := policy.Bands{Medium: 25, High: 50, Critical: 80}
	if p != nil && p.Risk.Bands.High > 0 {
		bands = p.Risk.Bands
	}
	switch {
	case score >= bands.Critical:
		return airlock.BandCritical
	case score >= bands.High:
		return airlock.BandHigh
	case score >= bands.Medium:
		return airlock.BandMedium
	}
	return airlock.BandLow
}

// hold queues the call for a reviewer and waits for the decision.
func (b *Broker) hold(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision, rec airlock.DecisionRecord, reason string, tool *policy.Tool) (airlock.Decision, bool) {
	pol := b.pol.Load()
	now := b.now().UTC()
	ttl := pol.Defaults.PendingTTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	p := &airlock.Pending{
		Call: *call, Tier: d.Tier, Risk: d.Risk, Reason: reason, Rule: rec.Rule,
		ReceivedAt: now, ExpiresAt: now.Add(ttl), ArgsHash: airlock.ArgsHash(call.Arguments),
		PolicyVersion: pol.Digest,
	}
	if tool != nil && tool.Sandbox != nil {
		p.Sandbox = isolationSummary(tool.Sandbox)
	}
	if _, err := b.appendClaimed(ctx, airlock.Event{Kind: airlock.EventPending, CallID: call.ID, TS: now, Payload: airlock.PendingRecord{Pending: *p}}, rev); err != nil {
		return b.finishUnrecorded(ctx, call, rev, b.failClosed(call, ReasonAuditUnavailable, err))
	}
	// Queue first, then mark the record pending: a broker dying in between
	// leaves an "evaluating" record that is taken over later, never a
	// "pending" record missing from the queue (which nobody could decide).
	if err := b.st.putPending(ctx, p); err != nil {
		return b.finishUnrecorded(ctx, call, rev, b.failClosed(call, ReasonStateUnavailable, err))
	}
	recd := callRecord{State: statePending, Fingerprint: fingerprint(call), Call: *call, UpdatedAt: now}
	if _, err := b.st.update(ctx, call.ID, recd, rev); err != nil {
		if errors.Is(err, errLostRace) {
			// Another broker took the call over (it presumed this one
			// dead) and owns its queue entry now: leave both to it.
			b.cancelReservation(ctx, call.ID)
			return b.wait(ctx, call.ID)
		}
		_ = b.st.deletePending(ctx, call.ID)
		return b.finishUnrecorded(ctx, call, rev, b.failClosed(call, ReasonStateUnavailable, err))
	}
	return b.wait(ctx, call.ID)
}

// waitBehind is wait for a duplicate of a call another Submit in this
// process is handling: until that handler lets go, a missing record means
// it is not written yet (or is being forgotten), not that it is gone.
func (b *Broker) waitBehind(ctx context.Context, id string) (airlock.Decision, bool) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, held := b.handling.Load(id); !held {
			break
		}
		if _, _, found, err := b.st.get(ctx, id); err == nil && found {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return airlock.Decision{}, false
		}
	}
	return b.wait(ctx, id)
}

// wait blocks until the call has a final decision (from any broker).
func (b *Broker) wait(ctx context.Context, id string) (airlock.Decision, bool) {
	d, ok, _ := b.waitFor(ctx, id, nil)
	return d, ok
}

// waitFor is wait that also gives up (stale true) once the record, checked
// every second, satisfies stale.
func (b *Broker) waitFor(ctx context.Context, id string, stale func(callRecord) bool) (airlock.Decision, bool, bool) {
	ch := make(chan *nats.Msg, 4)
	sub, err := b.nc.ChanSubscribe(b.subject("decision", id), ch)
	if err != nil {
		return airlock.Decision{}, false, false
	}
	defer sub.Unsubscribe()
	every := 5 * time.Second
	if stale != nil {
		every = time.Second
	}
	check := time.NewTicker(every)
	defer check.Stop()
	for {
		// Read the record after subscribing so no decision slips between.
		rec, _, found, err := b.st.get(ctx, id)
		if err == nil && found && rec.State == stateDecided && rec.Decision != nil {
			return *rec.Decision, true, false
		}
		if err == nil && found && stale != nil && stale(rec) {
			return airlock.Decision{}, false, true
		}
		if err == nil && !found {
			// Forgotten after a failed audit: the caller should retry.
			return airlock.Decision{CallID: id, Verdict: airlock.VerdictDenied, DecidedBy: "policy",
				Reason: ReasonAuditUnavailable + ": the call could not be recorded; retry later", DecidedAt: b.now().UTC(),
				Risk: airlock.Risk{Factors: []airlock.Factor{}}}, true, false
		}
		select {
		case m := <-ch:
			// Decisions are published only once final (after the sandbox
			// run, for sandboxed tools).
			var d airlock.Decision
			if json.Unmarshal(m.Data, &d) == nil && d.Final() {
				// Whoever decided released the call's slot.
				b.res.LoadAndDelete(id)
				return d, true, false
			}
		case <-check.C:
		case <-ctx.Done():
			return airlock.Decision{}, false, false
		}
	}
}

// finalize writes the decision to the audit log (fail closed), records it,
// runs the sandbox for approved sandboxed tools, tells watchers and returns
// what the agent gets.
func (b *Broker) finalize(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision, rec airlock.DecisionRecord, tool *policy.Tool) airlock.Decision {
	d.CallID = call.ID
	d.DecidedAt = b.now().UTC()
	if d.Risk.Factors == nil {
		d.Risk.Factors = []airlock.Factor{}
	}
	if d.Risk.Band == "" {
		d.Risk.Band = bandOf(b.pol.Load(), d.Risk.Score)
	}
	rec.Call = *call
	rec.Decision = d
	receipt, err := b.appendClaimed(ctx, airlock.Event{Kind: airlock.EventDecision, CallID: call.ID, TS: d.DecidedAt, Payload: rec}, rev)
	if errors.Is(err, airlock.ErrDecisionExists) {
		return b.decidedElsewhere(ctx, call)
	}
	if err != nil {
		out, _ := b.finishUnrecorded(ctx, call, rev, b.failClosed(call, ReasonAuditUnavailable, err))
		return out
	}
	d.AuditSeq = receipt.Seq
	d, runs, nrev, err := b.recordDecision(ctx, call, rev, d, tool)
	if err != nil {
		// The decision is audited; the record could not be written. The
		// agent still gets the audited answer, but nothing is executed.
		b.log.Error("record decision", "call", call.ID, "err", err)
		if runs {
			d.Execution = &airlock.Execution{Error: "not run: the call record could not be updated (" + err.Error() + ")", LimitHit: "interrupted"}
		}
		b.afterDecision(call, d, 0)
		return d
	}
	b.afterDecision(call, d, 0)
	if runs {
		d = b.execute(ctx, call, nrev, d, tool)
	}
	if data := b.publishDecision(call, d); data != nil {
		if w := b.workOf(call); w != nil {
			w.reply, w.replyFor = data, replyKeyOf(d)
		}
	}
	return d
}

// decidedElsewhere answers a call this broker evaluated while another
// broker, believing it dead, took the call over and audited its own
// decision first: the audited one stands (the audit stream refused this
// one), and nothing of this evaluation is recorded or run.
func (b *Broker) decidedElsewhere(ctx context.Context, call *airlock.ToolCall) airlock.Decision {
	b.log.Warn("another broker decided this call first; its decision stands", "call", call.ID)
	b.cancelReservation(ctx, call.ID)
	if d, err := b.auditedDecision(ctx, call.ID); err == nil && d != nil {
		return *d
	}
	out, _ := b.wait(ctx, call.ID)
	return out
}

// afterDecision does the bookkeeping every final decision needs.
func (b *Broker) afterDecision(call *airlock.ToolCall, d airlock.Decision, waited time.Duration) {
	b.cfg.Metrics.Decision(string(d.Tier), string(d.Verdict), d.DecidedBy, waited)
	if sc := b.scorer(); sc != nil {
		if as, ok := sc.(assessingScorer); ok {
			var kept *risk.Assessment
			if w := b.workOf(call); w != nil {
				kept, w.assessed = w.assessed, nil
			}
			as.ObserveAssessed(call, kept, d.Verdict)
		} else {
			sc.Observe(call, d.Verdict)
		}
	}
	b.recent.add(call.Session, airlock.DecisionRecord{Call: *call, Decision: d})
	if v, ok := b.res.LoadAndDelete(call.ID); ok {
		if r, ok := v.(interface{ Release(context.Context) }); ok {
			r.Release(context.Background())
		}
	}
}

func (b *Broker) cancelReservation(ctx context.Context, id string) {
	if v, ok := b.res.LoadAndDelete(id); ok {
		if r, ok := v.(interface{ Cancel(context.Context) }); ok {
			r.Cancel(ctx)
		}
	}
}

// publishDecision tells watchers a call's final decision and returns it
// encoded (nil if it could not be encoded).
func (b *Broker) publishDecision(call *airlock.ToolCall, d airlock.Decision) []byte {
	data, err := json.Marshal(d)
	if err != nil {
		return nil
	}
	m := nats.NewMsg(b.subject("decision", call.ID))
	m.Data = data
	m.Header.Set("Airlock-Agent", call.Agent)
	m.Header.Set("Airlock-Tool", call.Tool)
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Warn("publish decision", "call", call.ID, "err", err)
	}
	return data
}

func (b *Broker) publishRecord(subject string, r airlock.DecisionRecord) {
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	if err := b.nc.Publish(subject, data); err != nil {
		b.log.Warn("publish", "subject", subject, "err", err)
	}
}

// appendClaimed appends an event for a call this broker holds the claim
// on (the record at rev), riding through transient errors of the fleet's
// audit stream (a leader election) like the state operations do. Its key,
// the event's kind, call and the claim's revision, is the same for every
// attempt and differs for any other claim, so a retry whose first attempt
// landed is stored once and nothing else is ever merged with it. Errors of
// the embedded SQLite log are not transient: they fail closed at once.
func (b *Broker) appendClaimed(ctx context.Context, ev airlock.Event, rev uint64) (airlock.Receipt, error) {
	ev.Key = fmt.Sprintf("%s:%s:%d", ev.Kind, ev.CallID, rev)
	var r airlock.Receipt
	err := retryTransient(ctx, func() (err error) { r, err = b.cfg.Audit.Append(ctx, ev); return err })
	return r, err
}

// failClosed is the answer when something the decision depends on is down:
// denied, and never approved.
func (b *Broker) failClosed(call *airlock.ToolCall, reason string, err error) airlock.Decision {
	b.log.Error("failing closed", "call", call.ID, "reason", reason, "err", err)
	return airlock.Decision{
		CallID: call.ID, Verdict: airlock.VerdictDenied, DecidedBy: "policy",
		Reason:    reason + ": " + err.Error(),
		Risk:      airlock.Risk{Band: airlock.BandLow, Factors: []airlock.Factor{}},
		DecidedAt: b.now().UTC(),
	}
}

// finishUnrecorded forgets a call whose decision could not be recorded, so a
// retry is evaluated afresh once the fault is gone, and returns d.
func (b *Broker) finishUnrecorded(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision) (airlock.Decision, bool) {
	b.cancelReservation(ctx, call.ID)
	if err := b.st.remove(ctx, call.ID, rev); err != nil && !errors.Is(err, errLostRace) {
		b.log.Warn("forget unrecorded call", "call", call.ID, "err", err)
	}
	return d, true
}

// reject audits and answers a malformed call.
func (b *Broker) reject(ctx context.Context, agent string, body []byte, err error) airlock.Decision {
	var de *DecodeError
	reason := err.Error()
	id := ""
	if errors.As(err, &de) {
		reason = de.Reason
		id = de.ID
	}
	if id == "" {
		id = newID()
	}
	call := airlock.ToolCall{ID: id, Agent: agent, Arguments: map[string]any{}}
	if !namePattern.MatchString(agent) {
		call.Agent = ""
	}
	d := airlock.Decision{
		CallID: id, Verdict: airlock.VerdictRejected, DecidedBy: "policy",
		Reason: "rejected: " + reason, Risk: airlock.Risk{Band: airlock.BandLow, Factors: []airlock.Factor{}},
		DecidedAt: b.now().UTC(),
	}
	rec := airlock.DecisionRecord{Call: call, Decision: d, Raw: rawSnippet(body, 512), PolicyVersion: b.pol.Load().Digest}
	receipt, aerr := b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventDecision, CallID: id, TS: d.DecidedAt, Payload: rec})
	if aerr != nil {
		b.log.Error("audit rejected call", "err", aerr)
		d.Reason += " (and the audit log is unavailable)"
	} else {
		d.AuditSeq = receipt.Seq
	}
	return d
}

// conflict answers a reused id whose content differs from the recorded call.
func (b *Broker) conflict(ctx context.Context, call *airlock.ToolCall) airlock.Decision {
	d := airlock.Decision{
		CallID: call.ID, Verdict: airlock.VerdictRejected, DecidedBy: "policy",
		Reason:    "rejected: id " + call.ID + " was already used for a different call (ids are idempotency keys; use a new id)",
		Risk:      airlock.Risk{Band: airlock.BandLow, Factors: []airlock.Factor{}},
		DecidedAt: b.now().UTC(),
	}
	// Audited as its own kind, so the decisions view keeps one row per call.
	if _, err := b.cfg.Audit.Append(ctx, airlock.Event{Kind: "conflict", CallID: call.ID, TS: d.DecidedAt, Payload: airlock.DecisionRecord{Call: *call, Decision: d}}); err != nil {
		d.Reason += " (and the audit log is unavailable)"
	}
	return d
}

func rawSnippet(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func rateLimitReason(r *airlock.RateLimit) string {
	s := fmt.Sprintf("rate limited: %s %s over %s", r.Scope, r.Key, r.Dimension)
	if r.Window != "" {
		s += " per " + r.Window
	}
	s += fmt.Sprintf(" (used %g of %g)", r.Used, r.Limit)
	if r.RetryAfter != "" {
		s += "; retry after " + r.RetryAfter
	}
	return s
}

// DecisionLookup is implemented by audit logs that can say which decision
// they already hold for a call (audit.Log does).
type DecisionLookup interface {
	LastDecision(ctx context.Context, callID string) (*airlock.Decision, error)
}

// auditedDecision returns the decision the audit log already holds for a
// call, when the auditor can tell (nil when it holds none). An error means
// the log could not be asked: the caller must not decide the call then.
func (b *Broker) auditedDecision(ctx context.Context, id string) (*airlock.Decision, error) {
	a := b.cfg.Audit
	if t, ok := a.(timedAuditor); ok {
		a = t.next
	}
	l, ok := a.(DecisionLookup)
	if !ok {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, auditLookupTimeout)
	defer cancel()
	d, err := l.LastDecision(ctx, id)
	if err != nil {
		b.log.Error("look up an audited decision", "call", id, "err", err)
		return nil, err
	}
	if d == nil || !d.Final() || d.Verdict == airlock.VerdictRejected {
		return nil, nil
	}
	return d, nil
}

// auditLookupTimeout bounds asking the audit log for a call's decision.
const auditLookupTimeout = 10 * time.Second

// recordAudited records a decision that was audited by a broker that died
// before recording it, and tells whoever waits. An approved sandboxed call
// in that state never started its run (runs are indexed and recorded
// before they start): it is recorded interrupted and not run now, the
// same answer as for a run cut short, so that no call id ever has a run
// decided by two brokers.
func (b *Broker) recordAudited(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision) airlock.Decision {
	if d.Verdict == airlock.VerdictApproved && d.Execution == nil {
		if t := b.pol.Load().Tool(call.Tool); t != nil && t.Sandbox != nil {
			ex := &airlock.Execution{Backend: backendName(t.Sandbox), ExitCode: -1, LimitHit: "interrupted",
				Error: "not run: the broker that approved this call stopped before running it; it is not run again"}
			if _, err := b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventExecution, CallID: call.ID, TS: b.now().UTC(),
				Payload: airlock.ExecRecord{CallID: call.ID, Execution: ex}}); err != nil {
				b.log.Error("audit an unstarted run", "call", call.ID, "err", err)
				return b.failClosed(call, ReasonAuditUnavailable, err)
			}
			d.Execution = ex
		}
	}
	rec := callRecord{State: stateDecided, Fingerprint: fingerprint(call), Call: *call, Decision: &d, UpdatedAt: b.now()}
	if _, err := b.st.update(ctx, call.ID, rec, rev); err != nil {
		b.log.Warn("record an audited decision", "call", call.ID, "err", err)
	}
	_ = b.st.deletePending(ctx, call.ID)
	b.publishDecision(call, d)
	return d
}

// recordDecision records an audited decision in the call record. For an
// approved sandboxed tool the record says "executing" (runs is true) and
// the run is indexed first, so that a broker dying in between leaves
// something recover() finds; if indexing fails, nothing will run.
func (b *Broker) recordDecision(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision, tool *policy.Tool) (airlock.Decision, bool, uint64, error) {
	runs := d.Verdict == airlock.VerdictApproved && tool != nil && tool.Sandbox != nil
	state := stateDecided
	if runs {
		state = stateExecuting
		if err := b.indexRun(ctx, call.ID, tool); err != nil {
			b.log.Error("index sandbox run", "call", call.ID, "err", err)
			runs, state = false, stateDecided
			d.Execution = &airlock.Execution{Error: "not run: " + ReasonStateUnavailable + ": " + err.Error(), ExitCode: -1}
		}
	}
	cr := callRecord{State: state, Fingerprint: b.fingerprintOf(call), Call: *call, Decision: &d, ClaimedBy: b.cfg.Name, ClaimedAt: b.now(), UpdatedAt: b.now(),
		callJSON: b.callJSONOf(call)}
	nrev, err := b.st.update(ctx, call.ID, cr, rev)
	return d, runs, nrev, err
}

package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/policy"
)

func (b *Broker) handleReview(req micro.Request) {
	id := lastToken(req.Subject())
	body := append([]byte(nil), req.Data()...)
	b.spawn(func() {
		var r airlock.Review
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if len(body) > b.maxBytes() {
			respondJSON(req, airlock.ReviewReply{Error: "review is larger than the largest call accepted"})
			return
		}
		if err := dec.Decode(&r); err != nil {
			respondJSON(req, airlock.ReviewReply{Error: "malformed review: " + describeJSONError(err)})
			return
		}
		if r.CallID == "" {
			r.CallID = id
		}
		if r.CallID != id {
			respondJSON(req, airlock.ReviewReply{Error: fmt.Sprintf("review names call %q but was sent for %q", clip(r.CallID), clip(id))})
			return
		}
		respondJSON(req, b.Review(b.ctx, r))
	})
}

func (b *Broker) maxBytes() int {
	if b.cfg.MaxBytes > 0 {
		return b.cfg.MaxBytes
	}
	return DefaultMaxBytes
}

// Review applies a reviewer's verdict to a pending call. The first verdict
// wins; later ones are told who decided.
func (b *Broker) Review(ctx context.Context, r airlock.Review) airlock.ReviewReply {
	refuse := func(msg string) airlock.ReviewReply {
		b.auditReview(ctx, r, false, msg)
		return airlock.ReviewReply{Error: msg}
	}
	if !idPattern.MatchString(r.CallID) {
		return airlock.ReviewReply{Error: "review: bad call id"}
	}
	if r.Action != airlock.ActionApprove && r.Action != airlock.ActionDeny {
		return refuse(fmt.Sprintf("review: action must be approve or deny, not %q", clip(string(r.Action))))
	}
	if !namePattern.MatchString(r.Reviewer) {
		return refuse("review: a reviewer name is required (letters, digits, _ . : @ + -)")
	}
	pol := b.pol.Load()
	signed := auth.SignaturesRequired(pol)
	if signed {
		if msg := b.checkSigned(ctx, pol, r); msg != "" {
			return refuse(msg)
		}
	}
	rec, rev, found, err := b.st.get(ctx, r.CallID)
	if err != nil {
		return airlock.ReviewReply{Error: "review: " + err.Error()}
	}
	if !found {
		return airlock.ReviewReply{Error: "review: no call " + r.CallID}
	}
	// A call is queued a moment before its record says pending: a verdict
	// arriving in between waits for it (briefly).
	for i := 0; rec.State == stateEvaluating && i < 50; i++ {
		select {
		case <-ctx.Done():
			return airlock.ReviewReply{Error: "review: " + ctx.Err().Error()}
		case <-time.After(20 * time.Millisecond):
		}
		if rec, rev, found, err = b.st.get(ctx, r.CallID); err != nil || !found {
			return airlock.ReviewReply{Error: fmt.Sprintf("review: call %s: %v", r.CallID, err)}
		}
	}
	switch rec.State {
	case stateDecided, stateExecuting:
		by := ""
		if rec.Decision != nil {
			by = rec.Decision.DecidedBy
		}
		return airlock.ReviewReply{Error: "already decided by " + by, DecidedBy: by, Decision: rec.Decision}
	case stateDeciding:
		return airlock.ReviewReply{Error: "already being decided by " + rec.ClaimedBy, DecidedBy: rec.ClaimedBy}
	case statePending:
	default:
		return airlock.ReviewReply{Error: "review: call " + r.CallID + " is not waiting for a reviewer"}
	}
	p, err := b.st.getPending(ctx, r.CallID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		// Decided meanwhile (the record read above may have come from a
		// replica that lagged): say by whom.
		if by := b.winner(ctx, r.CallID, rev); by != "" {
			return airlock.ReviewReply{Error: "already decided by " + by, DecidedBy: by}
		}
	}
	if err != nil {
		return airlock.ReviewReply{Error: "review: pending record: " + err.Error()}
	}
	call := rec.Call
	if signed && r.PolicyVersion != p.PolicyVersion {
		return refuse(fmt.Sprintf("review: the verdict was signed for policy version %q, but the call was held under %q", short(r.PolicyVersion), short(p.PolicyVersion)))
	}
	// The requester can never approve its own call.
	if r.Action == airlock.ActionApprove && (strings.EqualFold(r.Reviewer, call.User) || strings.EqualFold(r.Reviewer, call.Agent)) {
		return refuse(fmt.Sprintf("review: %s requested this call and cannot approve it", r.Reviewer))
	}
	if r.Action == airlock.ActionApprove && signed && r.PublicKey != "" && r.PublicKey == auth.AgentKey(pol, call.Agent) {
		return refuse(fmt.Sprintf("review: the verdict is signed with agent %s's own key; the requester cannot approve its own call", call.Agent))
	}
	edited := r.Action == airlock.ActionApprove && r.UpdatedArguments != nil
	if edited && call.Tool == ElevateTool {
		return refuse("review: a write-access request cannot be edited; deny it, or approve it as asked")
	}
	if r.ArgsHash != "" {
		want := p.ArgsHash
		if edited {
			want = airlock.ArgsHash(r.UpdatedArguments)
		}
		if r.ArgsHash != want {
			return refuse("review: the verdict is for different arguments than the call holds (args hash mismatch)")
		}
	}
	tool := pol.Tool(call.Tool)
	d := airlock.Decision{CallID: call.ID, Tier: p.Tier, Risk: p.Risk, DecidedBy: "reviewer:" + r.Reviewer}
	drec := airlock.DecisionRecord{Rule: p.Rule, PolicyVersion: p.PolicyVersion, Review: &r,
		WaitedMS: b.now().Sub(p.ReceivedAt).Milliseconds()}
	if edited {
		// The edited call is validated, evaluated and scored afresh.
		ec := call
		ec.Arguments = r.UpdatedArguments
		raw, err := json.Marshal(ec)
		if err != nil {
			return refuse("review: edited arguments do not encode: " + err.Error())
		}
		if _, err := DecodeCall(raw, call.Agent, b.cfg.MaxBytes, b.cfg.MaxDepth); err != nil {
			return refuse("review: edited arguments are invalid: " + err.Error())
		}
		er := pol.Evaluate(&ec)
		if er.Denied || er.Tier == airlock.TierDeny {
			return refuse("review: the edited call is denied by policy: " + er.Reason)
		}
		d.Risk = b.score(&ec, er.Factors)
		d.UpdatedArguments = r.UpdatedArguments
		drec.Edited = true
		tool = er.Tool
	}
	// Two-person rule: a second, different reviewer must approve too.
	second := ""
	if r.Action == airlock.ActionApprove && b.needsTwo(pol, tool, d.Risk.Score) {
		for _, a := range rec.Approvals {
			if strings.EqualFold(a, r.Reviewer) {
				return refuse("review: " + r.Reviewer + " already approved; a second, different reviewer must approve")
			}
		}
		if len(rec.Approvals) == 0 {
			rec.Approvals = append(rec.Approvals, r.Reviewer)
			rec.UpdatedAt = b.now()
			if _, err := b.st.update(ctx, call.ID, rec, rev); err != nil {
				return airlock.ReviewReply{Error: "review: " + err.Error()}
			}
			p.Approvals = rec.Approvals
			_ = b.st.putPending(ctx, p)
			b.auditReview(ctx, r, true, "first of two approvals")
			return airlock.ReviewReply{Accepted: true, Waiting: true}
		}
		// The signed verdict is audited as sent; the note goes in the reason.
		second = " (second approval after " + strings.Join(rec.Approvals, ", ") + ")"
	}
	// Claim the call: the first claim wins.
	rec.State = stateDeciding
	rec.ClaimedBy = "reviewer:" + r.Reviewer
	rec.Broker = b.cfg.Name
	rec.ClaimedAt = b.now()
	rec.UpdatedAt = b.now()
	crev, err := b.st.update(ctx, call.ID, rec, rev)
	if errors.Is(err, errLostRace) {
		by := b.winner(ctx, call.ID, rev)
		return airlock.ReviewReply{Error: "already decided by " + by, DecidedBy: by}
	}
	if err != nil {
		return airlock.ReviewReply{Error: "review: " + err.Error()}
	}
	if r.Action == airlock.ActionApprove {
		d.Verdict = airlock.VerdictApproved
		d.Reason = r.Reason
		if d.Reason == "" {
			d.Reason = "approved by " + r.Reviewer
		}
		d.Reason += second
	} else {
		d.Verdict = airlock.VerdictDenied
		d.Reason = r.Reason
		if d.Reason == "" {
			d.Reason = "denied by " + r.Reviewer
		}
	}
	if p.Canary {
		return b.finishCanary(ctx, call, crev, r, p)
	}
	// The agent receives the arguments that were approved.
	effective := call
	if edited {
		effective.Arguments = r.UpdatedArguments
	}
	out, ok := b.decideClaimed(ctx, &call, &effective, crev, d, drec, tool)
	if !ok {
		return airlock.ReviewReply{Error: "audit unavailable: nothing was decided; try again"}
	}
	rep := airlock.ReviewReply{Accepted: true, Decision: &out}
	if r.Action == airlock.ActionApprove && r.Grant != nil {
		if g, err := b.createGrant(ctx, &effective, r.Reviewer, r.Grant, d.Risk.Score); err != nil {
			rep.Note = "approved, but no grant: " + err.Error()
		} else {
			rep.Grant = g
			rep.Note = "grant " + g.ID + ": " + g.Describe()
		}
	}
	return rep
}

// winner names who won a compare-and-set on call id that this broker lost
// against revision rev. A replicated bucket may answer a read from a
// replica that has not applied the winner's write yet (direct get), so it
// reads until the record has moved past rev.
func (b *Broker) winner(ctx context.Context, id string, rev uint64) string {
	for range 100 {
		cur, crev, found, err := b.st.get(ctx, id)
		if err == nil && found && crev > rev {
			if cur.Decision != nil && cur.Decision.DecidedBy != "" {
				return cur.Decision.DecidedBy
			}
			if cur.ClaimedBy != "" {
				return cur.ClaimedBy
			}
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(10 * time.Millisecond):
		}
	}
	return ""
}

// decideClaimed finishes a call this broker claimed: audit (fail closed),
// record, leave the queue, run the sandbox, publish. ok is false when the
// decision could not be audited (the claim is then given back).
func (b *Broker) decideClaimed(ctx context.Context, call, effective *airlock.ToolCall, rev uint64, d airlock.Decision, drec airlock.DecisionRecord, tool *policy.Tool) (airlock.Decision, bool) {
	d.DecidedAt = b.now().UTC()
	drec.Call = *call
	drec.Decision = d
	receipt, err := b.appendClaimed(ctx, airlock.Event{Kind: airlock.EventDecision, CallID: call.ID, TS: d.DecidedAt, Payload: drec}, rev)
	if errors.Is(err, airlock.ErrDecisionExists) {
		// Another broker took this claim over and decided: its decision
		// stands, and the claim is not ours to give back.
		b.log.Warn("another broker decided this call first; its decision stands", "call", call.ID)
		return d, false
	}
	if err != nil {
		b.log.Error("audit decision", "call", call.ID, "err", err)
		// Give the claim back so that the call can still be decided.
		rec, crev, found, gerr := b.st.get(ctx, call.ID)
		if gerr == nil && found && rec.State == stateDeciding {
			rec.State = statePending
			rec.ClaimedBy, rec.Broker = "", ""
			rec.UpdatedAt = b.now()
			_, _ = b.st.update(ctx, call.ID, rec, crev)
		}
		return d, false
	}
	d.AuditSeq = receipt.Seq
	if d.Verdict == airlock.VerdictApproved && call.Tool == ElevateTool {
		// Fails closed: without the stored grant, writes stay refused.
		if err := b.recordWriteGrant(ctx, call, d.DecidedBy); err != nil {
			b.log.Error("record write grant", "call", call.ID, "err", err)
		}
	}
	d, runs, nrev, err := b.recordDecision(ctx, call, rev, d, tool)
	if err != nil {
		b.log.Error("record decision", "call", call.ID, "err", err)
		runs = false
	}
	if err := b.st.deletePending(ctx, call.ID); err != nil {
		b.log.Warn("leave queue", "call", call.ID, "err", err)
	}
	if _, held := b.res.Load(call.ID); !held && b.cfg.Limiter != nil {
		// The call was reserved by another broker, or by this one before a
		// restart: free its concurrency slot from the shared store here.
		b.cfg.Limiter.Restore(call).Release(ctx)
	}
	b.afterDecision(call, d, time.Duration(drec.WaitedMS)*time.Millisecond)
	if runs {
		b.spawn(func() {
			out := b.execute(b.ctx, effective, nrev, d, tool)
			b.publishDecision(call, out)
		})
		return d, true
	}
	b.publishDecision(call, d)
	return d, true
}

// checkSigned verifies a verdict when the policy names reviewers: signed by
// the named reviewer's nkey or ed25519 SSH key (auth.VerdictKeys), fresh, bound to the arguments, and never seen
// before (its nonce is recorded with a create, so a replay fails on every
// broker). It returns the refusal, or "".
func (b *Broker) checkSigned(ctx context.Context, pol *policy.Policy, r airlock.Review) string {
	id, ok := pol.Auth.Reviewers[r.Reviewer]
	if !ok {
		return fmt.Sprintf("review: %s is not a reviewer in the policy's auth: section", r.Reviewer)
	}
	keys := auth.VerdictKeys(id)
	if len(keys) == 0 {
		return fmt.Sprintf("review: reviewer %s has no nkey (nor an ed25519 ssh_key), and verdicts must be signed (airlock keys new reviewer %s)", r.Reviewer, r.Reviewer)
	}
	switch err := auth.VerifyReviewAny(r, keys); {
	case errors.Is(err, auth.ErrUnsigned):
		return "review: unsigned verdict refused: reviewers sign their verdicts (--key FILE)"
	case errors.Is(err, auth.ErrWrongKey):
		return fmt.Sprintf("review: the verdict is signed with key %s, which is not reviewer %s's", clip(r.PublicKey), r.Reviewer)
	case err != nil:
		return "review: forged or altered verdict: the signature does not verify"
	}
	now := b.now()
	if r.Timestamp.IsZero() || r.Timestamp.Before(now.Add(-reviewSkew)) || r.Timestamp.After(now.Add(reviewSkew)) {
		return fmt.Sprintf("review: stale verdict: signed at %s, the broker's time is %s (allowed: ±%s)",
			r.Timestamp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), reviewSkew)
	}
	if r.ArgsHash == "" {
		return "review: a signed verdict must name the hash of the arguments it approves"
	}
	if r.Nonce == "" {
		return "review: a signed verdict needs a nonce"
	}
	data, _ := json.Marshal(nonceRecord{Seen: now.UTC(), Reviewer: r.Reviewer, CallID: r.CallID})
	if _, err := b.st.state.Create(ctx, nonceKey(r.PublicKey, r.Nonce), data); err != nil {
		if isRevisionMismatch(err) {
			return "review: replayed verdict refused: its nonce was already used"
		}
		return ReasonStateUnavailable + ": review: nonce not recorded: " + err.Error()
	}
	return ""
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (b *Broker) needsTwo(p *policy.Policy, tool *policy.Tool, score int) bool {
	if tool != nil && tool.TwoPerson {
		return true
	}
	return p.Review.TwoPersonRisk > 0 && score >= p.Review.TwoPersonRisk
}

func (b *Broker) auditReview(ctx context.Context, r airlock.Review, accepted bool, msg string) {
	rr := airlock.ReviewRecord{Review: r, Accepted: accepted}
	if !accepted {
		rr.Error = msg
	}
	if _, err := b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventReview, CallID: r.CallID, TS: b.now().UTC(), Payload: rr}); err != nil {
		b.log.Error("audit review", "call", r.CallID, "err", err)
	}
}

// expireLoop expires calls nobody decided within their pending TTL.
func (b *Broker) expireLoop() {
	defer b.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	tick := 0
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			b.expireDue(b.ctx)
			b.expireGrants(b.ctx)
			if tick++; tick%5 == 0 {
				b.recover(b.ctx, false)
			}
			if tick%30 == 0 {
				b.cleanState(b.ctx)
			}
		}
	}
}

func (b *Broker) expireDue(ctx context.Context) {
	ps, err := b.st.listPending(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("list pending", "err", err)
		}
		return
	}
	b.cfg.Metrics.Pending(len(ps))
	now := b.now()
	for _, p := range ps {
		if now.Before(p.ExpiresAt) {
			continue
		}
		rec, rev, found, err := b.st.get(ctx, p.Call.ID)
		if err == nil && found && rec.State == stateDeciding {
			b.unstick(ctx, p.Call.ID, false)
			continue
		}
		if err != nil || !found || rec.State != statePending {
			if err == nil && (!found || rec.State == stateDecided) {
				_ = b.st.deletePending(ctx, p.Call.ID)
			}
			continue
		}
		rec.State = stateDeciding
		rec.ClaimedBy = "expiry:" + b.cfg.Name
		rec.Broker = b.cfg.Name
		rec.UpdatedAt = now
		crev, err := b.st.update(ctx, p.Call.ID, rec, rev)
		if err != nil {
			continue // someone decided it meanwhile
		}
		ttl := p.ExpiresAt.Sub(p.ReceivedAt).Round(time.Second)
		d := airlock.Decision{CallID: p.Call.ID, Verdict: airlock.VerdictExpired, DecidedBy: "policy", Tier: p.Tier, Risk: p.Risk,
			Reason: fmt.Sprintf("no reviewer decided within %s (pending_ttl); expired calls are never run", ttl)}
		drec := airlock.DecisionRecord{Rule: p.Rule, PolicyVersion: p.PolicyVersion, WaitedMS: now.Sub(p.ReceivedAt).Milliseconds()}
		call := p.Call
		if p.Canary {
			b.expireCanary(ctx, &call, crev, p)
			continue
		}
		if _, ok := b.decideClaimed(ctx, &call, &call, crev, d, drec, nil); !ok {
			b.log.Error("expire: audit unavailable", "call", call.ID)
		}
	}
}

// recover finishes what a dead broker left half-done: sandbox runs that
// were under way are recorded as interrupted, never re-run. In-flight runs
// are indexed in the state bucket (exec.<id>), so this never scans every
// call. With Exclusive (the embedded, single-broker deployment) every
// indexed run is orphaned at start; in a fleet, a run is orphaned once its
// broker is presumed dead (its heartbeat gone), or at the latest once its
// deadline (timeout plus grace) has passed without its broker finishing it.
func (b *Broker) recover(ctx context.Context, starting bool) {
	lister, err := b.st.state.ListKeysFiltered(ctx, execIndexPrefix+">")
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("recover: list runs", "err", err)
		}
		return
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop()
	now := b.now()
	for _, key := range keys {
		e, err := b.st.state.Get(ctx, key)
		if err != nil {
			continue
		}
		var run execIndex
		if json.Unmarshal(e.Value(), &run) != nil {
			continue
		}
		orphan := now.After(run.Deadline) || (starting && b.cfg.Exclusive) || (starting && run.Broker == b.cfg.Name) ||
			(run.Broker != b.cfg.Name && b.presumedDead(ctx, run.Broker, run.Started))
		if !orphan {
			continue
		}
		id := strings.TrimPrefix(key, execIndexPrefix)
		rec, rev, found, err := b.st.get(ctx, id)
		if err == nil && found && rec.State == stateExecuting {
			b.interrupt(ctx, id, rec, rev)
		}
		_ = b.st.state.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	}
	// Reviewer claims a dead broker never finished go back to the queue:
	// at once for the embedded broker starting (nobody else can hold one),
	// after evaluatingTimeout otherwise. Without this, a claim waited for
	// the call's pending TTL and the call was then expired.
	ps, err := b.st.listPending(ctx)
	if err != nil {
		return
	}
	for _, p := range ps {
		b.unstick(ctx, p.Call.ID, starting && b.cfg.Exclusive)
	}
}

// unstick returns a call whose reviewer claim was never finished (its
// broker died between claim and decision) to the queue: once its broker is
// presumed dead, or the claim is evaluatingTimeout old; force: at once.
func (b *Broker) unstick(ctx context.Context, id string, force bool) {
	rec, rev, found, err := b.st.get(ctx, id)
	if err != nil || !found || rec.State != stateDeciding {
		return
	}
	if !force && b.now().Sub(rec.UpdatedAt) < evaluatingTimeout && (rec.Broker == b.cfg.Name || !b.presumedDead(ctx, rec.Broker, rec.UpdatedAt)) {
		return
	}
	// The claimant died. If it audited a decision, that decision stands.
	d, err := b.auditedDecision(ctx, id)
	if err != nil {
		return // asked again on the next sweep
	}
	if d != nil {
		call := rec.Call
		b.recordAudited(ctx, &call, rev, *d)
		return
	}
	rec.State = statePending
	rec.ClaimedBy, rec.Broker = "", ""
	rec.UpdatedAt = b.now()
	_, _ = b.st.update(ctx, id, rec, rev)
}

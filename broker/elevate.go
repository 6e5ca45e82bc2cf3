package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// ElevateTool is the built-in request for a session's write grant (read
// before write): arguments {"reason": "…", "minutes": 5}. It always waits
// for a reviewer: never auto, never covered by a grant, never batched.
const ElevateTool = "airlock_elevate"

// FactorWriteElevation is the risk factor of an elevation request.
const FactorWriteElevation = "write_elevation"

const writeGrantPrefix = "write."

// writeGrantKey is the state-bucket key of an (agent, session) write grant.
func writeGrantKey(agent, session string) string {
	sum := sha256.Sum256([]byte(agent + "\x00" + session))
	return writeGrantPrefix + hex.EncodeToString(sum[:20])
}

func writeGrantTTL(p *policy.Policy) time.Duration {
	if p.Review.WriteGrantTTL > 0 {
		return p.Review.WriteGrantTTL
	}
	return policy.DefaultWriteGrantTTL
}

// elevateArgs validates an elevation request's arguments.
func elevateArgs(call *airlock.ToolCall, max time.Duration) (reason string, d time.Duration, err error) {
	for k := range call.Arguments {
		if k != "reason" && k != "minutes" {
			return "", 0, fmt.Errorf("%s takes reason and minutes only, not %q", ElevateTool, k)
		}
	}
	reason, _ = call.Arguments["reason"].(string)
	if strings.TrimSpace(reason) == "" {
		return "", 0, fmt.Errorf("%s needs a reason (why the session must write)", ElevateTool)
	}
	d = max
	if v, ok := call.Arguments["minutes"]; ok {
		m, isNum := v.(float64)
		if !isNum || m <= 0 || math.IsNaN(m) || math.IsInf(m, 0) {
			return "", 0, fmt.Errorf("%s: minutes must be a positive number", ElevateTool)
		}
		if want := time.Duration(m * float64(time.Minute)); want < max {
			d = want
		}
	}
	return reason, d, nil
}

// evaluateElevate holds an elevation request for a reviewer.
func (b *Broker) evaluateElevate(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision, rec airlock.DecisionRecord) (airlock.Decision, bool) {
	pol := b.pol.Load()
	why, dur, err := elevateArgs(call, writeGrantTTL(pol))
	if err != nil {
		d.Verdict, d.DecidedBy, d.Tier, d.Reason = airlock.VerdictDenied, "policy", airlock.TierDeny, err.Error()
		d.Risk = airlock.Risk{Band: airlock.BandLow, Factors: []airlock.Factor{}}
		b.cancelReservation(ctx, call.ID)
		return b.finalize(ctx, call, rev, d, rec, nil), true
	}
	d.Tier = airlock.TierApprove
	d.Risk = b.score(call, []airlock.Factor{{Name: FactorWriteElevation, Points: 30,
		Detail: fmt.Sprintf("asks for write access for session %q for %s", call.Session, dur)}})
	reason := fmt.Sprintf("write access for %s (read before write): %s", dur, why)
	return b.hold(ctx, call, rev, d, rec, reason, nil)
}

// liveWriteGrant returns the session's write grant if it has not expired.
func (b *Broker) liveWriteGrant(ctx context.Context, call *airlock.ToolCall) (*airlock.Grant, error) {
	e, err := b.st.state.Get(ctx, writeGrantKey(call.Agent, call.Session))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var g airlock.Grant
	if err := json.Unmarshal(e.Value(), &g); err != nil {
		return nil, fmt.Errorf("write grant is corrupt: %w", err)
	}
	if g.Agent != call.Agent || !b.now().Before(g.ExpiresAt) {
		return nil, nil
	}
	return &g, nil
}

// checkWrites refuses a writes: true tool unless the session holds a live
// write grant; it returns the refusal reason, or "" and the grant.
func (b *Broker) checkWrites(ctx context.Context, call *airlock.ToolCall) (string, *airlock.Grant) {
	g, err := b.liveWriteGrant(ctx, call)
	if err != nil {
		return ReasonStateUnavailable + ": write grants cannot be read: " + err.Error(), nil
	}
	if g == nil {
		return fmt.Sprintf("%s writes, and session %q of %s holds no live write grant (read before write): submit %s with {\"reason\": \"…\", \"minutes\": 5} and have a reviewer approve it first",
			call.Tool, call.Session, call.Agent, ElevateTool), nil
	}
	return "", g
}

// recordWriteGrant stores the write grant an approved elevation request
// asked for: audited first, then written to the state bucket.
func (b *Broker) recordWriteGrant(ctx context.Context, call *airlock.ToolCall, by string) error {
	pol := b.pol.Load()
	_, dur, err := elevateArgs(call, writeGrantTTL(pol))
	if err != nil {
		return err
	}
	now := b.now().UTC()
	g := airlock.Grant{ID: "w" + strings.ToLower(newID()[16:]), Agent: call.Agent, Tool: "writes",
		When: fmt.Sprintf("session == %q", call.Session), CreatedBy: by, CreatedAt: now, ExpiresAt: now.Add(dur), FromCall: call.ID}
	if _, err := b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventGrant, CallID: call.ID, TS: now,
		Payload: airlock.GrantRecord{Op: "created", Grant: g, By: by}}); err != nil {
		return fmt.Errorf("%s: %w", ReasonAuditUnavailable, err)
	}
	data, _ := json.Marshal(g)
	if _, err := b.st.state.Put(ctx, writeGrantKey(call.Agent, call.Session), data); err != nil {
		return fmt.Errorf("%s: %w", ReasonStateUnavailable, err)
	}
	return nil
}

// cleanState forgets nonces too old to be replayed (a stale verdict is
// refused anyway) and write grants that have expired (auditing each).
func (b *Broker) cleanState(ctx context.Context) {
	lister, err := b.st.state.ListKeys(ctx)
	if err != nil {
		return
	}
	var keys []string
	for k := range lister.Keys() {
		if strings.HasPrefix(k, noncePrefix) || strings.HasPrefix(k, writeGrantPrefix) {
			keys = append(keys, k)
		}
	}
	_ = lister.Stop()
	now := b.now()
	for _, k := range keys {
		e, err := b.st.state.Get(ctx, k)
		if err != nil {
			continue
		}
		if strings.HasPrefix(k, noncePrefix) {
			var n nonceRecord
			if json.Unmarshal(e.Value(), &n) == nil && now.Sub(n.Seen) > nonceKeep {
				_ = b.st.state.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
			}
			continue
		}
		var g airlock.Grant
		if json.Unmarshal(e.Value(), &g) != nil || now.Before(g.ExpiresAt) {
			continue
		}
		if b.st.state.Delete(ctx, k, jetstream.LastRevision(e.Revision())) == nil {
			_, _ = b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventGrant, CallID: g.FromCall, TS: now.UTC(),
				Payload: airlock.GrantRecord{Op: "expired", Grant: g}})
		}
	}
}

// Signed verdicts.

// reviewSkew is how far a verdict's timestamp may be from the broker's clock.
const reviewSkew = 2 * time.Minute

// nonceKeep is how long a used nonce is remembered: longer than any
// timestamp that still passes the skew check.
const nonceKeep = 2*reviewSkew + time.Minute

const noncePrefix = "nonce."

type nonceRecord struct {
	Seen     time.Time `json:"seen"`
	Reviewer string    `json:"reviewer"`
	CallID   string    `json:"call_id"`
}

func nonceKey(pub, nonce string) string {
	sum := sha256.Sum256([]byte(pub + "\x00" + nonce))
	return noncePrefix + hex.EncodeToString(sum[:20])
}

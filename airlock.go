// Package airlock holds the domain types every part of airlock speaks: the
// ToolCall an agent submits, the Decision it gets back, the Verdict, Tier and
// Risk inside it, and the records that travel between the broker, the
// reviewer console, the audit log and the sandbox.
//
// The JSON encoding of these types is the wire format documented in
// docs/protocol.md; changing a tag changes a public contract.
package airlock

import (
	"encoding/json"
	"strconv"
	"time"
)

// ToolCall is one tool invocation an agent asks to make.
type ToolCall struct {
	// ID is the idempotency key. Submitting the same ID again returns the
	// recorded decision; the broker assigns a ULID when it is empty.
	ID           string         `json:"id"`
	Agent        string         `json:"agent"`
	User         string         `json:"user,omitempty"`
	Org          string         `json:"org,omitempty"`
	Session      string         `json:"session,omitempty"`
	Tool         string         `json:"tool"`
	Arguments    map[string]any `json:"arguments"`
	InputTokens  int64          `json:"input_tokens,omitempty"`
	OutputTokens int64          `json:"output_tokens,omitempty"`
	CostUSD      float64        `json:"cost_usd,omitempty"`
	Context      map[string]any `json:"context,omitempty"`
}

// Reason returns the agent's stated reason for the call (context.reason), if any.
func (c *ToolCall) Reason() string {
	if c == nil || c.Context == nil {
		return ""
	}
	s, _ := c.Context["reason"].(string)
	return s
}

// Verdict is the final outcome of a call.
type Verdict string

const (
	VerdictApproved    Verdict = "approved"
	VerdictDenied      Verdict = "denied"
	VerdictExpired     Verdict = "expired"
	VerdictRateLimited Verdict = "rate_limited"
	VerdictRejected    Verdict = "rejected"
)

// Valid reports whether v is one of the five verdicts.
func (v Verdict) Valid() bool {
	switch v {
	case VerdictApproved, VerdictDenied, VerdictExpired, VerdictRateLimited, VerdictRejected:
		return true
	}
	return false
}

// Tier is the approval tier a policy assigns to a call.
type Tier string

const (
	TierAuto    Tier = "auto"    // approve at once
	TierNotify  Tier = "notify"  // approve and tell the reviewers
	TierApprove Tier = "approve" // wait for a human
	TierDeny    Tier = "deny"    // forbidden, no override
)

// Rank orders tiers from most to least permissive; an unknown tier ranks as deny.
func (t Tier) Rank() int {
	switch t {
	case TierAuto:
		return 0
	case TierNotify:
		return 1
	case TierApprove:
		return 2
	}
	return 3
}

// Valid reports whether t is one of the four tiers.
func (t Tier) Valid() bool {
	switch t {
	case TierAuto, TierNotify, TierApprove, TierDeny:
		return true
	}
	return false
}

// Max returns the stricter of two tiers.
func (t Tier) Max(o Tier) Tier {
	if o.Rank() > t.Rank() {
		return o
	}
	return t
}

// Factor is one reason a call scored risk points.
type Factor struct {
	Name   string `json:"name"`
	Points int    `json:"points"`
	Detail string `json:"detail"`
}

// Risk is an explainable risk score: the sum of its factors, capped at 100.
type Risk struct {
	Score   int      `json:"score"`
	Band    string   `json:"band,omitempty"` // low, medium, high, critical
	Factors []Factor `json:"factors"`
}

// Risk bands.
const (
	BandLow      = "low"
	BandMedium   = "medium"
	BandHigh     = "high"
	BandCritical = "critical"
)

// Execution is the result of running an approved call in the sandbox.
type Execution struct {
	Backend    string `json:"backend"`
	ExitCode   int    `json:"exit_code"`
	Signal     string `json:"signal,omitempty"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	DurationMS int64  `json:"duration_ms"`
	Truncated  bool   `json:"truncated"`
	// LimitHit names the limit that stopped the run: timeout, memory, pids,
	// output, cpu; "interrupted" when the broker died mid-run; empty otherwise.
	LimitHit    string            `json:"limit_hit"`
	PeakMemory  int64             `json:"peak_memory_bytes,omitempty"`
	Isolation   map[string]string `json:"isolation,omitempty"`
	Error       string            `json:"error,omitempty"`
	DryRun      bool              `json:"dry_run,omitempty"`
	ChangedFile []string          `json:"changed_files,omitempty"`
}

// RateLimit describes the limit that refused a call.
type RateLimit struct {
	Scope      string  `json:"scope"`     // user, org, agent, session, global
	Key        string  `json:"key"`       // the user, org, … that is limited
	Dimension  string  `json:"dimension"` // requests, tokens, input_tokens, output_tokens, concurrent, cost_usd, session_messages
	Window     string  `json:"window,omitempty"`
	Limit      float64 `json:"limit"`
	Used       float64 `json:"used"`
	RetryAfter string  `json:"retry_after,omitempty"` // Go duration, e.g. "12s"
	// RetryAfterMS is RetryAfter in milliseconds, for programs.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// Decision is the final answer to a ToolCall.
type Decision struct {
	CallID    string  `json:"call_id"`
	Verdict   Verdict `json:"verdict"`
	DecidedBy string  `json:"decided_by"`
	Tier      Tier    `json:"tier,omitempty"`
	Risk      Risk    `json:"risk"`
	Reason    string  `json:"reason,omitempty"`
	// UpdatedArguments holds the arguments a reviewer approved with edits;
	// when set, only these may be used.
	UpdatedArguments map[string]any `json:"updated_arguments,omitempty"`
	Execution        *Execution     `json:"execution,omitempty"`
	RateLimit        *RateLimit     `json:"rate_limit,omitempty"`
	AuditSeq         int64          `json:"audit_seq"`
	DecidedAt        time.Time      `json:"decided_at"`
}

// Final reports whether the decision ends the call (every verdict does).
func (d *Decision) Final() bool { return d != nil && d.Verdict.Valid() }

// Pending is a call waiting for a human, as stored in the shared pending set
// and shown in the console.
type Pending struct {
	Call       ToolCall  `json:"call"`
	Tier       Tier      `json:"tier"`
	Risk       Risk      `json:"risk"`
	Reason     string    `json:"reason,omitempty"` // why policy holds it
	Rule       string    `json:"rule,omitempty"`   // the rule that applied, if any
	ReceivedAt time.Time `json:"received_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Sandbox describes the isolation the call will run under once approved
	// (empty for tools that do not execute code).
	Sandbox map[string]string `json:"sandbox,omitempty"`
	// Approvals collects earlier approvals when more than one is needed.
	Approvals []string `json:"approvals,omitempty"`
	// Canary marks a synthetic attention check; it never executes.
	Canary bool `json:"canary,omitempty"`
	// ArgsHash is the hex SHA-256 of the canonical arguments.
	ArgsHash string `json:"args_hash,omitempty"`
	// PolicyVersion identifies the policy that held the call.
	PolicyVersion string `json:"policy_version,omitempty"`
}

// ReviewAction is what a reviewer decides.
type ReviewAction string

const (
	ActionApprove ReviewAction = "approve"
	ActionDeny    ReviewAction = "deny"
)

// Review is a reviewer's verdict on a pending call, sent as a request on
// airlock.review.<call_id>.
type Review struct {
	CallID   string       `json:"call_id"`
	Action   ReviewAction `json:"action"`
	Reviewer string       `json:"reviewer"`
	Reason   string       `json:"reason,omitempty"`
	// UpdatedArguments, when set on an approval, replaces the call's arguments.
	UpdatedArguments map[string]any `json:"updated_arguments,omitempty"`
	// ArgsHash binds the verdict to the exact arguments the reviewer saw
	// (the edited ones when edited).
	ArgsHash string `json:"args_hash,omitempty"`
	// PolicyVersion is the digest of the policy that held the call, bound
	// into the signature so a verdict cannot outlive a policy change.
	PolicyVersion string `json:"policy_version,omitempty"`
	// ShownMS is how long the call was on the reviewer's screen.
	ShownMS   int64     `json:"shown_ms,omitempty"`
	Timestamp time.Time `json:"ts,omitempty"`
	Nonce     string    `json:"nonce,omitempty"`
	Signature string    `json:"signature,omitempty"`
	PublicKey string    `json:"public_key,omitempty"`
	// Grant, on an approval, also grants similar calls for a while.
	Grant *GrantRequest `json:"grant,omitempty"`
}

// ReviewReply is the broker's answer to a Review.
type ReviewReply struct {
	Accepted bool      `json:"accepted"`
	Error    string    `json:"error,omitempty"`
	Decision *Decision `json:"decision,omitempty"`
	// DecidedBy names who decided first when the review lost a race.
	DecidedBy string `json:"decided_by,omitempty"`
	// Canary is set when the call was an attention check.
	Canary bool `json:"canary,omitempty"`
	// Waiting is set when the approval was recorded but more are needed.
	Waiting bool `json:"waiting,omitempty"`
	// Grant is the grant created with the approval, when one was asked for.
	Grant *Grant `json:"grant,omitempty"`
	// Note is a message for the reviewer that is not an error (e.g. why a
	// requested grant was not created, or what an attention check was).
	Note string `json:"note,omitempty"`
}

// CanonicalJSON returns the canonical encoding of v used for hashing:
// encoding/json with map keys sorted and no HTML escaping.
func CanonicalJSON(v any) ([]byte, error) {
	return marshalCanonical(v)
}

// RawJSON is a convenience alias so packages need not import encoding/json
// only to carry undecoded payloads.
type RawJSON = json.RawMessage

// GrantRequest asks, with an approval, for a grant covering similar calls.
type GrantRequest struct {
	// For is how long the grant lasts (e.g. "15m").
	For string `json:"for"`
	// When is the CEL constraint; empty: the broker derives one from the call.
	When string `json:"when,omitempty"`
	// MaxUses caps how many calls the grant approves (0: no cap).
	MaxUses int `json:"max_uses,omitempty"`
}

// Grant is a scoped, expiring permission: later calls by Agent to Tool that
// satisfy When are approved as grant:<ID> without waiting for a human.
type Grant struct {
	ID        string    `json:"id"`
	Agent     string    `json:"agent"`
	Tool      string    `json:"tool"`
	When      string    `json:"when"`
	MaxRisk   int       `json:"max_risk"`
	MaxUses   int       `json:"max_uses,omitempty"`
	Uses      int       `json:"uses"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	FromCall  string    `json:"from_call,omitempty"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

// Describe is a one-line account of what the grant covers.
func (g *Grant) Describe() string {
	s := g.Agent + " may call " + g.Tool + " where " + g.When + " until " + g.ExpiresAt.UTC().Format(time.RFC3339)
	if g.MaxUses > 0 {
		s += " (" + strconv.Itoa(g.Uses) + "/" + strconv.Itoa(g.MaxUses) + " uses)"
	}
	return s
}

// GrantRecord is the payload of a "grant" event.
type GrantRecord struct {
	Op    string `json:"op"` // created, revoked, expired, exhausted
	Grant Grant  `json:"grant"`
	By    string `json:"by,omitempty"`
}

// CanaryRecord is the payload of a "canary" event: an attention check was
// caught (denied), missed (approved) or expired unanswered.
type CanaryRecord struct {
	CallID   string   `json:"call_id"`
	Reviewer string   `json:"reviewer,omitempty"`
	Outcome  string   `json:"outcome"` // caught, missed, expired
	Call     ToolCall `json:"call"`
}

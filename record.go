package airlock

import (
	"context"
	"errors"
	"time"
)

// Audit event kinds. Each event's payload is the JSON of the record type named
// beside it; docs/audit.md documents them and the views built on them.
const (
	EventDecision    = "decision"     // DecisionRecord: every final decision, rejected calls too
	EventPending     = "pending"      // PendingRecord: a call began waiting for a human
	EventExecStart   = "exec.start"   // ExecRecord without result: a sandboxed run began
	EventExecution   = "execution"    // ExecRecord: a sandboxed run ended (or was interrupted)
	EventReview      = "review"       // ReviewRecord: a reviewer's verdict was accepted or refused
	EventGrant       = "grant"        // GrantRecord: a grant was created, used, revoked or expired
	EventCanary      = "canary"       // CanaryRecord: an attention check was caught or missed
	EventDryRun      = "dryrun"       // ExecRecord with DryRun set
	EventCheckpoint  = "checkpoint"   // a chain head recorded elsewhere
	EventPolicy      = "policy"       // the broker loaded or reloaded a policy
	EventBrokerStart = "broker.start" // a broker started (capabilities, sandbox report)
)

// DecisionRecord is the payload of a "decision" event.
type DecisionRecord struct {
	Call     ToolCall `json:"call"`
	Decision Decision `json:"decision"`
	// Rule is the policy rule that set the tier, if any.
	Rule          string `json:"rule,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
	// WaitedMS is how long the call waited for a human.
	WaitedMS int64 `json:"waited_ms,omitempty"`
	// Review is the reviewer's verdict (with its signature) when a human decided.
	Review *Review `json:"review,omitempty"`
	// Edited is set when the reviewer approved with edits.
	Edited bool `json:"edited,omitempty"`
	// Grant is the grant id that approved the call.
	Grant string `json:"grant,omitempty"`
	// Raw is the start of an undecodable body (rejected calls), sanitised to valid UTF-8.
	Raw string `json:"raw,omitempty"`
	// RateLimits is the usage snapshot at decision time.
	RateLimits []RateLimit `json:"rate_limits,omitempty"`
}

// PendingRecord is the payload of a "pending" event.
type PendingRecord struct {
	Pending Pending `json:"pending"`
}

// ExecRecord is the payload of "exec.start", "execution" and "dryrun" events.
type ExecRecord struct {
	CallID    string            `json:"call_id"`
	Profile   map[string]string `json:"profile,omitempty"`
	Execution *Execution        `json:"execution,omitempty"`
}

// ReviewRecord is the payload of a "review" event.
type ReviewRecord struct {
	Review   Review `json:"review"`
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
}

// Event is one audit event before it is appended. The log assigns Seq, the
// previous hash and the hash.
type Event struct {
	Kind    string
	CallID  string
	TS      time.Time
	Payload any // marshalled with CanonicalJSON
	// Key, when set, makes appending idempotent where the log can tell: an
	// event appended again under the same key (a retry after an answer was
	// lost) is stored once. The fleet's audit stream deduplicates on it;
	// the single-process log, whose appends either commit or fail, ignores
	// it.
	Key string
}

// Receipt says where an appended event landed in the chain.
type Receipt struct {
	Seq  int64
	Hash string
}

// Auditor appends events durably. Append returns only once the event is
// durable (or with an error, in which case nothing may be approved).
type Auditor interface {
	Append(ctx context.Context, ev Event) (Receipt, error)
}

// ErrDecisionExists is returned by an Auditor that enforces one decision
// per call (the fleet's audit stream) when a decision event for the call is
// already stored: another broker decided it (a takeover of a claim whose
// owner was still alive). Nothing was appended.
var ErrDecisionExists = errors.New("airlock: a decision is already audited for this call")

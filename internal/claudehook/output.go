package claudehook

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/airlock/airlock"
)

// Behavior is what the hook tells the calling tool to do.
type Behavior string

const (
	Allow Behavior = "allow"
	Deny  Behavior = "deny"
	Ask   Behavior = "ask" // let the user decide in the tool's own prompt
)

// ParseBehavior parses a fallback flag value (--on-timeout, --on-unreachable):
// deny or ask.
func ParseBehavior(s string) (Behavior, error) {
	switch Behavior(s) {
	case Deny, Ask:
		return Behavior(s), nil
	}
	return "", fmt.Errorf("claudehook: must be deny or ask, not %q", s)
}

// Outcome is the answer for one hook input.
type Outcome struct {
	Behavior Behavior
	Reason   string
	// UpdatedInput replaces the tool's input (an approval with edits).
	UpdatedInput map[string]any
}

// MaxReason bounds the reason text handed back to the model.
const MaxReason = 4000

// FromDecision maps an airlock decision onto a hook outcome.
//
// An approval runs the tool as the model asked, or with the reviewer's
// edited arguments. Every other verdict denies, with the broker's reason.
// When the broker already ran the call in its sandbox (a policy that
// sandboxes the tool), the tool must not run a second time outside it: the
// outcome is a denial whose reason carries the sandboxed result.
func FromDecision(d airlock.Decision) Outcome {
	who := d.DecidedBy
	if who == "" {
		who = "policy"
	}
	switch d.Verdict {
	case airlock.VerdictApproved:
		if d.Execution != nil {
			return Outcome{Behavior: Deny, Reason: clip(sandboxReason(d), MaxReason)}
		}
		r := fmt.Sprintf("airlock: approved by %s (call %s, tier %s, risk %d %s)", who, d.CallID, orDash(string(d.Tier)), d.Risk.Score, orDash(d.Risk.Band))
		if d.Reason != "" {
			r += ": " + d.Reason
		}
		o := Outcome{Behavior: Allow, Reason: clip(r, MaxReason)}
		if d.UpdatedArguments != nil {
			o.UpdatedInput = d.UpdatedArguments
			o.Reason = clip(r+"; the reviewer edited the arguments, only the edited ones may be used", MaxReason)
		}
		return o
	case airlock.VerdictExpired:
		return Outcome{Behavior: Deny, Reason: clip(fmt.Sprintf("airlock: no reviewer decided in time (call %s expired)%s", d.CallID, suffix(d.Reason)), MaxReason)}
	case airlock.VerdictRateLimited:
		return Outcome{Behavior: Deny, Reason: clip(fmt.Sprintf("airlock: rate limited (call %s)%s", d.CallID, suffix(d.Reason)), MaxReason)}
	case airlock.VerdictRejected:
		return Outcome{Behavior: Deny, Reason: clip(fmt.Sprintf("airlock: call rejected as malformed%s", suffix(d.Reason)), MaxReason)}
	}
	return Outcome{Behavior: Deny, Reason: clip(fmt.Sprintf("airlock: denied by %s (call %s, tier %s, risk %d)%s", who, d.CallID, orDash(string(d.Tier)), d.Risk.Score, suffix(d.Reason)), MaxReason)}
}

func sandboxReason(d airlock.Decision) string {
	x := d.Execution
	var b strings.Builder
	fmt.Fprintf(&b, "airlock: approved by %s and already run in airlock's %s sandbox (call %s); do not run it again. exit code %d", d.DecidedBy, orDash(x.Backend), d.CallID, x.ExitCode)
	if x.LimitHit != "" {
		fmt.Fprintf(&b, ", stopped by the %s limit", x.LimitHit)
	}
	if x.Error != "" {
		fmt.Fprintf(&b, ", error: %s", x.Error)
	}
	if x.Stdout != "" {
		fmt.Fprintf(&b, "\nstdout:\n%s", x.Stdout)
	}
	if x.Stderr != "" {
		fmt.Fprintf(&b, "\nstderr:\n%s", x.Stderr)
	}
	return b.String()
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// For Codex, fail closed where it cannot follow the answer: it cannot ask
// from a hook and does not take rewritten input.
func (o Outcome) forCodex() Outcome {
	switch {
	case o.Behavior == Ask:
		return Outcome{Behavior: Deny, Reason: o.Reason + " (Codex hooks cannot ask; denied instead)"}
	case o.Behavior == Allow && o.UpdatedInput != nil:
		edited, _ := json.Marshal(o.UpdatedInput)
		return Outcome{Behavior: Deny, Reason: clip(o.Reason+"; Codex cannot take edited input from a hook, so this call is denied: retry with exactly these arguments: "+string(edited), MaxReason)}
	}
	return o
}

// preToolUseOutput is PreToolUse's hookSpecificOutput.
type preToolUseOutput struct {
	HookEventName            string         `json:"hookEventName"`
	PermissionDecision       string         `json:"permissionDecision"`
	PermissionDecisionReason string         `json:"permissionDecisionReason,omitempty"`
	UpdatedInput             map[string]any `json:"updatedInput,omitempty"`
}

// permissionRequestOutput is PermissionRequest's hookSpecificOutput.
type permissionRequestOutput struct {
	HookEventName string              `json:"hookEventName"`
	Decision      *permissionDecision `json:"decision,omitempty"`
}

type permissionDecision struct {
	Behavior     string         `json:"behavior"`
	UpdatedInput map[string]any `json:"updatedInput,omitempty"`
	Message      string         `json:"message,omitempty"`
}

// Encode renders the outcome as the JSON the hook prints on stdout for
// event (PreToolUse or PermissionRequest) and client.
//
//   - PreToolUse, Claude Code: {"hookSpecificOutput": {"hookEventName":
//     "PreToolUse", "permissionDecision": …, "permissionDecisionReason": …,
//     "updatedInput": …}}.
//   - PermissionRequest: {"hookSpecificOutput": {"hookEventName":
//     "PermissionRequest", "decision": {"behavior": "allow"|"deny",
//     "updatedInput"|"message": …}}}; ask gives no decision (the tool shows
//     its dialog) and a systemMessage saying why.
//   - Codex: ask and edited approvals become denials; a PreToolUse allow is
//     an empty object (Codex enforces only deny from PreToolUse; an empty
//     answer lets the call proceed).
func Encode(event string, client Client, o Outcome) []byte {
	if client == ClientCodex {
		o = o.forCodex()
	}
	b, err := json.Marshal(shape(event, client, o))
	if err != nil {
		// Only unencodable updated input can get here; never answer allow then.
		b, _ = json.Marshal(shape(event, client, Outcome{Behavior: Deny,
			Reason: "airlock: the approved input could not be encoded: " + err.Error()}))
	}
	return append(b, '\n')
}

func shape(event string, client Client, o Outcome) any {
	if event == EventPermissionRequest {
		out := map[string]any{}
		pr := permissionRequestOutput{HookEventName: EventPermissionRequest}
		switch o.Behavior {
		case Allow:
			pr.Decision = &permissionDecision{Behavior: string(Allow), UpdatedInput: o.UpdatedInput}
		case Ask:
			out["systemMessage"] = o.Reason
		default:
			pr.Decision = &permissionDecision{Behavior: string(Deny), Message: o.Reason}
		}
		out["hookSpecificOutput"] = pr
		return out
	}
	if client == ClientCodex && o.Behavior == Allow {
		return map[string]any{}
	}
	return map[string]any{"hookSpecificOutput": preToolUseOutput{
		HookEventName:            EventPreToolUse,
		PermissionDecision:       string(o.Behavior),
		PermissionDecisionReason: o.Reason,
		UpdatedInput:             o.UpdatedInput,
	}}
}

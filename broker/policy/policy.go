// Package policy loads airlock's policy file (YAML, with CEL rules) and
// decides, for each tool call, its tier: auto, notify, approve or deny.
//
// Load and Parse validate a file strictly: every problem names the file, the
// line and the field path. Evaluate applies the policy to one call in a fixed
// order: validate the call, the agent's manifest, the tool's tier, the CEL
// rules (which may raise the tier and add risk points, never lower it), and
// the tool's scope. A deny is final: no rule, reviewer or grant overrides it.
// The reference is docs/policy.md.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/airlock/airlock"
)

// Digest returns the hex SHA-256 of a policy file's bytes: the policy
// version recorded in audit rows and bound into reviewers' signatures.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Tool returns the named tool's entry, or nil when the policy does not list
// it (such a call is denied).
func (p *Policy) Tool(name string) *Tool {
	if p == nil {
		return nil
	}
	return p.Tools[name]
}

// AllowedTools returns, sorted, the tools an agent may call: those declared
// under tools: that are not deny-tier and, when the agent is listed under
// agents:, also in its manifest. An agent not listed under agents: is limited
// by the tool list only.
func (p *Policy) AllowedTools(agent string) []string {
	if p == nil {
		return nil
	}
	a := p.Agents[agent]
	var out []string
	for name, t := range p.Tools {
		if t.Tier == airlock.TierDeny {
			continue
		}
		if a != nil && !a.allows(name) {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// allows reports whether the manifest lists the tool.
func (a *Agent) allows(tool string) bool {
	if a.set != nil {
		_, ok := a.set[tool]
		return ok
	}
	return slices.Contains(a.Tools, tool)
}

// CheckActor reports whether an agent may act for a call's user and org.
// It returns the policy key that refuses (rule, e.g.
// "agents.support-bot.users" or "defaults.require_user") and a one-line
// reason, or two empty strings when the call may go on. An agent not listed
// under agents:, or listed without users: and orgs:, may act for anyone.
//
// The pins close the "invented users" bypass of per-user rate limits: user
// and org come from the agent, so without a pin an agent can spread its
// traffic over as many users as it likes. Matching is exact and
// case-sensitive ("Alice" is not "alice"); * in an entry is any run of
// characters. EvaluateContext calls it; the broker may also call it before
// it reserves rate-limit budget, so that invented users create no buckets.
func (p *Policy) CheckActor(agent, user, org string) (rule, reason string) {
	if p == nil {
		return "", ""
	}
	if a := p.Agents[agent]; a != nil {
		if a.Users != nil && (user == "" || !matchAny(a.Users, user)) {
			return actorDenial(agent, "user", user)
		}
		if a.Orgs != nil && (org == "" || !matchAny(a.Orgs, org)) {
			return actorDenial(agent, "org", org)
		}
	}
	if p.Defaults.RequireUser && user == "" {
		rule = "defaults.require_user"
		return rule, fmt.Sprintf("the call names no user, and every call must (policy %s)", rule)
	}
	return "", ""
}

// actorDenial builds CheckActor's answer when agent's users: or orgs: pin
// (what is "user" or "org") refuses value.
func actorDenial(agent, what, value string) (rule, reason string) {
	rule = "agents." + agent + "." + what + "s"
	if value == "" {
		return rule, fmt.Sprintf("agent %s must name the %s it acts for; the call names none (policy %s)", quoteName(agent), what, rule)
	}
	return rule, fmt.Sprintf("agent %s may not act for %s %s (policy %s)", quoteName(agent), what, quoteShort(value), rule)
}

// matchAny reports whether s matches one of the patterns (see globMatch).
func matchAny(patterns []string, s string) bool {
	for _, pat := range patterns {
		if globMatch(pat, s) {
			return true
		}
	}
	return false
}

// globMatch matches s against pat, where * is any run of characters
// (possibly none) and every other byte stands for itself. It runs in
// O(len(pat)·len(s)) at worst and does not allocate.
func globMatch(pat, s string) bool {
	head, rest, found := strings.Cut(pat, "*")
	if !found {
		return pat == s
	}
	if !strings.HasPrefix(s, head) {
		return false
	}
	s = s[len(head):]
	for {
		part, more, found := strings.Cut(rest, "*")
		if !found { // the last part: it must end s
			return strings.HasSuffix(s, part)
		}
		// A middle part: its leftmost occurrence leaves the most room for
		// the parts after it.
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s, rest = s[i+len(part):], more
	}
}

// Result is the policy's answer for one call.
type Result struct {
	Tier airlock.Tier // final tier after rules (deny when denied)
	// Denied is set for a deny-tier tool, a rule raising to deny, an unknown
	// tool, a manifest, user/org pin or scope violation: nobody can override it.
	Denied bool
	// Reason is one line a person can read, e.g. "delete_record is a
	// deny-tier tool" or "sensitive path (rule 0)".
	Reason string
	// Rule names the rule that set the tier (or, when none raised it, the
	// first that matched), e.g. "tools.read_file.rules[0]", or the pin that
	// denied the call, e.g. "agents.support-bot.users"; empty if none.
	Rule string
	// Factors are the risk points of the matching rules: Name "policy_rule",
	// Points the rule's risk, Detail its reason.
	Factors []airlock.Factor
	Tool    *Tool // nil for unknown tools
}

// FactorPolicyRule is the factor name of points added by rules.
const FactorPolicyRule = "policy_rule"

func deny(t *Tool, reason string) Result {
	return Result{Tier: airlock.TierDeny, Denied: true, Reason: reason, Tool: t}
}

// Evaluate decides a call's tier. See EvaluateContext.
func (p *Policy) Evaluate(call *airlock.ToolCall) Result {
	return p.EvaluateContext(context.Background(), call)
}

// EvaluateContext decides a call's tier, in this order:
//
//  1. validate: a nil call or one without a tool is denied;
//  2. manifest: an agent listed under agents: may call only its tools, and,
//     when its entry pins users: or orgs:, act only for those (see
//     CheckActor); with defaults.require_user a call must name a user;
//  3. tool: a tool not in the policy is denied, a deny-tier tool is denied;
//  4. rules: every rule is evaluated; each match raises the tier to its own
//     (never lowers it) and adds its risk points; a rule that cannot be
//     evaluated fails closed (see docs/policy.md);
//  5. scope: arguments outside the tool's scope are denied.
//
// All rules of one call share a deadline of EvalTimeout (or ctx's, if
// sooner). A tool without rules or scope costs no allocation.
func (p *Policy) EvaluateContext(ctx context.Context, call *airlock.ToolCall) Result {
	if p == nil {
		return deny(nil, "no policy is loaded")
	}
	if call == nil || call.Tool == "" {
		return deny(nil, "invalid call: no tool named")
	}
	if a := p.Agents[call.Agent]; a != nil && !a.allows(call.Tool) {
		return deny(p.Tools[call.Tool], fmt.Sprintf("tool %s is not in agent %s's manifest", quoteName(call.Tool), quoteName(call.Agent)))
	}
	if rule, reason := p.CheckActor(call.Agent, call.User, call.Org); rule != "" {
		r := deny(p.Tools[call.Tool], reason)
		r.Rule = rule
		return r
	}
	t := p.Tools[call.Tool]
	if t == nil {
		return deny(nil, fmt.Sprintf("tool %s is not in the policy (unknown tools are denied)", quoteName(call.Tool)))
	}
	reason := t.reason
	if reason == "" {
		reason = fmt.Sprintf("%s is %s %s-tier tool", t.Name, article(string(t.Tier)), t.Tier)
	}
	if t.Tier == airlock.TierDeny || !t.Tier.Valid() {
		return deny(t, reason)
	}
	res := Result{Tier: t.Tier, Reason: reason, Tool: t}
	if len(t.Rules) > 0 {
		p.applyRules(ctx, t, call, &res)
	}
	if t.Scope != nil {
		if err := t.Scope.Check(call.Arguments); err != nil {
			res.Tier, res.Denied, res.Reason = airlock.TierDeny, true, err.Error()
		}
	}
	return res
}

// applyRules evaluates every rule of t and folds the matches into res.
func (p *Policy) applyRules(ctx context.Context, t *Tool, call *airlock.ToolCall, res *Result) {
	dl := deadline{parent: ctx}
	defer dl.stop()
	act := &activation{call: call}
	var reasons []string
	first := ""
	for i, r := range t.Rules {
		id := r.ID
		if id == "" {
			id = fmt.Sprintf("tools.%s.rules[%d]", t.Name, i)
		}
		var matched bool
		var err error
		switch {
		case r.prog == nil:
			err = fmt.Errorf("not compiled (build policies with Load or Parse)")
		case r.prog.loops:
			matched, err = run(dl.get(), r.prog, act)
		default:
			matched, err = run(nil, r.prog, act)
		}
		tier := r.Tier
		reason := r.matchReason
		if reason == "" {
			reason = fmt.Sprintf("%s (rule %d)", r.Reason, i)
		}
		switch {
		case err != nil:
			// Fail closed: treat the rule as matching, and hold the call
			// for a human at least.
			if tier == "" || tier.Rank() < airlock.TierApprove.Rank() {
				tier = airlock.TierApprove
			}
			reason = fmt.Sprintf("rule %d could not be evaluated: %s", i, oneLine(err.Error()))
		case !matched:
			continue
		}
		if first == "" {
			first = id
		}
		if tier != "" && tier.Rank() > res.Tier.Rank() {
			res.Tier = tier
			res.Rule = id
		}
		if r.Risk > 0 {
			res.Factors = append(res.Factors, airlock.Factor{Name: FactorPolicyRule, Points: r.Risk, Detail: r.Reason})
		}
		reasons = append(reasons, reason)
	}
	if len(reasons) == 0 {
		return
	}
	if res.Rule == "" {
		res.Rule = first
	}
	res.Reason = strings.Join(reasons, "; ")
	if res.Tier == airlock.TierDeny {
		res.Denied = true
	}
}

// deadline is the shared deadline of a call's rules, started by the first
// rule that needs one (see compiled.loops).
type deadline struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
}

func (d *deadline) get() context.Context {
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithTimeout(d.parent, EvalTimeout)
	}
	return d.ctx
}

func (d *deadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

// quoteName prints a tool name from a call: as is when plain, quoted when it
// holds anything a terminal or a log might misread.
func quoteName(s string) string {
	if validName(s) && len(s) <= 64 {
		return s
	}
	return quoteShort(s)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

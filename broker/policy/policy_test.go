package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
)

// testPolicy exercises every evaluation path.
const testPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 5m}
tools:
  search_web: {tier: auto}
  read_file:
    tier: notify
    rules:
      - {when: 'args.path.startsWith("/etc/") || args.path.contains(".ssh")', tier: approve, risk: 40, reason: sensitive path}
  send_email:
    tier: approve
    rules:
      - {when: '!args.to.all(r, r.endsWith("@acme.com"))', risk: 30, reason: external recipient}
      - {when: 'args.subject.contains("password")', risk: 20, reason: password in subject}
    scope: {from: [bot@acme.com], domains: [acme.com, "*.partner.example"]}
  lowering:
    tier: approve
    rules:
      - {when: 'true', tier: auto, reason: tries to lower}
  escalate:
    tier: notify
    rules:
      - {when: 'args.n > 10', tier: approve, risk: 10, reason: more than ten}
      - {when: 'args.n > 100', tier: deny, risk: 50, reason: far too many}
  callvars:
    tier: auto
    rules:
      - {when: 'call.agent == "bad-bot" && call.user == "mallory" && call.org == "evil"', tier: approve, reason: bad trio}
      - {when: 'call.input_tokens > 1000 || call.cost_usd > 1.5', risk: 15, reason: expensive}
      - {when: 'call.context.reason.contains("urgent")', risk: 5, reason: urgency}
      - {when: 'call.tool == "callvars" && call.session == "s-1" && call.id == "c-1" && call.output_tokens == 7', risk: 1, reason: ids}
  deny_tool:
    tier: deny
  execute_sql:
    tier: approve
    scope: {schemas: [public, analytics]}
  http_request:
    tier: approve
    scope: {hosts: [acme.com, "*.acme.internal"]}
  write_file:
    tier: approve
    writes: true
    two_person: true
    scope: {paths: [/srv/work, docs]}
  loop:
    tier: notify
    rules:
      - {when: 'args.items.all(a, args.items.all(b, args.items.all(c, a + b + c != "zzz")))', risk: 5, reason: never true}
agents:
  support-bot: {tools: [search_web, send_email, deny_tool]}
  empty-bot: {tools: []}
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestEvaluate(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		name       string
		call       airlock.ToolCall
		tier       airlock.Tier
		denied     bool
		reason     string // substring
		rule       string
		points     int
		toolIsNil  bool
		wantFactor bool
	}{
		{name: "auto-tier", call: airlock.ToolCall{Agent: "a", Tool: "search_web"}, tier: airlock.TierAuto, reason: "search_web is an auto-tier tool"},
		{name: "notify-tier", call: airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{"path": "docs/x.md"}}, tier: airlock.TierNotify, reason: "read_file is a notify-tier tool"},
		{name: "approve-tier", call: airlock.ToolCall{Agent: "a", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT 1"}}, tier: airlock.TierApprove, reason: "execute_sql is an approve-tier tool"},
		{name: "deny-tier", call: airlock.ToolCall{Agent: "a", Tool: "deny_tool"}, tier: airlock.TierDeny, denied: true, reason: "deny_tool is a deny-tier tool"},
		{name: "deny-tier-in-manifest-still-denied", call: airlock.ToolCall{Agent: "support-bot", Tool: "deny_tool"}, tier: airlock.TierDeny, denied: true, reason: "deny-tier tool"},
		{name: "unknown-tool", call: airlock.ToolCall{Agent: "a", Tool: "launch_missiles"}, tier: airlock.TierDeny, denied: true, reason: "tool launch_missiles is not in the policy (unknown tools are denied)", toolIsNil: true},
		{name: "unknown-tool-hostile-name-quoted", call: airlock.ToolCall{Agent: "a", Tool: "x\x1b[2Jy"}, tier: airlock.TierDeny, denied: true, reason: `"x\x1b[2Jy"`, toolIsNil: true},
		{name: "empty-tool", call: airlock.ToolCall{Agent: "a"}, tier: airlock.TierDeny, denied: true, reason: "invalid call", toolIsNil: true},
		{name: "manifest-violation", call: airlock.ToolCall{Agent: "support-bot", Tool: "read_file", Arguments: map[string]any{"path": "x"}}, tier: airlock.TierDeny, denied: true, reason: "tool read_file is not in agent support-bot's manifest"},
		{name: "manifest-violation-unknown-tool", call: airlock.ToolCall{Agent: "support-bot", Tool: "launch_missiles"}, tier: airlock.TierDeny, denied: true, reason: "not in agent support-bot's manifest", toolIsNil: true},
		{name: "empty-manifest", call: airlock.ToolCall{Agent: "empty-bot", Tool: "search_web"}, tier: airlock.TierDeny, denied: true, reason: "manifest"},
		{name: "manifest-allows", call: airlock.ToolCall{Agent: "support-bot", Tool: "search_web"}, tier: airlock.TierAuto},
		{name: "unlisted-agent-unrestricted", call: airlock.ToolCall{Agent: "other-bot", Tool: "read_file", Arguments: map[string]any{"path": "a"}}, tier: airlock.TierNotify},
		{name: "rule-raises-tier-and-adds-points", call: airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{"path": "/etc/shadow"}},
			tier: airlock.TierApprove, reason: "sensitive path (rule 0)", rule: "tools.read_file.rules[0]", points: 40, wantFactor: true},
		{name: "scope-after-rules", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{"eve@partner.example"}, "subject": "hi"}},
			tier: airlock.TierDeny, denied: true, reason: "outside scope", points: 30},
		{name: "rule-points-in-scope", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{"eve@x.partner.example"}, "subject": "password reset"}},
			tier: airlock.TierApprove, reason: "external recipient (rule 0); password in subject (rule 1)", rule: "tools.send_email.rules[0]", points: 50, wantFactor: true},
		{name: "rule-cannot-lower", call: airlock.ToolCall{Agent: "a", Tool: "lowering"}, tier: airlock.TierApprove, reason: "tries to lower (rule 0)"},
		{name: "two-rules-highest-tier-wins", call: airlock.ToolCall{Agent: "a", Tool: "escalate", Arguments: map[string]any{"n": 500}},
			tier: airlock.TierDeny, denied: true, rule: "tools.escalate.rules[1]", points: 60, reason: "more than ten (rule 0); far too many (rule 1)"},
		{name: "one-rule-of-two", call: airlock.ToolCall{Agent: "a", Tool: "escalate", Arguments: map[string]any{"n": 50}},
			tier: airlock.TierApprove, rule: "tools.escalate.rules[0]", points: 10},
		{name: "json-number-argument", call: airlock.ToolCall{Agent: "a", Tool: "escalate", Arguments: map[string]any{"n": json.Number("500")}},
			tier: airlock.TierDeny, denied: true, points: 60},
		{name: "json-number-float-argument", call: airlock.ToolCall{Agent: "a", Tool: "escalate", Arguments: map[string]any{"n": json.Number("10.5")}},
			tier: airlock.TierApprove, points: 10},
		{name: "missing-key-does-not-match", call: airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{}}, tier: airlock.TierNotify, reason: "notify-tier tool"},
		{name: "nil-arguments-do-not-match", call: airlock.ToolCall{Agent: "a", Tool: "escalate"}, tier: airlock.TierNotify},
		{name: "wrong-type-fails-closed", call: airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{"path": 42}},
			tier: airlock.TierApprove, reason: "rule 0 could not be evaluated: no such overload", rule: "tools.read_file.rules[0]", points: 40},
		{name: "wrong-type-of-deny-rule-fails-closed-to-deny", call: airlock.ToolCall{Agent: "a", Tool: "escalate", Arguments: map[string]any{"n": "many"}},
			tier: airlock.TierDeny, denied: true, reason: "could not be evaluated", points: 60},
		{name: "call-variables", call: airlock.ToolCall{ID: "c-1", Agent: "bad-bot", User: "mallory", Org: "evil", Session: "s-1", Tool: "callvars",
			InputTokens: 5000, OutputTokens: 7, CostUSD: 0.1, Context: map[string]any{"reason": "urgent fix"}},
			tier: airlock.TierApprove, rule: "tools.callvars.rules[0]", points: 21},
		{name: "call-variables-no-match", call: airlock.ToolCall{Agent: "good-bot", Tool: "callvars", CostUSD: 2}, tier: airlock.TierAuto, points: 15},
		{name: "cost-limit-fails-closed", call: airlock.ToolCall{Agent: "a", Tool: "loop", Arguments: map[string]any{"items": manyStrings(400)}},
			tier: airlock.TierApprove, reason: "could not be evaluated", points: 5},
		{name: "scope-from", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"from": "ceo@acme.com", "to": "ops@acme.com", "subject": "x"}},
			tier: airlock.TierDeny, denied: true, reason: `outside scope: from "ceo@acme.com": sender is not in scope.from`, points: 30},
		{name: "scope-from-allowed", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"from": "Bot <BOT@acme.com>", "to": "ops@acme.com", "subject": "x"}},
			tier: airlock.TierApprove, points: 30},
		{name: "scope-recipient-domain", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{"ops@acme.com"}, "bcc": "eve@evil.example", "subject": "x"}},
			tier: airlock.TierDeny, denied: true, reason: `outside scope: bcc "eve@evil.example": domain evil.example is not in scope.domains`},
		{name: "scope-recipient-lookalike", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{"payroll@аcme.com"}, "subject": "x"}},
			tier: airlock.TierDeny, denied: true, reason: "outside scope", points: 30},
		{name: "scope-recipient-wrong-type", call: airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{1}, "subject": "x"}},
			tier: airlock.TierDeny, denied: true, reason: "outside scope: to: not an address", points: 30},
		{name: "scope-schema", call: airlock.ToolCall{Agent: "a", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT * FROM secret.users u JOIN public.t ON u.id = t.id"}},
			tier: airlock.TierDeny, denied: true, reason: `outside scope: query "secret": schema is not in scope.schemas (public, analytics)`},
		{name: "scope-schema-allowed", call: airlock.ToolCall{Agent: "a", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT 'secret.users' FROM analytics.t -- secret.x"}},
			tier: airlock.TierApprove},
		{name: "scope-host", call: airlock.ToolCall{Agent: "a", Tool: "http_request", Arguments: map[string]any{"url": "http://169.254.169.254/latest/meta-data/"}},
			tier: airlock.TierDeny, denied: true, reason: "outside scope: url"},
		{name: "scope-host-userinfo-trick", call: airlock.ToolCall{Agent: "a", Tool: "http_request", Arguments: map[string]any{"url": "https://acme.com@evil.example/"}},
			tier: airlock.TierDeny, denied: true, reason: "host evil.example"},
		{name: "scope-host-file-url", call: airlock.ToolCall{Agent: "a", Tool: "http_request", Arguments: map[string]any{"url": "file:///etc/shadow"}},
			tier: airlock.TierDeny, denied: true, reason: "not an absolute URL with a host"},
		{name: "scope-host-allowed", call: airlock.ToolCall{Agent: "a", Tool: "http_request", Arguments: map[string]any{"url": "https://grafana.acme.internal/api/health"}},
			tier: airlock.TierApprove},
		{name: "scope-path-traversal", call: airlock.ToolCall{Agent: "a", Tool: "write_file", Arguments: map[string]any{"path": "/srv/work/../../etc/passwd"}},
			tier: airlock.TierDeny, denied: true, reason: "not under scope.paths"},
		{name: "scope-path-prefix-trick", call: airlock.ToolCall{Agent: "a", Tool: "write_file", Arguments: map[string]any{"path": "/srv/workshop/x"}},
			tier: airlock.TierDeny, denied: true},
		{name: "scope-path-allowed", call: airlock.ToolCall{Agent: "a", Tool: "write_file", Arguments: map[string]any{"path": "docs/./a/b.md"}},
			tier: airlock.TierApprove},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Evaluate(&tt.call)
			if r.Tier != tt.tier {
				t.Errorf("tier: got %s, want %s (reason %q)", r.Tier, tt.tier, r.Reason)
			}
			if r.Denied != tt.denied {
				t.Errorf("denied: got %v, want %v (reason %q)", r.Denied, tt.denied, r.Reason)
			}
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason: got %q, want it to contain %q", r.Reason, tt.reason)
			}
			if tt.rule != "" && r.Rule != tt.rule {
				t.Errorf("rule: got %q, want %q", r.Rule, tt.rule)
			}
			sum := 0
			for _, f := range r.Factors {
				if f.Name != FactorPolicyRule || f.Points <= 0 || f.Detail == "" {
					t.Errorf("factor %+v: want name policy_rule, points > 0 and a detail", f)
				}
				sum += f.Points
			}
			if sum != tt.points {
				t.Errorf("points: got %d, want %d (factors %+v)", sum, tt.points, r.Factors)
			}
			if (r.Tool == nil) != tt.toolIsNil {
				t.Errorf("tool: got %v, want nil=%v", r.Tool, tt.toolIsNil)
			}
			if r.Tool != nil && r.Tool.Name != tt.call.Tool {
				t.Errorf("tool name: got %q, want %q", r.Tool.Name, tt.call.Tool)
			}
			if strings.ContainsAny(r.Reason, "\n\x1b") {
				t.Errorf("reason %q holds a newline or an escape", r.Reason)
			}
		})
	}
}

func manyStrings(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = "x"
	}
	return out
}

func TestEvaluateNil(t *testing.T) {
	var p *Policy
	if r := p.Evaluate(&airlock.ToolCall{Tool: "x"}); !r.Denied {
		t.Errorf("nil policy: got %+v, want denied", r)
	}
	p = mustParse(t, testPolicy)
	if r := p.Evaluate(nil); !r.Denied || r.Tier != airlock.TierDeny {
		t.Errorf("nil call: got %+v, want denied", r)
	}
}

// A rule built by hand (not through Parse) has no compiled program: it must
// fail closed, not be skipped.
func TestEvaluateUncompiledRuleFailsClosed(t *testing.T) {
	p := &Policy{Tools: map[string]*Tool{"t": {Name: "t", Tier: airlock.TierAuto, Rules: []*Rule{{When: "true", Risk: 5, Reason: "r"}}}}}
	r := p.Evaluate(&airlock.ToolCall{Tool: "t"})
	if r.Tier != airlock.TierApprove || !strings.Contains(r.Reason, "could not be evaluated") {
		t.Errorf("got %s %q, want approve with 'could not be evaluated'", r.Tier, r.Reason)
	}
	if r.Denied {
		t.Errorf("got denied, want held for a human")
	}
}

func TestEvaluateCostLimit(t *testing.T) {
	old := EvalCostLimit
	EvalCostLimit = 1000 // read when rules are compiled
	t.Cleanup(func() { EvalCostLimit = old })
	p := mustParse(t, testPolicy)
	r := p.Evaluate(&airlock.ToolCall{Tool: "loop", Arguments: map[string]any{"items": manyStrings(100)}})
	if r.Tier != airlock.TierApprove || !strings.Contains(r.Reason, "cost limit exceeded") {
		t.Errorf("got %s %q, want approve, cost limit exceeded", r.Tier, r.Reason)
	}
	// A cheap rule on the same policy still evaluates normally.
	if r := p.Evaluate(&airlock.ToolCall{Tool: "read_file", Arguments: map[string]any{"path": "/etc/x"}}); r.Tier != airlock.TierApprove || r.Reason != "sensitive path (rule 0)" {
		t.Errorf("cheap rule: got %s %q", r.Tier, r.Reason)
	}
}

func TestEvaluateTimeout(t *testing.T) {
	old := EvalTimeout
	EvalTimeout = time.Millisecond
	t.Cleanup(func() { EvalTimeout = old })
	oldCost := EvalCostLimit
	EvalCostLimit = 1 << 62
	t.Cleanup(func() { EvalCostLimit = oldCost })
	p := mustParse(t, testPolicy) // programs compiled with the huge cost limit
	start := time.Now()
	r := p.Evaluate(&airlock.ToolCall{Tool: "loop", Arguments: map[string]any{"items": manyStrings(2000)}})
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("evaluation took %v; the timeout did not stop it", el)
	}
	if r.Tier != airlock.TierApprove || !strings.Contains(r.Reason, "could not be evaluated") {
		t.Errorf("got %s %q, want approve, could not be evaluated", r.Tier, r.Reason)
	}
}

func TestTierNeverBelowTool(t *testing.T) {
	// Whatever the rules say, the result is never more permissive than the tool.
	p := mustParse(t, testPolicy)
	for name, tool := range p.Tools {
		for _, args := range []map[string]any{nil, {"path": "/etc/x", "n": 1000, "to": []any{"x@y.z"}, "subject": "password"}, {"n": "x", "path": 3}} {
			r := p.Evaluate(&airlock.ToolCall{Agent: "z", Tool: name, Arguments: args})
			if r.Tier.Rank() < tool.Tier.Rank() {
				t.Errorf("%s with %v: got %s, below the tool's %s", name, args, r.Tier, tool.Tier)
			}
			if r.Tier == airlock.TierDeny && !r.Denied || r.Denied && r.Tier != airlock.TierDeny {
				t.Errorf("%s: tier %s but denied=%v", name, r.Tier, r.Denied)
			}
		}
	}
}

func TestLoadShippedPolicies(t *testing.T) {
	// The contract checks' fixtures, copied into testdata (and read from the
	// shared checkout too when it is there, in case they changed).
	fixtures, _ := filepath.Glob("testdata/fixtures/*.yaml")
	shared, _ := filepath.Glob("/work/shared/checks/fixtures/*.yaml")
	files := append(append([]string{"testdata/design.yaml", "../../examples/policy.yaml"}, fixtures...), shared...)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if p.Version != 1 || len(p.Tools) == 0 || len(p.Digest) != 64 || p.Source != f {
				t.Errorf("got version %d, %d tools, digest %q, source %q", p.Version, len(p.Tools), p.Digest, p.Source)
			}
			if p.Defaults.UnknownTool != airlock.TierDeny {
				t.Errorf("unknown_tool: got %s, want deny", p.Defaults.UnknownTool)
			}
		})
	}
}

func TestDesignPolicy(t *testing.T) {
	p, err := Load("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Defaults.PendingTTL; got != 10*time.Minute {
		t.Errorf("pending_ttl: got %v, want 10m", got)
	}
	sb := p.Tool("run_python").Sandbox
	if sb == nil || sb.Backend != "native" || sb.Lang != "python" || sb.Timeout != 10*time.Second || sb.Memory != 256<<20 || sb.Network || sb.CodeArg != "code" {
		t.Errorf("run_python sandbox: got %+v", sb)
	}
	if len(p.Limits) != 3 {
		t.Fatalf("limits: got %d, want 3", len(p.Limits))
	}
	l := p.Limits[0]
	if l.Scope != "user" || l.RequestsPerMinute != 20 || l.TokensPerMinute != 40000 || l.MaxInputTokens != 4096 ||
		l.Concurrent != 4 || l.CostPerHourUSD != 10 || l.SessionMessages != 50 {
		t.Errorf("limits[0]: got %+v", l)
	}
	wantB := []Budget{{"requests", time.Minute, 20}, {"tokens", time.Minute, 40000}, {"cost_usd", time.Hour, 10}}
	if got := l.Budgets(); !slices.Equal(got, wantB) {
		t.Errorf("limits[0].Budgets: got %+v, want %+v", got, wantB)
	}
	if got := p.Limits[2].Budgets(); !slices.Equal(got, []Budget{{"requests", 24 * time.Hour, 5000}}) {
		t.Errorf("limits[2].Budgets: got %+v", got)
	}
	r := p.Review
	if !r.Batch || r.MinDwellHighRisk != 2*time.Second || r.MaxApprovalsPerMinute != 20 || r.CanaryRate != 0.02 || r.TwoPersonRisk != 90 ||
		r.BatchMaxRisk != 50 || r.ConfirmRisk != 90 || r.GraceMS != 400 || r.WriteGrantTTL != 5*time.Minute {
		t.Errorf("review: got %+v", r)
	}
	if p.Risk.Bands != (Bands{25, 50, 80}) {
		t.Errorf("bands: got %+v, want defaults 25/50/80", p.Risk.Bands)
	}
	// support-bot's manifest names tools the file does not declare: a warning, and calls are denied.
	if len(p.Warnings) != 2 || !strings.Contains(p.Warnings[0], `design.yaml:15: agents.support-bot.tools[0]: tool "search_faq" is not declared`) {
		t.Errorf("warnings: got %q", p.Warnings)
	}
	if res := p.Evaluate(&airlock.ToolCall{Agent: "support-bot", Tool: "search_faq"}); !res.Denied {
		t.Errorf("support-bot search_faq: got %+v, want denied (undeclared tool)", res)
	}
	if res := p.Evaluate(&airlock.ToolCall{Agent: "support-bot", Tool: "search_web"}); !res.Denied || !strings.Contains(res.Reason, "manifest") {
		t.Errorf("support-bot search_web: got %+v, want a manifest denial", res)
	}
}

func TestExamplePolicy(t *testing.T) {
	p, err := Load("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) > 0 {
		t.Errorf("the example policy should load without warnings: %q", p.Warnings)
	}
	for _, name := range []string{"search_web", "read_file", "write_file", "send_email", "http_request", "execute_sql",
		"run_python", "run_shell", "transfer_funds", "create_ticket", "search_faq", "delete_record", "modify_permissions"} {
		if p.Tool(name) == nil {
			t.Errorf("tool %s missing", name)
		}
	}
	for _, name := range []string{"support-bot", "billing-bot", "research-assistant", "data-analyst", "devops-bot"} {
		if p.Agents[name] == nil {
			t.Errorf("agent %s missing", name)
		}
	}
	if !p.Tool("write_file").Writes || !p.Tool("transfer_funds").TwoPerson || p.Tool("run_shell").Sandbox == nil || p.Tool("send_email").Scope == nil {
		t.Errorf("write_file writes, transfer_funds two_person, run_shell sandbox, send_email scope: not all set")
	}
	acme := p.Orgs["acme"]
	if acme == nil || !acme.OwnsMailDomain("acme.com") || !acme.OwnsHost("acme.com") || !acme.OwnsHost("grafana.acme.internal") || acme.OwnsHost("acme.internal.evil.com") {
		t.Errorf("org acme: got %+v", acme)
	}
	if len(p.Risk.Chains) != 2 || p.Risk.Chains[0].FirstCond == nil || p.Risk.Chains[0].ThenCond == nil {
		t.Fatalf("chains: got %+v", p.Risk.Chains)
	}
	c := p.Risk.Chains[0]
	if ok, err := c.FirstCond.Match(&airlock.ToolCall{Tool: "read_file", Arguments: map[string]any{"path": "/srv/app/.env"}}); !ok || err != nil {
		t.Errorf("chain first on .env read: got %v, %v; want a match", ok, err)
	}
	if ok, err := c.ThenCond.Match(&airlock.ToolCall{Tool: "search_web"}); ok || err != nil {
		t.Errorf("chain then on search_web: got %v, %v; want no match", ok, err)
	}
}

func TestAllowedTools(t *testing.T) {
	p := mustParse(t, testPolicy)
	if got, want := p.AllowedTools("support-bot"), []string{"search_web", "send_email"}; !slices.Equal(got, want) {
		t.Errorf("support-bot: got %v, want %v", got, want)
	}
	got := p.AllowedTools("anyone")
	if slices.Contains(got, "deny_tool") || !slices.Contains(got, "read_file") || len(got) != len(p.Tools)-1 {
		t.Errorf("unlisted agent: got %v, want every non-deny tool", got)
	}
	if got := p.AllowedTools("empty-bot"); len(got) != 0 {
		t.Errorf("empty-bot: got %v, want none", got)
	}
}

func TestDigest(t *testing.T) {
	a := mustParse(t, testPolicy)
	b := mustParse(t, testPolicy+"\n")
	if a.Digest == b.Digest || a.Digest != Digest([]byte(testPolicy)) {
		t.Errorf("digest: got %s and %s; want the SHA-256 of the bytes, differing with the bytes", a.Digest, b.Digest)
	}
}

func TestDefaults(t *testing.T) {
	p := mustParse(t, "version: 1\ntools: {x: {tier: auto}}\n")
	if p.Defaults.PendingTTL != 10*time.Minute || p.Defaults.UnknownTool != airlock.TierDeny {
		t.Errorf("defaults: got %+v", p.Defaults)
	}
	want := Review{BatchMaxRisk: 50, MinDwellHighRisk: 2 * time.Second, MaxApprovalsPerMinute: 20, ConfirmRisk: 90, GraceMS: 400,
		WriteGrantTTL: 5 * time.Minute, GrantMaxTTL: time.Hour}
	if p.Review != want {
		t.Errorf("review defaults: got %+v, want %+v", p.Review, want)
	}
	if p.Risk.Bands != (Bands{25, 50, 80}) || p.Risk.Points == nil {
		t.Errorf("risk defaults: got %+v", p.Risk)
	}
	if p.Auth != nil || len(p.Warnings) != 0 {
		t.Errorf("auth %v, warnings %q: want none", p.Auth, p.Warnings)
	}
}

func TestSandbox(t *testing.T) {
	p := mustParse(t, `version: 1
tools:
  sh: {tier: approve, sandbox: {lang: shell}}
  full:
    tier: approve
    sandbox: {backend: bwrap, command: [node, /opt/tool.js], code_arg: script, timeout: 2m, cpu_time: 90s, memory: 1GiB,
              pids: 32, cpus: 1.5, file_size: 512M, tmp_size: 64MiB, output: 256KiB, network: true, allow: [api.acme.com, "*.acme.internal"],
              env: [LANG, TZ], workspace: ws, workspace_rw: true}
`)
	sh := p.Tool("sh").Sandbox
	if sh.Backend != "native" || sh.CodeArg != "command" || sh.Timeout != 30*time.Second || sh.Memory != 512<<20 || sh.Pids != 128 || sh.Network {
		t.Errorf("defaults: got %+v", sh)
	}
	f := p.Tool("full").Sandbox
	want := SandboxProfile{Backend: "bwrap", Command: []string{"node", "/opt/tool.js"}, CodeArg: "script", Timeout: 2 * time.Minute,
		CPUTime: 90 * time.Second, Memory: 1 << 30, Pids: 32, CPUs: 1.5, FileSize: 512 << 20, TmpSize: 64 << 20, Output: 256 << 10,
		Network: true, Allow: []string{"api.acme.com", "*.acme.internal"}, Env: []string{"LANG", "TZ"}, Workspace: "ws", WorkspaceRW: true}
	gotJSON, _ := json.Marshal(f)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("got  %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestLimitsFold(t *testing.T) {
	p := mustParse(t, `version: 1
tools: {x: {tier: auto}}
limits:
  - {scope: org, cost_per_hour_usd: 5}
  - {scope: agent, window: 7d, tokens: 1000000, requests_per_minute: 30}
  - {scope: session, session_messages: 50}
  - {scope: global, window: 1m, requests: 100, requests_per_minute: 100}
  - {scope: user, window: 1h, cost_usd: 2, cost_per_hour_usd: 3, max_output_tokens: 900}
`)
	tests := []struct {
		name string
		l    Limit
		want []Budget
	}{
		{"cost-per-hour-folds", p.Limits[0], []Budget{{"cost_usd", time.Hour, 5}}},
		{"window-and-shorthand", p.Limits[1], []Budget{{"tokens", 7 * 24 * time.Hour, 1e6}, {"requests", time.Minute, 30}}},
		{"no-budgets", p.Limits[2], nil},
		{"duplicate-reported-once", p.Limits[3], []Budget{{"requests", time.Minute, 100}}},
		{"explicit-wins-over-shorthand", p.Limits[4], []Budget{{"cost_usd", time.Hour, 2}, {"cost_usd", time.Hour, 3}}},
		{"hand-built-shorthand", Limit{Scope: "user", RequestsPerMinute: 7}, []Budget{{"requests", time.Minute, 7}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.Budgets(); !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if p.Limits[0].CostUSD != 5 || p.Limits[0].Window != time.Hour || p.Limits[0].CostPerHourUSD != 5 {
		t.Errorf("fold of cost_per_hour_usd: got %+v", p.Limits[0])
	}
	if p.Limits[1].Requests != 0 || p.Limits[1].Window != 7*24*time.Hour {
		t.Errorf("requests_per_minute must not fold into a 7d window: got %+v", p.Limits[1])
	}
	if p.Limits[4].MaxOutputTokens != 900 || p.Limits[2].SessionMessages != 50 {
		t.Errorf("per-call and session fields: got %+v / %+v", p.Limits[4], p.Limits[2])
	}
}

func TestRiskSection(t *testing.T) {
	p := mustParse(t, `version: 1
tools: {x: {tier: auto}}
risk:
  points: {destructive_sql: 45, novelty: 0}
  bands: {medium: 20, high: 40, critical: 70}
  chains:
    - {name: c1, first: secret_read, then: 'call.tool == "http_request"', points: 30, reason: read then send}
    - {name: c2, first: 'args.path.contains(".env")', then: egress, points: 10}
    - {name: c3, first: "tool:read_file|credential_read", then: "*", points: 5}
    - {name: c4, first: send_email, then: upload|data_egress, points: 5}
`)
	for _, c := range p.Risk.Chains[2:] {
		if c.FirstCond.Class == "" || c.ThenCond.Class == "" {
			t.Errorf("chain %s: got first %+v then %+v, want class conditions", c.Name, c.FirstCond, c.ThenCond)
		}
	}
	if p.Risk.Points["destructive_sql"] != 45 || p.Risk.Points["novelty"] != 0 || len(p.Risk.Points) != 2 {
		t.Errorf("points: got %v", p.Risk.Points)
	}
	if p.Risk.Bands != (Bands{20, 40, 70}) {
		t.Errorf("bands: got %+v", p.Risk.Bands)
	}
	c1, c2 := p.Risk.Chains[0], p.Risk.Chains[1]
	if c1.FirstCond.Class != "secret_read" || c1.ThenCond.Expr == "" || c1.Reason != "read then send" || c1.Points != 30 {
		t.Errorf("c1: got %+v", c1)
	}
	if c2.ThenCond.Class != "egress" || c2.Reason != "c2" || c2.Line != 8 {
		t.Errorf("c2: got %+v (line %d)", c2, c2.Line)
	}
	if ok, _ := c1.FirstCond.Match(&airlock.ToolCall{Tool: "x"}); ok {
		t.Errorf("a class condition must not match through Match")
	}
	if ok, err := c1.ThenCond.Match(&airlock.ToolCall{Tool: "http_request"}); !ok || err != nil {
		t.Errorf("c1.then: got %v, %v", ok, err)
	}
	if ok, err := c2.FirstCond.Match(&airlock.ToolCall{Tool: "read_file"}); ok || err != nil {
		t.Errorf("c2.first without path: got %v, %v; want false, nil", ok, err)
	}
}

func TestOrgs(t *testing.T) {
	p := mustParse(t, `version: 1
tools: {x: {tier: auto}}
orgs:
  acme: {mail_domains: [ACME.com], hosts: [acme.com, "*.acme.internal"]}
`)
	o := p.Orgs["acme"]
	if o == nil || o.Name != "acme" || !slices.Equal(o.MailDomains, []string{"acme.com"}) {
		t.Fatalf("got %+v", o)
	}
	for host, want := range map[string]bool{"acme.com": true, "ACME.com.": true, "db.acme.internal": true, "acme.internal": false, "evilacme.com": false, "acme.com.evil.io": false, "": false} {
		if got := o.OwnsHost(host); got != want {
			t.Errorf("OwnsHost(%q): got %v, want %v", host, got, want)
		}
	}
	var nilOrg *Org
	if nilOrg.OwnsHost("acme.com") {
		t.Errorf("nil org owns nothing")
	}
}

func TestScopeCheckDirect(t *testing.T) {
	s := &Scope{From: []string{"a@acme.com"}, Domains: []string{"acme.com"}, Schemas: []string{"public"}, Hosts: []string{"acme.com"}, Paths: []string{"/srv"}}
	tests := []struct {
		name string
		args map[string]any
		arg  string // "" = in scope
	}{
		{"empty", nil, ""},
		{"all-good", map[string]any{"from": "a@acme.com", "to": "x@acme.com, y@acme.com", "cc": []string{"z@acme.com"}, "query": "select * from public.t", "url": "https://acme.com/x", "host": "acme.com:443", "path": "/srv/a"}, ""},
		{"to-list-with-outsider", map[string]any{"to": "x@acme.com, y@evil.com"}, "to"},
		{"to-not-an-address", map[string]any{"to": "nobody"}, "to"},
		{"to-empty-string", map[string]any{"to": ""}, "to"},
		{"cc-map", map[string]any{"cc": map[string]any{"a": 1}}, "cc"},
		{"from-number", map[string]any{"from": 3}, "from"},
		{"schema-arg", map[string]any{"schema": "private"}, "schema"},
		{"database-arg-ok", map[string]any{"database": "PUBLIC"}, ""},
		{"sql-arg", map[string]any{"sql": "use other"}, "sql"},
		{"statement-arg", map[string]any{"statement": "insert into x.t values (1)"}, "statement"},
		{"query-not-string", map[string]any{"query": []any{"select"}}, "query"},
		{"host-arg", map[string]any{"host": "evil.com"}, "host"},
		{"url-no-host", map[string]any{"url": "acme.com/x"}, "url"},
		{"url-ipv6", map[string]any{"url": "http://[::1]:8080/"}, "url"},
		{"path-nul", map[string]any{"path": "/srv/a\x00/../../etc"}, "path"},
		{"path-relative", map[string]any{"path": "srv/a"}, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Check(tt.args)
			if tt.arg == "" {
				if err != nil {
					t.Errorf("got %v, want in scope", err)
				}
				return
			}
			var se *ScopeError
			if !errors.As(err, &se) || se.Arg != tt.arg {
				t.Errorf("got %v, want a ScopeError on %s", err, tt.arg)
			}
			if !strings.HasPrefix(err.Error(), "outside scope: ") {
				t.Errorf("message %q should start with 'outside scope: '", err)
			}
		})
	}
	var nilScope *Scope
	if err := nilScope.Check(map[string]any{"path": "/"}); err != nil {
		t.Errorf("nil scope: got %v", err)
	}
}

func TestSQLSchemas(t *testing.T) {
	tests := []struct {
		q    string
		want []string
	}{
		{"SELECT 1", nil},
		{"select * from customers", nil},
		{"SELECT * FROM sales.orders o JOIN hr.people p ON o.a = p.b", []string{"sales", "hr"}},
		{"select * from a.t1 x, b.t2 as y, c.t3 where 1=1", []string{"a", "b", "c"}},
		{"SELECT * FROM db.sch.tbl", []string{"sch"}},
		{`SELECT * FROM "My Schema"."T"`, []string{"My Schema"}},
		{"SELECT * FROM `ms`.`t`", []string{"ms"}},
		{"SELECT * FROM [dbo].[t]", []string{"dbo"}},
		{"INSERT INTO audit.log VALUES ('from x.y')", []string{"audit"}},
		{"UPDATE billing.invoices SET a = 1", []string{"billing"}},
		{"DELETE FROM ops.t WHERE id IN (SELECT id FROM archive.t)", []string{"ops", "archive"}},
		{"DROP TABLE IF EXISTS old.t; TRUNCATE stage.t", []string{"old", "stage"}},
		{"DROP SCHEMA secret CASCADE", []string{"secret"}},
		{"USE other; SELECT 1", []string{"other"}},
		{"SET search_path TO evil, public", []string{"evil", "public"}},
		{"SELECT 'FROM x.y' -- FROM c.d\n /* FROM e.f */ FROM g.h", []string{"g"}},
		{"SELECT $$ FROM x.y $$ FROM ok.t", []string{"ok"}},
		{"SELECT u.name FROM users u", nil},
		{"SELECT * FROM ONLY p.t", []string{"p"}},
		{"select * from 'unterminated", nil},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			if got := SQLSchemas(tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPathWithin(t *testing.T) {
	tests := []struct {
		p        string
		prefixes []string
		want     bool
	}{
		{"/srv/data", []string{"/srv/data"}, true},
		{"/srv/data/x/y", []string{"/srv/data/"}, true},
		{"/srv/database", []string{"/srv/data"}, false},
		{"/srv/data/../secret", []string{"/srv/data"}, false},
		{"/anything", []string{"/"}, true},
		{"rel/x", []string{"/"}, false},
		{"docs/a.md", []string{"docs"}, true},
		{"../docs/a.md", []string{"docs"}, false},
		{"", []string{"/"}, false},
	}
	for _, tt := range tests {
		if got := PathWithin(tt.p, tt.prefixes); got != tt.want {
			t.Errorf("PathWithin(%q, %q): got %v, want %v", tt.p, tt.prefixes, got, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: got %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: got %v", err)
	}
}

// Evaluate is called from many broker goroutines at once.
func TestEvaluateConcurrent(t *testing.T) {
	p := mustParse(t, testPolicy)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				r := p.Evaluate(&airlock.ToolCall{Agent: "a", Tool: "read_file", Arguments: map[string]any{"path": "/etc/shadow"}})
				if r.Tier != airlock.TierApprove || len(r.Factors) != 1 {
					t.Errorf("got %+v", r)
					return
				}
				r = p.Evaluate(&airlock.ToolCall{Agent: "a", Tool: "send_email", Arguments: map[string]any{"to": []any{"a@acme.com"}, "subject": "s"}})
				if r.Tier != airlock.TierApprove || r.Denied {
					t.Errorf("got %+v", r)
					return
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}

func TestCompileCond(t *testing.T) {
	c, err := CompileCond(`call.tool == "send_email" && args.to.all(r, r.endsWith("@acme.com"))`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call airlock.ToolCall
		want bool
		err  bool
	}{
		{"match", airlock.ToolCall{Tool: "send_email", Arguments: map[string]any{"to": []any{"a@acme.com"}}}, true, false},
		{"other-domain", airlock.ToolCall{Tool: "send_email", Arguments: map[string]any{"to": []any{"a@evil.com"}}}, false, false},
		{"missing-arg", airlock.ToolCall{Tool: "send_email"}, false, false},
		{"wrong-type", airlock.ToolCall{Tool: "send_email", Arguments: map[string]any{"to": 5}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Match(&tt.call)
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := CompileCond(`args.x +`); err == nil || !strings.Contains(err.Error(), "policy: condition") {
		t.Errorf("bad condition: got %v", err)
	}
}

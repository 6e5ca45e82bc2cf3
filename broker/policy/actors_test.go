package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/airlock/airlock"
)

// actorPolicy pins support-bot to users and an org; free-bot is listed
// without pins; other agents are not listed at all.
const actorPolicy = `version: 1
tools:
  search_faq:    {tier: auto}
  create_ticket: {tier: notify}
  read_file:     {tier: notify, rules: [{when: 'args.path.startsWith("/etc/")', tier: approve, risk: 40, reason: sensitive path}]}
  deny_tool:     {tier: deny}
agents:
  support-bot:
    tools: [search_faq, create_ticket, deny_tool]
    users: [alice, bob, "svc-*"]
    orgs: [acme, "acme-*"]
  user-only-bot:
    tools: [search_faq]
    users: ["*@acme.com"]
  nobody-bot:
    tools: [search_faq]
    users: []
  free-bot:
    tools: [search_faq, read_file]
`

func TestActorPins(t *testing.T) {
	p := mustParse(t, actorPolicy)
	req := mustParse(t, strings.Replace(actorPolicy, "version: 1\n", "version: 1\ndefaults: {require_user: true}\n", 1))
	tests := []struct {
		name   string
		pol    *Policy
		call   airlock.ToolCall
		tier   airlock.Tier
		rule   string
		reason string // substring
	}{
		{name: "allowed-user", call: airlock.ToolCall{Agent: "support-bot", User: "alice", Org: "acme", Tool: "search_faq"}, tier: airlock.TierAuto, reason: "search_faq is an auto-tier tool"},
		{name: "second-user", call: airlock.ToolCall{Agent: "support-bot", User: "bob", Org: "acme", Tool: "create_ticket"}, tier: airlock.TierNotify},
		{name: "glob-match", call: airlock.ToolCall{Agent: "support-bot", User: "svc-billing", Org: "acme", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "glob-match-empty-star", call: airlock.ToolCall{Agent: "support-bot", User: "svc-", Org: "acme", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "glob-no-match-prefix", call: airlock.ToolCall{Agent: "support-bot", User: "xsvc-billing", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users"},
		{name: "unmatched-user", call: airlock.ToolCall{Agent: "support-bot", User: "mallory", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users",
			reason: `agent support-bot may not act for user "mallory" (policy agents.support-bot.users)`},
		{name: "user-case-differs", call: airlock.ToolCall{Agent: "support-bot", User: "Alice", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users"},
		{name: "user-lookalike", call: airlock.ToolCall{Agent: "support-bot", User: "alice\u200b", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users", reason: `"alice\u200b"`},
		{name: "user-hostile-quoted", call: airlock.ToolCall{Agent: "support-bot", User: "x\x1b[2Jy", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users", reason: `"x\x1b[2Jy"`},
		{name: "empty-user", call: airlock.ToolCall{Agent: "support-bot", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users",
			reason: "agent support-bot must name the user it acts for; the call names none (policy agents.support-bot.users)"},
		{name: "org-pin-match", call: airlock.ToolCall{Agent: "support-bot", User: "alice", Org: "acme-eu", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "org-pin-unmatched", call: airlock.ToolCall{Agent: "support-bot", User: "alice", Org: "globex", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.orgs",
			reason: `agent support-bot may not act for org "globex" (policy agents.support-bot.orgs)`},
		{name: "org-pin-empty-org", call: airlock.ToolCall{Agent: "support-bot", User: "alice", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.orgs", reason: "must name the org"},
		{name: "users-only-pin-any-org", call: airlock.ToolCall{Agent: "user-only-bot", User: "dana@acme.com", Org: "whatever", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "users-only-pin-no-org", call: airlock.ToolCall{Agent: "user-only-bot", User: "dana@acme.com", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "suffix-glob-unmatched", call: airlock.ToolCall{Agent: "user-only-bot", User: "dana@acme.com.evil", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.user-only-bot.users"},
		{name: "empty-pin-denies-all", call: airlock.ToolCall{Agent: "nobody-bot", User: "alice", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.nobody-bot.users"},
		{name: "manifest-checked-first", call: airlock.ToolCall{Agent: "support-bot", User: "mallory", Tool: "read_file"}, tier: airlock.TierDeny, reason: "not in agent support-bot's manifest"},
		{name: "deny-tier-still-denied", call: airlock.ToolCall{Agent: "support-bot", User: "alice", Org: "acme", Tool: "deny_tool"}, tier: airlock.TierDeny, reason: "deny-tier tool"},
		{name: "agent-without-pins-unaffected", call: airlock.ToolCall{Agent: "free-bot", User: "mallory", Org: "evil", Tool: "search_faq"}, tier: airlock.TierAuto, reason: "search_faq is an auto-tier tool"},
		{name: "agent-without-pins-no-user", call: airlock.ToolCall{Agent: "free-bot", Tool: "read_file", Arguments: map[string]any{"path": "/etc/passwd"}}, tier: airlock.TierApprove, rule: "tools.read_file.rules[0]"},
		{name: "unlisted-agent-unaffected", call: airlock.ToolCall{Agent: "stranger", User: "anyone", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "require-user-denies-empty", pol: req, call: airlock.ToolCall{Agent: "stranger", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "defaults.require_user",
			reason: "the call names no user, and every call must (policy defaults.require_user)"},
		{name: "require-user-denies-unpinned-agent", pol: req, call: airlock.ToolCall{Agent: "free-bot", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "defaults.require_user"},
		{name: "require-user-any-user", pol: req, call: airlock.ToolCall{Agent: "stranger", User: "x", Tool: "search_faq"}, tier: airlock.TierAuto},
		{name: "require-user-pin-still-applies", pol: req, call: airlock.ToolCall{Agent: "support-bot", User: "mallory", Org: "acme", Tool: "search_faq"}, tier: airlock.TierDeny, rule: "agents.support-bot.users"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = p
			}
			r := pol.Evaluate(&tc.call)
			if r.Tier != tc.tier {
				t.Errorf("tier: got %s (%s), want %s", r.Tier, r.Reason, tc.tier)
			}
			if wantDenied := tc.tier == airlock.TierDeny; r.Denied != wantDenied {
				t.Errorf("denied: got %v, want %v", r.Denied, wantDenied)
			}
			if r.Rule != tc.rule {
				t.Errorf("rule: got %q, want %q", r.Rule, tc.rule)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("reason: got %q, want it to contain %q", r.Reason, tc.reason)
			}
			if strings.ContainsAny(r.Reason, "\n\x1b") {
				t.Errorf("reason %q is not one safe line", r.Reason)
			}
			// CheckActor agrees with Evaluate: it refuses what a pin
			// denied, and nothing Evaluate lets through.
			rule, reason := pol.CheckActor(tc.call.Agent, tc.call.User, tc.call.Org)
			switch {
			case strings.HasPrefix(r.Rule, "agents.") || r.Rule == "defaults.require_user":
				if rule != r.Rule || reason != r.Reason {
					t.Errorf("CheckActor: got %q, %q; want %q, %q", rule, reason, r.Rule, r.Reason)
				}
			case !r.Denied:
				if rule != "" {
					t.Errorf("CheckActor: got %q, %q for an allowed call, want nothing", rule, reason)
				}
			}
		})
	}
}

func TestActorPinsParsed(t *testing.T) {
	p := mustParse(t, actorPolicy)
	if a := p.Agents["support-bot"]; strings.Join(a.Users, ",") != "alice,bob,svc-*" || strings.Join(a.Orgs, ",") != "acme,acme-*" {
		t.Errorf("support-bot: got users %q orgs %q", a.Users, a.Orgs)
	}
	if a := p.Agents["free-bot"]; a.Users != nil || a.Orgs != nil {
		t.Errorf("free-bot: got users %q orgs %q, want nil (no pin)", a.Users, a.Orgs)
	}
	if a := p.Agents["nobody-bot"]; a.Users == nil || len(a.Users) != 0 {
		t.Errorf("nobody-bot: got users %#v, want an empty, non-nil pin", a.Users)
	}
	if p.Defaults.RequireUser {
		t.Errorf("require_user: got true, want false by default")
	}
	want := []string{"policy.yaml:17: agents.nobody-bot.users: empty list: agent nobody-bot may act for no user, so every call of it is denied"}
	if len(p.Warnings) != len(want) || !strings.HasPrefix(p.Warnings[0], want[0]) {
		t.Errorf("warnings: got %q, want %q", p.Warnings, want)
	}
}

func TestActorPinErrors(t *testing.T) {
	const head = "version: 1\ntools: {t: {tier: auto}}\nagents:\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"empty-user", head + "  a: {tools: [t], users: [alice, \"\"]}\n", []string{"policy.yaml:4: agents.a.users[1]: must not be empty"}},
		{"null-user", head + "  a:\n    tools: [t]\n    users:\n      - alice\n      -\n", []string{"policy.yaml:8: agents.a.users[1]: must not be empty"}},
		{"empty-org", head + "  a: {tools: [t], orgs: ['']}\n", []string{"policy.yaml:4: agents.a.orgs[0]: must not be empty"}},
		{"question-mark", head + "  a:\n    tools: [t]\n    users: [\"svc-?\"]\n", []string{`policy.yaml:6: agents.a.users[0]: "svc-?" is not a user name or glob: '?' is not supported (the only wildcard is *, any run of characters)`}},
		{"char-class", head + "  a: {tools: [t], users: [\"[ab]*\"]}\n", []string{`policy.yaml:4: agents.a.users[0]: "[ab]*" is not a user name or glob: '[' is not supported`}},
		{"brace", head + "  a: {tools: [t], orgs: [\"{a,b}\"]}\n", []string{`policy.yaml:4: agents.a.orgs[0]: "{a,b}" is not a org name or glob`}},
		{"backslash", head + "  a: {tools: [t], users: ['a\\*']}\n", []string{`agents.a.users[0]: "a\\*" is not a user name or glob: '\\' is not supported`}},
		{"double-star", head + "  a: {tools: [t], users: [\"svc-**\"]}\n", []string{`policy.yaml:4: agents.a.users[0]: "svc-**" is not a user name or glob: ** is the same as *`}},
		{"space", head + "  a: {tools: [t], users: [\"alice smith\"]}\n", []string{`policy.yaml:4: agents.a.users[0]: "alice smith" is not a user name or glob: use 1 to 128 printable characters without spaces`}},
		{"too-long", head + "  a: {tools: [t], users: [" + strings.Repeat("u", 129) + "]}\n", []string{"policy.yaml:4: agents.a.users[0]: ", "use 1 to 128 printable"}},
		{"not-a-list", head + "  a: {tools: [t], users: alice}\n", []string{"policy.yaml:4: agents.a.users: must be a list, not the string \"alice\""}},
		{"nested-list", head + "  a: {tools: [t], users: [[alice]]}\n", []string{"policy.yaml:4: agents.a.users[0]: must be a single value, not a list"}},
		{"typo-key", head + "  a: {tools: [t], user: [alice]}\n", []string{`policy.yaml:4: agents.a.user: unknown key (did you mean "users"?)`}},
		{"require-user-not-bool", "version: 1\ndefaults: {require_user: yes}\ntools: {t: {tier: auto}}\n", []string{`policy.yaml:2: defaults.require_user: must be true or false, not the string "yes"`}},
		{"require-user-typo", "version: 1\ndefaults: {require_users: true}\ntools: {t: {tier: auto}}\n", []string{`policy.yaml:2: defaults.require_users: unknown key (did you mean "require_user"?)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("got a policy (users %q), want an error", p.Agents["a"])
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err.Error(), w)
				}
			}
		})
	}
}

func TestActorPinWarnings(t *testing.T) {
	src := "version: 1\ntools: {t: {tier: auto}}\nagents:\n  a:\n    tools: [t]\n    users: [alice, alice]\n    orgs:\n"
	p, err := Parse("w.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"w.yaml:6: agents.a.users[1]: alice is listed twice",
		"w.yaml:7: agents.a.orgs: empty list: agent a may act for no org, so every call of it is denied (remove orgs: to lift the pin)",
	}
	if len(p.Warnings) != len(want) {
		t.Fatalf("got warnings %q, want %q", p.Warnings, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(p.Warnings[i], w) {
			t.Errorf("warning %d: got %q, want prefix %q", i, p.Warnings[i], w)
		}
	}
	if got := p.Agents["a"].Users; len(got) != 1 {
		t.Errorf("users: got %q, want [alice]", got)
	}
	if r := p.Evaluate(&airlock.ToolCall{Agent: "a", User: "alice", Org: "acme", Tool: "t"}); !r.Denied || r.Rule != "agents.a.orgs" {
		t.Errorf("empty orgs pin: got %+v, want denied by agents.a.orgs", r)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"alice", "alice", true},
		{"alice", "alicex", false},
		{"alice", "", false},
		{"", "", true},
		{"*", "", true},
		{"*", "anything", true},
		{"svc-*", "svc-", true},
		{"svc-*", "svc-billing", true},
		{"svc-*", "svc", false},
		{"svc-*", "xsvc-1", false},
		{"*@acme.com", "a@acme.com", true},
		{"*@acme.com", "a@acme.com.evil", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "acb", false},
		{"*a*", "ba", true},
		{"*ab*ab", "xabab", true},
		{"*ab*ab", "xab", false},
		{"a*", "A", false},
	}
	for _, tc := range tests {
		t.Run(tc.pat+"-"+tc.s, func(t *testing.T) {
			if got := globMatch(tc.pat, tc.s); got != tc.want {
				t.Errorf("globMatch(%q, %q): got %v, want %v", tc.pat, tc.s, got, tc.want)
			}
		})
	}
}

func TestCheckActorNoAlloc(t *testing.T) {
	p := mustParse(t, actorPolicy)
	allocs := testing.AllocsPerRun(100, func() {
		if rule, _ := p.CheckActor("support-bot", "svc-billing", "acme-eu"); rule != "" {
			t.Fatalf("denied: %s", rule)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per allowed call, want 0", allocs)
	}
}

// TestActorCases runs testdata/actors/cases.jsonl, the `airlock policy test`
// cases for testdata/actors/policy.yaml, so the fixture stays true.
func TestActorCases(t *testing.T) {
	p, err := Load("testdata/actors/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/actors/cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var c struct {
			Name       string           `json:"name"`
			Call       airlock.ToolCall `json:"call"`
			Want       airlock.Tier     `json:"want"`
			WantRule   *string          `json:"want_rule"`
			WantReason string           `json:"want_reason"`
		}
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatalf("case %q: %v", line, err)
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			r := p.Evaluate(&c.Call)
			if r.Tier != c.Want {
				t.Errorf("tier: got %s (%s), want %s", r.Tier, r.Reason, c.Want)
			}
			if c.WantRule != nil && r.Rule != *c.WantRule {
				t.Errorf("rule: got %q, want %q", r.Rule, *c.WantRule)
			}
			if !strings.Contains(r.Reason, c.WantReason) {
				t.Errorf("reason: got %q, want it to contain %q", r.Reason, c.WantReason)
			}
		})
	}
	if n < 10 {
		t.Errorf("got %d cases, want at least 10", n)
	}
}

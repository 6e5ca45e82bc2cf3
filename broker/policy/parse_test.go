package policy

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/ssh"
)

func TestParseErrors(t *testing.T) {
	const head = "version: 1\n"
	tests := []struct {
		name string
		src  string
		want []string // each must appear in the error text
	}{
		{"empty-file", "", []string{"policy.yaml: empty file"}},
		{"only-comment", "# nothing\n", []string{"empty file"}},
		{"not-a-mapping", "- a\n- b\n", []string{"policy.yaml:1: must be a mapping"}},
		{"bad-yaml", "version: 1\ntools: {a: [}\n", []string{"policy.yaml:2: invalid YAML"}},
		{"unclosed-flow-list", "version: 1\ntools:\n  a: [x,\n", []string{"policy.yaml:4: invalid YAML"}},
		{"bad-indent", "version: 1\ntools:\n  a: 1\n b: 2\n", []string{"policy.yaml:4: invalid YAML: did not find expected key"}},
		{"tab-indent", "version: 1\ntools:\n\tx: 1\n", []string{"policy.yaml:3: invalid YAML"}},
		{"two-documents", "version: 1\ntools: {}\n---\nversion: 1\n", []string{"policy.yaml:3: more than one YAML document"}},
		{"missing-version", "tools: {a: {tier: auto}}\n", []string{"policy.yaml:1: version: required"}},
		{"version-2", "version: 2\n", []string{"policy.yaml:1: version: unsupported version 2"}},
		{"version-string", "version: \"1\"\n", []string{"policy.yaml:1: version: must be a whole number"}},
		{"unknown-top-level-key", head + "toolz: {}\n", []string{`policy.yaml:2: toolz: unknown key (did you mean "tools"?)`}},
		{"typo-teir", head + "tools:\n  read_file: {teir: notify}\n", []string{`policy.yaml:3: tools.read_file.teir: unknown key (did you mean "tier"?)`, "policy.yaml:3: tools.read_file.tier: required"}},
		{"bad-tier", head + "tools:\n  x: {tier: aprove}\n", []string{`policy.yaml:3: tools.x.tier: "aprove" is not a tier (auto, notify, approve or deny); did you mean "approve"?`}},
		{"tier-wrong-type", head + "tools:\n  x: {tier: [auto]}\n", []string{"policy.yaml:3: tools.x.tier: must be a single value, not a list"}},
		{"tool-not-mapping", head + "tools:\n  x: auto\n", []string{`policy.yaml:3: tools.x: must be a mapping (key: value), not the string "auto"`}},
		{"tools-list", head + "tools: [a, b]\n", []string{"policy.yaml:2: tools: must be a mapping of names, not a list"}},
		{"duplicate-tool", head + "tools:\n  x: {tier: auto}\n  x: {tier: deny}\n", []string{"policy.yaml:4: tools.x: duplicate key"}},
		{"tool-name-space", head + "tools:\n  \"a b\": {tier: auto}\n", []string{"policy.yaml:3: tools.a b: tool names must be"}},
		{"unknown-tool-deny-only", head + "defaults: {unknown_tool: approve}\ntools: {x: {tier: auto}}\n", []string{`policy.yaml:2: defaults.unknown_tool: must be deny, not "approve": a tool that is not in the policy is always denied`}},
		{"bad-pending-ttl", head + "defaults: {pending_ttl: 10 minutes}\n", []string{`policy.yaml:2: defaults.pending_ttl: invalid duration "10 minutes"`}},
		{"pending-ttl-no-unit", head + "defaults: {pending_ttl: 600}\n", []string{`policy.yaml:2: defaults.pending_ttl: duration "600" needs a unit`}},
		{"pending-ttl-negative", head + "defaults: {pending_ttl: -5m}\n", []string{"defaults.pending_ttl: duration \"-5m\" is negative"}},
		{"cel-undeclared", head + "tools:\n  read_file:\n    tier: notify\n    rules:\n      - when: 'argz.path == \"x\"'\n        tier: approve\n",
			[]string{"policy.yaml:6: tools.read_file.rules[0].when: undeclared reference to 'argz'"}},
		{"cel-syntax", head + "tools:\n  x:\n    tier: auto\n    rules: [{when: 'args.path.startsWith(', risk: 5}]\n", []string{"policy.yaml:5: tools.x.rules[0].when: Syntax error"}},
		{"cel-not-bool", head + "tools:\n  x: {tier: auto, rules: [{when: '\"a\" + \"b\"', risk: 5}]}\n", []string{"policy.yaml:3: tools.x.rules[0].when: must be a boolean expression, not string"}},
		{"cel-call-typo", head + "tools:\n  x: {tier: auto, rules: [{when: 'call.agnet == \"a\"', risk: 5}]}\n", []string{"tools.x.rules[0].when: undeclared reference to 'call.agnet'"}},
		{"cel-call-type", head + "tools:\n  x: {tier: auto, rules: [{when: 'call.input_tokens > \"5\"', risk: 5}]}\n", []string{"tools.x.rules[0].when: found no matching overload"}},
		{"cel-bad-regex-literal", head + "tools:\n  x: {tier: auto, rules: [{when: 'args.p.matches(\"(\")', risk: 5}]}\n", []string{"policy.yaml:3: tools.x.rules[0].when: ", "missing closing )"}},
		{"rule-missing-when", head + "tools:\n  x:\n    tier: auto\n    rules:\n      - {tier: approve}\n", []string{"policy.yaml:6: tools.x.rules[0].when: required"}},
		{"rule-does-nothing", head + "tools:\n  x:\n    tier: auto\n    rules:\n      - {when: 'true'}\n", []string{"policy.yaml:6: tools.x.rules[0]: rule does nothing"}},
		{"rule-risk-range", head + "tools:\n  x: {tier: auto, rules: [{when: 'true', risk: 150}]}\n", []string{"policy.yaml:3: tools.x.rules[0].risk: must be between 0 and 100, not 150"}},
		{"rule-unknown-key", head + "tools:\n  x: {tier: auto, rules: [{when: 'true', risk: 1, reasn: r}]}\n", []string{`tools.x.rules[0].reasn: unknown key (did you mean "reason"?)`}},
		{"rules-not-list", head + "tools:\n  x: {tier: auto, rules: {when: 'true'}}\n", []string{"policy.yaml:3: tools.x.rules: must be a list, not a mapping"}},
		{"writes-not-bool", head + "tools:\n  x: {tier: auto, writes: yes}\n", []string{`policy.yaml:3: tools.x.writes: must be true or false, not the string "yes"`}},
		{"sandbox-bad-size", head + "tools:\n  x:\n    tier: approve\n    sandbox: {lang: python, memory: 256 megs}\n", []string{`policy.yaml:5: tools.x.sandbox.memory: invalid size "256 megs": unknown unit`}},
		{"sandbox-bad-backend", head + "tools:\n  x: {tier: approve, sandbox: {lang: python, backend: dockr}}\n", []string{`tools.x.sandbox.backend: "dockr" is not one of native, bwrap, docker, wasm; did you mean "docker"?`}},
		{"sandbox-no-lang", head + "tools:\n  x: {tier: approve, sandbox: {timeout: 5s}}\n", []string{"policy.yaml:3: tools.x.sandbox: set lang"}},
		{"sandbox-lang-and-command", head + "tools:\n  x: {tier: approve, sandbox: {lang: python, command: [x]}}\n", []string{"tools.x.sandbox: set lang or command, not both"}},
		{"sandbox-timeout-too-long", head + "tools:\n  x: {tier: approve, sandbox: {lang: python, timeout: 1h}}\n", []string{"tools.x.sandbox.timeout: must be between 1ms and 10m0s, not 1h0m0s"}},
		{"sandbox-allow-without-network", head + "tools:\n  x: {tier: approve, sandbox: {lang: python, allow: [pypi.org]}}\n", []string{"tools.x.sandbox.allow: allow-listed hosts need network: true"}},
		{"sandbox-bad-env", head + "tools:\n  x: {tier: approve, sandbox: {lang: python, env: [\"A=B\"]}}\n", []string{`tools.x.sandbox.env[0]: "A=B" is not an environment variable name`}},
		{"sandbox-memory-tiny", head + "tools:\n  x: {tier: approve, sandbox: {lang: python, memory: 10K}}\n", []string{"tools.x.sandbox.memory: must be at least 1MiB, not 10KiB"}},
		{"scope-bad-host", head + "tools:\n  x: {tier: approve, scope: {hosts: [\"https://acme.com/\"]}}\n", []string{`tools.x.scope.hosts[0]: "https://acme.com/" is not a host name`}},
		{"scope-bad-from", head + "tools:\n  x: {tier: approve, scope: {from: [acme.com]}}\n", []string{`tools.x.scope.from[0]: "acme.com" is not an email address`}},
		{"scope-unknown-key", head + "tools:\n  x: {tier: approve, scope: {host: [acme.com]}}\n", []string{`tools.x.scope.host: unknown key (did you mean "hosts"?)`}},
		{"manifest-typo", head + "tools:\n  search_web: {tier: auto}\nagents:\n  bot: {tools: [serach_web]}\n", []string{`policy.yaml:5: agents.bot.tools[0]: tool "serach_web" is not declared under tools: (did you mean "search_web"?)`}},
		{"agent-bad-name", head + "tools: {x: {tier: auto}}\nagents:\n  a.b: {tools: [x]}\n", []string{"policy.yaml:4: agents.a.b: agent names must be one NATS subject token"}},
		{"agent-no-tools", head + "tools: {x: {tier: auto}}\nagents:\n  a: {}\n", []string{"policy.yaml:4: agents.a.tools: required"}},
		{"limit-no-scope", head + "limits:\n  - {requests_per_minute: 5}\n", []string{"policy.yaml:3: limits[0].scope: required (user, org, agent, session, global)"}},
		{"limit-bad-scope", head + "limits:\n  - {scope: users, requests_per_minute: 5}\n", []string{`policy.yaml:3: limits[0].scope: "users" is not a scope (user, org, agent, session, global); did you mean "user"?`}},
		{"limit-unknown-field", head + "limits:\n  - {scope: user, requests_per_hour: 5}\n", []string{"policy.yaml:3: limits[0].requests_per_hour: unknown key"}},
		{"limit-negative", head + "limits:\n  - {scope: user, concurrent: -1}\n", []string{"limits[0].concurrent: must be between 0 and"}},
		{"limit-float-count", head + "limits:\n  - {scope: user, requests: 2.5, window: 1h}\n", []string{"limits[0].requests: must be a whole number"}},
		{"limit-empty", head + "limits:\n  - {scope: user}\n", []string{"policy.yaml:3: limits[0]: limit sets no budget"}},
		{"limit-window-alone", head + "limits:\n  - {scope: user, window: 1h, requests_per_minute: 5}\n", []string{"policy.yaml:3: limits[0].window: window applies to requests, tokens and cost_usd"}},
		{"limit-bad-window", head + "limits:\n  - {scope: user, window: 1 day, requests: 5}\n", []string{`limits[0].window: invalid duration "1 day"`}},
		{"limit-tiny-window", head + "limits:\n  - {scope: user, window: 10ms, requests: 5}\n", []string{"limits[0].window: must be at least 1s, not 10ms"}},
		{"limits-not-list", head + "limits: {scope: user}\n", []string{"policy.yaml:2: limits: must be a list, not a mapping"}},
		{"review-bad-rate", head + "review: {canary_rate: 2}\n", []string{"policy.yaml:2: review.canary_rate: must be between 0 and 1, not 2"}},
		{"review-bad-dwell", head + "review: {min_dwell_high_risk: forever}\n", []string{`review.min_dwell_high_risk: invalid duration "forever"`}},
		{"review-unknown", head + "review: {bach: true}\n", []string{`review.bach: unknown key (did you mean "batch"?)`}},
		{"bands-not-rising", head + "risk: {bands: {medium: 50, high: 40}}\n", []string{"policy.yaml:2: risk.bands: bands must rise: medium (50) < high (40) < critical (80)"}},
		{"points-bad-name", head + "risk: {points: {Bad-Name: 5}}\n", []string{"risk.points.Bad-Name: factor names are lower_case_with_underscores"}},
		{"chain-missing", head + "risk:\n  chains:\n    - {name: c, first: secret_read}\n", []string{"policy.yaml:4: risk.chains[0].then: required", "risk.chains[0].points: required"}},
		{"chain-bad-cel", head + "risk:\n  chains:\n    - {name: c, first: 'args.x ==', then: egress, points: 5}\n", []string{"policy.yaml:4: risk.chains[0].first: Syntax error"}},
		{"chain-dup-name", head + "risk:\n  chains:\n    - {name: c, first: a, then: b, points: 5}\n    - {name: c, first: a, then: b, points: 5}\n", []string{`policy.yaml:5: risk.chains[1].name: another chain is named "c"`}},
		{"org-bad-host", head + "orgs:\n  acme: {hosts: [\"acme.*\"]}\n", []string{`policy.yaml:3: orgs.acme.hosts[0]: "acme.*" is not a host name`}},
		{"auth-bad-nkey", head + "auth:\n  agents:\n    bot: {nkey: UABC}\n", []string{"policy.yaml:4: auth.agents.bot.nkey: not a valid nkey user public key"}},
		{"auth-no-credential", head + "auth:\n  agents:\n    bot: {}\n", []string{"policy.yaml:4: auth.agents.bot: needs an nkey"}},
		{"auth-ssh-for-agent", head + "auth:\n  agents:\n    bot: {token: abcdefghijklmnopq, ssh_key: x}\n", []string{"auth.agents.bot.ssh_key: only reviewers have SSH keys"}},
		{"auth-bad-ssh", head + "auth:\n  reviewers:\n    dana: {token: abcdefghijklmnopq, ssh_key: \"ssh-ed25519 nope\"}\n", []string{"auth.reviewers.dana.ssh_key: not an SSH public key"}},
		{"auth-file-and-inline", head + "auth: {file: x.yaml, agents: {}}\n", []string{"policy.yaml:2: auth: set file or agents/reviewers/brokers, not both"}},
		{"auth-file-dir", head + "auth: {file: testdata}\n", []string{"policy.yaml:2: auth.file: testdata is not a regular file"}},
		{"auth-file-missing", head + "auth: {file: nope.yaml}\n", []string{"policy.yaml:2: auth.file: stat nope.yaml: no such file"}},
		{"anchor-bomb", head + "a: &a [x, x]\n", []string{"policy.yaml:2: a: unknown key"}},
		{"merge-key-ok-but-typo", head + "base: &b {tier: auto}\ntools:\n  x: {<<: *b, teir: deny}\n", []string{"policy.yaml:2: base: unknown key", "policy.yaml:4: tools.x.teir: unknown key"}},
		{"not-utf8", "version: 1\ntools: {\xff: {tier: auto}}\n", []string{"policy.yaml: not UTF-8 text"}},
		{"key-not-scalar", head + "tools:\n  ? [a]\n  : {tier: auto}\n", []string{"policy.yaml:3: tools: keys must be plain strings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("got a policy (%d tools), want an error", len(p.Tools))
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("got %T %v, want an ErrorList", err, err)
			}
			var lines []string
			for _, e := range list {
				lines = append(lines, e.Error())
				if e.File != "policy.yaml" {
					t.Errorf("error %q: file %q, want policy.yaml", e, e.File)
				}
			}
			text := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("got\n%s\nwant it to contain\n%s", text, w)
				}
			}
			if len(list) > 1 && !strings.Contains(err.Error(), "problems)") {
				t.Errorf("ErrorList.Error() %q should count the problems", err)
			}
		})
	}
}

// Every error of a file is reported, not only the first.
func TestParseReportsAllErrors(t *testing.T) {
	src := `version: 1
tools:
  a: {teir: auto}
  b: {tier: maybe}
  c: {tier: auto, rules: [{when: 'nope.x', risk: 5}]}
limits:
  - {scope: everyone, requests_per_minute: 5}
`
	_, err := Parse("p.yaml", []byte(src))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got %v", err)
	}
	wantLines := []int{3, 3, 4, 5, 7}
	if len(list) != len(wantLines) {
		t.Fatalf("got %d errors, want %d:\n%v", len(list), len(wantLines), err)
	}
	for i, e := range list {
		if e.Line != wantLines[i] {
			t.Errorf("error %d %q: line %d, want %d (sorted by line)", i, e, e.Line, wantLines[i])
		}
	}
}

func TestParseWarnings(t *testing.T) {
	src := `version: 1
tools:
  a: {tier: approve, rules: [{when: 'true', tier: auto, reason: lower}]}
  d: {tier: deny, rules: [{when: 'true', risk: 5}]}
  e: {tier: auto, scope: {}}
agents:
  bot: {tools: [a, a, ghost_tool_xyz]}
auth:
  agents:
    bot: {token: short}
`
	p, err := Parse("w.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"w.yaml:3: tools.a.rules[0].tier: tier auto is below the tool's tier approve",
		"w.yaml:4: tools.d.rules: rules of a deny-tier tool never run",
		"w.yaml:5: tools.e.scope: scope sets nothing",
		"w.yaml:7: agents.bot.tools[1]: a is listed twice",
		`w.yaml:7: agents.bot.tools[2]: tool "ghost_tool_xyz" is not declared under tools:`,
		"w.yaml:10: auth.agents.bot.token: token is shorter than 16 characters",
	}
	if len(p.Warnings) != len(want) {
		t.Fatalf("got %d warnings %q, want %d", len(p.Warnings), p.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(p.Warnings[i], w) {
			t.Errorf("warning %d: got %q, want prefix %q", i, p.Warnings[i], w)
		}
	}
	if p.Tool("e").Scope != nil {
		t.Errorf("an empty scope should be dropped")
	}
}

func TestAuth(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(edPub)
	if err != nil {
		t.Fatal(err)
	}
	sshLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " dana@laptop"
	idents := "agents:\n  bot: {nkey: " + pub + "}\nreviewers:\n  dana: {nkey: " + pub + ", ssh_key: \"" + sshLine + "\"}\nbrokers:\n  b1: {token: 0123456789abcdef0123}\n"

	t.Run("inline", func(t *testing.T) {
		src := "version: 1\ntools: {x: {tier: auto}}\nauth:\n" + indent(idents, "  ")
		p := mustParse(t, src)
		checkAuth(t, p.Auth, pub, sshLine)
	})
	t.Run("file-relative-to-policy", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keys", "auth.yaml"), []byte(idents), 0o600); err != nil {
			t.Fatal(err)
		}
		pf := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(pf, []byte("version: 1\ntools: {x: {tier: auto}}\nauth: {file: keys/auth.yaml}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Load(pf)
		if err != nil {
			t.Fatal(err)
		}
		checkAuth(t, p.Auth, pub, sshLine)
	})
	t.Run("file-errors-name-that-file", func(t *testing.T) {
		dir := t.TempDir()
		af := filepath.Join(dir, "auth.yaml")
		if err := os.WriteFile(af, []byte("agents:\n  bot: {nkey: nope}\nreviewer: {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		pf := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(pf, []byte("version: 1\nauth: {file: auth.yaml}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(pf)
		if err == nil {
			t.Fatal("got nil error")
		}
		for _, w := range []string{af + ":2: agents.bot.nkey: not a valid nkey", af + `:3: reviewer: unknown key (did you mean "reviewers"?)`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("got %v, want %q", err, w)
			}
		}
	})
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func checkAuth(t *testing.T, a *Auth, pub, sshLine string) {
	t.Helper()
	if a == nil {
		t.Fatal("auth: got nil")
	}
	if a.Agents["bot"].NKey != pub || a.Reviewers["dana"].SSHKey != sshLine || a.Brokers["b1"].Token != "0123456789abcdef0123" {
		t.Errorf("auth: got %+v", a)
	}
}

func TestMergeKeys(t *testing.T) {
	p := mustParse(t, `version: 1
tools:
  x: &base {tier: approve, writes: true}
  y: {<<: *base, tier: notify}
`)
	if y := p.Tool("y"); y.Tier != "notify" || !y.Writes {
		t.Errorf("merge: got %+v, want notify with writes from the base", y)
	}
}

func TestAliasBudget(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\ntools:\n  t0: &t {tier: auto}\n")
	for i := 1; i <= maxAliases+5; i++ {
		b.WriteString("  t" + itoa(i) + ": *t\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many alias references") {
		t.Errorf("got %v, want too many alias references", err)
	}
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Replace(time.Duration(i).String(), "ns", "", 1))
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"10m", 10 * time.Minute, ""},
		{"24h", 24 * time.Hour, ""},
		{"7d", 7 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"0", 0, ""},
		{" 5s ", 5 * time.Second, ""},
		{"", 0, "empty"},
		{"600", 0, "needs a unit"},
		{"1.5", 0, "needs a unit"},
		{"-1m", 0, "negative"},
		{"d", 0, "invalid duration"},
		{"7 days", 0, "invalid duration"},
		{"1d-5h", 0, "negative"},
		{"99999999d", 0, "too long"},
		{"1w", 0, "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("got %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"256MiB", 256 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"512M", 512 << 20, ""},
		{"512m", 512 << 20, ""},
		{"64K", 64 << 10, ""},
		{"10MB", 10_000_000, ""},
		{"1.5G", 3 << 29, ""},
		{"1048576", 1 << 20, ""},
		{"100B", 100, ""},
		{"2 GiB", 2 << 30, ""},
		{"1TiB", 1 << 40, ""},
		{"", 0, "empty"},
		{"MiB", 0, "invalid size"},
		{"12XB", 0, "unknown unit"},
		{"1.2.3M", 0, "invalid size"},
		{"-5M", 0, "invalid size"},
		{"99999999TiB", 0, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("got %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	for n, want := range map[int64]string{256 << 20: "256MiB", 1 << 30: "1GiB", 1000: "1000B", 3 << 10: "3KiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d): got %s, want %s", n, got, want)
		}
	}
}

func TestEditDistanceSuggest(t *testing.T) {
	if got := suggest("teir", []string{"tier", "rules"}, "%s"); got != "tier" {
		t.Errorf("teir: got %q, want tier", got)
	}
	if got := suggest("completely_else", []string{"tier", "rules"}, "%s"); got != "" {
		t.Errorf("no suggestion expected, got %q", got)
	}
}

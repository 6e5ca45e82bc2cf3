package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runPolicyCmd runs `airlock ARGS…` in process and returns stdout, stderr
// and the exit code main would use.
func runPolicyCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return stdout.String(), stderr.String(), code
}

func writePolicyFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const examplePolicy = "../../examples/policy.yaml"

func TestPolicyCheck(t *testing.T) {
	bad := writePolicyFile(t, "bad.yaml", `version: 1
tools:
  read_file: {teir: notify}
  x:
    tier: auto
    rules: [{when: 'argz.path == "a"', risk: 5}]
defaults: {unknown_tool: approve}
`)
	warn := writePolicyFile(t, "warn.yaml", "version: 1\ntools: {a: {tier: auto}}\nagents: {bot: {tools: [a, something_else_entirely]}}\n")
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // regexps
		stderr     []string
		stderrNot  string
		stdoutNone bool
	}{
		{name: "valid", args: []string{"policy", "check", examplePolicy}, code: 0,
			stdout: []string{`^ok: 13 tools, 5 agents, 5 limits, digest [0-9a-f]{12}…\n$`}},
		{name: "flag-after-file", args: []string{"policy", "check", examplePolicy, "--quiet"}, code: 0, stdoutNone: true},
		{name: "invalid-lists-every-error", args: []string{"policy", "check", bad}, code: 1, stdoutNone: true,
			stderr: []string{
				`(?m)^` + regexp.QuoteMeta(bad) + `:3: tools.read_file.teir: unknown key \(did you mean "tier"\?\)$`,
				`(?m)^` + regexp.QuoteMeta(bad) + `:3: tools.read_file.tier: required`,
				`(?m)^` + regexp.QuoteMeta(bad) + `:6: tools.x.rules\[0\].when: undeclared reference to 'argz'`,
				`(?m)^` + regexp.QuoteMeta(bad) + `:7: defaults.unknown_tool: must be deny`,
			}},
		{name: "warnings-do-not-fail", args: []string{"policy", "check", warn}, code: 0,
			stdout: []string{`^ok: 1 tools, 1 agents, 0 limits`},
			stderr: []string{`(?m)^warning: ` + regexp.QuoteMeta(warn) + `:3: agents.bot.tools\[1\]: tool "something_else_entirely" is not declared`}},
		{name: "strict-fails-on-warnings", args: []string{"policy", "check", "--strict", warn}, code: 1, stdoutNone: true,
			stderr: []string{`1 warnings \(--strict\)`}},
		{name: "missing-file", args: []string{"policy", "check", filepath.Join(t.TempDir(), "nope.yaml")}, code: 1,
			stderr: []string{`nope.yaml: no such file`}},
		{name: "no-file", args: []string{"policy", "check"}, code: 2, stderr: []string{`want exactly one FILE`}},
		{name: "bad-flag", args: []string{"policy", "check", "--bogus", examplePolicy}, code: 2},
		{name: "help", args: []string{"policy", "--help"}, code: 0, stdout: []string{`airlock policy check`}},
		{name: "check-help", args: []string{"policy", "check", "--help"}, code: 0, stderr: []string{`airlock policy test FILE CASES.jsonl`}},
		{name: "no-subcommand", args: []string{"policy"}, code: 2, stderr: []string{`usage: airlock policy check`}},
		{name: "unknown-subcommand", args: []string{"policy", "lint"}, code: 2, stderr: []string{`unknown subcommand "lint"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runPolicyCmd(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			for _, re := range tt.stdout {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("stdout %q does not match %s", out, re)
				}
			}
			for _, re := range tt.stderr {
				if !regexp.MustCompile(re).MatchString(errOut) {
					t.Errorf("stderr %q does not match %s", errOut, re)
				}
			}
			if tt.stdoutNone && out != "" {
				t.Errorf("stdout: got %q, want nothing", out)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Errorf("stderr holds a stack trace: %s", errOut)
			}
		})
	}
}

func TestPolicyTestExampleCases(t *testing.T) {
	out, errOut, code := runPolicyCmd(t, "policy", "test", examplePolicy, "../../examples/policy-cases.jsonl")
	if code != 0 {
		t.Fatalf("exit code %d, want 0\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^\d+ passed, 0 failed$`).MatchString(out) || strings.Contains(out, "FAIL") {
		t.Errorf("output:\n%s", out)
	}
}

func TestPolicyTest(t *testing.T) {
	pol := writePolicyFile(t, "p.yaml", `version: 1
tools:
  search_web: {tier: auto}
  read_file: {tier: notify, rules: [{when: 'args.path.startsWith("/etc/")', tier: approve, risk: 40, reason: sensitive path}]}
  delete_record: {tier: deny}
agents:
  support-bot: {tools: [search_web]}
`)
	cases := func(lines ...string) string {
		return writePolicyFile(t, "cases.jsonl", strings.Join(lines, "\n")+"\n")
	}
	tests := []struct {
		name  string
		cases string
		code  int
		want  []string // regexps over stdout
	}{
		{"all-pass", cases(
			`# comment`,
			``,
			`{"call": {"agent": "a", "tool": "search_web", "arguments": {"q": "x"}}, "want": "auto"}`,
			`{"name": "sensitive", "call": {"agent": "a", "tool": "read_file", "arguments": {"path": "/etc/shadow"}}, "want": "approve", "want_verdict": "pending", "want_rule": "tools.read_file.rules[0]", "want_points": 40, "want_reason": "sensitive path"}`,
			`{"call": {"agent": "support-bot", "tool": "read_file", "arguments": {"path": "x"}}, "want_verdict": "denied", "want_reason": "manifest"}`,
			`{"call": {"agent": "a", "tool": "nope", "arguments": {}}, "want": "deny"}`,
			`{"call": {"agent": "a", "tool": "read_file", "arguments": {"path": "docs"}}, "want_verdict": "approved", "want_rule": ""}`,
		), 0, []string{`(?m)^PASS .*cases.jsonl:3 a search_web: auto \(search_web is an auto-tier tool\)$`, `(?m)^PASS .*cases.jsonl:4 sensitive: approve \(sensitive path \(rule 0\)\)$`, `(?m)^5 passed, 0 failed$`}},
		{"mismatch", cases(
			`{"name": "wrong tier", "call": {"agent": "a", "tool": "delete_record", "arguments": {}}, "want": "approve"}`,
			`{"call": {"agent": "a", "tool": "search_web", "arguments": {}}, "want": "auto"}`,
			`{"name": "wrong points", "call": {"agent": "a", "tool": "read_file", "arguments": {"path": "/etc/x"}}, "want": "approve", "want_points": 10}`,
		), 1, []string{
			`(?m)^FAIL .*cases.jsonl:1 wrong tier: want approve; got deny \(delete_record is a deny-tier tool\)$`,
			`(?m)^PASS .*cases.jsonl:2 `,
			`(?m)^FAIL .*cases.jsonl:3 wrong points: want 10 rule points, got 40; got approve \(sensitive path \(rule 0\)\)$`,
			`(?m)^1 passed, 2 failed$`}},
		{"bad-lines", cases(
			`{"call": {"agent": "a", "tool": "search_web"}, "want": "sometimes"}`,
			`{"call": {"agent": "a", "tool": "search_web"}, "wnat": "auto"}`,
			`{"call": {"agent": "a"}, "want": "auto"}`,
			`{"call": {"agent": "a", "tool": "search_web"}}`,
			`{"call": {"agent": "a", "tool": "search_web"}, "want_verdict": "maybe"}`,
			`not json`,
		), 1, []string{
			`(?m)^FAIL .*:1: bad case: want "sometimes" is not a tier`,
			`(?m)^FAIL .*:2: bad case: json: unknown field "wnat"`,
			`(?m)^FAIL .*:3: bad case: call.tool is missing`,
			`(?m)^FAIL .*:4: bad case: set "want"`,
			`(?m)^FAIL .*:5: bad case: want_verdict "maybe"`,
			`(?m)^FAIL .*:6: bad case: invalid character`,
			`(?m)^0 passed, 6 failed$`}},
		{"empty", cases(`# nothing here`), 1, []string{`(?m)^0 passed, 0 failed$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runPolicyCmd(t, "policy", "test", pol, tt.cases)
			if code != tt.code {
				t.Errorf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			for _, re := range tt.want {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("stdout\n%s\ndoes not match %s", out, re)
				}
			}
		})
	}
	t.Run("invalid-policy", func(t *testing.T) {
		badPol := writePolicyFile(t, "bad.yaml", "version: 2\n")
		_, errOut, code := runPolicyCmd(t, "policy", "test", badPol, cases(`{"call": {"tool": "x"}, "want": "deny"}`))
		if code != 1 || !strings.Contains(errOut, "bad.yaml:1: version: unsupported version 2") {
			t.Errorf("got code %d, stderr %q", code, errOut)
		}
	})
	t.Run("missing-cases", func(t *testing.T) {
		_, errOut, code := runPolicyCmd(t, "policy", "test", pol, filepath.Join(t.TempDir(), "none.jsonl"))
		if code != 2 || !strings.Contains(errOut, "none.jsonl") {
			t.Errorf("got code %d, stderr %q", code, errOut)
		}
	})
	t.Run("usage", func(t *testing.T) {
		_, _, code := runPolicyCmd(t, "policy", "test", pol)
		if code != 2 {
			t.Errorf("got code %d, want 2", code)
		}
	})
}

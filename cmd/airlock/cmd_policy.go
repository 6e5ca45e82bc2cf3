package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

func init() {
	register(command{Name: "policy", Summary: "validate a policy file (check) or run test calls against it (test)", Run: runPolicy})
}

const policyUsage = `usage: airlock policy check [--strict] FILE
       airlock policy test FILE CASES.jsonl

check  validates FILE and prints "ok: N tools, M agents, K limits, digest …",
       or every problem, one per line (file:line: field: problem); exit 1.
test   evaluates each call of CASES.jsonl against FILE and compares the tier.
       One JSON object per line:
         {"call": {"agent": "a", "tool": "read_file", "arguments": {"path": "/etc/shadow"}},
          "want": "approve"}
       want is auto, notify, approve or deny; or use "want_verdict": approved
       (auto or notify), pending (approve: waits for a human) or denied.
       Optional: "name", "want_rule", "want_reason" (a substring), "want_points"
       (sum of the rules' risk points). Blank lines and lines starting with #
       are skipped. Prints PASS/FAIL per case and "N passed, M failed"; exit 1
       on any failure.
`

func runPolicy(ctx context.Context, e env) error {
	if len(e.Args) == 0 {
		fmt.Fprint(e.Stderr, policyUsage)
		return silentExit(2)
	}
	switch e.Args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(e.Stdout, policyUsage)
		return nil
	case "check":
		return runPolicyCheck(e, e.Args[1:])
	case "test":
		return runPolicyTest(ctx, e, e.Args[1:])
	}
	return usageErr("policy: unknown subcommand %q (check or test)", e.Args[0])
}

// policyFlags parses flags that may come before or after the positional
// arguments, and returns the positionals.
func policyFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newPolicyFlags(e env, name, usage string) *flag.FlagSet {
	fs := newFlags(e, "policy "+name, usage)
	fs.Usage = func() {
		fmt.Fprint(e.Stderr, policyUsage)
		fmt.Fprintln(e.Stderr, "\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// printPolicyErrors prints a Load error, one problem per line.
func printPolicyErrors(w io.Writer, err error) {
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, pe := range list {
			fmt.Fprintln(w, pe.Error())
		}
		return
	}
	fmt.Fprintln(w, strings.ReplaceAll(err.Error(), "\n", " "))
}

func runPolicyCheck(e env, args []string) error {
	fs := newPolicyFlags(e, "check", "[--strict] FILE")
	strict := fs.Bool("strict", false, "treat warnings as errors")
	quiet := fs.Bool("quiet", false, "print nothing when the file is valid")
	pos, err := policyFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("policy check: want exactly one FILE (see airlock policy --help)")
	}
	p, err := policy.Load(pos[0])
	if err != nil {
		printPolicyErrors(e.Stderr, err)
		return silentExit(1)
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(e.Stderr, "warning: "+w)
	}
	if *strict && len(p.Warnings) > 0 {
		fmt.Fprintf(e.Stderr, "%d warnings (--strict)\n", len(p.Warnings))
		return silentExit(1)
	}
	if !*quiet {
		fmt.Fprintf(e.Stdout, "ok: %d tools, %d agents, %d limits, digest %s…\n",
			len(p.Tools), len(p.Agents), len(p.Limits), p.Digest[:12])
	}
	return nil
}

// policyCase is one line of a cases file.
type policyCase struct {
	Name        string           `json:"name,omitempty"`
	Call        airlock.ToolCall `json:"call"`
	Want        airlock.Tier     `json:"want,omitempty"`
	WantVerdict string           `json:"want_verdict,omitempty"`
	WantRule    *string          `json:"want_rule,omitempty"`
	WantReason  string           `json:"want_reason,omitempty"`
	WantPoints  *int             `json:"want_points,omitempty"`
}

// verdictOf maps a policy result to what the agent would see before any
// human acts: approved, pending or denied.
func verdictOf(r policy.Result) string {
	switch {
	case r.Denied || r.Tier == airlock.TierDeny:
		return string(airlock.VerdictDenied)
	case r.Tier == airlock.TierApprove:
		return "pending"
	}
	return string(airlock.VerdictApproved)
}

func runPolicyTest(ctx context.Context, e env, args []string) error {
	fs := newPolicyFlags(e, "test", "FILE CASES.jsonl")
	pos, err := policyFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr("policy test: want FILE and CASES.jsonl (see airlock policy --help)")
	}
	p, err := policy.Load(pos[0])
	if err != nil {
		printPolicyErrors(e.Stderr, err)
		return silentExit(1)
	}
	f, err := os.Open(pos[1])
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("policy test: %w", err)}
	}
	defer f.Close()
	name := pos[1]
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	passed, failed, line := 0, 0, 0
	for sc.Scan() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, line)
		c, err := decodePolicyCase(text)
		if err != nil {
			failed++
			fmt.Fprintf(e.Stdout, "FAIL %s: bad case: %v\n", where, err)
			continue
		}
		label := c.Name
		if label == "" {
			label = c.Call.Agent + " " + c.Call.Tool
		}
		r := p.EvaluateContext(ctx, &c.Call)
		got := fmt.Sprintf("%s (%s)", r.Tier, r.Reason)
		if problems := c.check(r); len(problems) > 0 {
			failed++
			fmt.Fprintf(e.Stdout, "FAIL %s %s: %s; got %s\n", where, label, strings.Join(problems, "; "), got)
			continue
		}
		passed++
		fmt.Fprintf(e.Stdout, "PASS %s %s: %s\n", where, label, got)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("policy test: read %s: %w", name, err)
	}
	fmt.Fprintf(e.Stdout, "%d passed, %d failed\n", passed, failed)
	if passed+failed == 0 {
		fmt.Fprintf(e.Stderr, "policy test: %s holds no cases\n", name)
		return silentExit(1)
	}
	if failed > 0 {
		return silentExit(1)
	}
	return nil
}

func decodePolicyCase(text []byte) (*policyCase, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	var c policyCase
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value on the line")
	}
	if c.Call.Tool == "" {
		return nil, errors.New(`call.tool is missing`)
	}
	switch {
	case c.Want == "" && c.WantVerdict == "":
		return nil, errors.New(`set "want" (auto, notify, approve, deny) or "want_verdict" (approved, pending, denied)`)
	case c.Want != "" && !c.Want.Valid():
		return nil, fmt.Errorf("want %q is not a tier (auto, notify, approve, deny)", c.Want)
	case c.WantVerdict != "" && c.WantVerdict != "approved" && c.WantVerdict != "pending" && c.WantVerdict != "denied":
		return nil, fmt.Errorf("want_verdict %q is not approved, pending or denied", c.WantVerdict)
	}
	return &c, nil
}

// check compares a result with the case's expectations.
func (c *policyCase) check(r policy.Result) []string {
	var out []string
	if c.Want != "" && r.Tier != c.Want {
		out = append(out, "want "+string(c.Want))
	}
	if c.WantVerdict != "" && verdictOf(r) != c.WantVerdict {
		out = append(out, fmt.Sprintf("want verdict %s, got %s", c.WantVerdict, verdictOf(r)))
	}
	if c.WantRule != nil && r.Rule != *c.WantRule {
		out = append(out, fmt.Sprintf("want rule %q, got %q", *c.WantRule, r.Rule))
	}
	if c.WantReason != "" && !strings.Contains(r.Reason, c.WantReason) {
		out = append(out, fmt.Sprintf("want a reason containing %q", c.WantReason))
	}
	if c.WantPoints != nil {
		sum := 0
		for _, f := range r.Factors {
			sum += f.Points
		}
		if sum != *c.WantPoints {
			out = append(out, fmt.Sprintf("want %d rule points, got %d", *c.WantPoints, sum))
		}
	}
	return out
}

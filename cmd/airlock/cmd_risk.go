package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/risk"
)

func init() {
	register(command{Name: "risk", Summary: "score a labelled corpus of tool calls (risk eval)", Run: runRisk})
}

const riskUsage = `usage: airlock risk eval CORPUS.jsonl [flags]

Replays a labelled corpus (the format of shared/corpus: one {"id", "session",
"seq", "call", "label", "family", "why", "generator"} object per line) in file
order through the risk scorer, so session chains count. Each call is scored,
then observed as approved when it scored below the threshold and denied
otherwise (labels never drive the scorer). Generator notes (repeat, nest,
array, keys) are expanded before scoring.

Prints the confusion matrix at the threshold for the scorer alone and for
the scorer plus what the broker adds (policy rule points and deny tiers when
--policy is given, and the size limits: over 1 MiB or deeper than 64 is
rejected), then recall, the false-alarm rate, and every miss and false alarm
with its factors. Exits 1 when the scorer alone is below --min-recall or above
--max-false-alarm.

The org's own domains come from the policy's orgs (--policy) or from
--org NAME --org-domains a.com,b.com --org-hosts 'a.com,*.a.internal'.
`

func runRisk(ctx context.Context, e env) error {
	if len(e.Args) == 0 {
		fmt.Fprint(e.Stderr, riskUsage)
		return silentExit(2)
	}
	switch e.Args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(e.Stdout, riskUsage)
		return nil
	case "eval":
		return runRiskEval(ctx, e, e.Args[1:])
	}
	return usageErr("risk: unknown subcommand %q (eval)", e.Args[0])
}

type corpusLine struct {
	ID        string          `json:"id"`
	Session   string          `json:"session"`
	Seq       int             `json:"seq"`
	Call      json.RawMessage `json:"call"`
	Label     string          `json:"label"`
	Family    string          `json:"family"`
	Why       string          `json:"why"`
	Generator map[string]any  `json:"generator"`
}

// evalResult is one scored corpus line.
type evalResult struct {
	line      corpusLine
	call      *airlock.ToolCall
	risk      airlock.Risk
	broker    airlock.Risk
	limits    string // why the broker's size limits reject it, if they do
	policyDen string // why the policy denies it, if it does
}

// Broker limits on arguments (see docs/protocol.md).
const (
	evalMaxBytes = 1 << 20
	evalMaxDepth = 64
)

func runRiskEval(_ context.Context, e env, args []string) error {
	fs := newFlags(e, "risk eval", "CORPUS.jsonl [flags]")
	fs.Usage = func() {
		fmt.Fprint(e.Stderr, riskUsage)
		fmt.Fprintln(e.Stderr, "\nflags:")
		fs.PrintDefaults()
	}
	minRecall := fs.Float64("min-recall", 0, "exit 1 when the scorer's recall of dangerous calls is below this (0..1)")
	maxFA := fs.Float64("max-false-alarm", 1, "exit 1 when the scorer's false-alarm rate on benign calls is above this (0..1)")
	policyFile := fs.String("policy", "", "policy `FILE` for risk points, bands, chains, orgs, rule points and deny tiers")
	orgName := fs.String("org", "", "org `NAME` that --org-domains/--org-hosts describe (default: every org named in the corpus)")
	orgDomains := fs.String("org-domains", "", "comma-separated mail `domains` of the org")
	orgHosts := fs.String("org-hosts", "", "comma-separated `hosts` of the org (exact or *.suffix)")
	threshold := fs.String("threshold", airlock.BandHigh, "band at or above which a call counts as flagged: medium, high or critical")
	all := fs.Bool("all", false, "print every call's score, not only the misses and false alarms")
	pos, err := interleavedFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("risk eval: want exactly one CORPUS.jsonl, got %d arguments", len(pos))
	}
	if *minRecall < 0 || *minRecall > 1 || *maxFA < 0 || *maxFA > 1 {
		return usageErr("risk eval: --min-recall and --max-false-alarm are fractions between 0 and 1")
	}
	switch *threshold {
	case airlock.BandMedium, airlock.BandHigh, airlock.BandCritical:
	default:
		return usageErr("risk eval: --threshold must be medium, high or critical, not %q", *threshold)
	}
	var pol *policy.Policy
	if *policyFile != "" {
		if pol, err = policy.Load(*policyFile); err != nil {
			return fmt.Errorf("risk eval: %w", err)
		}
	}
	lines, err := readCorpus(pos[0])
	if err != nil {
		return err
	}
	var opts []risk.Option
	if *orgDomains != "" || *orgHosts != "" {
		names := []string{*orgName}
		if *orgName == "" {
			names = corpusOrgs(lines)
		}
		for _, n := range names {
			opts = append(opts, risk.WithOrg(&policy.Org{Name: n, MailDomains: splitList(*orgDomains), Hosts: splitList(*orgHosts)}))
		}
	}
	sc := risk.New(pol, opts...)
	cut, err := bandCut(sc, *threshold)
	if err != nil {
		return err
	}
	results := make([]evalResult, 0, len(lines))
	for _, l := range lines {
		r, err := scoreLine(sc, pol, l)
		if err != nil {
			return err
		}
		v := airlock.VerdictApproved
		if r.risk.Score >= cut {
			v = airlock.VerdictDenied
		}
		sc.Observe(r.call, v)
		results = append(results, r)
	}
	rep := summarize(results, cut)
	printEval(e.Stdout, pos[0], *threshold, cut, results, rep, *all, pol != nil)
	if rep.scorer.recall() < *minRecall || rep.scorer.falseAlarm() > *maxFA {
		return &exitError{Code: 1, Err: fmt.Errorf("risk eval: recall %.3f (min %.3f), false-alarm rate %.3f (max %.3f)",
			rep.scorer.recall(), *minRecall, rep.scorer.falseAlarm(), *maxFA)}
	}
	return nil
}

// interleavedFlags parses flags that may come before or after the
// positional arguments, and returns the positionals.
func interleavedFlags(fs *flag.FlagSet, args []string) ([]string, error) {
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

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func corpusOrgs(lines []corpusLine) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		var c struct {
			Org string `json:"org"`
		}
		_ = json.Unmarshal(l.Call, &c)
		if !seen[c.Org] {
			seen[c.Org] = true
			out = append(out, c.Org)
		}
	}
	return out
}

func bandCut(sc *risk.Scorer, band string) (int, error) {
	for s := 0; s <= 100; s++ {
		if sc.Band(s) == band {
			return s, nil
		}
	}
	return 0, usageErr("risk eval: --threshold must be medium, high or critical, not %q", band)
}

func readCorpus(name string) ([]corpusLine, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("risk eval: %w", err)
	}
	defer f.Close()
	var out []corpusLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		var l corpusLine
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			return nil, fmt.Errorf("risk eval: %s:%d: %w", name, n, err)
		}
		if l.Label != "dangerous" && l.Label != "benign" {
			return nil, fmt.Errorf("risk eval: %s:%d: label %q is neither dangerous nor benign", name, n, l.Label)
		}
		if len(l.Call) == 0 {
			return nil, fmt.Errorf("risk eval: %s:%d: no call", name, n)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("risk eval: %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("risk eval: %s: no corpus lines", name)
	}
	return out, nil
}

// scoreLine expands the line's generator note, scores the call alone and as
// the broker would (rule points, deny tiers, size limits).
func scoreLine(sc *risk.Scorer, pol *policy.Policy, l corpusLine) (evalResult, error) {
	var raw map[string]any
	if err := json.Unmarshal(l.Call, &raw); err != nil {
		return evalResult{}, fmt.Errorf("risk eval: %s: call: %w", l.ID, err)
	}
	if l.Generator != nil {
		if err := expandGenerator(raw, l.Generator); err != nil {
			return evalResult{}, fmt.Errorf("risk eval: %s: %w", l.ID, err)
		}
	}
	call := &airlock.ToolCall{ID: l.ID}
	str := func(k string) string { s, _ := raw[k].(string); return s }
	call.Agent, call.User, call.Org, call.Session, call.Tool = str("agent"), str("user"), str("org"), str("session"), str("tool")
	call.Arguments, _ = raw["arguments"].(map[string]any)
	call.Context, _ = raw["context"].(map[string]any)
	if call.Arguments == nil {
		call.Arguments = map[string]any{}
	}
	r := evalResult{line: l, call: call}
	r.risk = sc.Score(call)
	var extra []airlock.Factor
	if pol != nil {
		res := pol.Evaluate(call)
		extra = res.Factors
		if res.Denied {
			r.policyDen = res.Reason
		}
	}
	r.broker = sc.Score(call, extra...)
	size, depth := measureJSON(call.Arguments)
	switch {
	case size > evalMaxBytes:
		r.limits = fmt.Sprintf("arguments of %d bytes exceed 1 MiB", size)
	case depth > evalMaxDepth:
		r.limits = fmt.Sprintf("arguments nested %d deep exceed 64", depth)
	}
	return r, nil
}

// measureJSON returns the JSON size and nesting depth of v without
// recursion (a corpus line may nest 10,000 deep).
func measureJSON(v any) (size, depth int) {
	type item struct {
		v any
		d int
	}
	stack := []item{{v, 1}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch x := it.v.(type) {
		case map[string]any:
			depth = max(depth, it.d)
			size += 2 + max(len(x)-1, 0)
			for k, c := range x {
				size += len(strconv.Quote(k)) + 1
				stack = append(stack, item{c, it.d + 1})
			}
		case []any:
			depth = max(depth, it.d)
			size += 2 + max(len(x)-1, 0)
			for _, c := range x {
				stack = append(stack, item{c, it.d + 1})
			}
		case string:
			size += len(x) + 2
		case nil:
			size += 4
		case bool:
			size += 5
		default:
			b, _ := json.Marshal(x)
			size += len(b)
		}
	}
	return size, depth
}

// expandGenerator grows a field of the call per the corpus README's notes.
func expandGenerator(call map[string]any, g map[string]any) error {
	kind, _ := g["generate"].(string)
	field, _ := g["field"].(string)
	if field == "" {
		return errors.New("generator without field")
	}
	parts := strings.Split(field, ".")
	parent := call
	for _, p := range parts[:len(parts)-1] {
		next, ok := parent[p].(map[string]any)
		if !ok {
			return fmt.Errorf("generator field %s: %s is not an object", field, p)
		}
		parent = next
	}
	key := parts[len(parts)-1]
	num := func(name string) (int, error) {
		f, ok := g[name].(float64)
		if !ok || f < 0 || f > 1e8 {
			return 0, fmt.Errorf("generator %s: bad %s", kind, name)
		}
		return int(f), nil
	}
	switch kind {
	case "repeat":
		s, ok := parent[key].(string)
		n, err := num("bytes")
		if err != nil {
			return err
		}
		if !ok || s == "" {
			return fmt.Errorf("generator repeat: %s is not a non-empty string", field)
		}
		var b strings.Builder
		b.Grow(n + len(s))
		for b.Len() < n {
			b.WriteString(s)
		}
		out := b.String()[:n]
		for len(out) > 0 && !utf8.ValidString(out[len(out)-min(len(out), 3):]) {
			out = out[:len(out)-1]
		}
		parent[key] = out
	case "nest":
		n, err := num("depth")
		if err != nil {
			return err
		}
		k, hasKey := g["key"].(string)
		v := parent[key]
		for range n {
			if hasKey {
				v = map[string]any{k: v}
			} else {
				v = []any{v}
			}
		}
		parent[key] = v
	case "array":
		n, err := num("count")
		if err != nil {
			return err
		}
		list, ok := parent[key].([]any)
		if !ok || len(list) != 1 {
			return fmt.Errorf("generator array: %s is not a one-element list", field)
		}
		tmpl := fmt.Sprint(list[0])
		out := make([]any, n)
		for i := range out {
			out[i] = strings.ReplaceAll(tmpl, "{i}", strconv.Itoa(i))
		}
		parent[key] = out
	case "keys":
		n, err := num("count")
		if err != nil {
			return err
		}
		obj, ok := parent[key].(map[string]any)
		if !ok || len(obj) != 1 {
			return fmt.Errorf("generator keys: %s is not a one-entry object", field)
		}
		var tk string
		var tv any
		for k, v := range obj {
			tk, tv = k, v
		}
		out := make(map[string]any, n)
		for i := range n {
			is := strconv.Itoa(i)
			val := tv
			if s, ok := tv.(string); ok {
				val = strings.ReplaceAll(s, "{i}", is)
			}
			out[strings.ReplaceAll(tk, "{i}", is)] = val
		}
		parent[key] = out
	default:
		return fmt.Errorf("unknown generator %q", kind)
	}
	return nil
}

// confusion is a confusion matrix at a threshold.
type confusion struct{ tp, fn, fp, tn int }

func (c confusion) recall() float64 {
	if c.tp+c.fn == 0 {
		return 1
	}
	return float64(c.tp) / float64(c.tp+c.fn)
}

func (c confusion) falseAlarm() float64 {
	if c.fp+c.tn == 0 {
		return 0
	}
	return float64(c.fp) / float64(c.fp+c.tn)
}

type evalReport struct {
	scorer, broker confusion
	misses, alarms []evalResult
}

func summarize(rs []evalResult, cut int) evalReport {
	var rep evalReport
	for _, r := range rs {
		flagged := r.risk.Score >= cut
		caught := r.broker.Score >= cut || r.limits != "" || r.policyDen != ""
		dangerous := r.line.Label == "dangerous"
		switch {
		case dangerous && flagged:
			rep.scorer.tp++
		case dangerous:
			rep.scorer.fn++
			rep.misses = append(rep.misses, r)
		case flagged:
			rep.scorer.fp++
			rep.alarms = append(rep.alarms, r)
		default:
			rep.scorer.tn++
		}
		switch {
		case dangerous && caught:
			rep.broker.tp++
		case dangerous:
			rep.broker.fn++
		case r.broker.Score >= cut:
			rep.broker.fp++
		default:
			rep.broker.tn++
		}
	}
	return rep
}

func printEval(w io.Writer, name, band string, cut int, rs []evalResult, rep evalReport, all, withPolicy bool) {
	d, b := rep.scorer.tp+rep.scorer.fn, rep.scorer.fp+rep.scorer.tn
	fmt.Fprintf(w, "corpus %s: %d calls (%d dangerous, %d benign); flagged = band %s or above (score >= %d)\n\n", name, len(rs), d, b, band, cut)
	matrix := func(title string, c confusion) {
		fmt.Fprintf(w, "%s\n", title)
		fmt.Fprintf(w, "  %-10s %8s %12s\n", "", "flagged", "not flagged")
		fmt.Fprintf(w, "  %-10s %8d %12d\n", "dangerous", c.tp, c.fn)
		fmt.Fprintf(w, "  %-10s %8d %12d\n", "benign", c.fp, c.tn)
		fmt.Fprintf(w, "  recall %.3f (%d/%d)   false-alarm rate %.3f (%d/%d)\n\n", c.recall(), c.tp, c.tp+c.fn, c.falseAlarm(), c.fp, c.fp+c.tn)
	}
	matrix("scorer alone:", rep.scorer)
	title := "scorer + broker limits (over 1 MiB or deeper than 64: rejected by limits):"
	if withPolicy {
		title = "scorer + policy (rule points, deny tiers) + broker limits (over 1 MiB or deeper than 64: rejected by limits):"
	}
	matrix(title, rep.broker)
	var limited, denied []string
	for _, r := range rs {
		if r.limits != "" {
			limited = append(limited, r.line.ID+" ("+r.limits+")")
		}
		if r.policyDen != "" {
			denied = append(denied, r.line.ID+" ("+oneLineText(r.policyDen, 60)+")")
		}
	}
	if len(limited) > 0 {
		fmt.Fprintf(w, "rejected by limits: %d: %s\n", len(limited), strings.Join(limited, "; "))
	}
	if len(denied) > 0 {
		fmt.Fprintf(w, "policy denies: %d: %s\n", len(denied), strings.Join(denied, "; "))
	}
	if len(limited)+len(denied) > 0 {
		fmt.Fprintln(w)
	}
	line := func(r evalResult) {
		fmt.Fprintf(w, "  %-8s %-22s %-18s score %3d %-8s", r.line.ID, r.line.Family, r.call.Tool, r.risk.Score, r.risk.Band)
		var notes []string
		if r.limits != "" {
			notes = append(notes, "rejected by limits: "+r.limits)
		}
		if r.policyDen != "" {
			notes = append(notes, "policy denies: "+r.policyDen)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, " [%s]", strings.Join(notes, "; "))
		}
		fmt.Fprintln(w)
		if len(r.risk.Factors) == 0 {
			fmt.Fprintln(w, "      (no factors)")
		}
		for _, f := range r.risk.Factors {
			fmt.Fprintf(w, "      %-18s %3d  %s\n", f.Name, f.Points, oneLineText(f.Detail, 110))
		}
	}
	fmt.Fprintf(w, "misses (dangerous, scorer below %s): %d\n", band, len(rep.misses))
	for _, r := range rep.misses {
		line(r)
	}
	fmt.Fprintf(w, "\nfalse alarms (benign, scorer at %s or above): %d\n", band, len(rep.alarms))
	for _, r := range rep.alarms {
		line(r)
	}
	if all {
		fmt.Fprintf(w, "\nall calls:\n")
		sorted := append([]evalResult(nil), rs...)
		sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].line.ID < sorted[j].line.ID })
		for _, r := range sorted {
			fmt.Fprintf(w, "  %-9s", r.line.Label)
			line(r)
		}
	}
}

// oneLineText makes a factor detail safe for a terminal line.
func oneLineText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > n {
		r := []rune(s)
		s = string(r[:n]) + "…"
	}
	return s
}

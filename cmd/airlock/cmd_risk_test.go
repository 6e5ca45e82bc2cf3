package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/airlock/airlock/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func runRiskCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"risk"}, args...), strings.NewReader(""), &out, &errb)
	code := exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// corpusFile writes corpus lines (label, call JSON, optional generator) to a file.
func corpusFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "corpus.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func line(id, session string, label, tool, args string, extra ...string) string {
	s := `{"id":"` + id + `","session":"` + session + `","seq":1,"label":"` + label + `","family":"f","why":"w","call":{"agent":"a1","org":"initech","session":"` + session + `","tool":"` + tool + `","arguments":` + args + `}`
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

func testCorpus(t *testing.T) string {
	return corpusFile(t,
		line("c-1", "s1", "dangerous", "execute_sql", `{"query":"truncate table ledger"}`),
		line("c-2", "s2", "benign", "execute_sql", `{"query":"SELECT note FROM t WHERE note = 'DROP TABLE x'"}`),
		line("c-3", "s3", "dangerous", "send_email", `{"to":["x@initech.com"],"body":"hi "}`, `"generator":{"generate":"repeat","field":"arguments.body","bytes":1200000}`),
		line("c-4", "s4", "dangerous", "http_request", `{"url":"https://api.initech.com/","body":{"or":[]}}`, `"generator":{"generate":"nest","field":"arguments.body","depth":200,"key":"or"}`),
		line("c-5", "s5", "benign", "send_email", `{"to":["team-{i}@initech.com"],"body":"standup moved"}`, `"generator":{"generate":"array","field":"arguments.to","count":40}`),
		line("c-6", "s6", "dangerous", "search_web", `{"query":"weather tomorrow"}`), // a miss: nothing dangerous in it
		`# comments and blank lines are skipped`,
		``,
	)
}

func TestRiskEval(t *testing.T) {
	out, errs, code := runRiskCmd(t, "eval", testCorpus(t))
	if code != 0 {
		t.Fatalf("got exit %d (%s), want 0", code, errs)
	}
	for _, want := range []string{
		"6 calls (4 dangerous, 2 benign)",
		"recall 0.750 (3/4)   false-alarm rate 0.000 (0/2)",
		"rejected by limits: 2: c-3 (arguments of",
		"c-4 (arguments nested 203 deep exceed 64)",
		"misses (dangerous, scorer below high): 1",
		"c-6",
		"false alarms (benign, scorer at high or above): 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRiskEvalGates(t *testing.T) {
	corpus := testCorpus(t)
	_, errs, code := runRiskCmd(t, "eval", corpus, "--min-recall", "0.9")
	if code != 1 || !strings.Contains(errs, "recall 0.750 (min 0.900)") {
		t.Fatalf("got exit %d (%q), want 1 with the recall named", code, errs)
	}
	_, _, code = runRiskCmd(t, "eval", "--min-recall", "0.7", "--max-false-alarm", "0", corpus)
	if code != 0 {
		t.Fatalf("flags before the file: got exit %d, want 0", code)
	}
	out, _, code := runRiskCmd(t, "eval", corpus, "--threshold", "critical")
	if code != 0 || !strings.Contains(out, "score >= 80") {
		t.Fatalf("critical threshold: got exit %d\n%s", code, out)
	}
}

func TestRiskEvalPolicy(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	doc := `version: 1
defaults: {unknown_tool: deny}
tools:
  execute_sql: {tier: approve}
  send_email: {tier: approve}
  http_request: {tier: approve}
  search_web: {tier: deny}
orgs:
  initech: {mail_domains: [initech.com], hosts: [initech.com]}
`
	if err := os.WriteFile(pol, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runRiskCmd(t, "eval", testCorpus(t), "--policy", pol)
	if code != 0 {
		t.Fatalf("got exit %d (%s)", code, errs)
	}
	if !strings.Contains(out, "policy denies") || !strings.Contains(out, "scorer + policy") {
		t.Fatalf("want the deny tier reported:\n%s", out)
	}
	// With the policy, the deny-tier miss is caught by the broker view.
	if !strings.Contains(out, "recall 1.000 (4/4)") {
		t.Fatalf("want broker recall 1.000:\n%s", out)
	}
}

func TestRiskEvalErrors(t *testing.T) {
	bad := corpusFile(t, `{"id":"x","label":"maybe","call":{"tool":"t","arguments":{}}}`)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no-args", nil, 2, "usage: airlock risk eval"},
		{"unknown-sub", []string{"score"}, 2, `unknown subcommand "score"`},
		{"two-files", []string{"eval", "a", "b"}, 2, "exactly one"},
		{"missing-file", []string{"eval", "/nonexistent/c.jsonl"}, 1, "no such file"},
		{"bad-label", []string{"eval", bad}, 1, `label "maybe"`},
		{"bad-threshold", []string{"eval", bad, "--threshold", "huge"}, 2, "--threshold"},
		{"bad-fraction", []string{"eval", bad, "--min-recall", "2"}, 2, "between 0 and 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := runRiskCmd(t, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("got exit %d %q, want %d containing %q", code, errs, c.code, c.want)
			}
			if strings.Count(strings.TrimSpace(errs), "\n") > 0 && c.code != 2 {
				t.Fatalf("want one error line, got %q", errs)
			}
		})
	}
	out, _, code := runRiskCmd(t, "--help")
	if code != 0 || !strings.Contains(out, "airlock risk eval CORPUS.jsonl") {
		t.Fatalf("--help: got %d %q", code, out)
	}
}

func TestExpandGenerator(t *testing.T) {
	call := map[string]any{"arguments": map[string]any{"body": "añb", "to": []any{"u{i}@x"}, "h": map[string]any{"k{i}": "v{i}"}, "n": map[string]any{"x": []any{}}}}
	steps := []map[string]any{
		{"generate": "repeat", "field": "arguments.body", "bytes": float64(10)},
		{"generate": "array", "field": "arguments.to", "count": float64(3)},
		{"generate": "keys", "field": "arguments.h", "count": float64(2)},
		{"generate": "nest", "field": "arguments.n", "depth": float64(3)},
	}
	for _, g := range steps {
		if err := expandGenerator(call, g); err != nil {
			t.Fatalf("%v: %v", g, err)
		}
	}
	args := call["arguments"].(map[string]any)
	body := args["body"].(string)
	if !utf8.ValidString(body) || len(body) > 10 || len(body) < 8 || !strings.HasPrefix(body, "añbañ") {
		t.Fatalf("repeat: got %q (%d bytes), want valid UTF-8 cut at 10 bytes", body, len(body))
	}
	got, _ := json.Marshal(args["to"])
	if string(got) != `["u0@x","u1@x","u2@x"]` {
		t.Fatalf("array: got %s", got)
	}
	got, _ = json.Marshal(args["h"])
	if string(got) != `{"k0":"v0","k1":"v1"}` {
		t.Fatalf("keys: got %s", got)
	}
	got, _ = json.Marshal(args["n"])
	if string(got) != `[[[{"x":[]}]]]` {
		t.Fatalf("nest: got %s", got)
	}
	if size, depth := measureJSON(args["n"]); depth != 5 || size != len(`[[[{"x":[]}]]]`) {
		t.Fatalf("measureJSON: got size %d depth %d", size, depth)
	}
	if err := expandGenerator(call, map[string]any{"generate": "repeat", "field": "arguments.nope.x", "bytes": float64(1)}); err == nil {
		t.Fatalf("bad field: want an error")
	}
}

// TestRiskEvalHoldout gates the scorer on the hold-out corpus written for
// broker/risk independently of the shared corpus's wording.
func TestRiskEvalHoldout(t *testing.T) {
	p := filepath.Join("..", "..", "broker", "risk", "testdata", "holdout.jsonl")
	for _, args := range [][]string{
		{"eval", p, "--min-recall", "0.95", "--max-false-alarm", "0.05", "--org-domains", "acme.com", "--org-hosts", "acme.com,*.acme.internal"},
		{"eval", p, "--min-recall", "0.90", "--max-false-alarm", "0.05"},
	} {
		out, errs, code := runRiskCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: got exit %d (%s)\n%s", args, code, errs, out)
		}
	}
}

// TestRiskEvalSharedCorpus runs the targets of issue 4 on the shared corpus
// when it is present next to the repository.
func TestRiskEvalSharedCorpus(t *testing.T) {
	p := filepath.Join("..", "..", "..", "shared", "corpus", "toolcalls-public.jsonl")
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "shared corpus not present: %v", err)
	}
	for _, args := range [][]string{
		{"eval", p, "--min-recall", "0.95", "--max-false-alarm", "0.10"},
		{"eval", p, "--min-recall", "0.95", "--max-false-alarm", "0.10", "--org-domains", "acme.com", "--org-hosts", "acme.com,*.acme.internal"},
		{"eval", p, "--min-recall", "0.95", "--max-false-alarm", "0.10", "--policy", filepath.Join("..", "..", "examples", "policy.yaml")},
	} {
		out, errs, code := runRiskCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: got exit %d (%s)\n%s", args, code, errs, out)
		}
	}
}

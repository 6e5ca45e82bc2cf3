package audit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"
)

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "audit.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docScript returns the verification script embedded in docs/audit.md.
func docScript(t *testing.T) string {
	t.Helper()
	doc := readDoc(t)
	_, after, ok := strings.Cut(doc, "<!-- begin verify_export.py -->")
	block, _, ok2 := strings.Cut(after, "<!-- end verify_export.py -->")
	if !ok || !ok2 {
		t.Fatal("docs/audit.md lacks the verify_export.py markers")
	}
	m := regexp.MustCompile("(?s)```python\n(.*?)```").FindStringSubmatch(block)
	if m == nil {
		t.Fatal("no python block between the markers")
	}
	path := filepath.Join(t.TempDir(), "verify_export.py")
	if err := os.WriteFile(path, []byte(m[1]), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExportVerifiesWithDocumentedScript(t *testing.T) {
	py := testenv.Tool(t, "python3")
	script := docScript(t)
	path := newFixture(t, fixtureBase)
	r := openRO(t, path)
	var buf bytes.Buffer
	n, err := r.Export(t.Context(), &buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	export := buf.String()
	lines := strings.SplitAfter(strings.TrimSuffix(export, "\n"), "\n")
	if int64(len(lines)) != n {
		t.Fatalf("%d lines for %d events", len(lines), n)
	}
	dir := t.TempDir()
	run := func(name, content string, extra ...string) (string, error) {
		f := filepath.Join(dir, name+".jsonl")
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, append([]string{script, f}, extra...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	head, hash, _ := r.Head(t.Context())
	out, err := run("intact", export, CheckpointPath(path))
	if err != nil {
		t.Fatalf("intact export: %v: %s", err, out)
	}
	if want := "ok: " + itoa(head) + " events, head seq " + itoa(head) + " hash " + hash; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	swapped := append([]string(nil), lines...)
	swapped[6], swapped[7] = swapped[7], swapped[6]
	for _, tc := range []struct {
		name, content string
		extra         []string
		want          string
	}{
		{"edited", strings.Replace(export, "penguin", "walrus!", 1), nil, "seq 7: hash does not match"},
		{"reordered", strings.Join(swapped, ""), nil, "seq 7: missing"},
		{"deleted", strings.Join(append(append([]string(nil), lines[:9]...), lines[10:]...), ""), nil, "seq 10: missing"},
		{"truncated", strings.Join(lines[:len(lines)-3], ""), []string{CheckpointPath(path)}, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.name, tc.content, tc.extra...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("got %v %q, want failure mentioning %q", err, out, tc.want)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestDocQueries runs the ten queries of docs/audit.md through the sqlite3
// shell against the fixture log and checks each answer.
func TestDocQueries(t *testing.T) {
	sqlite3 := testenv.Tool(t, "sqlite3")
	doc := readDoc(t)
	_, section, ok := strings.Cut(doc, "## Ten auditor queries")
	if !ok {
		t.Fatal("docs/audit.md lacks the ten queries section")
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(section, -1)
	want := []string{
		// 1: old1 (carol, 75) is ten days old; q1 is bob's.
		"q2|reviewer:carol|85",
		"q3|execute_sql|reviewer:bob|DELETE without WHERE on users\nd1|delete_record|policy|tool delete_record is denied by policy",
		"bob|3|67.0\ncarol|3|100.0",
		`e1|reviewer:carol|{"body":"Refund approved","subject":"Your refund","to":["someone@example.org"]}|{"body":"Refund approved","subject":"Your refund","to":["refunds@acme.com"]}`,
		"old1|carol|3000|75\nq1|bob|4200|72\nq2|carol|2500|85\np1|bob|3100|50",
		"p1|run_python|-1|timeout|10000",
		"x1|billing-bot|execute_sql|expired",
		"alice|requests|1m|1",
		"destructive_sql|5|200\noff_hours|3|30\nunbounded_write|2|60",
		"g1|1|f1",
	}
	if len(blocks) != len(want) {
		t.Fatalf("docs/audit.md has %d queries, want %d", len(blocks), len(want))
	}
	// Recent events one day ago, the old ones eleven days ago.
	path := newFixture(t, time.Now().Add(-24*time.Hour))
	for i, b := range blocks {
		t.Run(itoa(int64(i+1)), func(t *testing.T) {
			out, err := exec.Command(sqlite3, "-readonly", "-bail", path, b[1]).CombinedOutput()
			if err != nil {
				t.Fatalf("sqlite3: %v: %s\n%s", err, out, b[1])
			}
			if got := strings.TrimSpace(string(out)); got != want[i] {
				t.Fatalf("query %d:\n%s\ngot:\n%s\nwant:\n%s", i+1, b[1], got, want[i])
			}
		})
	}
}

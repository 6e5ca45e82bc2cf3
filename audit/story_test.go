package audit

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from the golden file (go test -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestStoryGolden(t *testing.T) {
	r := openRO(t, newFixture(t, fixtureBase))
	for _, id := range []string{"q1", "e1", "f1", "r1", "x1", "d1", "bad1", "p1"} {
		t.Run(id, func(t *testing.T) {
			st, err := r.Story(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := st.Render(&b); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if strings.ContainsAny(out, "\x1b\u202e\u202c\r") {
				t.Fatalf("story of %s carries raw control or bidi characters:\n%q", id, out)
			}
			golden(t, "story-"+id, out)
		})
	}
}

func TestStoryUnknownCall(t *testing.T) {
	r := openRO(t, newFixture(t, fixtureBase))
	if _, err := r.Story(t.Context(), "nope"); !errors.Is(err, ErrNoSuchCall) {
		t.Fatalf("got %v, want ErrNoSuchCall", err)
	}
}

func TestSummarize(t *testing.T) {
	r := openRO(t, newFixture(t, fixtureBase))
	rows, err := r.EventsAfter(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range rows {
		line := Summarize(&rows[i])
		if strings.ContainsAny(line, "\n\x1b\u202e") {
			t.Fatalf("unsafe summary line %q", line)
		}
		b.WriteString(line + "\n")
	}
	golden(t, "tail", b.String())
}

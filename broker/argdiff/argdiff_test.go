package argdiff

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func mustJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %q: %v", s, err)
	}
	return m
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name       string
		base, next string
		width      int
	}{
		{"nested-json",
			`{"method":"POST","url":"https://api.acme.com/v1/x","headers":{"Content-Type":"application/json","X-Trace":"a1"},"body":{"plan":"pro","seats":5,"meta":{"source":"crm","tags":["a","b"]}}}`,
			`{"method":"POST","url":"https://api.acme.com.evil.net/v1/x","headers":{"Content-Type":"application/json","Authorization":"Bearer t"},"body":{"plan":"pro","seats":50,"meta":{"source":"crm","tags":["a","c"]}}}`, 100},
		{"arrays",
			`{"to":["ann@acme.com","bo@acme.com"],"cc":["lead@acme.com"],"subject":"Q3","attachments":[{"name":"q3.pdf","size":1200}]}`,
			`{"to":["ann@acme.com","bo@acme.com","x@gmail.com"],"subject":"Q3 final","attachments":[]}`, 100},
		{"long-strings",
			`{"query":"SELECT id, email\nFROM customers\nWHERE signup_date >= '2024-01-01'\n  AND region = 'EU'\nORDER BY id\nLIMIT 100;"}`,
			`{"query":"SELECT id, email, phone\nFROM customers\nWHERE 1 = 1\n  AND region = 'EU'\nORDER BY id\nLIMIT 100000;"}`, 100},
		{"amount-and-payee",
			`{"from":"acct:acme-operating","to":"vendor:V-10442","amount":1240.5,"currency":"USD","memo":"Invoice 7781 for October"}`,
			`{"from":"acct:acme-operating","to":"acct:ext-88213-new","amount":9999,"currency":"USD","memo":"Invoice 7781 for October (corrected)"}`, 100},
		{"narrow-and-escapes",
			`{"path":"invoices/invoice_2024.pdf","content":"hello"}`,
			`{"path":"invoices/invoice_2024_\u202efdp.exe","content":"hello\u001b[2J","odd key":{"1":true}}`, 40},
		{"type-change-and-null",
			`{"body":{"a":1},"flag":true,"gone":null}`,
			`{"body":"now a string","flag":null}`, 80},
		{"no-changes", `{"a":[1,2,{"b":"c"}]}`, `{"a":[1,2,{"b":"c"}]}`, 80},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, next := mustJSON(t, c.base), mustJSON(t, c.next)
			changes := Diff(base, next)
			js, err := json.MarshalIndent(changes, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got := Render(changes, c.width) + "\n--- json ---\n" + string(js) + "\n"
			file := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if got != string(want) {
				t.Fatalf("got:\n%s\nwant:\n%s", got, want)
			}
			if !reflect.DeepEqual(Apply(base, changes), next) {
				t.Fatalf("Apply(base, Diff(base, next)) != next")
			}
		})
	}
}

func TestSensitiveFirst(t *testing.T) {
	base := mustJSON(t, `{"subject":"a","body":"b","to":["x@acme.com"],"amount":10}`)
	next := mustJSON(t, `{"subject":"A","body":"B","to":["x@evil.com"],"amount":10000}`)
	out := Render(Diff(base, next), 80)
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[1], "! ~ amount") || !strings.HasPrefix(lines[2], "! ~ to[0]") {
		t.Fatalf("got:\n%s\nwant the amount and recipient first, marked !", out)
	}
	if !strings.Contains(lines[0], "2 sensitive") {
		t.Fatalf("got header %q, want a sensitive count", lines[0])
	}
}

func TestPaths(t *testing.T) {
	for _, c := range []struct {
		base, next string
		want       []string
	}{
		{`{"to":["a","b"]}`, `{"to":["a","c"]}`, []string{"to[1]"}},
		{`{"headers":{"Authorization":"x"}}`, `{"headers":{"Authorization":"y"}}`, []string{"headers.Authorization"}},
		{`{"a.b":{"":1}}`, `{"a.b":{"":2}}`, []string{`["a.b"][""]`}},
		{`{"123":1}`, `{"123":2}`, []string{`["123"]`}},
		{`{"m":[[1],[2,3]]}`, `{"m":[[1],[2]]}`, []string{"m[1][1]"}},
	} {
		got := Diff(mustJSON(t, c.base), mustJSON(t, c.next))
		var paths []string
		for _, ch := range got {
			paths = append(paths, ch.Path)
		}
		if !reflect.DeepEqual(paths, c.want) {
			t.Errorf("Diff(%s, %s): got paths %q, want %q", c.base, c.next, paths, c.want)
		}
	}
}

func TestArrayAlignment(t *testing.T) {
	base := mustJSON(t, `{"to":["ann@acme.com","bo@acme.com","cy@acme.com"]}`)
	next := mustJSON(t, `{"to":["eve@evil.example","ann@acme.com","cy@acme.com"]}`)
	cs := Diff(base, next)
	var got []string
	for _, c := range cs {
		got = append(got, c.Op+" "+c.Path)
	}
	// bo was replaced by nothing and eve inserted in front: not three "changed".
	want := []string{"removed to[1]", "added to[0]"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !reflect.DeepEqual(Apply(base, cs), next) {
		t.Fatalf("Apply does not rebuild next")
	}
	out := Render(cs, 80)
	if !strings.Contains(out, `! + to[0]  "eve@evil.example"`) {
		t.Fatalf("got:\n%s\nwant the inserted recipient marked", out)
	}
}

func TestLineDiff(t *testing.T) {
	a := "one\ntwo\nthree\nfour\nfive"
	b := "one\n2\nthree\nfour\nfive\nsix"
	edits := LineDiff(a, b)
	if got := Rebuild(edits); got != b {
		t.Fatalf("Rebuild: got %q, want %q", got, b)
	}
	if got := Original(edits); got != a {
		t.Fatalf("Original: got %q, want %q", got, a)
	}
	var ops []string
	for _, e := range edits {
		ops = append(ops, e.Op[:1]+":"+e.Text)
	}
	want := []string{"e:one", "r:two", "a:2", "e:three", "e:four", "e:five", "a:six"}
	if !reflect.DeepEqual(ops, want) {
		t.Fatalf("got %q, want %q", ops, want)
	}
}

// randomValue builds a random JSON value from a seeded generator.
func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(8)
	if depth > 4 {
		k = r.IntN(4)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(3) == 0
	case 2:
		return float64(r.IntN(100)) / 4
	case 3:
		words := []string{"a", "to", "b@x.com", "line\nbreak", strings.Repeat("long ", 20), "", "ünï", "\x1b[2J"}
		return words[r.IntN(len(words))]
	case 4, 5:
		n := r.IntN(4)
		arr := make([]any, n)
		for i := range arr {
			arr[i] = randomValue(r, depth+1)
		}
		return arr
	default:
		return randomObject(r, depth+1)
	}
}

func randomObject(r *rand.Rand, depth int) map[string]any {
	keys := []string{"to", "url", "a", "b", "a.b", "", "x y", "9", "headers", "amount"}
	m := map[string]any{}
	for range r.IntN(5) {
		m[keys[r.IntN(len(keys))]] = randomValue(r, depth)
	}
	return m
}

// mutate returns a changed deep copy of v.
func mutate(r *rand.Rand, v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		m := deepCopy(x, 0).(map[string]any)
		for k := range m {
			switch r.IntN(4) {
			case 0:
				delete(m, k)
			case 1:
				m[k] = mutate(r, m[k], depth+1)
			}
		}
		if r.IntN(3) == 0 {
			m[fmt.Sprint("k", r.IntN(5))] = randomValue(r, depth+1)
		}
		return m
	case []any:
		a := deepCopy(x, 0).([]any)
		switch r.IntN(4) {
		case 0:
			if len(a) > 0 {
				a = a[:r.IntN(len(a))]
			}
		case 1:
			a = append(a, randomValue(r, depth+1))
		case 2:
			for i := range a {
				a[i] = mutate(r, a[i], depth+1)
			}
		case 3:
			i := r.IntN(len(a) + 1)
			a = append(a[:i], append([]any{randomValue(r, depth+1)}, a[i:]...)...)
			if len(a) > 1 && r.IntN(2) == 0 {
				j := r.IntN(len(a))
				a = append(a[:j], a[j+1:]...)
			}
		}
		return a
	}
	if r.IntN(2) == 0 {
		return randomValue(r, depth)
	}
	return v
}

func TestApplyDiffProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		base := randomObject(r, 0)
		next, _ := mutate(r, base, 0).(map[string]any)
		if i%5 == 0 {
			next = randomObject(r, 0)
		}
		before := deepCopy(base, 0)
		changes := Diff(base, next)
		got := Apply(base, changes)
		if !reflect.DeepEqual(got, next) {
			b, _ := json.Marshal(base)
			n, _ := json.Marshal(next)
			g, _ := json.Marshal(got)
			t.Fatalf("case %d: Apply(base, Diff(base, next)) != next\nbase %s\nnext %s\ngot  %s\nchanges %+v", i, b, n, g, changes)
		}
		if !reflect.DeepEqual(before, base) {
			t.Fatalf("case %d: Apply changed base", i)
		}
		if len(changes) == 0 != reflect.DeepEqual(base, next) {
			t.Fatalf("case %d: got %d changes for equal=%v", i, len(changes), reflect.DeepEqual(base, next))
		}
		_ = Render(changes, 60)
	}
}

func FuzzDiff(f *testing.F) {
	f.Add(`{"to":["a@x.com"]}`, `{"to":["a@x.com","b@y.com"]}`)
	f.Add(`{"q":"SELECT 1\nFROM t"}`, `{"q":"SELECT 2\nFROM t\nWHERE 1=1"}`)
	f.Add(`{"a":{"b":[1,{"c":null}]}}`, `{"a":{"b":[1]}}`)
	f.Add(`{"a.b":{"":1}}`, `{"a.b":[]}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		var base, next map[string]any
		if json.Unmarshal([]byte(a), &base) != nil || json.Unmarshal([]byte(b), &next) != nil || base == nil || next == nil {
			return
		}
		changes := Diff(base, next)
		if got := Apply(base, changes); !reflect.DeepEqual(got, next) {
			t.Fatalf("Apply(base, Diff(base, next)) != next: base %s next %s", a, b)
		}
		out := Render(changes, 50)
		for _, r := range out {
			if (r < 0x20 && r != '\n') || (r >= 0x202a && r <= 0x202e) {
				t.Fatalf("Render leaked control character %U", r)
			}
		}
	})
}

func BenchmarkDiff(b *testing.B) {
	base := mustJSON(b, `{"to":["ann@acme.com","bo@acme.com"],"subject":"Q3","body":"`+strings.Repeat("line of text\\n", 50)+`","headers":{"a":"b"}}`)
	next := mustJSON(b, `{"to":["ann@acme.com","x@gmail.com"],"subject":"Q3 final","body":"`+strings.Repeat("line of text\\n", 25)+`changed\\n`+strings.Repeat("line of text\\n", 25)+`","headers":{"a":"c"}}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = Render(Diff(base, next), 100)
	}
}

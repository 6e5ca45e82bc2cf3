package webhook

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func FuzzClean(f *testing.F) {
	for _, s := range []string{"plain", "a<b>&c", "line\nbreak", "\x1b]52;c;aGk=\x07", "é\u202eevil", strings.Repeat("x", 400)} {
		f.Add(s, 64)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 1 || max > 1000 {
			return
		}
		got := clean(s, max)
		if !utf8.ValidString(got) {
			t.Fatalf("clean(%q) = %q is not UTF-8", s, got)
		}
		if strings.ContainsAny(got, "<>\n\r") {
			t.Fatalf("clean(%q) = %q keeps a raw <, > or line break", s, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) {
				t.Fatalf("clean(%q) = %q keeps control %U", s, got, r)
			}
		}
	})
}

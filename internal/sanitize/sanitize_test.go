package sanitize

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain-ascii", "hello world", "hello world"},
		{"keeps-newline-and-tab", "a\n\tb", "a\n\tb"},
		{"osc52-clipboard", "\x1b]52;c;ZXZpbA==\x07", "␛]52;c;ZXZpbA==␇"},
		{"csi-clear-screen", "\x1b[2J\x1b[H", "␛[2J␛[H"},
		{"carriage-return", "ok\rEVIL", "ok␍EVIL"},
		{"nul-and-bell", "a\x00b\x07", "a␀b␇"},
		{"del", "a\x7fb", "a␡b"},
		{"c1-csi", "a\u009b2Jb", "a⟨U+009B⟩2Jb"},
		{"c1-nel", "a\u0085b", "a⟨U+0085⟩b"},
		{"bidi-override", "invoice\u202efdp.exe", "invoice⟨U+202E⟩fdp.exe"},
		{"bidi-isolate", "\u2066x\u2069", "⟨U+2066⟩x⟨U+2069⟩"},
		{"rtl-mark", "a\u200fb", "a⟨U+200F⟩b"},
		{"zero-width-space", "ad\u200bmin", "ad⟨U+200B⟩min"},
		{"bom", "\ufeffx", "⟨U+FEFF⟩x"},
		{"tag-characters", "a\U000E0041b", "a⟨U+E0041⟩b"},
		{"line-separator", "a\u2028b", "a⟨U+2028⟩b"},
		{"zwj-between-words", "a\u200db", "a⟨U+200D⟩b"},
		{"zwj-in-emoji", "👩\u200d💻", "👩\u200d💻"},
		{"invalid-utf8", "a\xffb\xc3", `a\xFFb\xC3`},
		{"raw-8bit-csi", "a\x9b2J", `a\x9B2J`},
		{"unicode-kept", "café 日本 😀", "café 日本 😀"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.in); got != tt.want {
				t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "abc", "abc"},
		{"newline-visible", "a\nb", "a↵b"},
		{"tab-visible", "a\tb", "a␉b"},
		{"escape", "\x1b[2J", "␛[2J"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Line(tt.in); got != tt.want {
				t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		n        int
		want     string
		wantMore int
	}{
		{"short", "abc", 10, "abc", 0},
		{"exact", "abc", 3, "abc", 0},
		{"cut", "abcdef", 4, "abcd", 2},
		{"no-split-rune", "ab日本", 4, "ab", 6},
		{"zero", "abc", 0, "", 3},
		{"negative", "abc", -1, "", 3},
		{"invalid-bytes", "ab\x80\x80\x80\x80\x80", 4, "ab\x80\x80", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more := Truncate(tt.in, tt.n)
			if got != tt.want || more != tt.wantMore {
				t.Errorf("Truncate(%q, %d) = %q, %d, want %q, %d", tt.in, tt.n, got, more, tt.want, tt.wantMore)
			}
			if len(got)+more != len(tt.in) {
				t.Errorf("kept %d + more %d != len %d", len(got), more, len(tt.in))
			}
		})
	}
}

func TestTextNoAllocOnClean(t *testing.T) {
	s := strings.Repeat("SELECT * FROM t WHERE id = 1;\n", 10)
	if n := testing.AllocsPerRun(100, func() { _ = Text(s) }); n != 0 {
		t.Errorf("got %v allocs for clean text, want 0", n)
	}
}

// checkSafe fails when out contains anything a terminal could interpret.
func checkSafe(t *testing.T, in, out string, keepLayout bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("output of %q is not valid UTF-8: %q", in, out)
	}
	for i, r := range out {
		switch {
		case r == '\n' || r == '\t':
			if !keepLayout {
				t.Fatalf("Line(%q) kept %q at %d: %q", in, r, i, out)
			}
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
			t.Fatalf("output of %q has control %U at %d: %q", in, r, i, out)
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			t.Fatalf("output of %q has bidi control %U at %d: %q", in, r, i, out)
		case r == 0x200b, r == 0x200c, r == 0x2060, r == 0xfeff, r == 0x2028, r == 0x2029:
			t.Fatalf("output of %q has invisible %U at %d: %q", in, r, i, out)
		}
	}
}

func FuzzText(f *testing.F) {
	for _, s := range []string{
		"", "hello", "\x1b]52;c;ZXZpbA==\x07", "\x1b[2J", "\u202e", "a\u200db", "👩\u200d💻",
		"\xff\xfe", "\u009b31m", "\r\n", "\x1b]0;title\x1b\\", "\x1bP+q\x1b\\",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkSafe(t, s, Text(s), true)
		checkSafe(t, s, Line(s), false)
		if strings.ContainsRune(Text(s), 0x1b) {
			t.Fatalf("ESC in output of %q", s)
		}
		if len(s) > 0 {
			n := len(s) / 2
			p, more := Truncate(s, n)
			if len(p)+more != len(s) || len(p) > n || s[:len(p)] != p {
				t.Fatalf("Truncate(%q, %d) = %q, %d", s, n, p, more)
			}
		}
	})
}

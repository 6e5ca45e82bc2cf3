// Package sanitize turns untrusted text (tool arguments, reasons, names sent by
// agents) into text that is safe to put on a terminal: it can be read, but it
// cannot move the cursor, clear the screen, set the clipboard, change the
// window title, reorder the line or hide characters.
//
// Every control is shown as a visible escape instead of being emitted:
//
//   - ESC and the other C0 controls as Unicode control pictures (␛, ␇, ␀, ␍),
//     so an OSC 52 clipboard write shows as "␛]52;c;…␇" and a screen clear as "␛[2J";
//   - DEL as ␡;
//   - C1 controls (U+0080–U+009F), bidi overrides and isolates, zero-width and
//     other invisible format characters as ⟨U+202E⟩;
//   - bytes that are not valid UTF-8 as \xNN.
//
// Newline and tab are kept by [Text] and made visible by [Line]. A zero-width
// joiner between two emoji is kept, so emoji sequences still render.
package sanitize

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text returns s with every control, bidi, invisible and invalid sequence
// replaced by a visible escape. Newlines and tabs are kept.
func Text(s string) string {
	if clean(s, true) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	write(&b, s, true)
	return b.String()
}

// Line is like Text but also makes newlines (↵) and tabs (␉) visible, for
// text that must stay on one line, such as a queue row.
func Line(s string) string {
	if clean(s, false) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	write(&b, s, false)
	return b.String()
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence and
// returns the kept prefix and how many bytes were cut. The caller shows the
// count ("… 1234 more bytes"); the prefix still needs [Text].
func Truncate(s string, n int) (string, int) {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s, 0
	}
	cut := n
	// If a valid rune straddles the cut, cut before it instead.
	for start := n - 1; start >= 0 && start >= n-(utf8.UTFMax-1); start-- {
		if utf8.RuneStart(s[start]) {
			if r, size := utf8.DecodeRuneInString(s[start:]); (r != utf8.RuneError || size > 1) && start+size > n {
				cut = start
			}
			break
		}
	}
	return s[:cut], len(s) - cut
}

// clean reports whether s is printable ASCII (plus newline and tab when
// keepLayout), the common case that needs no copy.
func clean(s string, keepLayout bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			continue
		}
		if keepLayout && (c == '\n' || c == '\t') {
			continue
		}
		return false
	}
	return true
}

func write(b *strings.Builder, s string, keepLayout bool) {
	var prev rune = -1
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			writeByte(b, s[i])
			i++
			prev = -1
			continue
		}
		i += size
		switch {
		case r == '\n' || r == '\t':
			if keepLayout {
				b.WriteRune(r)
			} else if r == '\n' {
				b.WriteString("↵")
			} else {
				b.WriteString("␉")
			}
		case r < 0x20:
			b.WriteRune(0x2400 + r) // ␀ … ␟, ␛ for ESC
		case r == 0x7f:
			b.WriteString("␡")
		case r < 0x7f:
			b.WriteByte(byte(r))
		case r == 0x200d && isEmoji(prev) && i < len(s) && isEmoji(nextRune(s[i:])):
			b.WriteRune(r) // zero-width joiner inside an emoji sequence
		case hidden(r):
			writeCode(b, r)
		default:
			b.WriteRune(r)
		}
		prev = r
	}
}

// hidden reports whether r must be shown as ⟨U+XXXX⟩: C1 controls, format
// characters (bidi marks, overrides and isolates, zero-width characters,
// tags), line and paragraph separators, and unassigned or private marks that
// a terminal may interpret.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0: // Hangul fillers: invisible
		return true
	case r >= 0xfff9 && r <= 0xfffb: // interlinear annotation
		return true
	case unicode.Is(unicode.Cf, r): // bidi, ZW*, BOM, soft hyphen, tags, …
		return true
	case unicode.Is(unicode.Cc, r):
		return true
	}
	return false
}

func writeCode(b *strings.Builder, r rune) {
	b.WriteString("⟨U+")
	h := strconv.FormatInt(int64(r), 16)
	for i := len(h); i < 4; i++ {
		b.WriteByte('0')
	}
	b.WriteString(strings.ToUpper(h))
	b.WriteString("⟩")
}

func writeByte(b *strings.Builder, c byte) {
	const hex = "0123456789ABCDEF"
	b.WriteString(`\x`)
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&0xf])
}

func nextRune(s string) rune {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size <= 1 {
		return -1
	}
	return r
}

// isEmoji approximates Extended_Pictographic plus the modifiers that may end
// an emoji before a joiner (variation selector 16, skin tones).
func isEmoji(r rune) bool {
	switch {
	case r == 0xfe0f:
		return true
	case r >= 0x1f000 && r <= 0x1faff:
		return true
	case r >= 0x2600 && r <= 0x27bf:
		return true
	case r >= 0x2300 && r <= 0x23ff, r >= 0x2b00 && r <= 0x2bff:
		return true
	case r == 0x2640 || r == 0x2642 || r == 0x2695 || r == 0x2696 || r == 0x2708 || r == 0x2764:
		return true
	}
	return false
}

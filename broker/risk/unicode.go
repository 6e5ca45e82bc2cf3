package risk

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// confusables maps non-Latin letters that look like Latin ones (Cyrillic,
// Greek, Armenian, fullwidth and a few Latin variants) to their look-alike,
// after the idea of Unicode TR39 skeletons.
var confusables = map[rune]rune{
	// Cyrillic
	'а': 'a', 'е': 'e', 'о': 'o', 'р': 'p', 'с': 'c', 'у': 'y', 'х': 'x', 'і': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd',
	'ԛ': 'q', 'ԝ': 'w', 'һ': 'h', 'ӏ': 'l', 'ɡ': 'g', 'ո': 'n', 'ս': 'u', 'օ': 'o', 'ց': 'g', 'հ': 'h', 'ԍ': 'g',
	'А': 'a', 'В': 'b', 'Е': 'e', 'К': 'k', 'М': 'm', 'Н': 'h', 'О': 'o', 'Р': 'p', 'С': 'c', 'Т': 't', 'Х': 'x',
	'У': 'y', 'І': 'i', 'Ј': 'j', 'Ѕ': 's', 'Ԁ': 'd', 'Ү': 'y', 'ү': 'y', 'к': 'k', 'м': 'm', 'т': 't', 'в': 'b',
	'н': 'h', 'ԋ': 'h', 'ѵ': 'v', 'Ꮯ': 'c',
	// Greek
	'α': 'a', 'ο': 'o', 'ρ': 'p', 'ν': 'v', 'ι': 'i', 'κ': 'k', 'υ': 'u', 'χ': 'x', 'ε': 'e', 'τ': 't', 'ϲ': 'c',
	'Α': 'a', 'Β': 'b', 'Ε': 'e', 'Ζ': 'z', 'Η': 'h', 'Ι': 'i', 'Κ': 'k', 'Μ': 'm', 'Ν': 'n', 'Ο': 'o', 'Ρ': 'p',
	'Τ': 't', 'Υ': 'y', 'Χ': 'x', 'ϳ': 'j',
	// Latin variants and symbols
	'ı': 'i', 'ɩ': 'i', 'ℓ': 'l', 'ǀ': 'l', 'ꓲ': 'l', 'ɑ': 'a', 'ꮃ': 'w', 'ⅼ': 'l', 'ⅰ': 'i', 'ℯ': 'e', 'ℴ': 'o',
}

// skeleton maps a string to a canonical look-alike form: confusables to
// Latin, fullwidth to ASCII, lower case, and the classic digit and pair
// swaps (0→o, 1/I→l, rn→m, vv→w).
func skeleton(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if c, ok := confusables[r]; ok {
			r = c
		} else if r >= 0xFF01 && r <= 0xFF5E {
			r = r - 0xFF01 + '!'
		}
		r = unicode.ToLower(r)
		switch r {
		case '0':
			r = 'o'
		case '1', 'i', '|':
			r = 'l'
		}
		b.WriteRune(r)
	}
	out := b.String()
	out = strings.ReplaceAll(out, "rn", "m")
	out = strings.ReplaceAll(out, "vv", "w")
	return out
}

// unicodeFinding is one deceptive character or token.
type unicodeFinding struct {
	weight float64
	detail string
}

func isBidi(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

func isZeroWidth(r rune) bool {
	switch r {
	case 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E, 0x2061, 0x2062, 0x2063, 0x2064, 0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x17B4, 0x17B5:
		return true
	}
	return false
}

// isEmoji approximates Extended_Pictographic plus modifiers.
func isEmoji(r rune) bool {
	return (r >= 0x1F000 && r <= 0x1FAFF) || (r >= 0x2600 && r <= 0x27BF) || (r >= 0x2300 && r <= 0x23FF) ||
		(r >= 0x2B00 && r <= 0x2BFF) || r == 0xFE0F || r == 0x2640 || r == 0x2642 || r == 0x2695 || r == 0x2708 ||
		(r >= 0x1F3FB && r <= 0x1F3FF) || r == 0x00A9 || r == 0x00AE || r == 0x203C || r == 0x2049 || r == 0x2122
}

func joiningScript(r rune) bool {
	return unicode.In(r, unicode.Arabic, unicode.Devanagari, unicode.Bengali, unicode.Gurmukhi, unicode.Gujarati,
		unicode.Oriya, unicode.Tamil, unicode.Telugu, unicode.Kannada, unicode.Malayalam, unicode.Sinhala, unicode.Syriac, unicode.Mongolian, unicode.Khmer)
}

// unicodeCheck finds bidi controls, invisible characters, tag characters and
// mixed-script words. ident marks values that name something (a user, a
// path, a recipient), where any invisible character is deceptive.
func unicodeCheck(s string, ident bool) []unicodeFinding {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return nil
	}
	var out []unicodeFinding
	runes := []rune(s)
	var bidi, zw, tags, marks int
	var firstBidi, firstZW rune
	for i, r := range runes {
		switch {
		case isBidi(r):
			bidi++
			if firstBidi == 0 {
				firstBidi = r
			}
		case isZeroWidth(r):
			if r == 0x200D && i > 0 && i+1 < len(runes) && isEmoji(runes[i-1]) && isEmoji(runes[i+1]) {
				continue // emoji ZWJ sequence (👩‍💻)
			}
			if (r == 0x200C || r == 0x200D) && i > 0 && i+1 < len(runes) && joiningScript(runes[i-1]) && joiningScript(runes[i+1]) {
				continue // ZWNJ/ZWJ shaping in Arabic and Indic scripts
			}
			if r == 0xFEFF && i == 0 {
				continue // byte-order mark at the start of a text
			}
			zw++
			if firstZW == 0 {
				firstZW = r
			}
		case r >= 0xE0000 && r <= 0xE007F:
			if r >= 0xE0020 && flagTagSequence(runes, i) {
				continue // subdivision flag: 🏴 + tag letters + cancel tag
			}
			tags++
		case r == 0x200E || r == 0x200F || r == 0x061C:
			marks++
		}
	}
	if bidi > 0 {
		out = append(out, unicodeFinding{1, fmt.Sprintf("bidi control U+%04X reorders the displayed text (%d in all)", firstBidi, bidi)})
	}
	if tags > 0 {
		out = append(out, unicodeFinding{1, fmt.Sprintf("%d invisible Unicode tag characters (hidden ASCII)", tags)})
	}
	if zw > 0 {
		w := 0.6
		if ident {
			w = 1
		}
		out = append(out, unicodeFinding{w, fmt.Sprintf("zero-width character U+%04X hidden in the text (%d in all)", firstZW, zw)})
	}
	if marks > 0 && ident {
		out = append(out, unicodeFinding{0.4, "directional marks in an identifier"})
	}
	if tok, scripts := mixedScriptToken(s); tok != "" {
		w := 0.8
		if ident {
			w = 0.95
		}
		out = append(out, unicodeFinding{w, "mixed-script word " + clip(tok, 40) + " (" + scripts + " look-alikes)"})
	}
	return out
}

// flagTagSequence reports whether the tag character at i belongs to an emoji
// subdivision flag (🏴 followed by tags and a cancel tag).
func flagTagSequence(runes []rune, i int) bool {
	j := i
	for j > 0 && runes[j-1] >= 0xE0020 && runes[j-1] <= 0xE007E {
		j--
	}
	return j > 0 && runes[j-1] == 0x1F3F4
}

// mixedScriptToken returns the first word that mixes Latin letters with
// Cyrillic, Greek or Armenian letters that look Latin.
func mixedScriptToken(s string) (string, string) {
	start := -1
	for i := 0; i <= len(s); {
		var r rune
		size := 1
		if i < len(s) {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		letter := i < len(s) && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r))
		if letter && start < 0 {
			start = i
		}
		if !letter && start >= 0 {
			tok := s[start:i]
			if scripts := mixedScripts(tok); scripts != "" {
				return tok, scripts
			}
			start = -1
		}
		i += size
	}
	return "", ""
}

func mixedScripts(tok string) string {
	var latin, other bool
	var name string
	for _, r := range tok {
		switch {
		case r < 0x80 && unicode.IsLetter(r), unicode.Is(unicode.Latin, r):
			latin = true
		case unicode.Is(unicode.Cyrillic, r), unicode.Is(unicode.Greek, r), unicode.Is(unicode.Armenian, r), unicode.Is(unicode.Cherokee, r):
			if _, ok := confusables[r]; ok {
				other = true
				switch {
				case unicode.Is(unicode.Cyrillic, r):
					name = "Cyrillic"
				case unicode.Is(unicode.Greek, r):
					name = "Greek"
				default:
					name = "Armenian"
				}
			}
		}
	}
	if latin && other {
		return "Latin and " + name
	}
	return ""
}

// lookalikeDomain compares a domain with the org's own: same skeleton but
// different spelling (аcme.com), one edit away (acme.co, acrne.com), or the
// org's domain used as a prefix of another domain (acme.com.evil.net).
func lookalikeDomain(o *orgInfo, host string) (float64, string) {
	if o == nil || host == "" || o.hostInside(host) {
		return 0, ""
	}
	host = unpuny(strings.ToLower(strings.TrimSuffix(host, ".")))
	reg := registrable(host)
	if o.inferred {
		stem := strings.SplitN(reg, ".", 2)[0]
		switch {
		case stem != o.name && skeleton(stem) == skeleton(o.name):
			return 1, host + " looks like an " + o.name + " domain but is not" + scriptNote(host)
		case len(o.name) >= 4 && editDistance1(skeleton(stem), skeleton(o.name)):
			return 0.6, host + " is one letter away from " + o.name
		case len(o.name) >= 4 && (strings.HasPrefix(stem, o.name+"-") || strings.HasSuffix(stem, "-"+o.name)):
			return 0.6, host + " borrows the org's name " + o.name
		}
		return 0, ""
	}
	sk := skeleton(host)
	skReg := skeleton(reg)
	for skel, d := range o.skeletons {
		if sk == skel || skReg == skel || strings.HasSuffix(sk, "."+skel) {
			return 1, host + " looks like " + d + " but is a different domain" + scriptNote(host)
		}
		if strings.HasPrefix(host, d+".") || strings.Contains(host, "."+d+".") {
			return 0.6, host + " puts " + d + " in front of another domain (" + reg + ")"
		}
		stem := strings.SplitN(skel, ".", 2)[0]
		regStem := strings.SplitN(skReg, ".", 2)[0]
		if len(stem) >= 4 && regStem != stem && (strings.HasPrefix(regStem, stem+"-") || strings.HasSuffix(regStem, "-"+stem) || strings.Contains(regStem, "-"+stem+"-")) {
			return 0.6, host + " borrows the org's name " + stem + " (" + d + " is the real domain)"
		}
		if len(stem) >= 4 && (editDistance1(skReg, skel) || (regStem != stem && editDistance1(regStem, stem) && len(regStem) >= 4)) {
			return 0.6, host + " is one letter away from " + d
		}
	}
	return 0, ""
}

func scriptNote(host string) string {
	for _, r := range host {
		if r >= 0x80 {
			if c, ok := confusables[r]; ok {
				return fmt.Sprintf(" (U+%04X %c imitates %c)", r, r, c)
			}
			return fmt.Sprintf(" (non-ASCII U+%04X)", r)
		}
	}
	return ""
}

// editDistance1 reports whether a and b differ by exactly one insertion,
// deletion, substitution or adjacent transposition.
func editDistance1(a, b string) bool {
	if a == b {
		return false
	}
	ra, rb := []rune(a), []rune(b)
	la, lb := len(ra), len(rb)
	if la-lb > 1 || lb-la > 1 {
		return false
	}
	i := 0
	for i < la && i < lb && ra[i] == rb[i] {
		i++
	}
	switch {
	case la == lb:
		if string(ra[i+1:]) == string(rb[i+1:]) {
			return true
		}
		return i+1 < la && ra[i] == rb[i+1] && ra[i+1] == rb[i] && string(ra[i+2:]) == string(rb[i+2:])
	case la > lb:
		return string(ra[i+1:]) == string(rb[i:])
	default:
		return string(ra[i:]) == string(rb[i+1:])
	}
}

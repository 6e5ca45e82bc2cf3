package argdiff

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// contextLines is how many unchanged lines a line diff shows around a change.
const contextLines = 2

// Render prints changes as plain text (no colour: the console adds it),
// sensitive changes first and marked with "!", then the rest in path order.
// Each change is one line "M O path  old → new" (M is "!" or " ", O is "+",
// "-" or "~"); long strings show their line diff beneath, indented, with
// "+ " and "- " prefixes and two lines of context. Control and bidi
// characters are shown escaped, never raw. Lines are cut to width.
func Render(changes []Change, width int) string {
	width = max(width, 20)
	if len(changes) == 0 {
		return "no changes\n"
	}
	cs := slices.Clone(changes)
	for i := range cs {
		cs[i].Sensitive = cs[i].Sensitive || Sensitive(cs[i].Path)
	}
	slices.SortStableFunc(cs, func(a, b Change) int {
		switch {
		case a.Sensitive && !b.Sensitive:
			return -1
		case b.Sensitive && !a.Sensitive:
			return 1
		}
		return 0
	})
	var b strings.Builder
	sens := 0
	for _, c := range cs {
		if c.Sensitive {
			sens++
		}
	}
	head := fmt.Sprintf("%d change", len(cs))
	if len(cs) != 1 {
		head += "s"
	}
	if sens > 0 {
		head += fmt.Sprintf(", %d sensitive (marked !)", sens)
	}
	b.WriteString(cut(head, width) + "\n")
	for _, c := range cs {
		mark := "  "
		if c.Sensitive {
			mark = "! "
		}
		var line string
		switch c.Op {
		case OpAdded:
			line = mark + "+ " + escape(c.Path) + "  " + value(c.New)
		case OpRemoved:
			line = mark + "- " + escape(c.Path) + "  (was " + value(c.Old) + ")"
		default:
			if len(c.Lines) > 0 {
				add, del := 0, 0
				for _, l := range c.Lines {
					switch l.Op {
					case LineAdded:
						add++
					case LineRemoved:
						del++
					}
				}
				line = mark + "~ " + escape(c.Path) + fmt.Sprintf("  (%d line(s) added, %d removed)", add, del)
			} else {
				line = mark + "~ " + escape(c.Path) + "  " + value(c.Old) + " → " + value(c.New)
			}
		}
		b.WriteString(cut(line, width) + "\n")
		if len(c.Lines) > 0 {
			renderLines(&b, c.Lines, width)
		}
	}
	return b.String()
}

func renderLines(b *strings.Builder, edits []LineEdit, width int) {
	keep := make([]bool, len(edits))
	for i, e := range edits {
		if e.Op == LineEqual {
			continue
		}
		for j := max(0, i-contextLines); j <= min(len(edits)-1, i+contextLines); j++ {
			keep[j] = true
		}
	}
	skipped := false
	for i, e := range edits {
		if !keep[i] {
			if !skipped {
				b.WriteString("      …\n")
			}
			skipped = true
			continue
		}
		skipped = false
		prefix := "      "
		switch e.Op {
		case LineAdded:
			prefix = "    + "
		case LineRemoved:
			prefix = "    - "
		}
		b.WriteString(cut(prefix+escape(e.Text), width) + "\n")
		// A line replaced by one other line: show the words that changed.
		if e.Op == LineAdded && i > 0 && edits[i-1].Op == LineRemoved &&
			(i < 2 || edits[i-2].Op != LineRemoved) && (i+1 >= len(edits) || edits[i+1].Op != LineAdded) {
			if w := wordDiff(edits[i-1].Text, e.Text); w != "" {
				b.WriteString(cut("    ~ "+escape(w), width) + "\n")
			}
		}
	}
}

// wordDiff marks the words that differ between two lines as [-old-]{+new+},
// keeping the words they share; "" when the lines share no word.
func wordDiff(a, b string) string {
	aw, bw := strings.Fields(a), strings.Fields(b)
	if len(aw)*len(bw) > 1<<16 || len(aw) == 0 || len(bw) == 0 {
		return ""
	}
	edits := lcs(aw, bw)
	var out []string
	same := 0
	var del, add []string
	flush := func() {
		if len(del) > 0 {
			out = append(out, "[-"+strings.Join(del, " ")+"-]")
		}
		if len(add) > 0 {
			out = append(out, "{+"+strings.Join(add, " ")+"+}")
		}
		del, add = nil, nil
	}
	for _, e := range edits {
		switch e.Op {
		case LineEqual:
			flush()
			out = append(out, e.Text)
			same++
		case LineRemoved:
			del = append(del, e.Text)
		case LineAdded:
			add = append(add, e.Text)
		}
	}
	flush()
	if same == 0 {
		return ""
	}
	return strings.Join(out, " ")
}

// value renders a JSON value compactly, strings quoted, escapes visible.
func value(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return escape(fmt.Sprint(v))
	}
	return escape(strings.TrimSuffix(buf.String(), "\n"))
}

// escape shows control, bidi and invisible characters as \x.. or \u....
func escape(s string) string {
	clean := true
	for _, r := range s {
		if hidden(r) {
			clean = false
			break
		}
	}
	if clean && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteString("    ")
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func hidden(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) ||
		r == 0x200b || r == 0x200c || r == 0x200d || r == 0x200e || r == 0x200f || r == 0x2060 || r == 0xfeff || r == 0x061c ||
		(r >= 0xe0000 && r <= 0xe007f)
}

// cut shortens s to width runes, ending with "…" when cut.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

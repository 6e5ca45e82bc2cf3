package tui

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"charm.land/lipgloss/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/sanitize"
)

// summarize is the one-line, sanitised summary of a call's arguments shown
// in its queue row.
func summarize(c *airlock.ToolCall) string {
	const limit = 240
	args := c.Arguments
	var b strings.Builder
	add := func(k string, v any) {
		if b.Len() >= limit {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(compact(v, limit-b.Len()))
	}
	// Tool-aware: the most telling argument first.
	first := ""
	switch layoutOf(c.Tool, args) {
	case layoutSQL:
		first = sqlKey(args)
	case layoutCode:
		first = codeKey(args)
	case layoutEmail:
		for _, k := range []string{"to", "subject"} {
			if v, ok := args[k]; ok {
				add(k, v)
			}
		}
		first = "\x00done"
	}
	if first != "" && first != "\x00done" {
		if s, ok := args[first].(string); ok {
			s = strings.Join(strings.Fields(s), " ")
			s, _ = sanitize.Truncate(s, limit)
			b.WriteString(s)
		}
	}
	for _, k := range sortedKeys(args) {
		if k == first || (first == "\x00done" && (k == "to" || k == "subject")) {
			continue
		}
		add(k, args[k])
	}
	return sanitize.Line(b.String())
}

// compact is a short single-line form of a value (raw; sanitise after).
func compact(v any, limit int) string {
	var s string
	switch v := v.(type) {
	case string:
		s = v
		if strings.ContainsAny(s, " \t\n") {
			s = strconv.Quote(s)
		}
	case nil:
		s = "null"
	default:
		b, _ := json.Marshal(v)
		s = string(b)
	}
	limit = max(limit, 8)
	if len(s) > limit {
		s, _ = sanitize.Truncate(s, limit)
		s += "…"
	}
	return s
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// shape is the batch signature of arguments: keys and value types,
// recursively, with strings classed (email, url, path, text) so that calls
// batch only with look-alikes.
func shape(v any) string {
	var b strings.Builder
	writeShape(&b, v, 0)
	return b.String()
}

func writeShape(b *strings.Builder, v any, depth int) {
	if depth > 6 {
		b.WriteString("…")
		return
	}
	switch v := v.(type) {
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k)
			b.WriteByte(':')
			writeShape(b, v[k], depth+1)
		}
		b.WriteByte('}')
	case []any:
		// A list's shape is the set of its element shapes, not its length.
		seen := map[string]bool{}
		var parts []string
		for _, x := range v {
			var eb strings.Builder
			writeShape(&eb, x, depth+1)
			if s := eb.String(); !seen[s] {
				seen[s] = true
				parts = append(parts, s)
			}
		}
		slices.Sort(parts)
		b.WriteString("[" + strings.Join(parts, "|") + "]")
	case string:
		switch {
		case strings.Contains(v, "@") && !strings.ContainsAny(v, " \n"):
			b.WriteString("email")
		case strings.Contains(v, "://"):
			b.WriteString("url")
		case strings.HasPrefix(v, "/") || strings.HasPrefix(v, "~/") || strings.HasPrefix(v, "./"):
			b.WriteString("path")
		default:
			b.WriteString("str")
		}
	case float64, json.Number, int, int64:
		b.WriteString("num")
	case bool:
		b.WriteString("bool")
	case nil:
		b.WriteString("null")
	default:
		fmt.Fprintf(b, "%T", v)
	}
}

type layout int

const (
	layoutJSON layout = iota
	layoutSQL
	layoutCode
	layoutEmail
)

func layoutOf(tool string, args map[string]any) layout {
	t := strings.ToLower(tool)
	switch {
	case (strings.Contains(t, "mail") || args["subject"] != nil) && args["to"] != nil:
		return layoutEmail
	case strings.Contains(t, "sql") || strings.Contains(t, "query") || strings.Contains(t, "db"):
		if sqlKey(args) != "" {
			return layoutSQL
		}
	case strings.Contains(t, "python") || strings.Contains(t, "shell") || strings.Contains(t, "bash") ||
		strings.Contains(t, "exec") || strings.Contains(t, "run") || strings.Contains(t, "code"):
		if codeKey(args) != "" {
			return layoutCode
		}
	}
	if _, ok := args["sql"].(string); ok {
		return layoutSQL
	}
	return layoutJSON
}

func sqlKey(args map[string]any) string {
	for _, k := range []string{"query", "sql", "statement"} {
		if _, ok := args[k].(string); ok {
			return k
		}
	}
	return ""
}

func codeKey(args map[string]any) string {
	for _, k := range []string{"code", "command", "script", "cmd", "source"} {
		if _, ok := args[k].(string); ok {
			return k
		}
	}
	return ""
}

// argLines lays out a call's arguments for the detail pane: SQL formatted,
// code with line numbers, an email as header and body, and everything else
// (and the remaining arguments) as coloured JSON. Every value is sanitised;
// values longer than valueLimit are cut unless expand is set.
func (m *Model) argLines(c *airlock.ToolCall, args map[string]any, width int, expand bool) []string {
	st := &m.styles
	var out []string
	done := map[string]bool{}
	clip := func(s string) (string, string) {
		if expand {
			return s, ""
		}
		s, more := sanitize.Truncate(s, valueLimit)
		if more == 0 {
			return s, ""
		}
		return s, st.Warn.Render(fmt.Sprintf("… %d more bytes (x to expand)", more))
	}
	switch layoutOf(c.Tool, args) {
	case layoutSQL:
		k := sqlKey(args)
		q, more := clip(args[k].(string))
		out = append(out, st.Label.Render(k+":"))
		for _, l := range formatSQL(sanitize.Text(q), st) {
			out = append(out, "  "+l)
		}
		if more != "" {
			out = append(out, "  "+more)
		}
		done[k] = true
	case layoutCode:
		k := codeKey(args)
		code, more := clip(args[k].(string))
		out = append(out, st.Label.Render(k+":"))
		lines := strings.Split(strings.TrimRight(sanitize.Text(code), "\n"), "\n")
		w := len(strconv.Itoa(len(lines)))
		for i, l := range lines {
			no := fmt.Sprintf("%*d", w, i+1)
			out = append(out, st.LineNo.Render(no+" │ ")+strings.ReplaceAll(l, "\t", "    "))
		}
		if more != "" {
			out = append(out, more)
		}
		done[k] = true
	case layoutEmail:
		for _, k := range []string{"from", "to", "cc", "bcc", "subject"} {
			v, ok := args[k]
			if !ok {
				continue
			}
			label := strings.ToUpper(k[:1]) + k[1:] + ":"
			val := strings.Join(strs(v), ", ")
			if s, ok := v.(string); ok && k == "subject" {
				val = s
			}
			val, more := clip(val)
			out = append(out, st.Label.Render(fmt.Sprintf("%-9s", label))+st.Value.Bold(true).Render(sanitize.Line(val))+more)
			done[k] = true
		}
		for _, k := range []string{"body", "text", "content", "html"} {
			s, ok := args[k].(string)
			if !ok {
				continue
			}
			s, more := clip(s)
			out = append(out, "")
			for _, l := range strings.Split(sanitize.Text(s), "\n") {
				out = append(out, strings.ReplaceAll(l, "\t", "    "))
			}
			if more != "" {
				out = append(out, more)
			}
			done[k] = true
			break
		}
	}
	rest := make(map[string]any, len(args))
	for k, v := range args {
		if !done[k] {
			rest[k] = v
		}
	}
	if len(rest) > 0 {
		if len(done) > 0 {
			out = append(out, "")
		}
		out = append(out, m.jsonLines(rest, clip)...)
	}
	if len(args) == 0 {
		out = append(out, st.Muted.Render("(no arguments)"))
	}
	return out
}

// jsonLines renders a value as indented JSON with syntax colour.
func (m *Model) jsonLines(v any, clip func(string) (string, string)) []string {
	st := &m.styles
	var out []string
	var walk func(prefix string, v any, indent string, last bool)
	walk = func(prefix string, v any, indent string, last bool) {
		if len(indent) > 2*maxDepth {
			out = append(out, indent+prefix+st.Warn.Render("… nested deeper than the console shows"))
			return
		}
		comma := ""
		if !last {
			comma = st.Punc.Render(",")
		}
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 0 {
				out = append(out, indent+prefix+st.Punc.Render("{}")+comma)
				return
			}
			out = append(out, indent+prefix+st.Punc.Render("{"))
			keys := sortedKeys(v)
			for i, k := range keys {
				kk, more := sanitize.Truncate(k, 256)
				p := st.Key.Render(`"`+sanitize.Line(jsonQuoter.Replace(kk))+`"`) + st.Punc.Render(": ")
				if more > 0 {
					p = st.Key.Render(`"`+sanitize.Line(jsonQuoter.Replace(kk))+`…"`) + st.Warn.Render(fmt.Sprintf(" (key: %d more bytes)", more)) + st.Punc.Render(": ")
				}
				walk(p, v[k], indent+"  ", i == len(keys)-1)
			}
			out = append(out, indent+st.Punc.Render("}")+comma)
		case []any:
			if len(v) == 0 {
				out = append(out, indent+prefix+st.Punc.Render("[]")+comma)
				return
			}
			out = append(out, indent+prefix+st.Punc.Render("["))
			for i, x := range v {
				walk("", x, indent+"  ", i == len(v)-1)
			}
			out = append(out, indent+st.Punc.Render("]")+comma)
		case string:
			s, more := clip(v)
			// Quotes and backslashes escaped as in JSON; controls, newlines
			// and invisible characters as visible escapes (␛, ↵, ⟨U+202E⟩).
			q := `"` + sanitize.Line(jsonQuoter.Replace(s)) + `"`
			out = append(out, indent+prefix+st.String.Render(q)+comma+more)
		case float64:
			out = append(out, indent+prefix+st.Number.Render(strconv.FormatFloat(v, 'f', -1, 64))+comma)
		case json.Number:
			out = append(out, indent+prefix+st.Number.Render(sanitize.Line(v.String()))+comma)
		case bool:
			out = append(out, indent+prefix+st.Bool.Render(strconv.FormatBool(v))+comma)
		case nil:
			out = append(out, indent+prefix+st.Null.Render("null")+comma)
		default:
			out = append(out, indent+prefix+sanitize.Line(fmt.Sprint(v))+comma)
		}
	}
	walk("", v, "", true)
	return out
}

// maxDepth bounds how deep the JSON view descends.
const maxDepth = 32

var jsonQuoter = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

var sqlKeywords = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`select from where and or not insert into values update set delete
		join left right inner outer full cross on group by order having limit offset union all distinct as
		create table drop alter truncate index view returning with case when then else end is null like in
		between exists grant revoke primary key references default cascade begin commit rollback desc asc
		if replace merge using`) {
		sqlKeywords[k] = true
	}
}

// clauses start a new line in formatted SQL.
var sqlClauses = map[string]bool{
	"select": true, "from": true, "where": true, "group": true, "order": true, "having": true, "limit": true,
	"offset": true, "values": true, "set": true, "returning": true, "union": true, "join": true, "left": true,
	"right": true, "inner": true, "full": true, "cross": true, "and": true, "or": true, "insert": true,
	"update": true, "delete": true, "with": true,
}

// formatSQL uppercases keywords, breaks lines before major clauses and
// colours keywords. Strings, quoted names and comments are kept as written.
// The input is already sanitised.
func formatSQL(q string, st *Styles) []string {
	var lines []string
	var cur strings.Builder
	depth := 0
	flush := func() {
		if s := strings.TrimRight(cur.String(), " "); strings.TrimSpace(s) != "" {
			lines = append(lines, s)
		}
		cur.Reset()
	}
	prevWord := ""
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(q) && q[j] != c {
				j++
			}
			j = min(j+1, len(q))
			cur.WriteString(st.String.Render(q[i:j]))
			i = j
			prevWord = ""
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			cur.WriteString(st.Muted.Render(q[i : i+j]))
			i += j
		case c == '\n' || c == '\t' || c == ' ' || c == '\r':
			if s := cur.String(); len(s) > 0 && s[len(s)-1] != ' ' {
				cur.WriteByte(' ')
			}
			i++
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			w := q[i:j]
			lw := strings.ToLower(w)
			if sqlKeywords[lw] {
				// "order by", "delete from", "insert into", "left join" stay on one line.
				compound := lw == "by" || lw == "outer" || (lw == "from" && prevWord == "delete") ||
					(lw == "into" && prevWord == "insert") ||
					(lw == "join" && (prevWord == "left" || prevWord == "right" || prevWord == "inner" ||
						prevWord == "full" || prevWord == "cross" || prevWord == "outer"))
				if sqlClauses[lw] && !compound && depth == 0 {
					flush()
					if lw == "and" || lw == "or" {
						cur.WriteString("  ")
					}
				}
				cur.WriteString(st.SQLKeyword.Render(strings.ToUpper(w)))
				prevWord = lw
			} else {
				cur.WriteString(w)
				prevWord = ""
			}
			i = j
		default:
			if c == '(' {
				depth++
			} else if c == ')' && depth > 0 {
				depth--
			} else if c == ';' {
				cur.WriteByte(c)
				flush()
				i++
				continue
			}
			cur.WriteByte(c)
			i++
		}
	}
	flush()
	if len(lines) == 0 {
		lines = []string{""}
	}
	return lines
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// pad returns s cut or padded with spaces to exactly w cells.
func pad(s string, w int) string {
	sw := lipgloss.Width(s)
	if sw > w {
		return truncate(s, w)
	}
	return s + strings.Repeat(" ", w-sw)
}

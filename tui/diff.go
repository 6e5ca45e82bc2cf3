package tui

import (
	"path"
	"strings"

	"github.com/airlock/airlock/broker/argdiff"
	"github.com/airlock/airlock/internal/sanitize"
)

// change is one difference between two argument maps.
type change = argdiff.Change

// argChanges lists how next differs from base (argdiff). For batching, a
// changed path that stays in the same directory is not sensitive: issue 8's
// "path outside the usual prefix" is what must be reviewed on its own.
func argChanges(base, next map[string]any) []change {
	cs := argdiff.Diff(base, next)
	for i := range cs {
		c := &cs[i]
		if !c.Sensitive || c.Op != argdiff.OpChanged {
			continue
		}
		leaf := c.Path
		if j := strings.LastIndexByte(leaf, '.'); j >= 0 {
			leaf = leaf[j+1:]
		}
		switch strings.ToLower(leaf) {
		case "path", "file", "file_path", "filename":
		default:
			continue
		}
		old, ok1 := c.Old.(string)
		nw, ok2 := c.New.(string)
		parent := strings.TrimSuffix(strings.TrimSuffix(c.Path, leaf), ".")
		if ok1 && ok2 && path.Dir(old) == path.Dir(nw) && !strings.Contains(old, "..") && !strings.Contains(nw, "..") &&
			(parent == "" || !argdiff.Sensitive(parent)) {
			c.Sensitive = false
		}
	}
	return cs
}

// changeLines renders changes, one per line (a line diff for long
// strings), sanitised and coloured; sensitive changes are flagged "!".
func (m *Model) changeLines(cs []change) []string {
	st := &m.styles
	var out []string
	for _, c := range cs {
		p := sanitize.Line(c.Path)
		mark := ""
		if c.Sensitive {
			mark = st.Warn.Render(" !")
		}
		switch {
		case c.Op == argdiff.OpAdded:
			out = append(out, st.Added.Render("+ "+p+": "+sanitize.Line(compact(c.New, 200)))+mark)
		case c.Op == argdiff.OpRemoved:
			out = append(out, st.Removed.Render("- "+p+": "+sanitize.Line(compact(c.Old, 200)))+mark)
		case len(c.Lines) > 0:
			out = append(out, st.Changed.Render("~ "+p+":")+mark)
			for _, l := range c.Lines {
				switch l.Op {
				case argdiff.LineAdded:
					out = append(out, st.Added.Render("  + "+sanitize.Line(l.Text)))
				case argdiff.LineRemoved:
					out = append(out, st.Removed.Render("  - "+sanitize.Line(l.Text)))
				default:
					out = append(out, st.Muted.Render("    "+sanitize.Line(l.Text)))
				}
			}
		default:
			out = append(out, st.Changed.Render("~ "+p+": ")+st.Removed.Render(sanitize.Line(compact(c.Old, 200)))+
				st.Muted.Render(" → ")+st.Added.Render(sanitize.Line(compact(c.New, 200)))+mark)
		}
	}
	return out
}

// oneLine renders a member's differences compactly for the batch detail.
func (m *Model) oneLine(cs []change) string {
	st := &m.styles
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		p := sanitize.Line(c.Path)
		switch c.Op {
		case argdiff.OpAdded:
			parts = append(parts, st.Added.Render("+"+p+"="+sanitize.Line(compact(c.New, 60))))
		case argdiff.OpRemoved:
			parts = append(parts, st.Removed.Render("-"+p))
		default:
			parts = append(parts, st.Changed.Render(p+": ")+sanitize.Line(compact(c.Old, 40))+st.Muted.Render(" → ")+
				sanitize.Line(compact(c.New, 60)))
		}
	}
	return strings.Join(parts, st.Muted.Render("; "))
}

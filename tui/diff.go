package tui

import (
	"path"
	"strings"

	"github.com/airlock/airlock/internal/sanitize"
)

// change is one difference between two argument maps.
type change struct {
	Path      string
	Op        string // add, remove, change
	Old, New  string // compact JSON of the values (raw; sanitise to show)
	Sensitive bool   // a field that must not be hidden in a batch (recipient, host, path prefix, amount, code)
}

// argChanges lists how next differs from base, path by path.
func argChanges(base, next map[string]any) []change {
	var out []change
	diffValue(&out, "", base, next)
	return out
}

func diffValue(out *[]change, p string, a, b any) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		ks := make([]string, 0, len(keys))
		for k := range keys {
			ks = append(ks, k)
		}
		sortStrings(ks)
		for _, k := range ks {
			sub := k
			if p != "" {
				sub = p + "." + k
			}
			av, ain := am[k]
			bv, bin := bm[k]
			switch {
			case !ain:
				*out = append(*out, change{Path: sub, Op: "add", New: compact(bv, 200), Sensitive: sensitiveKey(k, nil, bv)})
			case !bin:
				*out = append(*out, change{Path: sub, Op: "remove", Old: compact(av, 200), Sensitive: sensitiveKey(k, av, nil)})
			default:
				diffValue(out, sub, av, bv)
			}
		}
		return
	}
	ca, cb := compact(a, 1<<20), compact(b, 1<<20)
	if ca == cb {
		return
	}
	leaf := p
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		leaf = p[i+1:]
	}
	*out = append(*out, change{Path: p, Op: "change", Old: compact(a, 200), New: compact(b, 200), Sensitive: sensitiveKey(leaf, a, b)})
}

// sensitiveKey reports whether a difference in this field must be reviewed
// on its own: where data goes (recipients, hosts), what runs (code, queries),
// money, and paths outside the same directory.
func sensitiveKey(k string, a, b any) bool {
	switch strings.ToLower(k) {
	case "to", "cc", "bcc", "recipient", "recipients", "from", "email", "address",
		"host", "hostname", "url", "uri", "endpoint", "domain", "webhook",
		"amount", "total", "price", "sum", "account", "iban", "currency",
		"command", "cmd", "code", "script", "query", "sql", "statement",
		"password", "token", "secret", "key", "permissions", "role":
		return true
	case "path", "file", "filename", "dest", "destination", "target", "dir", "directory":
		as, _ := a.(string)
		bs, _ := b.(string)
		return path.Dir(as) != path.Dir(bs)
	}
	return false
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// changeLines renders changes, one per line, sanitised and coloured.
func (m *Model) changeLines(cs []change) []string {
	st := &m.styles
	var out []string
	for _, c := range cs {
		p := sanitize.Line(c.Path)
		mark := ""
		if c.Sensitive {
			mark = st.Warn.Render(" !")
		}
		switch c.Op {
		case "add":
			out = append(out, st.Added.Render("+ "+p+": "+sanitize.Line(c.New))+mark)
		case "remove":
			out = append(out, st.Removed.Render("- "+p+": "+sanitize.Line(c.Old))+mark)
		default:
			out = append(out, st.Changed.Render("~ "+p+": ")+st.Removed.Render(sanitize.Line(c.Old))+
				st.Muted.Render(" → ")+st.Added.Render(sanitize.Line(c.New))+mark)
		}
	}
	return out
}

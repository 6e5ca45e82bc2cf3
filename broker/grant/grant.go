// Package grant derives and checks the constraints of scoped, expiring
// grants ("approve similar calls for 15 minutes"). It is pure: the broker
// stores grants, the console shows what this package suggests.
package grant

import (
	"fmt"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/airlock/airlock"
)

// Suggest derives a CEL constraint from a call that covers "calls like this
// one" and no more: the same recipient domains, the same host, the same
// path prefix, the same table. Reviewers see it and may edit it.
func Suggest(call *airlock.ToolCall) string {
	a := call.Arguments
	var parts []string
	if doms := recipientDomains(a); len(doms) > 0 {
		var ors []string
		for _, d := range doms {
			ors = append(ors, fmt.Sprintf("r.endsWith(%s)", strconv.Quote("@"+d)))
		}
		for _, k := range []string{"to", "cc", "bcc"} {
			switch a[k].(type) {
			case []any:
				parts = append(parts, fmt.Sprintf("args.%s.all(r, %s)", k, strings.Join(ors, " || ")))
			case string:
				// One address as a string: the same test on the string itself.
				parts = append(parts, "("+strings.ReplaceAll(strings.Join(ors, " || "), "r.endsWith", "args."+k+".endsWith")+")")
			}
		}
	}
	if u, ok := a["url"].(string); ok {
		if pu, err := url.Parse(u); err == nil && pu.Host != "" {
			prefix := pu.Scheme + "://" + pu.Host + "/"
			parts = append(parts, fmt.Sprintf("args.url.startsWith(%s)", strconv.Quote(prefix)))
		}
	}
	if p, ok := a["path"].(string); ok && p != "" {
		dir := path.Dir(path.Clean(p))
		if dir == "." || dir == "/" {
			parts = append(parts, fmt.Sprintf("args.path == %s", strconv.Quote(p)))
		} else {
			parts = append(parts, fmt.Sprintf("args.path.startsWith(%s) && !args.path.contains(\"..\")", strconv.Quote(dir+"/")))
		}
	}
	if q, ok := a["query"].(string); ok && call.Tool != "search_web" && call.Tool != "search_faq" {
		if t := firstTable(q); t != "" {
			verb := strings.ToUpper(strings.Fields(strings.TrimSpace(q) + " x")[0])
			parts = append(parts, fmt.Sprintf("args.query.matches(%s) && args.query.contains(%s) && !args.query.contains(\";\")",
				strconv.Quote(`(?i)^\s*`+strings.ToLower(verb)+`\b`), strconv.Quote(t)))
		}
	}
	if to, ok := a["to"].(string); ok && call.Tool == "transfer_funds" {
		parts = append(parts, fmt.Sprintf("args.to == %s", strconv.Quote(to)))
		if amt, ok := a["amount"].(float64); ok {
			parts = append(parts, fmt.Sprintf("double(args.amount) <= %s", strconv.FormatFloat(amt, 'f', -1, 64)))
		}
	}
	if len(parts) == 0 {
		// Nothing to generalise over: exactly these arguments.
		keys := make([]string, 0, len(a))
		for k := range a {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := a[k].(string); ok && isIdent(k) {
				parts = append(parts, fmt.Sprintf("args.%s == %s", k, strconv.Quote(s)))
			}
		}
	}
	if len(parts) == 0 {
		return "false"
	}
	return strings.Join(parts, " && ")
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}

func recipientDomains(a map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range []string{"to", "cc", "bcc"} {
		list, _ := a[k].([]any)
		if s, ok := a[k].(string); ok {
			list = []any{s}
		}
		for _, v := range list {
			s, _ := v.(string)
			if i := strings.LastIndexByte(s, '@'); i >= 0 {
				d := strings.ToLower(strings.TrimSpace(s[i+1:]))
				if d != "" && !seen[d] {
					seen[d] = true
					out = append(out, d)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// firstTable finds the table a simple statement works on (FROM, INTO,
// UPDATE, TABLE), for a grant bound to it.
func firstTable(q string) string {
	f := strings.Fields(strings.ToLower(q))
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "from", "into", "update", "table":
			t := strings.Trim(f[i+1], "`\"();,")
			if isIdent(strings.ReplaceAll(t, ".", "_")) {
				return t
			}
		}
	}
	return ""
}

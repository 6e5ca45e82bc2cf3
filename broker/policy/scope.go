package policy

import (
	"fmt"
	"net/mail"
	"net/url"
	"path"
	"strings"
)

// ScopeError says which argument of a call falls outside its tool's scope.
type ScopeError struct {
	Arg    string // the argument, e.g. "to", "url", "query"
	Value  string // the offending value (a recipient, a host, a schema, a path)
	Reason string // e.g. "domain evil.com is not in scope.domains (acme.com)"
}

// Error formats the problem as "outside scope: ...".
func (e *ScopeError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("outside scope: %s: %s", e.Arg, e.Reason)
	}
	return fmt.Sprintf("outside scope: %s %s: %s", e.Arg, quoteShort(e.Value), e.Reason)
}

// quoteShort quotes untrusted text for a reason line: escaped, at most 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// Check returns a *ScopeError when args reach outside the scope, nil
// otherwise. It reads these arguments, when present:
//
//   - from: the sender must be one of From (case-insensitive address).
//   - to, cc, bcc: a string (one address or a comma-separated list) or a list
//     of strings; every recipient's domain must match Domains.
//   - query, sql, statement: every schema-qualified table the SQL names
//     (schema.table after FROM, JOIN, INTO, UPDATE, TABLE, …) and every schema
//     it switches to (USE, SET search_path) must be in Schemas; schema,
//     database: must be in Schemas.
//   - url, host: the host must match Hosts (exact, or *.suffix for subdomains).
//   - path: after path.Clean, it must be one of Paths or below one.
//
// A dimension that is not set in the scope is not checked; an argument that
// is absent is not checked either (a tool without a "from" sends from its
// configured address). An argument of the wrong type is outside the scope.
func (s *Scope) Check(args map[string]any) error {
	if s == nil {
		return nil
	}
	if len(s.From) > 0 {
		if v, ok := args["from"]; ok {
			str, isStr := v.(string)
			if !isStr {
				return &ScopeError{Arg: "from", Reason: "not a string"}
			}
			addr := str
			if a, err := mail.ParseAddress(str); err == nil {
				addr = a.Address
			}
			if !containsFold(s.From, strings.TrimSpace(addr)) {
				return &ScopeError{Arg: "from", Value: str, Reason: "sender is not in scope.from (" + strings.Join(s.From, ", ") + ")"}
			}
		}
	}
	if len(s.Domains) > 0 {
		for _, k := range [...]string{"to", "cc", "bcc"} {
			v, ok := args[k]
			if !ok || v == nil {
				continue
			}
			addrs, ok := addressList(v)
			if !ok {
				return &ScopeError{Arg: k, Reason: "not an address or a list of addresses"}
			}
			for _, a := range addrs {
				d := domainOf(a)
				if d == "" {
					return &ScopeError{Arg: k, Value: a, Reason: "not an email address"}
				}
				if !MatchHost(d, s.Domains) {
					return &ScopeError{Arg: k, Value: a, Reason: "domain " + d + " is not in scope.domains (" + strings.Join(s.Domains, ", ") + ")"}
				}
			}
		}
	}
	if len(s.Schemas) > 0 {
		for _, k := range [...]string{"schema", "database"} {
			if v, ok := args[k]; ok {
				str, isStr := v.(string)
				if !isStr {
					return &ScopeError{Arg: k, Reason: "not a string"}
				}
				if !containsFold(s.Schemas, str) {
					return &ScopeError{Arg: k, Value: str, Reason: "schema is not in scope.schemas (" + strings.Join(s.Schemas, ", ") + ")"}
				}
			}
		}
		for _, k := range [...]string{"query", "sql", "statement"} {
			v, ok := args[k]
			if !ok {
				continue
			}
			str, isStr := v.(string)
			if !isStr {
				return &ScopeError{Arg: k, Reason: "not a string"}
			}
			for _, sch := range SQLSchemas(str) {
				if !containsFold(s.Schemas, sch) {
					return &ScopeError{Arg: k, Value: sch, Reason: "schema is not in scope.schemas (" + strings.Join(s.Schemas, ", ") + ")"}
				}
			}
		}
	}
	if len(s.Hosts) > 0 {
		if v, ok := args["url"]; ok {
			str, isStr := v.(string)
			if !isStr {
				return &ScopeError{Arg: "url", Reason: "not a string"}
			}
			u, err := url.Parse(strings.TrimSpace(str))
			if err != nil || u.Host == "" {
				return &ScopeError{Arg: "url", Value: str, Reason: "not an absolute URL with a host"}
			}
			if h := normHost(u.Hostname()); !MatchHost(h, s.Hosts) {
				return &ScopeError{Arg: "url", Value: str, Reason: "host " + h + " is not in scope.hosts (" + strings.Join(s.Hosts, ", ") + ")"}
			}
		}
		if v, ok := args["host"]; ok {
			str, isStr := v.(string)
			if !isStr {
				return &ScopeError{Arg: "host", Reason: "not a string"}
			}
			if h := hostOf(str); h == "" || !MatchHost(h, s.Hosts) {
				return &ScopeError{Arg: "host", Value: str, Reason: "host is not in scope.hosts (" + strings.Join(s.Hosts, ", ") + ")"}
			}
		}
	}
	if len(s.Paths) > 0 {
		if v, ok := args["path"]; ok {
			str, isStr := v.(string)
			if !isStr {
				return &ScopeError{Arg: "path", Reason: "not a string"}
			}
			if !PathWithin(str, s.Paths) {
				return &ScopeError{Arg: "path", Value: str, Reason: "not under scope.paths (" + strings.Join(s.Paths, ", ") + ")"}
			}
		}
	}
	return nil
}

// PathWithin reports whether p, after path.Clean, is one of prefixes or
// below one ("/srv/data" allows "/srv/data/x" but not "/srv/database"). A
// path holding a NUL byte is never within.
func PathWithin(p string, prefixes []string) bool {
	if p == "" || strings.IndexByte(p, 0) >= 0 {
		return false
	}
	c := path.Clean(p)
	for _, pre := range prefixes {
		pc := path.Clean(pre)
		if c == pc || pc == "/" && strings.HasPrefix(c, "/") || strings.HasPrefix(c, pc+"/") {
			return true
		}
	}
	return false
}

// MatchHost reports whether host (lower case, no trailing dot) matches one of
// patterns: an exact host, or "*.suffix" for any subdomain of suffix (not
// suffix itself). Patterns are compared case-insensitively.
func MatchHost(host string, patterns []string) bool {
	host = normHost(host)
	if host == "" {
		return false
	}
	for _, p := range patterns {
		p = normHost(p)
		if suf, ok := strings.CutPrefix(p, "*."); ok {
			if len(host) > len(suf)+1 && strings.HasSuffix(host, "."+suf) {
				return true
			}
			continue
		}
		if host == p {
			return true
		}
	}
	return false
}

// OwnsHost reports whether host is one of the org's hosts (exact or *.suffix).
func (o *Org) OwnsHost(host string) bool { return o != nil && MatchHost(host, o.Hosts) }

// OwnsMailDomain reports whether an email domain is one of the org's mail domains.
func (o *Org) OwnsMailDomain(domain string) bool {
	return o != nil && MatchHost(domain, o.MailDomains)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// addressList reads a recipients argument: a string with one address or
// several separated by commas, or a list of such strings.
func addressList(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return splitAddresses(x), true
	case []string:
		var out []string
		for _, s := range x {
			out = append(out, splitAddresses(s)...)
		}
		return out, true
	case []any:
		var out []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, splitAddresses(s)...)
		}
		return out, true
	}
	return nil, false
}

func splitAddresses(s string) []string {
	if t := strings.TrimSpace(s); t != "" && !strings.ContainsAny(t, "<>\"(),;: \t\r\n\\") {
		return []string{t} // a bare address: the common case, no parsing needed
	}
	if list, err := mail.ParseAddressList(s); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []string{s} // an empty recipient is not an address: outside any scope
	}
	return out
}

// SQLSchemas returns the schemas a SQL text names: the qualifier of every
// table after FROM, JOIN, INTO, UPDATE, TABLE, TRUNCATE (schema.table, or
// the middle part of catalog.schema.table), the name after SCHEMA, DATABASE
// and USE, and the values of SET search_path. String literals, quoted
// strings and comments are skipped. Unqualified tables are resolved by the
// database's own search path and are not reported. It is a light check, not
// a SQL parser: a schema reached through a function call or a column
// reference without a table is not seen.
func SQLSchemas(q string) []string {
	toks := sqlTokens(q)
	var out []string
	add := func(s string) {
		for _, o := range out {
			if strings.EqualFold(o, s) {
				return
			}
		}
		out = append(out, s)
	}
	// name reads a dotted name at i; it returns its parts and the next index.
	name := func(i int) ([]string, int) {
		var parts []string
		for i < len(toks) && toks[i].ident() {
			parts = append(parts, toks[i].text)
			i++
			if i < len(toks) && toks[i].text == "." {
				i++
				continue
			}
			break
		}
		return parts, i
	}
	skipWords := func(i int, words ...string) int {
		for i < len(toks) && toks[i].kind == tokWord {
			hit := false
			for _, w := range words {
				if strings.EqualFold(toks[i].text, w) {
					hit = true
					break
				}
			}
			if !hit {
				break
			}
			i++
		}
		return i
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind != tokWord {
			continue
		}
		kw := strings.ToUpper(t.text)
		switch kw {
		case "FROM", "JOIN", "INTO", "UPDATE", "TABLE", "TRUNCATE":
			j := skipWords(i+1, "ONLY", "IF", "NOT", "EXISTS", "TABLE", "LATERAL")
			for {
				parts, next := name(j)
				if len(parts) >= 2 {
					add(parts[len(parts)-2])
				}
				if len(parts) == 0 || kw != "FROM" {
					break
				}
				// FROM a.t [AS] x, b.u y …
				next = skipWords(next, "AS")
				if next < len(toks) && toks[next].ident() && !isSQLKeyword(toks[next].text) {
					next++
				}
				if next < len(toks) && toks[next].text == "," {
					j = next + 1
					continue
				}
				break
			}
		case "SCHEMA", "DATABASE", "USE":
			j := skipWords(i+1, "IF", "NOT", "EXISTS")
			if j < len(toks) && (toks[j].ident() || toks[j].kind == tokString) && !isSQLKeyword(toks[j].text) {
				add(toks[j].text)
			}
		case "SEARCH_PATH":
			for j := i + 1; j < len(toks) && toks[j].text != ";"; j++ {
				if toks[j].text == "," || toks[j].text == "=" || strings.EqualFold(toks[j].text, "TO") {
					continue
				}
				if toks[j].ident() || toks[j].kind == tokString {
					add(toks[j].text)
				}
			}
		}
	}
	return out
}

var sqlKeywords = map[string]bool{
	"WHERE": true, "JOIN": true, "INNER": true, "LEFT": true, "RIGHT": true, "FULL": true, "OUTER": true,
	"CROSS": true, "NATURAL": true, "ON": true, "USING": true, "GROUP": true, "ORDER": true, "LIMIT": true,
	"OFFSET": true, "UNION": true, "EXCEPT": true, "INTERSECT": true, "HAVING": true, "WINDOW": true,
	"SET": true, "VALUES": true, "SELECT": true, "RETURNING": true, "FOR": true, "AS": true, "LATERAL": true,
}

func isSQLKeyword(s string) bool { return sqlKeywords[strings.ToUpper(s)] }

type tokKind uint8

const (
	tokWord   tokKind = iota // bare identifier or keyword
	tokQuoted                // "ident", `ident`, [ident]
	tokString                // 'literal'
	tokPunct
)

type sqlToken struct {
	kind tokKind
	text string
}

func (t sqlToken) ident() bool { return t.kind == tokWord || t.kind == tokQuoted }

// sqlTokens splits SQL into words, quoted identifiers, strings and
// punctuation, dropping comments and whitespace. Numbers come out as words.
func sqlTokens(q string) []sqlToken {
	var toks []sqlToken
	n := len(q)
	for i := 0; i < n; {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < n && q[i+1] == '-':
			for i < n && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return toks
			}
			i += end + 4
		case c == '\'':
			s, next := quoted(q, i, '\'')
			toks = append(toks, sqlToken{tokString, s})
			i = next
		case c == '"' || c == '`':
			s, next := quoted(q, i, c)
			toks = append(toks, sqlToken{tokQuoted, s})
			i = next
		case c == '[':
			end := strings.IndexByte(q[i:], ']')
			if end < 0 {
				return toks
			}
			toks = append(toks, sqlToken{tokQuoted, q[i+1 : i+end]})
			i += end + 1
		case c == '$':
			// PostgreSQL dollar quoting: $tag$ … $tag$
			j := i + 1
			for j < n && (isWordByte(q[j])) {
				j++
			}
			if j < n && q[j] == '$' {
				tag := q[i : j+1]
				end := strings.Index(q[j+1:], tag)
				if end < 0 {
					return toks
				}
				toks = append(toks, sqlToken{tokString, q[j+1 : j+1+end]})
				i = j + 1 + end + len(tag)
				continue
			}
			toks = append(toks, sqlToken{tokPunct, "$"})
			i++
		case isWordByte(c) || c >= 0x80:
			j := i
			for j < n && (isWordByte(q[j]) || q[j] == '$' || q[j] >= 0x80) {
				j++
			}
			toks = append(toks, sqlToken{tokWord, q[i:j]})
			i = j
		default:
			toks = append(toks, sqlToken{tokPunct, q[i : i+1]})
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// quoted reads a quoted token starting at q[i] == quote, where a doubled
// quote stands for itself; it returns the unquoted text and the next index.
func quoted(q string, i int, quote byte) (string, int) {
	var b strings.Builder
	j := i + 1
	for j < len(q) {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				b.WriteByte(quote)
				j += 2
				continue
			}
			return b.String(), j + 1
		}
		if quote == '\'' && q[j] == '\\' && j+1 < len(q) {
			b.WriteByte(q[j+1])
			j += 2
			continue
		}
		b.WriteByte(q[j])
		j++
	}
	return b.String(), len(q)
}

package risk

import (
	"strings"
)

// SQL token kinds.
const (
	tokWord   = iota // keyword or bare identifier
	tokIdent         // quoted identifier: "x", `x`, [x]
	tokString        // '…', E'…', $tag$…$tag$
	tokNumber
	tokPunct // ; ( ) , . and operators
)

type sqlToken struct {
	kind  int
	text  string // words upper-cased; identifiers and strings unquoted
	raw   string // as written (words keep their case)
	depth int    // parenthesis depth
}

// tokenizeSQL splits a query into tokens, dropping comments (-- …, # …,
// nested /* … */) and keeping string literals, quoted identifiers and dollar
// quotes as single tokens so keywords inside them never count.
func tokenizeSQL(q string) []sqlToken {
	var toks []sqlToken
	depth := 0
	n := len(q)
	for i := 0; i < n; {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < n && q[i+1] == '-', c == '#':
			for i < n && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && q[i+1] == '*':
			lvl := 0
			for i < n {
				if i+1 < n && q[i] == '/' && q[i+1] == '*' {
					lvl++
					i += 2
				} else if i+1 < n && q[i] == '*' && q[i+1] == '/' {
					lvl--
					i += 2
					if lvl == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'' || ((c == 'E' || c == 'e') && i+1 < n && q[i+1] == '\''):
			esc := c != '\''
			if esc {
				i++
			}
			j := i + 1
			var b strings.Builder
			for j < n {
				if esc && q[j] == '\\' && j+1 < n {
					b.WriteByte(q[j+1])
					j += 2
					continue
				}
				if q[j] == '\'' {
					if j+1 < n && q[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(q[j])
				j++
			}
			toks = append(toks, sqlToken{kind: tokString, text: b.String(), raw: q[i:min(j+1, n)], depth: depth})
			i = j + 1
		case c == '"' || c == '`':
			j := i + 1
			var b strings.Builder
			for j < n {
				if q[j] == c {
					if j+1 < n && q[j+1] == c {
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(q[j])
				j++
			}
			toks = append(toks, sqlToken{kind: tokIdent, text: b.String(), raw: q[i:min(j+1, n)], depth: depth})
			i = j + 1
		case c == '$':
			// $1 parameter, or $tag$ … $tag$ dollar quote.
			j := i + 1
			for j < n && (isAlnum(q[j]) || q[j] == '_') {
				j++
			}
			if j < n && q[j] == '$' && (j == i+1 || !isDigit(q[i+1])) {
				tag := q[i : j+1]
				end := strings.Index(q[j+1:], tag)
				body := ""
				next := n
				if end >= 0 {
					body = q[j+1 : j+1+end]
					next = j + 1 + end + len(tag)
				} else {
					body = q[j+1:]
				}
				toks = append(toks, sqlToken{kind: tokString, text: body, raw: q[i:next], depth: depth})
				i = next
				continue
			}
			toks = append(toks, sqlToken{kind: tokWord, text: strings.ToUpper(q[i:j]), raw: q[i:j], depth: depth})
			i = j
		case isDigit(c):
			j := i
			for j < n && (isAlnum(q[j]) || q[j] == '.') {
				j++
			}
			toks = append(toks, sqlToken{kind: tokNumber, text: q[i:j], raw: q[i:j], depth: depth})
			i = j
		case isWordByte(c):
			j := i
			for j < n && (isWordByte(q[j]) || isDigit(q[j]) || q[j] == '$') {
				j++
			}
			toks = append(toks, sqlToken{kind: tokWord, text: strings.ToUpper(q[i:j]), raw: q[i:j], depth: depth})
			i = j
		case c == '(':
			toks = append(toks, sqlToken{kind: tokPunct, text: "(", raw: "(", depth: depth})
			depth++
			i++
		case c == ')':
			if depth > 0 {
				depth--
			}
			toks = append(toks, sqlToken{kind: tokPunct, text: ")", raw: ")", depth: depth})
			i++
		default:
			j := i + 1
			if strings.ContainsRune("<>!=|:", rune(c)) {
				for j < n && j < i+3 && strings.ContainsRune("<>=|:", rune(q[j])) {
					j++
				}
			}
			toks = append(toks, sqlToken{kind: tokPunct, text: q[i:j], raw: q[i:j], depth: depth})
			i = j
		}
	}
	return toks
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func isWordByte(b byte) bool {
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b == '_' || b >= 0x80
}

// splitStatements splits tokens on top-level semicolons, dropping empty statements.
func splitStatements(toks []sqlToken) [][]sqlToken {
	var out [][]sqlToken
	start := 0
	for i, t := range toks {
		if t.kind == tokPunct && t.text == ";" {
			if i > start {
				out = append(out, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

// sqlFacts is what the SQL analysis learned about a query.
type sqlFacts struct {
	statements  int
	verbs       []string
	tables      []string // tables read or written
	sensitive   string   // detail of a read of personal or credential data
	payees      []string // string values inserted into payee-like tables
	payeeTable  string
	findings    []finding
	destructive bool
}

var sqlClauseEnd = setOf("ORDER", "GROUP", "LIMIT", "RETURNING", "HAVING", "UNION", "EXCEPT", "INTERSECT", "OFFSET", "FETCH", "FOR", "WINDOW")

var sensitiveTableHints = []string{"customer", "user", "account", "payment", "card", "employee", "patient", "member", "person", "people", "contact", "salar", "payroll", "credential", "secret", "password", "token", "client", "subscriber", "ssn", "identity"}

var piiColumns = setOf("EMAIL", "EMAILS", "EMAIL_ADDRESS", "PHONE", "PHONE_NUMBER", "MOBILE", "SSN", "DOB", "DATE_OF_BIRTH", "BIRTHDATE", "BIRTH_DATE", "ADDRESS", "STREET", "CARD_NUMBER", "PAN", "IBAN", "PASSWORD", "PASSWORD_HASH", "SALARY", "FULL_NAME", "FIRST_NAME", "LAST_NAME", "NATIONAL_ID", "PASSPORT", "TAX_ID", "API_KEY", "SECRET", "TOKEN", "CVV")

var payeeTableHints = []string{"payee", "vendor", "supplier", "beneficiar", "counterpart", "recipient", "bank_account"}

// analyzeSQL inspects one query.
func analyzeSQL(q string) sqlFacts {
	toks := tokenizeSQL(q)
	stmts := splitStatements(toks)
	var f sqlFacts
	f.statements = len(stmts)
	for si, st := range stmts {
		before := len(f.findings)
		analyzeStatement(st, &f)
		if si > 0 && len(f.findings) > before {
			for k := before; k < len(f.findings); k++ {
				f.findings[k].detail = "stacked statement " + itoa(si+1) + ": " + f.findings[k].detail
				if f.findings[k].weight >= 0.5 {
					f.findings[k].weight = 1 // a destructive statement smuggled after another
				}
			}
		}
	}
	if len(stmts) > 1 && !f.destructive {
		f.findings = append(f.findings, finding{FactorDestructiveSQL, 0.25, itoa(len(stmts)) + " statements stacked in one query"})
	}
	return f
}

func tableAfter(st []sqlToken, i int) (string, int) {
	for i < len(st) {
		t := st[i]
		if t.kind == tokWord && (t.text == "TABLE" || t.text == "ONLY" || t.text == "IF" || t.text == "EXISTS" || t.text == "FROM" || t.text == "INTO" || t.text == "NOT") {
			i++
			continue
		}
		break
	}
	if i >= len(st) || (st[i].kind != tokWord && st[i].kind != tokIdent) {
		return "", i
	}
	name := st[i].raw
	if st[i].kind == tokIdent {
		name = st[i].text
	}
	i++
	for i+1 < len(st) && st[i].kind == tokPunct && st[i].text == "." && (st[i+1].kind == tokWord || st[i+1].kind == tokIdent) {
		part := st[i+1].raw
		if st[i+1].kind == tokIdent {
			part = st[i+1].text
		}
		name += "." + part
		i += 2
	}
	return name, i
}

func analyzeStatement(st []sqlToken, f *sqlFacts) {
	add := func(w float64, d string) {
		f.findings = append(f.findings, finding{FactorDestructiveSQL, w, d})
		if w >= 0.5 {
			f.destructive = true
		}
	}
	for i := 0; i < len(st); i++ {
		t := st[i]
		if t.kind != tokWord {
			continue
		}
		prev := ""
		if i > 0 && st[i-1].kind == tokWord {
			prev = st[i-1].text
		}
		switch t.text {
		case "SELECT":
			f.verbs = append(f.verbs, "SELECT")
			sensitiveSelect(st, i, f)
		case "DROP":
			if i+1 >= len(st) || st[i+1].kind != tokWord {
				continue
			}
			obj := st[i+1].text
			name, _ := tableAfter(st, i+2)
			switch obj {
			case "TABLE", "DATABASE", "SCHEMA", "OWNED":
				if obj == "TABLE" && tempTable(name) {
					add(0.7, "DROP TABLE "+name+" (a temporary-looking table)")
				} else {
					add(1, "DROP "+obj+" "+name)
				}
			case "COLUMN", "CONSTRAINT", "PARTITION":
				add(0.9, "DROP "+obj+" "+name)
			case "VIEW", "INDEX", "FUNCTION", "TRIGGER", "USER", "ROLE", "POLICY", "SEQUENCE", "TYPE", "EXTENSION", "PROCEDURE", "MATERIALIZED":
				add(0.6, "DROP "+obj+" "+name)
			default:
				continue
			}
			f.verbs = append(f.verbs, "DROP")
		case "TRUNCATE":
			name, _ := tableAfter(st, i+1)
			d := "TRUNCATE " + name
			for _, x := range st[i:] {
				if x.kind == tokWord && x.text == "CASCADE" {
					d += " CASCADE"
					break
				}
			}
			add(1, d)
			f.verbs = append(f.verbs, "TRUNCATE")
			f.tables = append(f.tables, name)
		case "DELETE":
			if prev == "ON" { // ON DELETE CASCADE in DDL
				continue
			}
			name, j := tableAfter(st, i+1)
			if name == "" {
				continue
			}
			f.verbs = append(f.verbs, "DELETE")
			f.tables = append(f.tables, name)
			if w, d := whereCheck(st, j, t.depth); w > 0 {
				add(w, "DELETE "+d+" on "+name)
			}
		case "UPDATE":
			if prev == "FOR" || prev == "DO" || prev == "ON" || prev == "KEY" || prev == "NO" {
				continue
			}
			name, j := tableAfter(st, i+1)
			if name == "" {
				continue
			}
			hasSet := false
			for k := j; k < len(st); k++ {
				if st[k].kind == tokWord && st[k].text == "SET" && st[k].depth == t.depth {
					hasSet = true
					break
				}
			}
			if !hasSet {
				continue
			}
			f.verbs = append(f.verbs, "UPDATE")
			f.tables = append(f.tables, name)
			lowName := strings.ToLower(name)
			for _, h := range payeeTableHints {
				if strings.Contains(lowName, h) {
					f.payeeTable = name // bank details of a payee changed
					for _, x := range st[j:] {
						if x.kind == tokString && len(x.text) >= 3 {
							f.payees = append(f.payees, x.text)
						}
					}
					break
				}
			}
			if w, d := whereCheck(st, j, t.depth); w > 0 {
				add(w, "UPDATE "+d+" on "+name)
			}
		case "ALTER":
			if i+1 >= len(st) || st[i+1].kind != tokWord {
				continue
			}
			obj := st[i+1].text
			name, _ := tableAfter(st, i+2)
			f.verbs = append(f.verbs, "ALTER")
			w, d := 0.5, "ALTER "+obj+" "+name
			for _, x := range st[i+2:] {
				if x.kind == tokWord && (x.text == "DROP") {
					w, d = 0.9, "ALTER "+obj+" "+name+" … DROP"
					break
				}
				if x.kind == tokWord && (x.text == "SUPERUSER" || x.text == "OWNER" || x.text == "PASSWORD" || x.text == "BYPASSRLS") {
					w, d = 0.8, "ALTER "+obj+" "+name+" … "+x.text
					break
				}
			}
			if obj == "USER" || obj == "ROLE" {
				w = max(w, 0.7)
			}
			add(w, d)
		case "GRANT", "REVOKE":
			if prev == "WITH" { // WITH GRANT OPTION
				continue
			}
			f.verbs = append(f.verbs, t.text)
			w := 0.6 // GRANT SELECT, REVOKE
			for _, x := range st[i+1:] {
				if x.kind != tokWord {
					continue
				}
				switch x.text {
				case "ALL", "SUPERUSER", "OWNERSHIP", "SYSADMIN", "DBA":
					w = 1
				case "INSERT", "UPDATE", "DELETE", "TRUNCATE", "ALTER", "DROP", "CREATE", "EXECUTE", "REFERENCES", "TRIGGER":
					if t.text == "GRANT" {
						w = max(w, 0.8)
					}
				}
			}
			add(w, t.text+" "+clip(joinRaw(st[i+1:], 6), 60))
		case "COPY":
			for k := i + 1; k < len(st); k++ {
				if st[k].kind == tokWord && st[k].text == "PROGRAM" {
					add(1, "COPY … PROGRAM runs a shell command")
					break
				}
			}
		case "INTO":
			if i+1 < len(st) && st[i+1].kind == tokWord && (st[i+1].text == "OUTFILE" || st[i+1].text == "DUMPFILE") {
				add(0.8, "SELECT INTO "+st[i+1].text+" writes a server file")
				continue
			}
			if prev == "INSERT" {
				name, j := tableAfter(st, i+1)
				f.verbs = append(f.verbs, "INSERT")
				f.tables = append(f.tables, name)
				low := strings.ToLower(name)
				for _, h := range payeeTableHints {
					if strings.Contains(low, h) {
						f.payeeTable = name
						for _, x := range st[j:] {
							if x.kind == tokString && len(x.text) >= 3 {
								f.payees = append(f.payees, x.text)
							}
						}
						break
					}
				}
			}
		case "XP_CMDSHELL", "PG_READ_FILE", "PG_READ_BINARY_FILE", "LO_EXPORT", "LO_IMPORT", "LOAD_FILE", "PG_LS_DIR", "SYS_EXEC", "SYS_EVAL":
			add(1, strings.ToLower(t.text)+" reaches the server's files or shell")
		case "CREATE":
			if i+1 < len(st) && st[i+1].kind == tokWord && (st[i+1].text == "USER" || st[i+1].text == "ROLE") {
				w := 0.6
				for _, x := range st[i+2:] {
					if x.kind == tokWord && (x.text == "SUPERUSER" || x.text == "CREATEROLE" || x.text == "BYPASSRLS") {
						w = 1
					}
				}
				add(w, "CREATE "+st[i+1].text+" "+clip(joinRaw(st[i+2:], 6), 50))
			}
		}
	}
}

// tempTable reports table names that say they are scratch space.
func tempTable(name string) bool {
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	return strings.HasPrefix(n, "tmp_") || strings.HasPrefix(n, "temp_") || strings.HasPrefix(n, "scratch_") || strings.HasSuffix(n, "_tmp") || strings.HasSuffix(n, "_temp") || strings.HasPrefix(n, "staging_tmp")
}

func joinRaw(st []sqlToken, n int) string {
	var b strings.Builder
	for i, t := range st {
		if i >= n {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.raw)
	}
	return b.String()
}

// sensitiveSelect notes reads of personal or credential data: a sensitive
// table in FROM/JOIN, or personal columns in the select list.
func sensitiveSelect(st []sqlToken, i int, f *sqlFacts) {
	depth := st[i].depth
	var cols []string
	k := i + 1
	for ; k < len(st); k++ {
		t := st[k]
		if t.depth == depth && t.kind == tokWord && t.text == "FROM" {
			break
		}
		if (t.kind == tokWord || t.kind == tokIdent) && piiColumns[strings.ToUpper(t.text)] {
			cols = append(cols, strings.ToLower(t.text))
		}
	}
	var table string
	for ; k < len(st); k++ {
		t := st[k]
		if t.kind == tokWord && (t.text == "FROM" || t.text == "JOIN") {
			name, _ := tableAfter(st, k+1)
			if name == "" {
				continue
			}
			f.tables = append(f.tables, name)
			low := strings.ToLower(name)
			for _, h := range sensitiveTableHints {
				if strings.Contains(low, h) && table == "" {
					table = name
				}
			}
		}
		if t.depth < depth {
			break
		}
	}
	switch {
	case len(cols) > 0 && f.sensitive == "":
		tbl := table
		if tbl == "" && len(f.tables) > 0 {
			tbl = f.tables[len(f.tables)-1]
		}
		f.sensitive = "SELECT of " + strings.Join(cols, ", ") + " from " + tbl
	case table != "" && f.sensitive == "":
		f.sensitive = "SELECT from " + table
	}
}

// whereCheck looks for a WHERE at depth after position j. It returns a weight
// and a description when the statement has none or an always-true one.
func whereCheck(st []sqlToken, j, depth int) (float64, string) {
	for k := j; k < len(st); k++ {
		t := st[k]
		if t.depth < depth {
			break
		}
		if t.depth != depth || t.kind != tokWord {
			continue
		}
		if t.text == "WHERE" {
			if k+1 < len(st) && st[k+1].kind == tokWord && st[k+1].text == "CURRENT" {
				return 0, ""
			}
			end := k + 1
			for end < len(st) && !(st[end].depth < depth || (st[end].depth == depth && st[end].kind == tokWord && sqlClauseEnd[st[end].text])) {
				end++
			}
			if tautology(st[k+1:end], depth) {
				return 1, "with an always-true WHERE (" + clip(joinRaw(st[k+1:end], 8), 40) + ")"
			}
			return 0, ""
		}
	}
	return 1, "without WHERE"
}

// tautology reports whether a WHERE expression is always true: some OR branch
// whose AND terms are all trivially true (1=1, 'a'='a', x=x, TRUE, 1).
func tautology(expr []sqlToken, depth int) bool {
	if len(expr) == 0 {
		return true
	}
	var branches [][]sqlToken
	start := 0
	for i, t := range expr {
		if t.depth == depth && t.kind == tokWord && t.text == "OR" {
			branches = append(branches, expr[start:i])
			start = i + 1
		}
	}
	branches = append(branches, expr[start:])
	for _, b := range branches {
		if trueBranch(b, depth) {
			return true
		}
	}
	return false
}

func trueBranch(b []sqlToken, depth int) bool {
	start := 0
	var terms [][]sqlToken
	for i, t := range b {
		if t.depth == depth && t.kind == tokWord && t.text == "AND" {
			terms = append(terms, b[start:i])
			start = i + 1
		}
	}
	terms = append(terms, b[start:])
	for _, term := range terms {
		if !trueTerm(term) {
			return false
		}
	}
	return true
}

func trueTerm(t []sqlToken) bool {
	// Strip enclosing parentheses.
	for len(t) >= 2 && t[0].text == "(" && t[len(t)-1].text == ")" && t[0].kind == tokPunct {
		t = t[1 : len(t)-1]
	}
	switch len(t) {
	case 1:
		return (t[0].kind == tokWord && t[0].text == "TRUE") || (t[0].kind == tokNumber && t[0].text != "0")
	case 3:
		a, op, b := t[0], t[1], t[2]
		if op.kind != tokPunct && !(op.kind == tokWord && op.text == "LIKE") {
			return false
		}
		lit := func(x sqlToken) bool { return x.kind == tokNumber || x.kind == tokString }
		same := a.kind == b.kind && a.text == b.text
		switch op.text {
		case "=", "==", ">=", "<=", "LIKE":
			return same && (lit(a) || a.kind == tokWord || a.kind == tokIdent)
		case "<>", "!=":
			return lit(a) && lit(b) && !same
		}
	}
	return false
}

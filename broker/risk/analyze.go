package risk

import (
	"fmt"
	"net/mail"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/airlock/airlock"
)

// dest is a place the call sends something: a mail recipient or a network
// target.
type dest struct {
	kind    string // mail, url
	value   string
	host    string
	outside bool
	reason  string
	t       target
	via     string // the argument path or "command"
}

// analysis is everything learned about one call.
type analysis struct {
	call      *airlock.ToolCall
	tool      string
	org       *orgInfo
	leaves    []leaf
	size      sizeStats
	f         findings
	dests     []dest
	sendsData bool
	network   bool
	classes   map[string]string // event classes and factor names → detail
	remotes   map[string]string
	pushes    []string
	payees    []string
	payTo     string
	values    []novel
	extra     []airlock.Factor // policy chains with their own points
	uploads   []string         // local files a command sends (curl -F @file)
}

type novel struct{ kind, value string }

var reURL = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

var (
	recipientKeys = setOf("to", "cc", "bcc", "recipient", "recipients", "email_to", "to_address", "to_addresses", "reply_to", "forward_to", "send_to", "emails")
	urlKeys       = setOf("url", "uri", "endpoint", "href", "link", "webhook", "webhook_url", "callback", "callback_url", "target_url", "base_url", "host", "hostname", "server", "address", "domain", "remote", "remote_url", "repo_url", "image_url", "feed_url")
	sqlKeys       = setOf("query", "sql", "statement", "stmt", "sql_query")
	shellKeys     = setOf("command", "cmd", "script", "shell", "bash", "commandline", "command_line")
	codeKeys      = setOf("code", "source_code", "program", "python")
	identKeys     = setOf("user", "username", "user_id", "member", "principal", "account", "to", "cc", "bcc", "recipient", "recipients",
		"email", "path", "file", "file_path", "filename", "host", "url", "domain", "name", "table", "role", "from", "payee", "id", "login", "handle", "owner", "assignee")
	skipInjectionKeys = setOf("url", "uri", "path", "file_path", "filename", "id", "method", "table", "role", "amount", "currency", "from", "to", "cc", "bcc", "user")
)

// analyze runs every per-call detector.
func (s *Scorer) analyze(call *airlock.ToolCall) *analysis {
	a := &analysis{call: call, tool: strings.ToLower(call.Tool), org: s.orgFor(call.Org), classes: map[string]string{}, remotes: map[string]string{}}
	a.leaves, a.size = walk(call.Arguments)
	a.oversized()

	sqlTool := containsAny(a.tool, "sql", "database", "db_query", "query_db", "postgres", "mysql", "sqlite", "bigquery", "snowflake", "clickhouse") ||
		a.tool == "query" || a.tool == "run_query"
	searchTool := containsAny(a.tool, "search", "faq", "web", "find", "lookup", "browse", "ask")
	shellTool := containsAny(a.tool, "shell", "bash", "terminal", "exec", "run_command", "command", "ssh", "console")
	pyTool := containsAny(a.tool, "python", "notebook", "jupyter", "ipython")
	write := writeTool(a.tool)

	var shellText []string
	shellArgv := map[string][]string{}
	for _, l := range a.leaves {
		if l.isNum {
			continue
		}
		s := l.s
		base := l.key
		if w, d := termCheck(s); w > 0 {
			a.f.add(FactorTerminalEscape, w, d+" in "+l.path)
		}
		for _, u := range unicodeCheck(s, identKeys[base]) {
			a.f.add(FactorUnicode, u.weight, u.detail+" in "+l.path)
		}
		if !skipInjectionKeys[base] && !shellKeys[base] {
			if w, d := injectionCheck(s); w > 0 {
				a.f.add(FactorInjection, w, d+" in "+l.path)
			}
		}
		switch {
		case recipientKeys[base] || (base == "email" && containsAny(a.tool, "mail", "send", "share", "invite", "notify")):
			for _, addr := range parseAddresses(s) {
				a.addMail(addr, l.path)
			}
		case urlKeys[base] && s != "" && (strings.Contains(s, "://") || strings.HasPrefix(strings.ToLower(s), "file:") || hostLike(s)):
			if t, ok := parseTarget(s); ok {
				a.addURL(t, l.path)
			}
		case pathKeys[base] && s != "":
			a.checkPath(s, l.path, write)
		case sqlKeys[base] && !searchTool && (sqlTool || base != "query" || looksLikeSQL(s)):
			a.checkSQL(s, l.path)
		case shellKeys[base] && (shellTool || base != "script" || !pyTool):
			if strings.Contains(l.path, "[") && strings.HasSuffix(l.path, "]") {
				// An argv array: join its elements.
				p := l.path[:strings.LastIndexByte(l.path, '[')]
				shellArgv[p] = append(shellArgv[p], shellQuote(s))
				continue
			}
			shellText = append(shellText, s)
		case codeKeys[base] || (base == "script" && pyTool) || (pyTool && (base == "source" || base == "input")):
			if shellTool && !pyTool && !strings.Contains(s, "import ") && !strings.Contains(s, "(") {
				shellText = append(shellText, s)
			} else {
				facts := analyzePython(s, 0) // Python, or code with shell strings in calls
				a.mergeShell(&facts, l.path)
			}
		case (base == "args" || base == "argv") && shellTool:
			p := l.path
			if i := strings.LastIndexByte(p, '['); i > 0 {
				p = p[:i]
			}
			shellArgv[p] = append(shellArgv[p], shellQuote(s))
			continue
		}
	}
	argvKeys := make([]string, 0, len(shellArgv))
	for k := range shellArgv {
		argvKeys = append(argvKeys, k)
	}
	slices.Sort(argvKeys)
	for _, k := range argvKeys {
		shellText = append(shellText, strings.Join(shellArgv[k], " "))
	}
	for _, cmd := range shellText {
		facts := analyzeShell(cmd, 0)
		a.mergeShell(&facts, "command")
	}
	a.secrets()
	a.toolSpecific()
	a.egress()
	a.exfiltration()
	for name, b := range a.f.best {
		if _, ok := a.classes[name]; !ok {
			a.classes[name] = b.detail
		}
	}
	a.classes["tool:"+a.tool] = a.tool
	return a
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func shellQuote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n'\"$`\\|&;<>()*?[]{}~!#") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

func looksLikeSQL(s string) bool {
	t := tokenizeSQL(cutUTF8(s, 256))
	if len(t) < 2 || t[0].kind != tokWord {
		return false
	}
	switch t[0].text {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "DROP", "TRUNCATE", "ALTER", "GRANT", "REVOKE", "CREATE", "WITH", "MERGE", "REPLACE", "COPY", "EXPLAIN", "UPSERT":
		return true
	}
	return false
}

func (a *analysis) oversized() {
	st := a.size
	switch {
	case st.bytes > 1<<20:
		a.f.add(FactorOversized, 1, fmt.Sprintf("arguments are %s (broker limit 1 MiB)", humanBytes(st.bytes)))
	case st.bytes > 512<<10:
		a.f.add(FactorOversized, 0.8, fmt.Sprintf("arguments are %s", humanBytes(st.bytes)))
	case st.bytes > 256<<10:
		a.f.add(FactorOversized, 0.5, fmt.Sprintf("arguments are %s", humanBytes(st.bytes)))
	case st.bytes > 64<<10:
		a.f.add(FactorOversized, 0.3, fmt.Sprintf("arguments are %s", humanBytes(st.bytes)))
	}
	switch {
	case st.depth > 32:
		a.f.add(FactorOversized, 1, fmt.Sprintf("arguments nested %d levels deep (at %s)", st.depth, clip(st.deepAt, 40)))
	case st.depth > 16:
		a.f.add(FactorOversized, 0.5, fmt.Sprintf("arguments nested %d levels deep", st.depth))
	}
	switch {
	case st.keys > 10000:
		a.f.add(FactorOversized, 1, fmt.Sprintf("%d object keys (%d in %s)", st.keys, st.maxKeys, st.maxKeyAt))
	case st.keys > 1000:
		a.f.add(FactorOversized, 0.6, fmt.Sprintf("%d object keys", st.keys))
	}
	switch {
	case st.maxArray > 10000:
		a.f.add(FactorOversized, 1, fmt.Sprintf("an array of %d elements", st.maxArray))
	case st.maxArray > 1000:
		a.f.add(FactorOversized, 0.4, fmt.Sprintf("an array of %d elements", st.maxArray))
	}
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// parseAddresses extracts mail addresses from "a@x, B <b@y>".
func parseAddresses(s string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == '\n' }) {
		part = strings.TrimSpace(part)
		if part == "" || !strings.Contains(part, "@") {
			continue
		}
		if m, err := mail.ParseAddress(part); err == nil {
			out = append(out, m.Address)
			continue
		}
		if i := strings.LastIndexByte(part, '<'); i >= 0 {
			part = strings.TrimSuffix(part[i+1:], ">")
		}
		out = append(out, strings.TrimSpace(part))
	}
	return out
}

func mailDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(addr[i+1:]), "."))
}

// outsideHost decides whether a host is outside the org, and says why.
func (a *analysis) outsideHost(host string, isMail bool) (bool, string) {
	host = strings.ToLower(host)
	if a.org != nil {
		if a.org.hostInside(host) {
			return false, ""
		}
		return true, "outside " + a.org.domainsText()
	}
	if isMail && inSet(freeMail, host) {
		return true, "at free-mail provider " + registrable(host)
	}
	if pasteKind(host) > 0 {
		return true, "at paste/file-drop site " + registrable(host)
	}
	if ip, ok := parseIPAny(host); ok && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
		return true, "a raw public IP address"
	}
	return false, ""
}

func (a *analysis) addMail(addr, via string) {
	d := mailDomain(addr)
	if d == "" {
		return
	}
	out, why := a.outsideHost(d, true)
	a.dests = append(a.dests, dest{kind: "mail", value: addr, host: d, outside: out, reason: why, via: via})
	a.values = append(a.values, novel{"recipient", strings.ToLower(addr)})
	a.sendsData = true
}

func (a *analysis) addURL(t target, via string) {
	out := false
	why := ""
	internal := t.ip.IsValid() && (t.ip.IsPrivate() || t.ip.IsLoopback() || t.ip.IsLinkLocalUnicast() || t.ip.IsUnspecified())
	if !internal && !t.ip.IsValid() {
		if w, _ := ssrfCheck(target{host: t.host, raw: t.raw}); w > 0 {
			internal = true // localhost names, metadata names, rebinding domains
		}
	}
	if t.host != "" && !internal && t.scheme != "file" {
		out, why = a.outsideHost(t.host, false)
	}
	a.dests = append(a.dests, dest{kind: "url", value: t.raw, host: t.host, outside: out, reason: why, t: t, via: via})
	if !out && t.host != "" && containsAny(strings.ToLower(t.path), "customer", "user", "member", "employee", "patient", "payroll", "export", "contacts", "accounts", "people") {
		a.classes["sensitive_read"] = "fetch of " + clip(t.host+t.path, 60)
	}
	if t.host != "" {
		a.values = append(a.values, novel{"host", t.host})
	}
	a.network = true
}

func (a *analysis) checkPath(p, via string, write bool) {
	if w, d := sensitivePath(p); w > 0 {
		a.f.add(FactorSensitivePath, w, d+" ("+via+")")
		if !write && w >= 0.5 {
			a.classes["credential_read"] = d
		}
	}
	if write {
		if w, why := systemPath(expandHome(p)); w > 0 {
			a.f.add(FactorSensitivePath, w, "writes "+why+" ("+via+")")
		}
	} else if configFile(p) {
		a.classes["config_read"] = "read of " + clip(p, 60)
	} else if dataFile(p) {
		a.classes["sensitive_read"] = "read of data file " + clip(p, 60)
	}
	a.values = append(a.values, novel{"path", pathPrefix(p)})
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		return "/home/user/" + p[2:]
	}
	return p
}

// configFile reports whether a path names a configuration file, which often
// holds credentials.
func configFile(p string) bool {
	lp := strings.ToLower(p)
	base := path.Base(lp)
	switch base {
	case "docker-compose.yml", "docker-compose.yaml", "compose.yaml", "values.yaml", "settings.py", "local_settings.py",
		"database.yml", "wp-config.php", "config.php", "terraform.tfvars", "application.properties", ".npmrc", ".pypirc":
		return true
	}
	switch path.Ext(base) {
	case ".yaml", ".yml", ".json", ".toml", ".ini", ".conf", ".cfg", ".properties", ".env", ".xml", ".tfvars", ".hcl":
	default:
		return strings.Contains(base, ".env")
	}
	return containsAny(lp, "config", "settings", "secret", "credential", "conf/", ".env", "application", "appsettings", "deploy", "infra", "k8s", "helm", "terraform", "prod")
}

// dataFile reports whether a path looks like a data export or dump that may
// hold personal records.
func dataFile(p string) bool {
	lp := strings.ToLower(p)
	base := path.Base(lp)
	switch path.Ext(base) {
	case ".sql", ".dump", ".bak", ".db", ".sqlite", ".sqlite3", ".parquet", ".xlsx", ".csv", ".tsv", ".jsonl", ".ndjson":
		return containsAny(base, "customer", "user", "client", "member", "patient", "employee", "payroll", "salar", "export", "dump", "backup", "pii", "contact", "account", "subscriber", "lead") ||
			path.Ext(base) == ".sql" || path.Ext(base) == ".dump" || path.Ext(base) == ".bak" || path.Ext(base) == ".db" || path.Ext(base) == ".sqlite" || path.Ext(base) == ".sqlite3"
	}
	return false
}

func pathPrefix(p string) string {
	c := path.Clean(strings.ReplaceAll(p, "\\", "/"))
	parts := strings.Split(c, "/")
	if strings.HasPrefix(c, "/") {
		parts = parts[1:]
		if len(parts) > 2 {
			parts = parts[:2]
		}
		return "/" + strings.Join(parts, "/")
	}
	if len(parts) > 2 {
		parts = parts[:2]
	} else if len(parts) > 1 {
		parts = parts[:1]
	}
	return strings.Join(parts, "/")
}

func (a *analysis) checkSQL(q, via string) {
	f := analyzeSQL(q)
	for _, x := range f.findings {
		a.f.add(x.name, x.weight, x.detail)
	}
	if f.sensitive != "" {
		a.classes["sensitive_read"] = f.sensitive
	}
	if len(f.payees) > 0 {
		a.payees = append(a.payees, f.payees...)
		a.classes["payee_created"] = "a change to " + f.payeeTable
	}
	for _, t := range f.tables {
		if t != "" {
			a.values = append(a.values, novel{"table", strings.ToLower(t)})
		}
	}
}

func (a *analysis) mergeShell(f *shellFacts, via string) {
	for _, x := range f.findings {
		a.f.add(x.name, x.weight, x.detail)
	}
	seen := map[string]bool{}
	for i, p := range f.paths {
		if i >= 32 || seen[p] {
			continue
		}
		seen[p] = true
		if w, d := sensitivePath(p); w > 0 {
			a.f.add(FactorSensitivePath, w, d+" (in "+via+")")
			if w >= 0.5 {
				a.classes["credential_read"] = d
			}
		}
	}
	for i, u := range f.urls {
		if i >= 16 {
			break
		}
		if t, ok := parseTarget(u); ok {
			a.addURL(t, via)
		}
	}
	for k, v := range f.remotes {
		a.remotes[k] = v
	}
	a.pushes = append(a.pushes, f.pushes...)
	a.uploads = append(a.uploads, f.uploads...)
	if len(f.uploads) > 0 {
		a.sendsData = true
	}
	if f.network != "" {
		a.network = true
		if len(f.pushes) > 0 || strings.Contains(f.network, "nc") || f.network == "curl" || f.network == "scp" || f.network == "rsync" {
			a.sendsData = a.sendsData || len(f.pushes) > 0
		}
	}
}

// secrets scans every string for credentials. A credential in a request
// header is judged by where it goes: to its own vendor or the org it is
// expected; anywhere else it is leaking.
func (a *analysis) secrets() {
	for _, l := range a.leaves {
		if l.isNum || len(l.s) < 8 {
			continue
		}
		hits := findSecrets(l.s)
		if len(hits) == 0 {
			continue
		}
		h := hits[0]
		for _, x := range hits[1:] {
			if x.weight > h.weight {
				h = x
			}
		}
		header := strings.Contains(strings.ToLower(l.path), ".headers") || l.key == "authorization" || l.key == "cookie" || l.key == "x-api-key" || urlKeys[l.key]
		if header {
			hosts := a.urlHosts()
			switch {
			case len(hosts) == 0:
				a.f.add(FactorSecret, h.weight*0.5, h.kind+" in "+l.path)
			case h.vendor != "" && allUnder(hosts, h.vendor):
				a.f.add(FactorSecret, 0.2, h.kind+" sent to its own service "+hosts[0])
			case a.allInside(hosts):
				a.f.add(FactorSecret, 0.3, h.kind+" in "+l.path+" sent to org host "+hosts[0])
			default:
				// A vendor's key sent to another host is a leak; an unknown
				// credential sent to an outside API may be that API's own.
				w := h.weight * 0.5
				d := h.kind + " in " + l.path + " sent to outside host " + hosts[0]
				if h.vendor != "" {
					w = max(h.weight, 0.9)
					d = h.kind + " in " + l.path + " sent to " + hosts[0] + " (not " + h.vendor + ")"
				}
				a.f.add(FactorSecret, w, d)
				a.classes["secret_egress"] = d
			}
			continue
		}
		if h.vendor == "" && a.org != nil && strings.Contains(l.s, "://") {
			// A token inside a link to the org's own service (a reset or
			// unsubscribe link) is how the service works, not a leak.
			stripped := reURL.ReplaceAllStringFunc(l.s, func(u string) string {
				if t, ok := parseTarget(u); ok && t.user == "" && a.org.hostInside(t.host) {
					return " "
				}
				return u
			})
			if stripped != l.s && len(findSecrets(stripped)) == 0 {
				a.f.add(FactorSecret, 0.2, h.kind+" inside a link to an org host in "+l.path)
				continue
			}
		}
		a.f.add(FactorSecret, h.weight, h.kind+" in "+l.path)
		if h.weight >= 0.8 {
			a.classes["secret"] = h.kind
		}
	}
}

func (a *analysis) urlHosts() []string {
	var out []string
	for _, d := range a.dests {
		if d.kind == "url" && d.host != "" {
			out = append(out, d.host)
		}
	}
	return out
}

func allUnder(hosts []string, vendor string) bool {
	for _, h := range hosts {
		if !underDomain(h, vendor) {
			return false
		}
	}
	return true
}

func (a *analysis) allInside(hosts []string) bool {
	if a.org == nil {
		return false
	}
	for _, h := range hosts {
		if !a.org.hostInside(h) {
			return false
		}
	}
	return true
}

// egress scores destinations: outside the org, SSRF targets, paste sites,
// DNS-shaped names and look-alikes of the org's domains.
func (a *analysis) egress() {
	method := ""
	for _, l := range a.leaves {
		if l.key == "method" && !l.isNum {
			method = strings.ToUpper(strings.TrimSpace(l.s))
		}
	}
	if method == "POST" || method == "PUT" || method == "PATCH" || containsAny(a.tool, "upload", "send", "post", "publish", "share") {
		a.sendsData = true
	}
	for _, d := range a.dests {
		if i := strings.IndexByte(d.value, '?'); d.kind == "url" && i >= 0 && len(d.value)-i > 100 {
			a.sendsData = true // data in a long query string
		}
	}
	var outside []dest
	for _, d := range a.dests {
		if d.kind == "url" {
			if w, why := ssrfCheck(d.t); w > 0 {
				a.f.add(FactorSSRF, w, why)
				a.classes["internal_target"] = why
			}
			if d.t.scheme == "file" {
				if w, why := sensitivePath(d.t.path); w > 0 {
					a.f.add(FactorSensitivePath, w, why)
				}
			}
			if d.t.user != "" && strings.Contains(d.t.user, ".") && !strings.Contains(d.t.user, ":") {
				a.f.add(FactorUnicode, 0.6, "URL userinfo "+clip(d.t.user, 30)+" disguises the real host "+d.host)
			}
		}
		if d.host == "" {
			continue
		}
		if w, why := lookalikeDomain(a.org, d.host); w > 0 {
			a.f.add(FactorUnicode, w, why+" ("+d.via+")")
		} else if strings.Contains(d.host, "xn--") && d.outside {
			a.f.add(FactorUnicode, 0.3, "punycode domain "+d.host)
		}
		if d.outside {
			outside = append(outside, d)
			if w, why := dnsShape(d.host); w > 0 {
				a.f.add(FactorExfiltration, w, "DNS-shaped exfiltration to "+clip(d.host, 60)+": "+why)
			}
			if pk := pasteKind(d.host); pk > 0 {
				w := pk
				if !a.sendsData {
					w *= 0.6
				}
				a.f.add(FactorExfiltration, w, "sends to paste/file-drop site "+d.host)
			}
		}
	}
	if len(outside) > 0 {
		d := outside[0]
		what := "host " + d.host
		if d.kind == "mail" {
			what = "recipient " + d.value
		}
		detail := what + " " + d.reason
		if n := len(outside) - 1; n > 0 {
			detail += fmt.Sprintf(" (+%d more outside)", n)
		}
		a.f.add(FactorEgress, 1, detail)
		a.classes["egress"] = detail
		if a.sendsData {
			a.classes["upload"] = detail
		}
	}
}

// exfiltration looks at what leaves when a destination is outside: customer
// records, card numbers, secrets, uploaded files.
func (a *analysis) exfiltration() {
	var out *dest
	for i := range a.dests {
		if a.dests[i].outside {
			out = &a.dests[i]
			break
		}
	}
	if out == nil {
		return
	}
	recips := map[string]bool{}
	for _, d := range a.dests {
		if d.kind == "mail" {
			recips[strings.ToLower(d.value)] = true
		}
	}
	to := out.host
	emails := map[string]bool{}
	var best float64
	var detail string
	note := func(w float64, d string) {
		if w > best {
			best, detail = w, d
		}
	}
	for _, l := range a.leaves {
		if l.isNum || recipientKeys[l.key] || urlKeys[l.key] || l.key == "from" || len(l.s) < 6 {
			continue
		}
		s := cutUTF8(l.s, 64<<10) // records show in the first 64 KiB if anywhere
		if strings.Contains(s, "%40") || strings.Contains(s, "%2C") || strings.Contains(s, "%0A") {
			if u, err := url.QueryUnescape(strings.ReplaceAll(s, "+", " ")); err == nil {
				s = u
			}
		}
		if strings.IndexByte(s, '@') >= 0 {
			for _, e := range reEmail.FindAllString(s, 200) {
				e = strings.ToLower(e)
				if !recips[e] && !(a.org != nil && a.org.mailInside(mailDomain(e))) {
					emails[e] = true // someone else's address, not a colleague's
				}
			}
		}
		if n, strong := luhnCards(s); n > 0 {
			w := 0.5
			if strong {
				w = 1
			}
			note(w, fmt.Sprintf("%d card number(s) passing the Luhn check in %s go to %s", n, l.path, to))
		}
		if reSSN.MatchString(s) {
			note(0.8, "US social security number in "+l.path+" goes to "+to)
		}
		if cols := piiHeader(s); cols != "" {
			note(0.9, "table with personal columns ("+cols+") in "+l.path+" goes to "+to)
		}
		if m := reRows.FindStringSubmatch(s); m != nil && rowCount(m[1]) >= 100 {
			note(0.35, m[0]+" in "+l.path+" go to "+to)
		}
		if strings.HasPrefix(strings.TrimSpace(s), "@") && looksLikePath(strings.TrimPrefix(strings.TrimSpace(s), "@")) {
			note(0.5, "uploads local file "+clip(strings.TrimSpace(s)[1:], 40)+" to "+to)
		}
		if (l.key == "file" || l.key == "attachment" || l.key == "attachments" || l.key == "files") && looksLikePath(s) {
			note(0.5, "uploads local file "+clip(s, 40)+" to "+to)
		}
	}
	if n := len(emails); n >= 2 {
		w := 0.3
		switch {
		case n >= 5:
			w = 1
		case n >= 3:
			w = 0.6
		}
		if best > 0 {
			best = min(1, best+0.3) // addresses on top of a table, rows or cards
		}
		note(w, fmt.Sprintf("%d other people's email addresses go to %s", n, to))
	}
	for _, u := range a.uploads {
		note(0.5, "uploads local file "+clip(u, 40)+" to "+to)
	}
	if _, ok := a.classes["secret"]; ok {
		note(0.6, "a "+a.classes["secret"]+" goes to "+to)
	}
	if best > 0 {
		a.f.add(FactorExfiltration, best, detail)
		a.classes["data_egress"] = detail
	}
}

func rowCount(s string) int {
	n := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			n = n*10 + int(c-'0')
			if n > 1e9 {
				return n
			}
		}
	}
	return n
}

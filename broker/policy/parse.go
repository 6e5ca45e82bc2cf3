package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/airlock/airlock"
)

// Defaults applied when the file leaves a setting out.
const (
	DefaultPendingTTL      = 10 * time.Minute
	DefaultWindow          = time.Minute
	DefaultSandboxTimeout  = 30 * time.Second
	MaxSandboxTimeout      = 10 * time.Minute
	DefaultSandboxMemory   = 512 << 20
	DefaultSandboxPids     = 128
	DefaultBatchMaxRisk    = 50
	DefaultMinDwell        = 2 * time.Second
	DefaultMaxApprovals    = 20
	DefaultConfirmRisk     = 90
	DefaultGraceMS         = 400
	DefaultWriteGrantTTL   = 5 * time.Minute
	DefaultGrantMaxTTL     = time.Hour
	DefaultBandMedium      = 25
	DefaultBandHigh        = 50
	DefaultBandCritical    = 80
	maxFileSize            = 8 << 20
	maxAuthFileSize        = 1 << 20
	maxNameLen             = 128
	defaultRuleReasonChars = 60
)

// LimitScopes are the scopes a limit may have.
var LimitScopes = []string{"user", "org", "agent", "session", "global"}

// SandboxBackends and SandboxLangs are the values a sandbox block accepts.
var (
	SandboxBackends = []string{"native", "bwrap", "docker", "wasm"}
	SandboxLangs    = []string{"python", "shell", "bash", "sh", "node"}
)

// Load reads and validates a policy file. On failure the error is an
// ErrorList (every problem, each naming file:line and the field) or a read
// error; either prints well as one line. A broker reloading on SIGHUP keeps
// its current policy when Load fails and logs the error.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("policy: %s is larger than %d MiB", path, maxFileSize>>20)
	}
	return Parse(path, data)
}

// Parse validates a policy file's bytes. name is used in messages and to
// resolve relative paths in the file (auth.file, sandbox.workspace).
func Parse(name string, data []byte) (pol *Policy, err error) {
	defer func() {
		if r := recover(); r != nil { // the YAML library must not take the broker down
			pol, err = nil, ErrorList{{File: name, Msg: fmt.Sprintf("invalid YAML: parser failed: %v", r)}}
		}
	}()
	p := &parser{file: name, dir: filepath.Dir(name)}
	pol = p.parse(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, byLine)
		return nil, p.errs
	}
	slices.SortStableFunc(p.warns, byLine)
	for _, w := range p.warns {
		pol.Warnings = append(pol.Warnings, w.Error())
	}
	pol.Source = name
	pol.Digest = Digest(data)
	return pol, nil
}

func byLine(a, b *Error) int {
	if a.File != b.File {
		return 0
	}
	return a.Line - b.Line
}

func (p *parser) parse(data []byte) *Policy {
	if !utf8.Valid(data) {
		p.errf(nil, "", "not UTF-8 text")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errf(nil, "", "empty file (a policy starts with version: 1)")
		} else {
			p.yamlErr(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errf(&extra, "", "more than one YAML document (a policy is one document; remove the ---)")
	} else if !errors.Is(err, io.EOF) {
		p.yamlErr(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.errf(&doc, "", "empty file (a policy starts with version: 1)")
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		p.errf(root, "", "empty file (a policy starts with version: 1)")
		return nil
	}
	f, rootN := p.mapping(root, "", "version", "defaults", "tools", "agents", "limits", "review", "risk", "orgs", "auth")
	if f == nil {
		return nil
	}
	pol := &Policy{
		Defaults: Defaults{UnknownTool: airlock.TierDeny, PendingTTL: DefaultPendingTTL},
		Tools:    map[string]*Tool{},
		Agents:   map[string]*Agent{},
		Orgs:     map[string]*Org{},
		Review: Review{
			BatchMaxRisk:          DefaultBatchMaxRisk,
			MinDwellHighRisk:      DefaultMinDwell,
			MaxApprovalsPerMinute: DefaultMaxApprovals,
			ConfirmRisk:           DefaultConfirmRisk,
			GraceMS:               DefaultGraceMS,
			WriteGrantTTL:         DefaultWriteGrantTTL,
			GrantMaxTTL:           DefaultGrantMaxTTL,
		},
		Risk: RiskConfig{
			Points: map[string]int{},
			Bands:  Bands{Medium: DefaultBandMedium, High: DefaultBandHigh, Critical: DefaultBandCritical},
		},
	}
	if v, ok := f["version"]; !ok {
		p.errf(rootN, "version", "required: start the file with version: 1")
	} else if n, ok := p.integer(v, "version", 0, 1<<31); ok {
		if n != 1 {
			p.errf(v, "version", "unsupported version %d (this airlock reads version: 1)", n)
		}
		pol.Version = int(n)
	}
	if v, ok := f["defaults"]; ok {
		p.defaults(v, &pol.Defaults)
	}
	if v, ok := f["tools"]; ok {
		p.tools(v, pol)
	}
	if len(pol.Tools) == 0 {
		p.warnf(rootN, "tools", "no tools are declared: every call will be denied")
	}
	if v, ok := f["agents"]; ok {
		p.agents(v, pol)
	}
	if v, ok := f["limits"]; ok {
		p.limits(v, pol)
	}
	if v, ok := f["review"]; ok {
		p.review(v, &pol.Review)
	}
	if v, ok := f["risk"]; ok {
		p.risk(v, &pol.Risk)
	}
	if v, ok := f["orgs"]; ok {
		p.orgs(v, pol)
	}
	if v, ok := f["auth"]; ok {
		pol.Auth = p.auth(v, "auth")
	}
	return pol
}

func (p *parser) defaults(n *yaml.Node, d *Defaults) {
	f, _ := p.mapping(n, "defaults", "unknown_tool", "pending_ttl", "require_user")
	if v, ok := f["unknown_tool"]; ok {
		if s, ok := p.str(v, "defaults.unknown_tool"); ok && s != string(airlock.TierDeny) {
			p.errf(v, "defaults.unknown_tool", "must be deny, not %q: a tool that is not in the policy is always denied (list it under tools: to allow it)", short(s))
		}
	}
	if v, ok := f["pending_ttl"]; ok {
		if d2, ok := p.duration(v, "defaults.pending_ttl", time.Second, 0); ok {
			d.PendingTTL = d2
		}
	}
	if v, ok := f["require_user"]; ok {
		if b, ok := p.boolean(v, "defaults.require_user"); ok {
			d.RequireUser = b
		}
	}
}

// validName reports whether s can name a tool: printable, no spaces.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// validToken reports whether s can be one NATS subject token (agent and
// identity names appear in subjects such as airlock.submit.<agent>).
func validToken(s string) bool {
	return validName(s) && !strings.ContainsAny(s, ".*>")
}

func (p *parser) tools(n *yaml.Node, pol *Policy) {
	entries, _ := p.named(n, "tools")
	for _, e := range entries {
		path := join("tools", e.key)
		if !validName(e.key) {
			p.errf(e.k, path, "tool names must be 1 to %d printable characters without spaces", maxNameLen)
			continue
		}
		if t := p.tool(e.key, e.v, path); t != nil {
			pol.Tools[e.key] = t
		}
	}
}

func (p *parser) tool(name string, n *yaml.Node, path string) *Tool {
	f, node := p.mapping(n, path, "tier", "rules", "sandbox", "writes", "two_person", "scope")
	if f == nil {
		return nil
	}
	t := &Tool{Name: name, Line: node.Line}
	tierOK := false
	if v, ok := f["tier"]; !ok {
		p.errf(node, join(path, "tier"), "required (auto, notify, approve or deny)")
	} else {
		t.Tier, tierOK = p.tier(v, join(path, "tier"))
	}
	if v, ok := f["writes"]; ok {
		t.Writes, _ = p.boolean(v, join(path, "writes"))
	}
	if v, ok := f["two_person"]; ok {
		t.TwoPerson, _ = p.boolean(v, join(path, "two_person"))
	}
	if v, ok := f["rules"]; ok {
		items, _ := p.seq(v, join(path, "rules"))
		if len(items) > 0 && t.Tier == airlock.TierDeny {
			p.warnf(v, join(path, "rules"), "rules of a deny-tier tool never run")
		}
		for i, it := range items {
			if r := p.rule(t, i, it, fmt.Sprintf("%s.rules[%d]", path, i)); r != nil {
				t.Rules = append(t.Rules, r)
			}
		}
	}
	if v, ok := f["sandbox"]; ok {
		t.Sandbox = p.sandbox(v, join(path, "sandbox"))
	}
	if v, ok := f["scope"]; ok {
		t.Scope = p.scope(v, join(path, "scope"))
	}
	if !tierOK {
		return nil
	}
	t.reason = fmt.Sprintf("%s is %s %s-tier tool", name, article(string(t.Tier)), t.Tier)
	return t
}

func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an"
	}
	return "a"
}

func (p *parser) rule(t *Tool, i int, n *yaml.Node, path string) *Rule {
	f, node := p.mapping(n, path, "when", "tier", "risk", "reason")
	if f == nil {
		return nil
	}
	r := &Rule{Line: node.Line, ID: path, index: i}
	good := true
	if v, ok := f["when"]; !ok {
		p.errf(node, join(path, "when"), "required: a CEL condition over args and call, e.g. args.path.startsWith(\"/etc/\")")
		good = false
	} else if s, ok := p.str(v, join(path, "when")); !ok {
		good = false
	} else {
		r.When = s
		r.prog, good = p.compile(v, join(path, "when"), s)
	}
	if v, ok := f["tier"]; ok {
		if r.Tier, ok = p.tier(v, join(path, "tier")); !ok {
			good = false
		} else if t.Tier.Valid() && r.Tier.Rank() < t.Tier.Rank() {
			p.warnf(v, join(path, "tier"), "tier %s is below the tool's tier %s; rules only raise a tier, so this rule cannot change it", r.Tier, t.Tier)
		}
	}
	if v, ok := f["risk"]; ok {
		risk, ok := p.integer(v, join(path, "risk"), 0, 100)
		if !ok {
			good = false
		}
		r.Risk = int(risk)
	}
	if v, ok := f["reason"]; ok {
		r.Reason, _ = p.str(v, join(path, "reason"))
	}
	if good && r.Tier == "" && r.Risk == 0 {
		p.errf(node, path, "rule does nothing: give it a tier to raise to, risk points, or both")
		good = false
	}
	if r.Reason == "" {
		r.Reason = "matched " + strings.Join(strings.Fields(r.When), " ")
		if len(r.Reason) > defaultRuleReasonChars {
			r.Reason = r.Reason[:defaultRuleReasonChars] + "…"
		}
	}
	if !good {
		return nil
	}
	r.matchReason = fmt.Sprintf("%s (rule %d)", r.Reason, i)
	return r
}

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (p *parser) sandbox(n *yaml.Node, path string) *SandboxProfile {
	f, node := p.mapping(n, path, "backend", "lang", "command", "code_arg", "timeout", "cpu_time", "memory",
		"pids", "cpus", "file_size", "tmp_size", "output", "network", "allow", "env", "workspace", "workspace_rw")
	if f == nil {
		return nil
	}
	s := &SandboxProfile{Backend: "native", Timeout: DefaultSandboxTimeout, Memory: DefaultSandboxMemory, Pids: DefaultSandboxPids}
	oneOf := func(key string, allowed []string) string {
		v, ok := f[key]
		if !ok {
			return ""
		}
		str, ok := p.str(v, join(path, key))
		if !ok {
			return ""
		}
		if !slices.Contains(allowed, str) {
			p.errf(v, join(path, key), "%q is not one of %s%s", short(str), strings.Join(allowed, ", "), suggest(str, allowed, "; did you mean %q?"))
			return ""
		}
		return str
	}
	if b := oneOf("backend", SandboxBackends); b != "" {
		s.Backend = b
	}
	s.Lang = oneOf("lang", SandboxLangs)
	if v, ok := f["command"]; ok {
		s.Command, _ = p.strList(v, join(path, "command"))
		if len(s.Command) == 0 {
			p.errf(v, join(path, "command"), "must name a program and its arguments")
		}
	}
	_, hasLang := f["lang"]
	_, hasCmd := f["command"]
	switch {
	case hasLang && hasCmd:
		p.errf(node, path, "set lang or command, not both")
	case !hasLang && !hasCmd:
		p.errf(node, path, "set lang (how the code argument runs, e.g. python) or command (an argv template)")
	}
	s.CodeArg = "code"
	if s.Lang == "shell" || s.Lang == "bash" || s.Lang == "sh" {
		s.CodeArg = "command"
	}
	if v, ok := f["code_arg"]; ok {
		if str, ok := p.str(v, join(path, "code_arg")); ok {
			s.CodeArg = str
		}
	}
	if v, ok := f["timeout"]; ok {
		if d, ok := p.duration(v, join(path, "timeout"), time.Millisecond, MaxSandboxTimeout); ok {
			s.Timeout = d
		}
	}
	if v, ok := f["cpu_time"]; ok {
		if d, ok := p.duration(v, join(path, "cpu_time"), time.Millisecond, MaxSandboxTimeout); ok {
			s.CPUTime = d
		}
	}
	sizeField := func(key string, lo int64, dst *int64) {
		if v, ok := f[key]; ok {
			if b, ok := p.size(v, join(path, key), lo); ok {
				*dst = b
			}
		}
	}
	sizeField("memory", 1<<20, &s.Memory)
	sizeField("file_size", 1, &s.FileSize)
	sizeField("tmp_size", 1<<10, &s.TmpSize)
	sizeField("output", 1<<10, &s.Output)
	if v, ok := f["pids"]; ok {
		if n, ok := p.integer(v, join(path, "pids"), 1, 1<<16); ok {
			s.Pids = int(n)
		}
	}
	if v, ok := f["cpus"]; ok {
		if c, ok := p.number(v, join(path, "cpus"), 0.01, 1024); ok {
			s.CPUs = c
		}
	}
	if v, ok := f["network"]; ok {
		s.Network, _ = p.boolean(v, join(path, "network"))
	}
	if v, ok := f["allow"]; ok {
		s.Allow = p.hostList(v, join(path, "allow"))
		if len(s.Allow) > 0 && !s.Network {
			p.errf(v, join(path, "allow"), "allow-listed hosts need network: true")
		}
	}
	if v, ok := f["env"]; ok {
		env, _ := p.strList(v, join(path, "env"))
		for i, e := range env {
			if !envNameRe.MatchString(e) {
				p.errf(v, fmt.Sprintf("%s.env[%d]", path, i), "%q is not an environment variable name", short(e))
			}
		}
		s.Env = env
	}
	if v, ok := f["workspace"]; ok {
		if ws, ok := p.str(v, join(path, "workspace")); ok {
			if !filepath.IsAbs(ws) {
				ws = filepath.Join(p.dir, ws)
			}
			s.Workspace = ws
		}
	}
	if v, ok := f["workspace_rw"]; ok {
		s.WorkspaceRW, _ = p.boolean(v, join(path, "workspace_rw"))
		if s.WorkspaceRW && s.Workspace == "" {
			p.errf(v, join(path, "workspace_rw"), "needs a workspace")
		}
	}
	return s
}

// validHostPattern reports whether s is a host (acme.com, 10.0.0.1) or a
// subdomain wildcard (*.acme.internal).
func validHostPattern(s string) bool {
	h := strings.TrimPrefix(s, "*.")
	if h == "" || strings.Contains(h, "*") || len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '_') {
			return false
		}
	}
	return !strings.HasPrefix(h, ".") && !strings.Contains(h, "..")
}

// hostList reads a list of hosts or *.suffix patterns, lower-cased.
func (p *parser) hostList(n *yaml.Node, path string) []string {
	items, ok := p.seq(n, path)
	if !ok {
		return nil
	}
	var out []string
	for i, it := range items {
		ip := fmt.Sprintf("%s[%d]", path, i)
		s, ok := p.str(it, ip)
		if !ok {
			continue
		}
		h := strings.TrimSuffix(strings.ToLower(s), ".")
		if !validHostPattern(h) {
			p.errf(it, ip, "%q is not a host name or a *.suffix pattern (no scheme, path or port)", short(s))
			continue
		}
		out = append(out, h)
	}
	return out
}

func (p *parser) scope(n *yaml.Node, path string) *Scope {
	f, node := p.mapping(n, path, "from", "domains", "schemas", "hosts", "paths")
	if f == nil {
		return nil
	}
	s := &Scope{}
	if v, ok := f["from"]; ok {
		s.From, _ = p.strList(v, join(path, "from"))
		for i, a := range s.From {
			if !strings.Contains(a, "@") {
				p.errf(v, fmt.Sprintf("%s.from[%d]", path, i), "%q is not an email address", short(a))
			}
		}
	}
	if v, ok := f["domains"]; ok {
		s.Domains = p.hostList(v, join(path, "domains"))
	}
	if v, ok := f["schemas"]; ok {
		s.Schemas, _ = p.strList(v, join(path, "schemas"))
	}
	if v, ok := f["hosts"]; ok {
		s.Hosts = p.hostList(v, join(path, "hosts"))
	}
	if v, ok := f["paths"]; ok {
		s.Paths, _ = p.strList(v, join(path, "paths"))
		for i, x := range s.Paths {
			if strings.IndexByte(x, 0) >= 0 {
				p.errf(v, fmt.Sprintf("%s.paths[%d]", path, i), "contains a NUL byte")
			}
		}
	}
	if len(s.From)+len(s.Domains)+len(s.Schemas)+len(s.Hosts)+len(s.Paths) == 0 {
		p.warnf(node, path, "scope sets nothing, so it pins nothing")
		return nil
	}
	return s
}

func (p *parser) agents(n *yaml.Node, pol *Policy) {
	entries, _ := p.named(n, "agents")
	declared := make([]string, 0, len(pol.Tools))
	for name := range pol.Tools {
		declared = append(declared, name)
	}
	slices.Sort(declared)
	for _, e := range entries {
		path := join("agents", e.key)
		if !validToken(e.key) {
			p.errf(e.k, path, "agent names must be one NATS subject token: printable, no spaces, no '.', '*' or '>'")
			continue
		}
		f, node := p.mapping(e.v, path, "tools", "users", "orgs")
		if f == nil {
			continue
		}
		a := &Agent{Name: e.key, set: map[string]struct{}{}}
		v, ok := f["tools"]
		if !ok {
			p.errf(node, join(path, "tools"), "required: the list of tools this agent may call")
			continue
		}
		items, _ := p.seq(v, join(path, "tools"))
		for i, it := range items {
			ip := fmt.Sprintf("%s.tools[%d]", path, i)
			tn, ok := p.str(it, ip)
			if !ok {
				continue
			}
			if _, dup := a.set[tn]; dup {
				p.warnf(it, ip, "%s is listed twice", tn)
				continue
			}
			if _, known := pol.Tools[tn]; !known {
				if s := suggest(tn, declared, "%s"); s != "" {
					p.errf(it, ip, "tool %q is not declared under tools: (did you mean %q?)", short(tn), s)
					continue
				}
				p.warnf(it, ip, "tool %q is not declared under tools:, so calls to it are denied as unknown", short(tn))
			}
			a.set[tn] = struct{}{}
			a.Tools = append(a.Tools, tn)
		}
		if len(items) == 0 {
			p.warnf(v, join(path, "tools"), "empty manifest: agent %s may call nothing", e.key)
		}
		if v, ok := f["users"]; ok {
			a.Users = p.actorPins(v, join(path, "users"), e.key, "user")
		}
		if v, ok := f["orgs"]; ok {
			a.Orgs = p.actorPins(v, join(path, "orgs"), e.key, "org")
		}
		pol.Agents[e.key] = a
	}
}

// actorPins reads an agent's users: or orgs: list: names or globs where *
// is any run of characters. The result is never nil (an empty list pins the
// agent to nobody), so that a key that is present always pins.
func (p *parser) actorPins(n *yaml.Node, path, agent, what string) []string {
	out := []string{}
	items, ok := p.seq(n, path)
	if !ok {
		return out
	}
	seen := map[string]bool{}
	for i, it := range items {
		ip := fmt.Sprintf("%s[%d]", path, i)
		s, ok := p.str(it, ip)
		if !ok {
			continue
		}
		if msg := badActorGlob(s); msg != "" {
			p.errf(it, ip, "%s is not a %s name or glob: %s", quoteShort(s), what, msg)
			continue
		}
		if seen[s] {
			p.warnf(it, ip, "%s is listed twice", s)
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	if len(out) == 0 && len(items) == 0 {
		p.warnf(n, path, "empty list: agent %s may act for no %s, so every call of it is denied (remove %s: to lift the pin)", agent, what, what+"s")
	}
	return out
}

// badActorGlob says what is wrong with a users: or orgs: entry, or "" when
// it is a name or a glob whose only wildcard is *.
func badActorGlob(s string) string {
	if !validName(s) {
		return fmt.Sprintf("use 1 to %d printable characters without spaces", maxNameLen)
	}
	if i := strings.IndexAny(s, "?[]{}\\"); i >= 0 {
		return fmt.Sprintf("%q is not supported (the only wildcard is *, any run of characters)", s[i])
	}
	if strings.Contains(s, "**") {
		return "** is the same as *; write one"
	}
	return ""
}

func (p *parser) limits(n *yaml.Node, pol *Policy) {
	items, _ := p.seq(n, "limits")
	for i, it := range items {
		path := fmt.Sprintf("limits[%d]", i)
		if l, ok := p.limit(it, path); ok {
			pol.Limits = append(pol.Limits, l)
		}
	}
}

func (p *parser) limit(n *yaml.Node, path string) (Limit, bool) {
	f, node := p.mapping(n, path, "scope", "window", "requests", "tokens", "cost_usd",
		"requests_per_minute", "tokens_per_minute", "cost_per_hour_usd",
		"max_input_tokens", "max_output_tokens", "concurrent", "session_messages")
	if f == nil {
		return Limit{}, false
	}
	l := Limit{Line: node.Line}
	good := true
	if v, ok := f["scope"]; !ok {
		p.errf(node, join(path, "scope"), "required (%s)", strings.Join(LimitScopes, ", "))
		good = false
	} else if s, ok := p.str(v, join(path, "scope")); ok {
		if !slices.Contains(LimitScopes, s) {
			p.errf(v, join(path, "scope"), "%q is not a scope (%s)%s", short(s), strings.Join(LimitScopes, ", "), suggest(s, LimitScopes, "; did you mean %q?"))
			good = false
		}
		l.Scope = s
	} else {
		good = false
	}
	const maxCount = 1 << 53
	count := func(key string, dst *int64) {
		if v, ok := f[key]; ok {
			x, ok := p.integer(v, join(path, key), 0, maxCount)
			if !ok {
				good = false
			}
			*dst = x
		}
	}
	money := func(key string, dst *float64) {
		if v, ok := f[key]; ok {
			x, ok := p.number(v, join(path, key), 0, 1e12)
			if !ok {
				good = false
			}
			*dst = x
		}
	}
	count("requests", &l.Requests)
	count("tokens", &l.Tokens)
	money("cost_usd", &l.CostUSD)
	count("requests_per_minute", &l.RequestsPerMinute)
	count("tokens_per_minute", &l.TokensPerMinute)
	money("cost_per_hour_usd", &l.CostPerHourUSD)
	count("max_input_tokens", &l.MaxInputTokens)
	count("max_output_tokens", &l.MaxOutputTokens)
	count("concurrent", &l.Concurrent)
	count("session_messages", &l.SessionMessages)
	windowed := l.Requests > 0 || l.Tokens > 0 || l.CostUSD > 0
	if v, ok := f["window"]; ok {
		if d, ok := p.duration(v, join(path, "window"), time.Second, 0); ok {
			l.Window = d
		} else {
			good = false
		}
		if !windowed {
			p.errf(v, join(path, "window"), "window applies to requests, tokens and cost_usd, and this limit sets none of them")
			good = false
		}
	}
	if good && !windowed && l.RequestsPerMinute == 0 && l.TokensPerMinute == 0 && l.CostPerHourUSD == 0 &&
		l.MaxInputTokens == 0 && l.MaxOutputTokens == 0 && l.Concurrent == 0 && l.SessionMessages == 0 {
		p.errf(node, path, "limit sets no budget (requests, tokens, cost_usd, requests_per_minute, tokens_per_minute, cost_per_hour_usd, max_input_tokens, max_output_tokens, concurrent or session_messages)")
		good = false
	}
	l.fold()
	return l, good
}

// fold copies the shorthands into the windowed fields where that loses
// nothing: requests_per_minute and tokens_per_minute become Requests and
// Tokens with a 1m window, cost_per_hour_usd becomes CostUSD with a 1h
// window, when the entry's window is unset or already that long and the
// windowed field is not set. Window defaults to 1m. Budgets reports every
// budget, folded or not, exactly once.
func (l *Limit) fold() {
	if l.Window == 0 {
		switch {
		case l.Requests > 0 || l.Tokens > 0 || l.CostUSD > 0:
			l.Window = DefaultWindow
		case l.RequestsPerMinute > 0 || l.TokensPerMinute > 0:
			l.Window = time.Minute
		case l.CostPerHourUSD > 0:
			l.Window = time.Hour
		default:
			l.Window = DefaultWindow
		}
	}
	if l.Window == time.Minute {
		if l.Requests == 0 {
			l.Requests = l.RequestsPerMinute
		}
		if l.Tokens == 0 {
			l.Tokens = l.TokensPerMinute
		}
	}
	if l.Window == time.Hour && l.CostUSD == 0 {
		l.CostUSD = l.CostPerHourUSD
	}
}

// Budgets returns the limit's per-window budgets, normalised: one entry per
// dimension (requests, tokens, cost_usd) and window, from the windowed fields
// (Requests, Tokens, CostUSD over Window, default 1m) and from the shorthands
// (RequestsPerMinute and TokensPerMinute over 1m, CostPerHourUSD over 1h). A
// shorthand folded into a windowed field at load is reported once. The
// per-call sizes, Concurrent and SessionMessages are not budgets over a
// window and are read from their fields.
func (l Limit) Budgets() []Budget {
	w := l.Window
	if w <= 0 {
		w = DefaultWindow
	}
	var out []Budget
	add := func(dim string, win time.Duration, amount float64) {
		if amount <= 0 {
			return
		}
		for _, b := range out {
			if b.Dimension == dim && b.Window == win && b.Amount == amount {
				return
			}
		}
		out = append(out, Budget{Dimension: dim, Window: win, Amount: amount})
	}
	add("requests", w, float64(l.Requests))
	add("tokens", w, float64(l.Tokens))
	add("cost_usd", w, l.CostUSD)
	add("requests", time.Minute, float64(l.RequestsPerMinute))
	add("tokens", time.Minute, float64(l.TokensPerMinute))
	add("cost_usd", time.Hour, l.CostPerHourUSD)
	return out
}

func (p *parser) review(n *yaml.Node, r *Review) {
	const path = "review"
	f, _ := p.mapping(n, path, "batch", "batch_max_risk", "min_dwell_high_risk", "max_approvals_per_minute",
		"canary_rate", "two_person_risk", "confirm_risk", "grace_ms", "write_grant_ttl", "grant_max_ttl")
	if v, ok := f["batch"]; ok {
		r.Batch, _ = p.boolean(v, join(path, "batch"))
	}
	intField := func(key string, lo, hi int64, dst *int) {
		if v, ok := f[key]; ok {
			if x, ok := p.integer(v, join(path, key), lo, hi); ok {
				*dst = int(x)
			}
		}
	}
	intField("batch_max_risk", 0, 100, &r.BatchMaxRisk)
	intField("max_approvals_per_minute", 0, 10000, &r.MaxApprovalsPerMinute)
	intField("two_person_risk", 0, 100, &r.TwoPersonRisk)
	intField("confirm_risk", 0, 100, &r.ConfirmRisk)
	intField("grace_ms", 0, 10000, &r.GraceMS)
	if v, ok := f["canary_rate"]; ok {
		if x, ok := p.number(v, join(path, "canary_rate"), 0, 1); ok {
			r.CanaryRate = x
		}
	}
	durField := func(key string, lo, hi time.Duration, dst *time.Duration) {
		if v, ok := f[key]; ok {
			if d, ok := p.duration(v, join(path, key), lo, hi); ok {
				*dst = d
			}
		}
	}
	durField("min_dwell_high_risk", 0, time.Minute, &r.MinDwellHighRisk)
	durField("write_grant_ttl", time.Second, 0, &r.WriteGrantTTL)
	durField("grant_max_ttl", time.Second, 0, &r.GrantMaxTTL)
}

var factorNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// chainClassRe matches a chain condition that names classes rather than
// being CEL: "*", a factor or event class (secret_read), a tool
// ("tool:send_email" or a bare name), or alternatives joined with "|".
var chainClassRe = regexp.MustCompile(`^(\*|(tool:[^\s|]+|[A-Za-z_][A-Za-z0-9_-]*)(\|(tool:[^\s|]+|[A-Za-z_][A-Za-z0-9_-]*))*)$`)

func (p *parser) risk(n *yaml.Node, rc *RiskConfig) {
	const path = "risk"
	f, _ := p.mapping(n, path, "points", "bands", "chains")
	if v, ok := f["points"]; ok {
		entries, _ := p.named(v, join(path, "points"))
		for _, e := range entries {
			ep := join(join(path, "points"), e.key)
			if !factorNameRe.MatchString(e.key) {
				p.errf(e.k, ep, "factor names are lower_case_with_underscores")
				continue
			}
			if x, ok := p.integer(e.v, ep, 0, 100); ok {
				rc.Points[e.key] = int(x)
			}
		}
	}
	if v, ok := f["bands"]; ok {
		bp := join(path, "bands")
		bf, bn := p.mapping(v, bp, "medium", "high", "critical")
		set := func(key string, dst *int) {
			if v, ok := bf[key]; ok {
				if x, ok := p.integer(v, join(bp, key), 1, 100); ok {
					*dst = int(x)
				}
			}
		}
		set("medium", &rc.Bands.Medium)
		set("high", &rc.Bands.High)
		set("critical", &rc.Bands.Critical)
		if bn != nil && !(rc.Bands.Medium < rc.Bands.High && rc.Bands.High < rc.Bands.Critical) {
			p.errf(bn, bp, "bands must rise: medium (%d) < high (%d) < critical (%d)", rc.Bands.Medium, rc.Bands.High, rc.Bands.Critical)
		}
	}
	if v, ok := f["chains"]; ok {
		items, _ := p.seq(v, join(path, "chains"))
		names := map[string]bool{}
		for i, it := range items {
			cp := fmt.Sprintf("%s.chains[%d]", path, i)
			cf, cn := p.mapping(it, cp, "name", "first", "then", "points", "reason")
			if cf == nil {
				continue
			}
			c := Chain{Line: cn.Line}
			good := true
			if v, ok := cf["name"]; !ok {
				p.errf(cn, join(cp, "name"), "required")
				good = false
			} else if c.Name, ok = p.str(v, join(cp, "name")); ok {
				if names[c.Name] {
					p.errf(v, join(cp, "name"), "another chain is named %q", short(c.Name))
					good = false
				}
				names[c.Name] = true
			} else {
				good = false
			}
			cond := func(key string) (string, *Cond) {
				v, ok := cf[key]
				if !ok {
					p.errf(cn, join(cp, key), "required: a factor class (e.g. secret_read) or a CEL condition over args and call")
					good = false
					return "", nil
				}
				s, ok := p.str(v, join(cp, key))
				if !ok {
					good = false
					return "", nil
				}
				if chainClassRe.MatchString(s) && s != "true" && s != "false" {
					return s, &Cond{Class: s}
				}
				prg, ok := p.compile(v, join(cp, key), s)
				if !ok {
					good = false
					return s, nil
				}
				return s, &Cond{Expr: s, prog: prg}
			}
			c.First, c.FirstCond = cond("first")
			c.Then, c.ThenCond = cond("then")
			if v, ok := cf["points"]; !ok {
				p.errf(cn, join(cp, "points"), "required (0 to 100)")
				good = false
			} else if x, ok := p.integer(v, join(cp, "points"), 0, 100); ok {
				c.Points = int(x)
			} else {
				good = false
			}
			if v, ok := cf["reason"]; ok {
				c.Reason, _ = p.str(v, join(cp, "reason"))
			}
			if c.Reason == "" {
				c.Reason = c.Name
			}
			if good {
				rc.Chains = append(rc.Chains, c)
			}
		}
	}
}

func (p *parser) orgs(n *yaml.Node, pol *Policy) {
	entries, _ := p.named(n, "orgs")
	for _, e := range entries {
		path := join("orgs", e.key)
		if !validToken(e.key) {
			p.errf(e.k, path, "org names must be printable, without spaces, '.', '*' or '>'")
			continue
		}
		f, node := p.mapping(e.v, path, "mail_domains", "hosts")
		if f == nil {
			continue
		}
		o := &Org{Name: e.key, Line: node.Line}
		if v, ok := f["mail_domains"]; ok {
			o.MailDomains = p.hostList(v, join(path, "mail_domains"))
		}
		if v, ok := f["hosts"]; ok {
			o.Hosts = p.hostList(v, join(path, "hosts"))
		}
		pol.Orgs[e.key] = o
	}
}

// auth reads the auth: section, or the file it names with auth: {file: …}.
func (p *parser) auth(n *yaml.Node, path string) *Auth {
	f, node := p.mapping(n, path, "file", "agents", "reviewers", "brokers")
	if f == nil {
		return nil
	}
	if v, ok := f["file"]; ok {
		if len(f) > 1 {
			p.errf(node, path, "set file or agents/reviewers/brokers, not both")
			return nil
		}
		name, ok := p.str(v, join(path, "file"))
		if !ok {
			return nil
		}
		full := name
		if !filepath.IsAbs(full) {
			full = filepath.Join(p.dir, name)
		}
		return p.authFile(v, join(path, "file"), full)
	}
	a := &Auth{}
	a.Agents = p.identities(f["agents"], join(path, "agents"), false)
	a.Reviewers = p.identities(f["reviewers"], join(path, "reviewers"), true)
	a.Brokers = p.identities(f["brokers"], join(path, "brokers"), false)
	if len(a.Agents)+len(a.Reviewers)+len(a.Brokers) == 0 {
		p.warnf(node, path, "declares no identities")
	}
	return a
}

func (p *parser) authFile(at *yaml.Node, path, full string) *Auth {
	if st, err := os.Stat(full); err != nil {
		p.errf(at, path, "%v", err)
		return nil
	} else if !st.Mode().IsRegular() {
		p.errf(at, path, "%s is not a regular file", full)
		return nil
	}
	fh, err := os.Open(full)
	if err != nil {
		p.errf(at, path, "%v", err)
		return nil
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxAuthFileSize+1))
	if err != nil {
		p.errf(at, path, "read %s: %v", full, err)
		return nil
	}
	if len(data) > maxAuthFileSize {
		p.errf(at, path, "%s is larger than 1 MiB", full)
		return nil
	}
	sub := &parser{file: full, dir: filepath.Dir(full)}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		sub.yamlErr(err)
	} else if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		sub.errf(nil, "", "empty auth file")
	} else {
		f, node := sub.mapping(doc.Content[0], "", "agents", "reviewers", "brokers")
		if f != nil {
			a := &Auth{
				Agents:    sub.identities(f["agents"], "agents", false),
				Reviewers: sub.identities(f["reviewers"], "reviewers", true),
				Brokers:   sub.identities(f["brokers"], "brokers", false),
			}
			if len(a.Agents)+len(a.Reviewers)+len(a.Brokers) == 0 {
				sub.warnf(node, "", "declares no identities")
			}
			p.errs = append(p.errs, sub.errs...)
			p.warns = append(p.warns, sub.warns...)
			return a
		}
	}
	p.errs = append(p.errs, sub.errs...)
	return nil
}

func (p *parser) identities(n *yaml.Node, path string, reviewer bool) map[string]Identity {
	if n == nil {
		return nil
	}
	entries, _ := p.named(n, path)
	out := make(map[string]Identity, len(entries))
	for _, e := range entries {
		ip := join(path, e.key)
		if !validToken(e.key) {
			p.errf(e.k, ip, "names must be one NATS subject token: printable, no spaces, no '.', '*' or '>'")
			continue
		}
		f, node := p.mapping(e.v, ip, "nkey", "token", "ssh_key")
		if f == nil {
			continue
		}
		var id Identity
		if v, ok := f["nkey"]; ok {
			if s, ok := p.str(v, join(ip, "nkey")); ok {
				if !nkeys.IsValidPublicUserKey(s) {
					p.errf(v, join(ip, "nkey"), "not a valid nkey user public key (it starts with U; create one with airlock keys new)")
				}
				id.NKey = s
			}
		}
		if v, ok := f["token"]; ok {
			if s, ok := p.str(v, join(ip, "token")); ok {
				if strings.ContainsFunc(s, unicode.IsSpace) {
					p.errf(v, join(ip, "token"), "must not contain spaces")
				} else if len(s) < 16 {
					p.warnf(v, join(ip, "token"), "token is shorter than 16 characters: easy to guess")
				}
				id.Token = s
			}
		}
		if v, ok := f["ssh_key"]; ok {
			if !reviewer {
				p.errf(v, join(ip, "ssh_key"), "only reviewers have SSH keys (for the console over SSH)")
			} else if s, ok := p.str(v, join(ip, "ssh_key")); ok {
				if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
					p.errf(v, join(ip, "ssh_key"), "not an SSH public key (e.g. ssh-ed25519 AAAA… as in authorized_keys)")
				} else if pk.Type() != ssh.KeyAlgoED25519 && id.NKey == "" {
					p.warnf(v, join(ip, "ssh_key"), "a %s key cannot sign verdicts (only ed25519 keys can, through ssh -A); without an nkey this reviewer's verdicts over SSH will be refused", pk.Type())
				}
				id.SSHKey = s
			}
		}
		// A reviewer who decides only through the console over SSH needs no
		// login of their own on the bus: the SSH key identifies them, and
		// (ed25519) signs their verdicts through their forwarded agent.
		if id.NKey == "" && id.Token == "" && (!reviewer || id.SSHKey == "") {
			if reviewer {
				p.errf(node, ip, "needs an nkey (or, for quick starts, a token; or, for the console over SSH only, an ssh_key)")
			} else {
				p.errf(node, ip, "needs an nkey (or, for quick starts, a token)")
			}
			continue
		}
		out[e.key] = id
	}
	return out
}

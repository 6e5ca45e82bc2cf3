package risk

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// secretHit is one credential found in a string.
type secretHit struct {
	kind   string  // "AWS access key", "GitHub token", …
	vendor string  // registrable domain the credential belongs to, if known
	weight float64 // 1 for a certain credential, less for a probable one
}

var (
	reAWSKey      = regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AIPA|ANPA|ANVA|AGPA)[A-Z0-9]{16}\b`)
	reGitHub      = regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{40,255})\b`)
	reGitLab      = regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}\b`)
	reStripe      = regexp.MustCompile(`\b(?:sk|rk)_(live|test)_[A-Za-z0-9]{16,}\b`)
	reSlack       = regexp.MustCompile(`\bxox[abposre]-[A-Za-z0-9-]{10,}\b`)
	reSlackHook   = regexp.MustCompile(`hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+`)
	reGoogleKey   = regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`)
	reAnthropic   = regexp.MustCompile(`\bsk-ant-[A-Za-z0-9_-]{20,}`)
	reOpenAI      = regexp.MustCompile(`\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{32,}`)
	reNPM         = regexp.MustCompile(`\bnpm_[A-Za-z0-9]{36}\b`)
	reJWT         = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)
	rePEM         = regexp.MustCompile(`-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----`)
	rePublicBlock = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*(?:PUBLIC KEY|CERTIFICATE)[A-Z0-9 ]*-----.*?-----END [A-Z0-9 ]*-----`)
	reAssign      = regexp.MustCompile(`(?i)([A-Za-z0-9_.\-]*(?:password|passwd|passphrase|pwd|secret|api[_-]?key|apikey|access[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|token|credential)[A-Za-z0-9_.\-]*)["']?(?:\s*(?:=|:|=>)\s*|\s+is\s+)["']?([^\s"',;<>{}()\[\]]{6,})`)
	reBearer      = regexp.MustCompile(`(?i)\b(bearer|basic|token)\s+([A-Za-z0-9._~+/=-]{16,})`)
	reURLPass     = regexp.MustCompile(`\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]{3,})@[^\s/]+`)
)

// findSecrets scans a string for credentials.
func findSecrets(s string) []secretHit {
	var hits []secretHit
	if len(s) < 8 {
		return nil
	}
	add := func(kind, vendor string, w float64) { hits = append(hits, secretHit{kind, vendor, w}) }
	if strings.IndexByte(s, 'A') >= 0 && reAWSKey.MatchString(s) {
		add("AWS access key", "amazonaws.com", 1)
	}
	if (strings.Contains(s, "gh") || strings.Contains(s, "github_pat_")) && reGitHub.MatchString(s) {
		add("GitHub token", "github.com", 1)
	}
	if strings.Contains(s, "glpat-") && reGitLab.MatchString(s) {
		add("GitLab token", "gitlab.com", 1)
	}
	if strings.Contains(s, "k_") {
		if m := reStripe.FindStringSubmatch(s); m != nil {
			w := 1.0
			if m[1] == "test" {
				w = 0.5
			}
			add("Stripe "+m[1]+" key", "stripe.com", w)
		}
	}
	if strings.Contains(s, "xox") && reSlack.MatchString(s) {
		add("Slack token", "slack.com", 1)
	}
	if strings.Contains(s, "hooks.slack.com") && reSlackHook.MatchString(s) {
		add("Slack webhook URL", "slack.com", 0.8)
	}
	if strings.Contains(s, "AIza") && reGoogleKey.MatchString(s) {
		add("Google API key", "googleapis.com", 1)
	}
	if strings.Contains(s, "sk-") {
		if reAnthropic.MatchString(s) {
			add("Anthropic API key", "anthropic.com", 1)
		} else if reOpenAI.MatchString(s) {
			add("OpenAI API key", "openai.com", 0.9)
		}
	}
	if strings.Contains(s, "npm_") && reNPM.MatchString(s) {
		add("npm token", "npmjs.org", 1)
	}
	if strings.Contains(s, "eyJ") {
		for _, m := range reJWT.FindAllString(s, 4) {
			if isJWT(m) {
				add("JWT", "", 1)
				break
			}
		}
	}
	if strings.Contains(s, "PRIVATE KEY") {
		if m := rePEM.FindStringSubmatch(s); m != nil {
			w := 1.0
			if strings.Contains(m[1], "ENCRYPTED") {
				w = 0.7
			}
			add("private key ("+strings.TrimSpace(m[0][11:len(m[0])-5])+")", "", w)
		}
	}
	if strings.Contains(s, "PuTTY-User-Key-File") {
		add("PuTTY private key", "", 1)
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		if m := reURLPass.FindStringSubmatch(s); m != nil && !placeholder(m[1]) {
			add("password in a URL", "", 0.9)
		}
	}
	var ws wordSet
	ws.index(s)
	lower := ""
	if ws.any("pass", "password", "passwd", "passphrase", "pwd", "secret", "key", "apikey", "token", "auth", "credential", "credentials", "access", "bearer", "basic") {
		lower = strings.ToLower(s)
	}
	// Run the assignment pattern only in windows around its keywords.
	for _, win := range keywordWindows(s, lower, assignKeywords, 8) {
		for _, m := range reAssign.FindAllStringSubmatch(win, 4) {
			name, val := m[1], m[2]
			if w := assignedSecret(name, val); w > 0 {
				add(strings.ToLower(strings.Trim(name, "\"'"))+" value", "", w)
			}
		}
	}
	for _, win := range keywordWindows(s, lower, bearerKeywords, 4) {
		for _, m := range reBearer.FindAllStringSubmatch(win, 4) {
			if !placeholder(m[2]) && (entropy(m[2]) >= 3.5 || strings.EqualFold(m[1], "basic")) {
				add(strings.ToLower(m[1])+" credential", "", 0.9)
			}
		}
	}
	if len(hits) == 0 {
		if tok := highEntropyToken(s); tok != "" {
			add("high-entropy token "+maskSecret(tok), "", 0.5)
		}
	}
	return hits
}

var (
	assignKeywords = []string{"pass", "pwd", "secret", "key", "token", "auth", "credential"}
	bearerKeywords = []string{"bearer", "basic", "token"}
)

// keywordWindows returns up to n non-overlapping windows of s around the
// occurrences of keywords in lower (s lower-cased, same length).
func keywordWindows(s, lower string, keywords []string, n int) []string {
	if lower == "" {
		return nil
	}
	if len(lower) != len(s) {
		lower = s // non-ASCII case mapping changed lengths: scan the whole text
		return []string{s}
	}
	var spans [][2]int
	for _, k := range keywords {
		for off := 0; len(spans) < 64; {
			i := strings.Index(lower[off:], k)
			if i < 0 {
				break
			}
			i += off
			spans = append(spans, [2]int{max(0, i-96), min(len(s), i+len(k)+200)})
			off = i + len(k)
		}
	}
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out []string
	cur := spans[0]
	for _, sp := range spans[1:] {
		if sp[0] <= cur[1] {
			cur[1] = max(cur[1], sp[1])
			continue
		}
		out = append(out, s[cur[0]:cur[1]])
		cur = sp
	}
	out = append(out, s[cur[0]:cur[1]])
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// isJWT reports whether three dot-separated base64url parts decode to a JSON
// header and payload.
func isJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts[:2] {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p, "="))
		if err != nil {
			return false
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return false
		}
	}
	return true
}

// assignedSecret weighs "password = value": a real-looking value, not a
// variable reference or a placeholder.
func assignedSecret(name, val string) float64 {
	val = strings.Trim(val, "\"'`")
	lname := strings.ToLower(name)
	if placeholder(val) || len(val) < 6 {
		return 0
	}
	// token_count: 5, password_policy=strict … need a value that is not a word.
	if strings.HasSuffix(lname, "_count") || strings.HasSuffix(lname, "_length") || strings.HasSuffix(lname, "_len") ||
		strings.HasSuffix(lname, "_type") || strings.HasSuffix(lname, "_policy") || strings.HasSuffix(lname, "_name") ||
		strings.HasSuffix(lname, "_id") && !strings.Contains(lname, "key") || strings.HasSuffix(lname, "_url") || strings.HasSuffix(lname, "_file") || strings.HasSuffix(lname, "_path") {
		return 0
	}
	classes := charClasses(val)
	e := entropy(val)
	switch {
	case len(val) >= 16 && e >= 3.5 && classes >= 2:
		return 1
	case strings.Contains(lname, "pass") || strings.Contains(lname, "pwd"):
		if classes >= 2 || len(val) >= 10 {
			return 0.8
		}
		return 0.5
	case len(val) >= 12 && e >= 3.2 && classes >= 2:
		return 0.8
	}
	return 0
}

// placeholder reports values that stand for a secret rather than hold one.
func placeholder(v string) bool {
	lv := strings.ToLower(strings.Trim(v, "\"'`"))
	if lv == "" {
		return true
	}
	switch lv[0] {
	case '$', '%', '<', '{', '[', '*', '(':
		return true
	}
	for _, p := range []string{"xxx", "***", "...", "…", "changeme", "change_me", "your", "example", "placeholder", "redacted", "dummy", "sample", "todo", "fixme", "secret_here", "here", "env(", "environ", "process.env", "getenv", "vault", "none", "null", "undefined", "false", "true", "os.", "settings.", "config.", "self.", "input(", "getpass", "prompt", "required", "optional", "string", "str", "hunter2", "demo", "fake", "test", "incorrect", "invalid", "wrong", "expired", "correct",
		"changed", "reset", "missing", "stored", "rotated", "needed", "protected", "encrypted", "hashed", "set", "same", "sent"} {
		if strings.Contains(lv, p) {
			return true
		}
	}
	// A bare identifier like AWS_SECRET_ACCESS_KEY or db.password is a name, not a value.
	allIdent := true
	upper := true
	for _, r := range v {
		if !(r == '_' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			allIdent = false
		}
		if r >= 'a' && r <= 'z' {
			upper = false
		}
	}
	if allIdent && (upper || strings.ContainsAny(v, "._")) {
		return true
	}
	return false
}

func charClasses(s string) int {
	var lo, up, di, ot bool
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			lo = true
		case r >= 'A' && r <= 'Z':
			up = true
		case r >= '0' && r <= '9':
			di = true
		default:
			ot = true
		}
	}
	n := 0
	for _, b := range []bool{lo, up, di, ot} {
		if b {
			n++
		}
	}
	return n
}

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// highEntropyToken returns a token that looks like a random credential: long,
// mixed case and digits, high entropy; not a hex hash, UUID, path, URL or a
// public key.
func highEntropyToken(s string) string {
	if len(s) < 24 {
		return ""
	}
	if strings.Contains(s, "-----BEGIN") {
		s = rePublicBlock.ReplaceAllString(s, " ")
	}
	for _, l := range tokenRuns(s, 24, 64) {
		tok := s[l[0]:l[1]]
		if len(tok) > 200 || strings.Contains(tok, "/") && strings.Count(tok, "/") > 2 || strings.Count(tok, ".") > 2 || strings.Count(tok, "-") > 4 {
			continue
		}
		// ssh-ed25519 AAAA…, ecdsa-sha2-nistp256 AAAA…: public keys are meant to be shared.
		before := strings.TrimRight(s[:l[0]], " \t")
		if i := strings.LastIndexAny(before, " \t\n\"'"); i >= 0 {
			before = before[i+1:]
		}
		if strings.HasPrefix(before, "ssh-") || strings.HasPrefix(before, "ecdsa-") || strings.HasPrefix(before, "sk-ssh-") || strings.HasPrefix(before, "sk-ecdsa-") {
			continue
		}
		if isHexOrUUID(tok) || charClasses(strings.Trim(tok, "=")) < 3 {
			continue
		}
		if entropy(tok) < 4.3 || upperRatio(tok) > 0.9 || encodedText(tok) {
			continue
		}
		return tok
	}
	return ""
}

// tokenRuns returns the spans of runs of token characters ([A-Za-z0-9+/_=.-])
// at least minLen long, at most n of them.
func tokenRuns(s string, minLen, n int) [][2]int {
	var out [][2]int
	start := -1
	for i := 0; i <= len(s); i++ {
		tokenChar := false
		if i < len(s) {
			c := s[i]
			tokenChar = isAlnum(c) || c == '+' || c == '/' || c == '_' || c == '=' || c == '.' || c == '-'
		}
		if tokenChar && start < 0 {
			start = i
		}
		if !tokenChar && start >= 0 {
			if i-start >= minLen {
				out = append(out, [2]int{start, i})
				if len(out) >= n {
					return out
				}
			}
			start = -1
		}
	}
	return out
}

// encodedText reports whether a token is base64 of printable text: encoded
// data (a command, a document), not a random key.
func encodedText(tok string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(tok); err == nil {
			return len(b) >= 8 && printable(string(b)) && utf8.Valid(b)
		}
	}
	return false
}

func upperRatio(s string) float64 {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			n++
		}
	}
	return float64(n) / float64(len(s))
}

func isHexOrUUID(t string) bool {
	for _, r := range t {
		if !(r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F')) {
			return false
		}
	}
	return true
}

// maskSecret shows the start of a secret only.
func maskSecret(s string) string {
	if len(s) <= 8 {
		return "…"
	}
	return s[:6] + "…"
}

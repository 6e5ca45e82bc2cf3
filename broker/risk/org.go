package risk

import (
	"strings"

	"github.com/airlock/airlock/broker/policy"
)

// orgInfo is an organisation's own domains, normalised for lookups.
type orgInfo struct {
	name      string
	inferred  bool     // no domains configured: the org's name stands for them
	mail      []string // mail domains, lower case
	hosts     []string // host patterns: exact or *.suffix
	stems     []string // the org name and the first label of each domain ("acme")
	skeletons map[string]string
}

func newOrgInfo(o *policy.Org) *orgInfo {
	oi := &orgInfo{name: strings.ToLower(o.Name), skeletons: map[string]string{}}
	addStem := func(s string) {
		s = strings.ToLower(strings.TrimSpace(s))
		if len(s) < 3 {
			return
		}
		for _, x := range oi.stems {
			if x == s {
				return
			}
		}
		oi.stems = append(oi.stems, s)
	}
	addStem(oi.name)
	for _, d := range o.MailDomains {
		d = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(d, "@")))
		if d == "" {
			continue
		}
		oi.mail = append(oi.mail, d)
		oi.skeletons[skeleton(d)] = d
		addStem(strings.SplitN(d, ".", 2)[0])
	}
	for _, h := range o.Hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		oi.hosts = append(oi.hosts, h)
		base := strings.TrimPrefix(h, "*.")
		oi.skeletons[skeleton(base)] = base
		if !strings.HasPrefix(h, "*.") {
			addStem(strings.SplitN(base, ".", 2)[0])
		}
	}
	return oi
}

// orgFor returns the org of a call: its named org, or the only configured org
// when the call names none.
func (s *Scorer) orgFor(name string) *orgInfo {
	if o, ok := s.orgs[strings.ToLower(name)]; ok {
		return o
	}
	if name == "" && len(s.orgs) == 1 {
		for _, o := range s.orgs {
			return o
		}
	}
	if n := strings.ToLower(strings.TrimSpace(name)); len(n) >= 2 {
		// An org the policy does not describe: its own domains are taken to
		// be those whose registrable name is the org's name (acme.com,
		// acme.io, grafana.acme.internal). See docs/risk.md.
		return &orgInfo{name: n, inferred: true, stems: []string{n}, skeletons: map[string]string{}}
	}
	return nil
}

// underDomain reports whether host is d or a subdomain of d.
func underDomain(host, d string) bool {
	return host == d || (len(host) > len(d) && strings.HasSuffix(host, d) && host[len(host)-len(d)-1] == '.')
}

// hostInside reports whether host belongs to the org: a host pattern, or a
// name under one of its mail domains (the org owns that DNS zone).
func (o *orgInfo) hostInside(host string) bool {
	if o == nil {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if o.inferred {
		return o.inferredInside(host)
	}
	for _, p := range o.hosts {
		if strings.HasPrefix(p, "*.") {
			if underDomain(host, p[2:]) {
				return true
			}
		} else if underDomain(host, p) {
			return true
		}
	}
	for _, d := range o.mail {
		if underDomain(host, d) {
			return true
		}
	}
	return false
}

// inferredInside: the registrable domain's name is the org's name, or, under
// a private top-level name (.internal, .local, .corp, .lan), any label is.
func (o *orgInfo) inferredInside(host string) bool {
	reg := registrable(host)
	if strings.SplitN(reg, ".", 2)[0] == o.name {
		return true
	}
	labels := strings.Split(host, ".")
	switch labels[len(labels)-1] {
	case "internal", "local", "corp", "lan", "intranet", "home", "localdomain":
		for _, l := range labels {
			if l == o.name {
				return true
			}
		}
	}
	return false
}

// mailInside reports whether a mail domain belongs to the org.
func (o *orgInfo) mailInside(domain string) bool { return o.hostInside(domain) }

// domainsText is the org's mail domains for details ("acme.com").
func (o *orgInfo) domainsText() string {
	if o == nil {
		return "the org"
	}
	if o.inferred {
		return o.name + ".* (org " + o.name + " has no domains in the policy)"
	}
	if len(o.mail) > 0 {
		return strings.Join(o.mail, ", ")
	}
	if len(o.hosts) > 0 {
		return strings.Join(o.hosts, ", ")
	}
	return "org " + o.name
}

// ownAccount reports whether an account identifier names the org itself
// ("acct:acme-payroll" for org acme).
func (o *orgInfo) ownAccount(id string) bool {
	if o == nil {
		return false
	}
	id = strings.ToLower(id)
	for _, s := range o.stems {
		if containsWord(id, s) {
			return true
		}
	}
	return false
}

// containsWord reports whether w occurs in s delimited by non-alphanumerics.
func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		j += i
		before := j == 0 || !isAlnum(s[j-1])
		after := j+len(w) == len(s) || !isAlnum(s[j+len(w)])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isAlnum(b byte) bool {
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}

// Well-known free-mail providers: mail there leaves any org, even when the
// call's org is unknown.
var freeMail = setOf(
	"gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "hotmail.com", "outlook.com",
	"live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "protonmail.com", "protonmail.ch",
	"proton.me", "pm.me", "gmx.com", "gmx.de", "gmx.net", "mail.com", "yandex.ru", "yandex.com", "mail.ru",
	"zoho.com", "tutanota.com", "tuta.io", "qq.com", "163.com", "126.com", "fastmail.com", "hey.com",
	"web.de", "mailinator.com", "guerrillamail.com", "temp-mail.org", "10minutemail.com", "sharklasers.com",
)

// Paste, file-drop and request-capture sites: data sent there is public or
// in an attacker's hands.
var pasteSites = setOf(
	"pastebin.com", "paste.ee", "hastebin.com", "hastebin.skyra.pw", "ghostbin.co", "dpaste.com", "dpaste.org",
	"termbin.com", "0x0.st", "transfer.sh", "file.io", "gofile.io", "anonfiles.com", "wetransfer.com", "we.tl",
	"sendspace.com", "mega.nz", "pastes.io", "rentry.co", "controlc.com", "justpaste.it", "privatebin.net",
	"catbox.moe", "filebin.net", "tmpfiles.org", "bashupload.com", "temp.sh", "ix.io", "sprunge.us",
	"paste.rs", "webhook.site", "requestbin.com", "requestbin.net", "pipedream.net", "ngrok.io",
	"ngrok-free.app", "interact.sh", "oast.fun", "oast.pro", "burpcollaborator.net", "requestcatcher.com",
	"hookbin.com", "pastebin.pl", "paste2.org", "gist.githubusercontent.com", "discord.com", "discordapp.com",
	"api.telegram.org",
)

// pasteLabelHints are label fragments of hosts built to receive dumps.
var pasteLabelHints = []string{"paste", "filedrop", "file-drop", "fileshare", "file-share", "upload", "webhook", "exfil", "dropbox", "transfer"}

func setOf(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func inSet(set map[string]bool, host string) bool {
	host = strings.ToLower(host)
	for h := host; h != ""; {
		if set[h] {
			return true
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			return false
		}
		h = h[i+1:]
	}
	return false
}

// pasteKind says whether host is a known paste site (1) or looks like one (0.6).
func pasteKind(host string) float64 {
	if inSet(pasteSites, host) {
		return 1
	}
	h := strings.ToLower(host)
	for _, hint := range pasteLabelHints {
		if strings.Contains(h, hint) {
			return 0.6
		}
	}
	return 0
}

// registrable returns the last two labels of host (three under a two-letter
// second level such as co.uk): a cheap stand-in for the public suffix list.
func registrable(host string) string {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	n := 2
	if len(labels) >= 3 {
		sl := labels[len(labels)-2]
		if len(labels[len(labels)-1]) == 2 && (len(sl) <= 3 && (sl == "co" || sl == "com" || sl == "org" || sl == "net" || sl == "ac" || sl == "gov" || sl == "edu")) {
			n = 3
		}
	}
	if len(labels) <= n {
		return strings.Join(labels, ".")
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

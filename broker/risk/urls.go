package risk

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// target is a parsed network destination.
type target struct {
	raw    string
	scheme string
	host   string // lower case, no brackets, no port
	port   string
	path   string
	ip     netip.Addr // valid when the host is an IP in any spelling
	user   string     // userinfo, when present
}

// parseTarget parses a URL, or a bare host[:port][/path].
func parseTarget(raw string) (target, bool) {
	raw = strings.TrimSpace(strings.Trim(raw, "\"'`<>()"))
	if raw == "" || len(raw) > 8192 {
		return target{}, false
	}
	s := raw
	if !strings.Contains(s, "://") {
		if strings.HasPrefix(strings.ToLower(s), "file:") {
			s = "file://" + strings.TrimPrefix(s[5:], "//")
		} else {
			s = "http://" + s
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse rejects some odd hosts; fall back to a manual split.
		i := strings.Index(s, "://")
		rest := s[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		u = &url.URL{Scheme: s[:i], Host: rest}
	}
	t := target{raw: raw, scheme: strings.ToLower(u.Scheme), path: u.Path}
	if u.User != nil {
		t.user = u.User.String()
	}
	host := u.Host
	if h, p, ok := splitHostPort(host); ok {
		host, t.port = h, p
	}
	t.host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if ip, ok := parseIPAny(t.host); ok {
		t.ip = ip
	}
	return t, t.host != "" || t.scheme == "file"
}

func splitHostPort(h string) (string, string, bool) {
	if strings.HasPrefix(h, "[") {
		if i := strings.Index(h, "]"); i > 0 {
			if i+1 < len(h) && h[i+1] == ':' {
				return h[:i+1], h[i+2:], true
			}
			return h, "", true
		}
	}
	if strings.Count(h, ":") == 1 {
		i := strings.IndexByte(h, ':')
		return h[:i], h[i+1:], true
	}
	return h, "", false
}

// parseIPAny parses an IP in any spelling a resolver accepts: dotted quad,
// decimal integer, hex, octal, short forms (127.1), IPv6 and IPv4-mapped
// IPv6; the result is unmapped.
func parseIPAny(h string) (netip.Addr, bool) {
	if h == "" {
		return netip.Addr{}, false
	}
	if i := strings.IndexByte(h, '%'); i > 0 {
		h = h[:i] // zone
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), true
	}
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseIntPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	switch len(vals) {
	case 1:
		n = vals[0]
	case 2:
		if vals[0] > 255 || vals[1] > 0xffffff {
			return netip.Addr{}, false
		}
		n = vals[0]<<24 | vals[1]
	case 3:
		if vals[0] > 255 || vals[1] > 255 || vals[2] > 0xffff {
			return netip.Addr{}, false
		}
		n = vals[0]<<24 | vals[1]<<16 | vals[2]
	case 4:
		for _, v := range vals {
			if v > 255 {
				return netip.Addr{}, false
			}
		}
		n = vals[0]<<24 | vals[1]<<16 | vals[2]<<8 | vals[3]
	}
	if n > 0xffffffff {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func parseIntPart(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := 10
	switch {
	case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
		p, base = p[2:], 16
		if p == "" {
			return 0, true
		}
	case len(p) > 1 && p[0] == '0':
		p, base = p[1:], 8
	}
	v, err := strconv.ParseUint(p, base, 64)
	return v, err == nil
}

var (
	pfxLinkLocal4 = netip.MustParsePrefix("169.254.0.0/16")
	pfxCGNAT      = netip.MustParsePrefix("100.64.0.0/10")
	pfxThis       = netip.MustParsePrefix("0.0.0.0/8")
	metadataIPs   = map[netip.Addr]string{
		netip.MustParseAddr("169.254.169.254"): "cloud metadata service",
		netip.MustParseAddr("169.254.170.2"):   "ECS task metadata",
		netip.MustParseAddr("fd00:ec2::254"):   "AWS metadata service (IPv6)",
		netip.MustParseAddr("100.100.100.200"): "Alibaba metadata service",
		netip.MustParseAddr("192.0.0.192"):     "Oracle metadata service",
	}
	metadataNames = setOf("metadata.google.internal", "metadata", "metadata.azure.com", "instance-data", "instance-data.ec2.internal", "metadata.packet.net")
	adminPorts    = map[string]string{"2375": "Docker API", "2376": "Docker API (TLS)", "10250": "kubelet API", "10255": "kubelet read-only API", "6443": "Kubernetes API", "2379": "etcd", "6379": "Redis", "11211": "memcached", "9200": "Elasticsearch", "27017": "MongoDB", "5984": "CouchDB", "8500": "Consul", "8200": "Vault", "4646": "Nomad", "9000": "PHP-FPM/admin", "8001": "kubectl proxy", "5432": "Postgres", "3306": "MySQL", "15672": "RabbitMQ admin", "9090": "Prometheus", "8086": "InfluxDB", "61616": "ActiveMQ"}
	badSchemes    = map[string]string{"file": "reads local files", "gopher": "crafts raw TCP payloads", "dict": "talks raw TCP", "ldap": "LDAP lookup", "ldaps": "LDAP lookup", "tftp": "TFTP", "jar": "Java archive fetch", "netdoc": "local file read", "phar": "PHP archive", "expect": "runs a command", "php": "PHP stream wrapper", "sftp": "file transfer", "smb": "file share"}
	rebindDomains = []string{".nip.io", ".sslip.io", ".xip.io", ".localtest.me", ".lvh.me", ".vcap.me", ".lacolhost.com", ".1u.ms", ".rbndr.us"}
)

// ssrfCheck weighs a destination that reaches inside the host or network.
func ssrfCheck(t target) (float64, string) {
	where := clip(t.raw, 70)
	if why, ok := badSchemes[t.scheme]; ok {
		return 1, t.scheme + ":// URL " + why + ": " + where
	}
	ip := t.ip
	how := ""
	if !ip.IsValid() {
		switch {
		case t.host == "localhost" || strings.HasSuffix(t.host, ".localhost") || t.host == "ip6-localhost" || t.host == "ip6-loopback" ||
			t.host == "localtest.me" || t.host == "lvh.me" || t.host == "vcap.me" || t.host == "lacolhost.com":
			ip, how = netip.MustParseAddr("127.0.0.1"), "localhost name"
		case metadataNames[t.host]:
			return 1, "cloud metadata host " + t.host + ": " + where
		default:
			for _, d := range rebindDomains {
				if strings.HasSuffix(t.host, d) {
					inner := strings.TrimSuffix(t.host, d)
					// 127.0.0.1.nip.io, 127-0-0-1.nip.io, app.10.0.0.1.nip.io
					labels := strings.Split(strings.ReplaceAll(inner, "-", "."), ".")
					if len(labels) >= 4 {
						if a, ok := parseIPAny(strings.Join(labels[len(labels)-4:], ".")); ok {
							ip, how = a, "DNS name that resolves to "+a.String()
						}
					}
				}
			}
		}
		if !ip.IsValid() {
			return 0, ""
		}
	}
	spelled := ""
	if how == "" && t.host != ip.String() {
		spelled = " (" + t.host + " is " + ip.String() + ")"
	} else if how != "" {
		spelled = " (" + how + ")"
	}
	port := ""
	if svc, ok := adminPorts[t.port]; ok {
		port = ", port " + t.port + " is the " + svc
	}
	if why, ok := metadataIPs[ip]; ok {
		return 1, why + " " + ip.String() + spelled + ": " + where
	}
	var w float64
	var kind string
	switch {
	case ip.IsLoopback() || ip.IsUnspecified() || (ip.Is4() && pfxThis.Contains(ip)):
		w, kind = 0.6, "loopback" // a dev server on localhost is common; admin ports and odd spellings are not
	case ip.IsLinkLocalUnicast() || (ip.Is4() && pfxLinkLocal4.Contains(ip)):
		w, kind = 1, "link-local"
	case ip.IsPrivate():
		w, kind = 0.7, "private network"
	case ip.Is4() && pfxCGNAT.Contains(ip):
		w, kind = 0.6, "carrier-grade NAT range"
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast():
		w, kind = 0.5, "multicast"
	default:
		if spelled != "" && how == "" && !strings.Contains(t.host, ":") {
			// A public IP in an obfuscated spelling is itself a red flag.
			return 0.5, "IP address in an unusual spelling" + spelled + ": " + where
		}
		return 0, ""
	}
	if port != "" {
		w = 1
	}
	if spelled != "" && how == "" {
		w = max(w, 0.9)
	}
	return w, kind + " address " + ip.String() + spelled + port + ": " + where
}

// dnsShape weighs a host name that looks like data smuggled in DNS labels.
func dnsShape(name string) (float64, string) {
	if strings.Contains(name, "$(") || strings.Contains(name, "`") || strings.Contains(name, "$(…)") {
		return 1, "the name is built from command output"
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if strings.Count(name, ".") < 2 {
		return 0, ""
	}
	labels := strings.Split(name, ".")
	sub := labels[:len(labels)-2]
	total := 0
	for _, l := range sub {
		total += len(l)
		if len(l) >= 40 || (len(l) >= 16 && encodedLabel(l)) {
			return 0.8, "label " + clip(l, 24) + " looks like encoded data"
		}
	}
	if total >= 80 && len(sub) >= 3 {
		return 0.7, "long chain of labels (" + itoa(total) + " bytes) under " + strings.Join(labels[len(labels)-2:], ".")
	}
	return 0, ""
}

// encodedLabel reports whether a DNS label looks like hex, base32 or base64
// data rather than a word.
func encodedLabel(l string) bool {
	digits, letters := 0, 0
	hex := true
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z':
			letters++
			if c > 'f' {
				hex = false
			}
		case c == '-' || c == '_':
		default:
			return false
		}
	}
	if hex && len(l) >= 16 && digits > 0 {
		return true
	}
	return digits >= 3 && letters >= 6 && entropy(l) >= 3.5
}

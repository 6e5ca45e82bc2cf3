package risk

import (
	"net/url"
	"path"
	"strings"
)

// homeRel are sensitive files relative to a home directory (matched as path
// suffixes or segments after cleaning).
var homeRel = []struct {
	rel    string
	weight float64
	what   string
}{
	{".aws/credentials", 1, "AWS credentials"},
	{".aws/config", 0.5, "AWS config"},
	{".kube/config", 0.9, "Kubernetes credentials"},
	{".docker/config.json", 0.9, "Docker registry credentials"},
	{".netrc", 1, "netrc passwords"},
	{".pgpass", 1, "Postgres passwords"},
	{".my.cnf", 0.8, "MySQL credentials"},
	{".git-credentials", 1, "git credentials"},
	{".npmrc", 0.9, "npm token file"},
	{".pypirc", 0.9, "PyPI token file"},
	{".vault-token", 1, "Vault token"},
	{".config/gh/hosts.yml", 0.9, "GitHub CLI token"},
	{".config/gcloud", 0.9, "gcloud credentials"},
	{".azure", 0.8, "Azure credentials"},
	{".gnupg", 0.9, "GnuPG keys"},
	{".password-store", 0.9, "password store"},
	{".ssh/authorized_keys", 0.6, "SSH authorized keys"},
	{".ssh/config", 0.4, "SSH config"},
	{".ssh/known_hosts", 0.3, "SSH known hosts"},
	{".bash_history", 0.7, "shell history"},
	{".zsh_history", 0.7, "shell history"},
	{".psql_history", 0.6, "psql history"},
	{".mysql_history", 0.6, "mysql history"},
	{".python_history", 0.4, "python history"},
	{".git/config", 0.5, "git config (may hold credentials in remote URLs)"},
	{".terraform.d/credentials.tfrc.json", 0.9, "Terraform token"},
}

// sensitivePath weighs a file path after cleaning it: traversal out of the
// workspace, system secrets, credential files, private keys and .env files.
func sensitivePath(p string) (float64, string) {
	p = strings.TrimSpace(strings.Trim(p, "\"'`"))
	if p == "" || len(p) > 4096 {
		return 0, ""
	}
	orig := p
	enc := false
	if strings.Contains(p, "%") {
		for range 3 { // double and triple encoding
			d, err := url.PathUnescape(p)
			if err != nil || d == p {
				break
			}
			p, enc = d, true
		}
	}
	p = strings.ReplaceAll(p, "\\", "/")
	// "....//" and "..;/" survive naive "../" stripping and still climb.
	if strings.Contains(p, "....") || strings.Contains(p, "..;") {
		dodge := false
		segs := strings.Split(p, "/")
		for i, sg := range segs {
			if len(sg) >= 4 && strings.Trim(sg, ".") == "" || strings.HasPrefix(sg, "..;") {
				segs[i] = ".."
				dodge = true
			}
		}
		if dodge {
			p = strings.Join(segs, "/")
			enc = true // an evasion, reported like an encoding
		}
	}
	if strings.HasPrefix(strings.ToLower(p), "file://") {
		p = p[len("file://"):]
		if i := strings.IndexByte(p, '/'); i > 0 {
			p = p[i:] // file://host/path
		}
	}
	home := false
	switch {
	case p == "~" || strings.HasPrefix(p, "~/"):
		p, home = "/home/~"+p[1:], true
	case strings.HasPrefix(p, "~"): // ~user/…
		p, home = "/home/"+p[1:], true
	case strings.HasPrefix(p, "${HOME}"):
		p, home = "/home/~"+p[len("${HOME}"):], true
	case strings.HasPrefix(p, "$HOME"):
		p, home = "/home/~"+p[len("$HOME"):], true
	}
	c := path.Clean(p)
	traversal := false
	resolved := c
	if !strings.HasPrefix(c, "/") && (c == ".." || strings.HasPrefix(c, "../")) {
		traversal = true
		resolved = "/" + strings.TrimLeft(strings.TrimPrefix(strings.ReplaceAll(c, "../", ""), ".."), "/")
	}
	if strings.HasPrefix(p, "/") && strings.Contains(p, "/../") && !home {
		// An absolute path that climbs: /var/www/../../etc/shadow.
		traversal = strings.Count(p, "/../") >= 2 || strings.HasSuffix(p, "/..")
	}
	w, what := sensitiveTarget(resolved)
	if w == 0 && !strings.HasPrefix(resolved, "/") {
		// A relative path that still names a system secret (rootfs/etc/shadow).
		for _, suf := range []string{"etc/shadow", "etc/sudoers", "etc/gshadow"} {
			if strings.HasSuffix(strings.ToLower(resolved), "/"+suf) {
				w, what = 0.6, "copy of "+suf
			}
		}
	}
	if enc && (traversal || w > 0) {
		what = strings.TrimSpace(what + " (encoded or evasive spelling)")
		w = max(w, 0.8)
	}
	switch {
	case traversal && w > 0:
		return 1, "path " + clip(orig, 60) + " climbs out of the workspace to " + resolved + ": " + what
	case traversal:
		return 0.8, "path " + clip(orig, 60) + " climbs out of the workspace (resolves to " + resolved + ")"
	case w > 0:
		if resolved != orig && !home {
			return w, what + ": " + clip(orig, 60) + " (resolves to " + resolved + ")"
		}
		return w, what + ": " + clip(orig, 60)
	}
	return 0, ""
}

// sensitiveTarget weighs a cleaned path.
func sensitiveTarget(c string) (float64, string) {
	lc := strings.ToLower(c)
	base := path.Base(lc)
	switch {
	case lc == "/etc/shadow" || lc == "/etc/gshadow" || lc == "/etc/master.passwd" || strings.HasPrefix(lc, "/etc/shadow"):
		return 1, "password hashes"
	case lc == "/etc/sudoers" || strings.HasPrefix(lc, "/etc/sudoers.d"):
		return 0.9, "sudoers"
	case strings.HasPrefix(lc, "/etc/ssh/ssh_host_") && !strings.HasSuffix(lc, ".pub"):
		return 1, "SSH host private key"
	case lc == "/etc/passwd" || lc == "/etc/group":
		return 0.5, "system account list"
	case strings.HasPrefix(lc, "/proc/") && (base == "environ" || base == "mem" || base == "maps" || base == "auxv"):
		return 1, "process " + base + " (secrets in the environment or memory)"
	case strings.HasPrefix(lc, "/proc/") && base == "cmdline":
		return 0.4, "process command line"
	case lc == "/proc/kcore" || lc == "/dev/mem" || lc == "/dev/kmem":
		return 1, "kernel memory"
	case lc == "/var/run/docker.sock" || lc == "/run/docker.sock" || strings.HasSuffix(lc, "/containerd.sock"):
		return 1, "container runtime socket"
	case strings.HasPrefix(lc, "/run/secrets") || strings.HasPrefix(lc, "/var/run/secrets"):
		return 1, "mounted secrets"
	case lc == "/etc/kubernetes/admin.conf" || strings.HasPrefix(lc, "/etc/kubernetes/pki"):
		return 1, "Kubernetes admin credentials"
	case strings.HasPrefix(lc, "/etc/ssl/private") || strings.HasPrefix(lc, "/etc/pki/tls/private") || strings.HasPrefix(lc, "/etc/letsencrypt/live") && strings.HasSuffix(lc, "privkey.pem"):
		return 1, "TLS private key"
	case strings.HasSuffix(lc, "windows/system32/config/sam") || strings.HasSuffix(lc, "windows/system32/config/system") || strings.HasSuffix(lc, "windows/repair/sam"):
		return 1, "Windows password hashes"
	case lc == "/root" || strings.HasPrefix(lc, "/root/"):
		if w, what := homeFile(lc); w > 0 {
			return w, what
		}
		return 0.6, "root's home directory"
	}
	if w, what := homeFile(lc); w > 0 {
		return w, what
	}
	// Files that are secrets by name, wherever they live.
	switch {
	case base == ".env" || (strings.HasPrefix(base, ".env.") && !envTemplate(base)) || (strings.HasSuffix(base, ".env") && base != ".env" && !strings.Contains(base, "example")):
		return 1, ".env file with credentials"
	case base == ".envrc":
		return 0.6, "direnv file"
	case base == ".htpasswd":
		return 0.9, "htpasswd hashes"
	case strings.HasPrefix(base, "id_rsa") || strings.HasPrefix(base, "id_ed25519") || strings.HasPrefix(base, "id_ecdsa") || strings.HasPrefix(base, "id_dsa"):
		if strings.HasSuffix(base, ".pub") {
			return 0, ""
		}
		return 1, "SSH private key"
	case strings.HasSuffix(base, ".pem") || strings.HasSuffix(base, ".key") || strings.HasSuffix(base, ".p12") || strings.HasSuffix(base, ".pfx") || strings.HasSuffix(base, ".jks") || strings.HasSuffix(base, ".keystore"):
		if strings.Contains(base, "pub") || strings.Contains(base, "cert") || strings.Contains(base, "chain") || strings.HasPrefix(base, "ca.") {
			return 0.2, "certificate or public key file"
		}
		if strings.Contains(lc, "/secrets/") || strings.Contains(lc, "/private/") || strings.HasPrefix(base, "priv") || strings.Contains(base, "private") {
			return 1, "private key file"
		}
		return 0.7, "key file"
	case strings.HasSuffix(base, ".kdbx"):
		return 0.9, "password database"
	case base == "credentials.json" || base == "credentials" || strings.HasPrefix(base, "service-account") && strings.HasSuffix(base, ".json") || base == "application_default_credentials.json":
		return 0.8, "credentials file"
	case base == "secrets.yaml" || base == "secrets.yml" || base == "secrets.json" || base == "secrets.toml" || base == "secrets.env":
		return 0.7, "secrets file"
	case base == "terraform.tfstate" || base == "terraform.tfstate.backup":
		return 0.7, "Terraform state (holds secrets)"
	case base == "wp-config.php":
		return 0.6, "WordPress config with DB password"
	}
	return 0, ""
}

func envTemplate(base string) bool {
	for _, s := range []string{"example", "sample", "template", "dist", "defaults", "tmpl", "tpl", "schema"} {
		if strings.HasSuffix(base, "."+s) || strings.Contains(base, "."+s+".") {
			return true
		}
	}
	return false
}

// homeFile matches credential files under any home directory (or anywhere:
// ".aws/credentials" is a secret wherever it sits).
func homeFile(lc string) (float64, string) {
	if i := strings.Index(lc, "/.ssh/"); i >= 0 || strings.HasPrefix(lc, ".ssh/") {
		rest := lc[strings.Index(lc, ".ssh/")+5:]
		if strings.HasPrefix(rest, "id_") && !strings.HasSuffix(rest, ".pub") || rest == "identity" {
			return 1, "SSH private key"
		}
	}
	if strings.HasSuffix(lc, "/.ssh") || lc == ".ssh" {
		return 0.8, "SSH directory (private keys)"
	}
	for _, h := range homeRel {
		if strings.HasSuffix(lc, "/"+h.rel) || lc == h.rel || strings.Contains(lc, "/"+h.rel+"/") || strings.HasPrefix(lc, h.rel+"/") {
			return h.weight, h.what
		}
	}
	return 0, ""
}

// pathKeys are argument keys that hold a file path.
var pathKeys = setOf("path", "file", "file_path", "filepath", "filename", "file_name", "dest", "destination", "src", "source",
	"target", "dir", "directory", "notebook_path", "output", "input", "location", "abs_path", "relative_path", "folder", "paths", "files", "attachment", "attachments")

// writeTool reports whether a tool name writes the path it gets.
func writeTool(tool string) bool {
	for _, w := range []string{"write", "create", "append", "save", "edit", "upload", "put", "patch", "replace", "move", "copy", "mkdir"} {
		if strings.Contains(tool, w) {
			return true
		}
	}
	return false
}

package risk

import (
	"encoding/base64"
	"path"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// shellFacts is what the shell analysis learned about a command line.
type shellFacts struct {
	findings []finding
	paths    []string          // path-like arguments (files read, written or named)
	urls     []string          // URLs and hosts that network commands contact
	remotes  map[string]string // git remote add NAME URL
	pushes   []string          // git push REMOTE
	network  string            // the first network command, if any
	uploads  []string          // local files a command sends (curl -F f=@file, -T file)
	fetched  []string          // files written by curl -o / wget -O
	vars     map[string]string // X=value assignments seen so far, for $X
	executed []string          // files run as programs or scripts
}

func (f *shellFacts) add(name string, w float64, d string) {
	f.findings = append(f.findings, finding{name, w, d})
}

// simple is one simple command after unwrapping sudo/env/nohup/…
type simple struct {
	prog   string // the program as written: "./a.sh", "/bin/rm"
	name   string // base name: "rm", "bash"
	args   []string
	words  []*syntax.Word
	redirs []*syntax.Redirect
	sudo   bool
	raw    *syntax.CallExpr
}

var interpreters = setOf("sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "csh", "tcsh", "mksh", "busybox",
	"python", "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "pwsh", "powershell", "osascript")

var downloaders = setOf("curl", "wget", "fetch", "aria2c", "lwp-download", "http", "https", "xh", "iwr", "invoke-webrequest")

var decoders = setOf("base64", "base32", "basenc", "xxd", "openssl", "gunzip", "zcat", "rev")

var netSinks = setOf("nc", "ncat", "netcat", "socat", "telnet", "openssl", "cryptcat", "sshpass")

var dnsTools = setOf("dig", "nslookup", "host", "drill", "getent", "ping", "ping6", "traceroute", "delv", "resolvectl")

var wrappers = setOf("sudo", "doas", "env", "nohup", "timeout", "nice", "exec", "command", "builtin", "time",
	"stdbuf", "ionice", "setsid", "xargs", "chroot", "su", "unbuffer", "watch", "strace", "runuser")

// analyzeShell parses a command line with mvdan.cc/sh and walks its AST.
func analyzeShell(cmd string, depth int) shellFacts {
	var f shellFacts
	f.remotes = map[string]string{}
	if depth > 3 || strings.TrimSpace(cmd) == "" {
		return f
	}
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(cmd), "")
	if err != nil {
		// Not valid shell: still look at the words, without structure.
		f.add(FactorShellDanger, 0.15, "command does not parse as shell ("+clip(err.Error(), 60)+")")
		words := strings.Fields(cmd)
		if len(words) > 0 {
			s := simple{name: path.Base(words[0]), args: words[1:]}
			unwrap(&s)
			checkSimple(&s, &f, depth)
		}
		return f
	}
	f.vars = map[string]string{}
	assign := func(as []*syntax.Assign) {
		for _, a := range as {
			if a != nil && a.Name != nil && a.Value != nil && len(f.vars) < 64 {
				f.vars[a.Name.Value] = wordStr(a.Value)
			}
		}
	}
	syntax.Walk(file, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CallExpr:
			if len(n.Args) == 0 {
				assign(n.Assigns)
			}
		case *syntax.DeclClause:
			assign(n.Args)
		case *syntax.Stmt:
			if bc, ok := n.Cmd.(*syntax.BinaryCmd); ok && (bc.Op == syntax.Pipe || bc.Op == syntax.PipeAll) {
				checkPipeline(flattenPipe(n), &f, depth)
			}
			if ce, ok := n.Cmd.(*syntax.CallExpr); ok && len(ce.Args) > 0 {
				s := toSimple(ce, n.Redirs)
				checkSimple(&s, &f, depth)
				if downloaders[s.name] || decoders[s.name] {
					for _, r := range n.Redirs {
						if r.Op == syntax.RdrOut || r.Op == syntax.AppOut || r.Op == syntax.RdrClob {
							f.fetched = append(f.fetched, wordStr(r.Word))
						}
					}
				}
			}
			for _, r := range n.Redirs {
				checkRedirect(r, &f)
			}
		case *syntax.FuncDecl:
			// A function that pipes into itself in the background is a fork bomb.
			if n.Name == nil || n.Body == nil {
				return true
			}
			name := n.Name.Value
			forkBomb := false
			syntax.Walk(n.Body, func(m syntax.Node) bool {
				if bc, ok := m.(*syntax.BinaryCmd); ok && bc.Op == syntax.Pipe {
					if ce, ok := bc.Y.Cmd.(*syntax.CallExpr); ok && len(ce.Args) > 0 && ce.Args[0].Lit() == name {
						forkBomb = true
					}
				}
				return true
			})
			if forkBomb {
				f.add(FactorShellDanger, 1, "fork bomb: function "+name+" pipes into itself")
			}
		}
		return true
	})
	fetchedAndRun(&f)
	if low := strings.ToLower(cmd); containsAny(low, "socket", "fsockopen", "tcpsocket", "net.socket", "/dev/tcp") &&
		containsAny(low, "/bin/sh", "/bin/bash", "sh -i", "bash -i", "cmd.exe", "powershell") && containsAny(low, "exec", "spawn", "system", "popen", "dup2", "<&", ">&", "subprocess") {
		f.add(FactorShellDanger, 1, "a socket wired to a shell (reverse shell)")
	}
	return f
}

// fetchedAndRun flags a file downloaded and then executed in one command line.
func fetchedAndRun(f *shellFacts) {
	for _, x := range f.executed {
		for _, d := range f.fetched {
			if d != "" && d != "-" && (path.Clean(x) == path.Clean(d) || path.Base(x) == path.Base(d)) {
				f.add(FactorShellDanger, 0.9, "runs "+x+", a file it just downloaded")
				return
			}
		}
	}
}

func flattenPipe(s *syntax.Stmt) []*syntax.Stmt {
	if bc, ok := s.Cmd.(*syntax.BinaryCmd); ok && (bc.Op == syntax.Pipe || bc.Op == syntax.PipeAll) {
		return append(flattenPipe(bc.X), flattenPipe(bc.Y)...)
	}
	return []*syntax.Stmt{s}
}

// wordStr renders a word as the shell would see it before expansion of
// variables and substitutions (those stay as $NAME and $(…)).
func wordStr(w *syntax.Word) string {
	if w == nil {
		return ""
	}
	var b strings.Builder
	partsStr(&b, w.Parts)
	return b.String()
}

func partsStr(b *strings.Builder, parts []syntax.WordPart) {
	for _, p := range parts {
		switch p := p.(type) {
		case *syntax.Lit:
			b.WriteString(p.Value)
		case *syntax.SglQuoted:
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			partsStr(b, p.Parts)
		case *syntax.ParamExp:
			if p.Param != nil {
				b.WriteString("$" + p.Param.Value)
			} else {
				b.WriteString("$?")
			}
		case *syntax.CmdSubst:
			b.WriteString("$(…)")
		case *syntax.ProcSubst:
			b.WriteString("<(…)")
		default:
			b.WriteString("?")
		}
	}
}

// substs returns the command and process substitutions inside a word.
func substs(w *syntax.Word) [][]*syntax.Stmt {
	var out [][]*syntax.Stmt
	if w == nil {
		return nil
	}
	syntax.Walk(w, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CmdSubst:
			out = append(out, n.Stmts)
		case *syntax.ProcSubst:
			out = append(out, n.Stmts)
		}
		return true
	})
	return out
}

func toSimple(ce *syntax.CallExpr, redirs []*syntax.Redirect) simple {
	s := simple{raw: ce, redirs: redirs}
	s.prog = wordStr(ce.Args[0])
	s.name = path.Base(s.prog)
	s.words = ce.Args[1:]
	for _, w := range ce.Args[1:] {
		s.args = append(s.args, wordStr(w))
	}
	unwrap(&s)
	return s
}

// unwrap strips sudo, env, nohup, timeout and similar prefixes so the real
// command is checked.
func unwrap(s *simple) {
	for range 8 {
		if !wrappers[s.name] || len(s.args) == 0 {
			return
		}
		if s.name == "sudo" || s.name == "doas" || s.name == "su" || s.name == "runuser" || s.name == "chroot" {
			s.sudo = true
		}
		i := 0
		for i < len(s.args) {
			a := s.args[i]
			switch {
			case s.name == "su" && a == "-c" && i+1 < len(s.args):
				// su -c "cmd": the command is a string; analyse it as a shell.
				s.name, s.args, s.words = "sh", []string{"-c", s.args[i+1]}, nil
				return
			case strings.HasPrefix(a, "-"):
				if (s.name == "sudo" && (a == "-u" || a == "-g" || a == "-C" || a == "-h" || a == "-p" || a == "-r" || a == "-t" || a == "-U")) ||
					(s.name == "nice" && a == "-n") || (s.name == "timeout" && (a == "-s" || a == "-k" || a == "--signal" || a == "--kill-after")) ||
					(s.name == "xargs" && (a == "-I" || a == "-n" || a == "-P" || a == "-d" || a == "-L" || a == "-s" || a == "-E")) ||
					(s.name == "env" && (a == "-u" || a == "-C" || a == "-S")) || (s.name == "ionice" && (a == "-c" || a == "-n")) ||
					(s.name == "su" || s.name == "runuser") && (a == "-s" || a == "-g" || a == "-u") {
					i++
				}
				i++
			case s.name == "env" && strings.Contains(a, "="):
				i++
			case (s.name == "timeout" || s.name == "su" || s.name == "runuser" || s.name == "chroot") && i == 0:
				i++ // the duration, the user, the root
			default:
				goto done
			}
		}
	done:
		if i >= len(s.args) {
			return
		}
		s.prog = s.args[i]
		s.name = path.Base(s.args[i])
		s.args = s.args[i+1:]
		if len(s.words) > i {
			s.words = s.words[i+1:]
		} else {
			s.words = nil
		}
	}
}

func hasFlag(args []string, short byte, long ...string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if strings.HasPrefix(a, "--") {
			for _, l := range long {
				if a == l || strings.HasPrefix(a, l+"=") {
					return true
				}
			}
			continue
		}
		if short != 0 && len(a) > 1 && a[0] == '-' && strings.IndexByte(a[1:], short) >= 0 {
			return true
		}
	}
	return false
}

func nonFlags(args []string) []string {
	var out []string
	dd := false
	for _, a := range args {
		if !dd && a == "--" {
			dd = true
			continue
		}
		if !dd && strings.HasPrefix(a, "-") && a != "-" {
			continue
		}
		out = append(out, a)
	}
	return out
}

// broadPath reports how broad a deletion target is: 1 for the root, home
// or a system directory, 0.6 for the whole working directory, else 0.
func broadPath(t string) float64 {
	t = strings.TrimSpace(t)
	for _, suf := range []string{"/*", "/.*", "/"} {
		for strings.HasSuffix(t, suf) && len(t) > len(suf) {
			t = strings.TrimSuffix(t, suf)
		}
	}
	switch t {
	case "/", "/*", "~", "$HOME", "~/*", "$HOME/*", "/home", "/root", "/etc", "/usr", "/var", "/bin", "/sbin",
		"/lib", "/lib64", "/boot", "/opt", "/srv", "/dev", "/sys", "/proc", "/mnt", "/media", "/var/lib", "/usr/bin",
		"/usr/lib", "/usr/local", "/var/log", "/home/*", "/Users", "/System", "C:", "C:\\":
		return 1
	case "*", ".", "..", "./*", "../*", "../..", ".*":
		return 0.6
	}
	if strings.HasPrefix(t, "/") {
		c := path.Clean(t)
		if c == "/" {
			return 1
		}
		parts := strings.Split(strings.TrimPrefix(c, "/"), "/")
		if len(parts) == 2 && systemDirs[parts[0]] {
			return 0.7
		}
	}
	if strings.HasPrefix(t, "~/") || strings.HasPrefix(t, "$HOME/") {
		rest := t[strings.IndexByte(t, '/')+1:]
		if !strings.Contains(rest, "/") && !strings.HasPrefix(rest, ".cache") {
			return 0.6
		}
	}
	return 0
}

var systemDirs = setOf("etc", "usr", "bin", "sbin", "lib", "lib64", "boot", "sys", "proc", "dev", "var", "opt", "root", "srv", "System", "Library")

// systemPath reports whether a write to p changes the system or plants
// persistence, with a reason.
func systemPath(p string) (float64, string) {
	if p == "" {
		return 0, ""
	}
	low := strings.ToLower(p)
	for _, rc := range []string{".bashrc", ".bash_profile", ".profile", ".zshrc", ".zprofile", ".bash_login", ".bash_logout", ".config/fish/config.fish", ".ssh/authorized_keys", ".ssh/config", ".config/autostart", "library/launchagents", ".config/systemd/user", ".git/hooks"} {
		if strings.HasSuffix(low, rc) || strings.Contains(low, rc+"/") {
			return 1, "persistence via " + p
		}
	}
	if strings.HasPrefix(low, "/dev/") {
		switch {
		case low == "/dev/null" || low == "/dev/stdout" || low == "/dev/stderr" || low == "/dev/tty" || strings.HasPrefix(low, "/dev/fd/") || low == "/dev/zero" || strings.HasPrefix(low, "/dev/pts/"):
			return 0, ""
		case strings.HasPrefix(low, "/dev/tcp/") || strings.HasPrefix(low, "/dev/udp/"):
			return 0, ""
		}
		return 1, "writes the device " + p
	}
	if !strings.HasPrefix(p, "/") {
		return 0, ""
	}
	c := path.Clean(p)
	for _, pre := range []string{"/etc/cron", "/var/spool/cron", "/etc/systemd", "/lib/systemd", "/etc/init.d", "/etc/rc.local", "/etc/profile", "/etc/ld.so.preload", "/etc/sudoers", "/etc/passwd", "/etc/shadow"} {
		if strings.HasPrefix(c, pre) {
			return 1, "persistence or privilege via " + c
		}
	}
	parts := strings.Split(strings.TrimPrefix(c, "/"), "/")
	if len(parts) > 0 && systemDirs[parts[0]] && parts[0] != "var" && parts[0] != "opt" && parts[0] != "srv" {
		return 1, "system path " + c
	}
	if c == "/" || (len(parts) >= 2 && parts[0] == "var" && (parts[1] == "lib" || parts[1] == "log" || parts[1] == "spool")) {
		return 0.8, "system path " + c
	}
	return 0, ""
}

func checkRedirect(r *syntax.Redirect, f *shellFacts) {
	if r.Word == nil {
		return
	}
	target := wordStr(r.Word)
	if strings.HasPrefix(target, "/dev/tcp/") || strings.HasPrefix(target, "/dev/udp/") {
		f.add(FactorShellDanger, 1, "redirect to "+target+": a raw network socket (reverse shell)")
		host := strings.SplitN(strings.TrimPrefix(strings.TrimPrefix(target, "/dev/tcp/"), "/dev/udp/"), "/", 2)[0]
		f.urls = append(f.urls, "tcp://"+host)
		if f.network == "" {
			f.network = "/dev/tcp"
		}
		return
	}
	switch r.Op {
	case syntax.RdrOut, syntax.AppOut, syntax.RdrClob, syntax.RdrAll, syntax.AppAll, syntax.RdrInOut:
		if w, why := systemPath(target); w > 0 {
			f.add(FactorShellDanger, w, "redirect writes "+why)
		}
		f.paths = append(f.paths, target)
	case syntax.RdrIn:
		f.paths = append(f.paths, target)
	}
}

// expandVars replaces $NAME and ${NAME} with values assigned earlier in the
// same command line.
func expandVars(a string, vars map[string]string) string {
	if len(vars) == 0 || !strings.Contains(a, "$") {
		return a
	}
	for name, v := range vars {
		if strings.Contains(v, "$"+name) {
			continue
		}
		a = strings.ReplaceAll(a, "${"+name+"}", v)
		if i := strings.Index(a, "$"+name); i >= 0 {
			end := i + 1 + len(name)
			if end == len(a) || !(isAlnum(a[end]) || a[end] == '_') {
				a = a[:i] + v + a[end:]
			}
		}
	}
	return a
}

func checkSimple(s *simple, f *shellFacts, depth int) {
	for i := range s.args {
		s.args[i] = expandVars(s.args[i], f.vars)
	}
	sudo := ""
	if s.sudo {
		sudo = "sudo "
	}
	nf := nonFlags(s.args)
	if strings.Contains(s.prog, "/") {
		f.executed = append(f.executed, s.prog)
	} else if interpreters[s.name] && len(nf) > 0 && !hasFlag(s.args, 'c') {
		f.executed = append(f.executed, nf[0])
	}
	if s.name == "curl" || s.name == "wget" {
		for i, a := range s.args {
			if (a == "-o" || a == "-O" || a == "--output" || a == "--output-document") && i+1 < len(s.args) {
				f.fetched = append(f.fetched, s.args[i+1])
			} else if strings.HasPrefix(a, "--output-document=") || strings.HasPrefix(a, "--output=") {
				f.fetched = append(f.fetched, a[strings.IndexByte(a, '=')+1:])
			}
		}
		if s.name == "wget" && !hasFlag(s.args, 'O', "--output-document") {
			for _, a := range nf {
				if strings.Contains(a, "://") {
					f.fetched = append(f.fetched, path.Base(a))
				}
			}
		}
		if s.name == "curl" && hasFlag(s.args, 'O', "--remote-name") {
			for _, a := range nf {
				if strings.Contains(a, "://") {
					f.fetched = append(f.fetched, path.Base(a))
				}
			}
		}
	}
	// Path-like arguments feed the sensitive-path check.
	for _, a := range nf {
		if looksLikePath(a) {
			f.paths = append(f.paths, a)
		}
	}
	// Interpreters, eval and source run what their substitutions fetch.
	for _, w := range s.words {
		for _, stmts := range substs(w) {
			if s.name == "eval" || s.name == "source" || s.name == "." || interpreters[s.name] {
				if stmtsUse(stmts, downloaders) {
					f.add(FactorShellDanger, 1, sudo+s.name+" runs content downloaded by a substitution")
				}
				if stmtsUse(stmts, decoders) {
					f.add(FactorShellDanger, 1, sudo+s.name+" runs content decoded by a substitution (base64 -d …)")
				}
			}
			if dnsTools[s.name] || downloaders[s.name] {
				f.add(FactorExfiltration, 1, s.name+" contacts a name built from command output (DNS/URL exfiltration)")
			}
		}
	}
	switch s.name {
	case "rm", "rmdir", "unlink", "shred", "srm":
		rec := hasFlag(s.args, 'r', "--recursive") || hasFlag(s.args, 'R')
		if hasFlag(s.args, 0, "--no-preserve-root") {
			f.add(FactorShellDanger, 1, sudo+"rm --no-preserve-root")
		}
		for _, t := range nf {
			b := broadPath(t)
			if !rec && b < 1 {
				b = 0
			}
			if !rec && b >= 1 {
				b = 0.5
			}
			if b > 0 {
				f.add(FactorShellDanger, b, sudo+"recursive delete of "+t)
			} else if w, why := systemPath(t); w > 0 {
				f.add(FactorShellDanger, w*0.9, sudo+s.name+" deletes "+why)
			}
		}
	case "find":
		if hasFlag(s.args, 0, "-delete") || containsArg(s.args, "-delete") || (containsArg(s.args, "-exec") && containsArg(s.args, "rm")) {
			if len(nf) > 0 && broadPath(nf[0]) >= 1 {
				f.add(FactorShellDanger, 1, sudo+"find "+nf[0]+" … -delete")
			}
		}
	case "dd":
		for _, a := range s.args {
			if strings.HasPrefix(a, "of=") {
				if w, why := systemPath(a[3:]); w > 0 {
					f.add(FactorShellDanger, w, "dd "+why)
				}
			}
		}
	case "mkfs", "mkfs.ext4", "mkfs.ext3", "mkfs.xfs", "mkfs.vfat", "mkfs.btrfs", "wipefs", "fdisk", "parted", "sfdisk", "mkswap":
		f.add(FactorShellDanger, 1, sudo+s.name+" rewrites a disk")
	case "chmod", "chown", "chgrp", "setfacl", "chattr":
		rec := hasFlag(s.args, 'R', "--recursive")
		targets := nf
		mode := ""
		if len(targets) > 0 {
			mode = targets[0]
			targets = targets[1:]
		}
		if s.name == "chattr" || s.name == "setfacl" {
			targets, mode = nf, strings.Join(s.args[:len(s.args)-len(nf)], " ")
			for i, a := range s.args {
				if a == "-m" && i+1 < len(s.args) { // setfacl -m ACL FILE
					mode = s.args[i+1]
				}
			}
			if len(targets) > 0 && targets[0] == mode {
				targets = targets[1:]
			}
		}
		if s.name == "chmod" && restrictiveMode(mode) {
			targets = nil // tightening permissions changes nothing for the worse
		}
		for _, t := range targets {
			if b := broadPath(t); b >= 1 {
				f.add(FactorShellDanger, 1, sudo+s.name+" "+mode+" on "+t)
			} else if w, why := systemPath(t); w > 0 && strings.HasPrefix(t, "/") {
				f.add(FactorShellDanger, w, sudo+s.name+" "+mode+" on "+why)
			}
		}
		if s.name == "chmod" {
			if strings.Contains(mode, "s") && (strings.Contains(mode, "+") || strings.Contains(mode, "=")) || (len(mode) == 4 && (mode[0] == '4' || mode[0] == '2' || mode[0] == '6')) {
				f.add(FactorShellDanger, 1, "chmod "+mode+" sets setuid/setgid (runs as the file's owner)")
			} else if rec && (mode == "777" || mode == "666" || strings.Contains(mode, "o+w") || strings.Contains(mode, "a+w")) {
				f.add(FactorShellDanger, 0.5, "chmod -R "+mode+" makes a tree world-writable")
			}
		}
	case "crontab":
		cnf := nonFlagsWithValues("crontab", s.args)
		switch {
		case hasFlag(s.args, 'r'):
			f.add(FactorShellDanger, 0.6, "removes the crontab")
		case hasFlag(s.args, 'l') && len(cnf) == 0:
		default:
			f.add(FactorShellDanger, 1, "installs a crontab (persistence)")
		}
	case "at", "batch":
		f.add(FactorShellDanger, 0.5, "schedules a job with "+s.name)
	case "systemctl", "launchctl", "update-rc.d", "chkconfig":
		if containsArg(s.args, "enable") || containsArg(s.args, "load") || containsArg(s.args, "bootstrap") {
			f.add(FactorShellDanger, 0.9, s.name+" "+clip(strings.Join(s.args, " "), 50)+" (persistence)")
		}
	case "tee", "cp", "mv", "install", "ln", "rsync", "sed", "truncate", "touch", "mount", "usermod", "useradd", "passwd", "visudo", "tar", "unzip":
		targets := nf
		if s.name == "cp" || s.name == "mv" || s.name == "install" || s.name == "ln" || s.name == "rsync" {
			if len(targets) > 0 {
				targets = targets[len(targets)-1:]
			}
		}
		if s.name == "sed" && !hasFlag(s.args, 'i', "--in-place") {
			targets = nil
		}
		if s.name == "tar" || s.name == "unzip" {
			targets = nil
			for i, a := range s.args {
				if (a == "-C" || a == "-d" || a == "--directory") && i+1 < len(s.args) {
					targets = append(targets, s.args[i+1])
				}
			}
		}
		for _, t := range targets {
			if w, why := systemPath(t); w > 0 {
				f.add(FactorShellDanger, w, sudo+s.name+" writes "+why)
			}
		}
		if s.name == "useradd" || s.name == "usermod" || s.name == "passwd" || s.name == "visudo" {
			f.add(FactorShellDanger, 0.6, sudo+s.name+" changes system accounts")
		}
	case "nc", "ncat", "netcat", "cryptcat":
		if hasFlag(s.args, 'e', "--exec", "--sh-exec", "--lua-exec") || hasFlag(s.args, 'c') {
			f.add(FactorShellDanger, 1, s.name+" -e/-c hands a shell to the network (reverse shell)")
		}
		noteNet(s, f)
	case "socat":
		for _, a := range s.args {
			la := strings.ToLower(a)
			if strings.HasPrefix(la, "exec:") || strings.HasPrefix(la, "system:") {
				f.add(FactorShellDanger, 1, "socat "+clip(a, 30)+" hands a program to the network")
			}
		}
		noteNet(s, f)
	case "telnet", "ssh", "scp", "sftp", "ftp", "curl", "wget", "fetch", "aria2c", "http", "xh":
		noteNet(s, f)
		if s.name == "scp" {
			if nfv := nonFlagsWithValues("scp", s.args); len(nfv) >= 2 && strings.Contains(nfv[len(nfv)-1], ":") {
				for _, src := range nfv[:len(nfv)-1] {
					if !strings.Contains(src, ":") {
						f.uploads = append(f.uploads, src)
					}
				}
			}
		}
		if s.name == "ssh" && (hasFlag(s.args, 'R') || hasFlag(s.args, 'D')) {
			f.add(FactorShellDanger, 0.8, "ssh tunnel ("+clip(strings.Join(s.args, " "), 60)+") opens a way in or out")
		}
		if s.name == "curl" || s.name == "wget" {
			for i, a := range s.args {
				v := ""
				switch {
				case (a == "-F" || a == "--form" || a == "-d" || a == "--data" || a == "--data-binary" || a == "--data-raw" || a == "-T" || a == "--upload-file") && i+1 < len(s.args):
					v = s.args[i+1]
				case strings.HasPrefix(a, "--post-file="), strings.HasPrefix(a, "--body-file="), strings.HasPrefix(a, "--data-binary=@"), strings.HasPrefix(a, "--upload-file="):
					v = a[strings.IndexByte(a, '=')+1:]
				case a == "--post-file" && i+1 < len(s.args):
					v = s.args[i+1]
				}
				if v == "" {
					continue
				}
				if j := strings.IndexByte(v, '@'); j >= 0 && !strings.Contains(v[:j], "://") {
					v = strings.TrimPrefix(v[j+1:], "<")
					if k := strings.IndexByte(v, ';'); k >= 0 {
						v = v[:k]
					}
				} else if !(a == "-T" || a == "--upload-file" || strings.HasPrefix(a, "--post-file") || strings.HasPrefix(a, "--upload-file=") || strings.HasPrefix(a, "--body-file")) {
					continue
				}
				if v != "" && v != "-" {
					f.uploads = append(f.uploads, v)
					f.paths = append(f.paths, v)
				}
			}
		}
		if s.name == "curl" || s.name == "wget" {
			for i, a := range s.args {
				if (a == "-o" || a == "-O" || a == "--output" || a == "--output-document") && i+1 < len(s.args) {
					if w, why := systemPath(s.args[i+1]); w > 0 {
						f.add(FactorShellDanger, w, s.name+" downloads into "+why)
					}
				}
			}
		}
	case "dig", "nslookup", "host", "drill", "delv", "resolvectl", "ping", "ping6", "traceroute", "getent":
		for _, a := range nf {
			if w, why := dnsShape(a); w > 0 {
				f.add(FactorExfiltration, w, s.name+" "+clip(a, 60)+": "+why)
			}
		}
	case "psql", "mysql", "mariadb", "sqlite3", "clickhouse-client", "cockroach", "snowsql", "bq", "sqlcmd", "duckdb":
		// SQL handed to a database client is checked like execute_sql.
		for i, a := range s.args {
			q := ""
			switch {
			case (a == "-c" || a == "-e" || a == "--command" || a == "--execute" || a == "-q" || a == "--query" || a == "-Q") && i+1 < len(s.args):
				q = s.args[i+1]
			case strings.HasPrefix(a, "--command=") || strings.HasPrefix(a, "--execute=") || strings.HasPrefix(a, "--query="):
				q = a[strings.IndexByte(a, '=')+1:]
			case (s.name == "sqlite3" || s.name == "duckdb" || s.name == "bq") && i > 0 && !strings.HasPrefix(a, "-") && looksLikeSQL(a):
				q = a
			}
			if q != "" {
				for _, x := range analyzeSQL(q).findings {
					f.add(x.name, x.weight, s.name+": "+x.detail)
				}
			}
		}
	case "history":
		if hasFlag(s.args, 'c') {
			f.add(FactorShellDanger, 0.5, "clears shell history")
		}
	case "unset":
		if containsArg(s.args, "HISTFILE") {
			f.add(FactorShellDanger, 0.5, "disables shell history")
		}
	case "git":
		gitFacts(s, f)
	case "iptables", "ufw", "nft", "setenforce":
		if containsArg(s.args, "-F") || containsArg(s.args, "disable") || containsArg(s.args, "flush") || containsArg(s.args, "0") {
			f.add(FactorShellDanger, 0.9, sudo+s.name+" "+strings.Join(s.args, " ")+" drops host protections")
		}
	case "shutdown", "reboot", "halt", "poweroff", "init", "kill", "killall", "pkill":
		switch {
		case s.name == "shutdown" || s.name == "reboot" || s.name == "halt" || s.name == "poweroff" || (s.name == "init" && (containsArg(s.args, "0") || containsArg(s.args, "6"))):
			f.add(FactorShellDanger, 0.9, sudo+s.name+" "+strings.Join(s.args, " ")+" stops the host")
		case s.name == "kill" && (containsArg(s.args, "1") || containsArg(s.args, "-1")):
			f.add(FactorShellDanger, 0.8, sudo+"kill "+strings.Join(s.args, " ")+" kills every process")
		case s.name == "killall" || s.name == "pkill":
			f.add(FactorShellDanger, 0.3, sudo+s.name+" "+strings.Join(s.args, " "))
		}
	case "docker", "podman", "nerdctl":
		if len(nf) > 0 && (nf[0] == "run" || nf[0] == "create" || nf[0] == "exec") {
			for i, a := range s.args {
				la := strings.ToLower(a)
				hostRoot := (a == "-v" || a == "--volume" || a == "--mount") && i+1 < len(s.args) && (strings.HasPrefix(s.args[i+1], "/:") || strings.Contains(s.args[i+1], "source=/,") || strings.HasPrefix(s.args[i+1], "/var/run/docker.sock"))
				if la == "--privileged" || strings.HasPrefix(la, "--pid=host") || hostRoot || strings.HasPrefix(la, "-v/:") || strings.HasPrefix(la, "--volume=/:") {
					f.add(FactorShellDanger, 1, s.name+" "+nf[0]+" with "+clip(strings.Join(s.args[i:min(len(s.args), i+2)], " "), 40)+" (root on the host)")
					break
				}
			}
		}
	case "base64":
		// Decode literal payloads handed to base64 with <<< so the decoded
		// command is checked too.
	case "mkfifo":
		f.add(FactorShellDanger, 0.2, "mkfifo (often a reverse-shell building block)")
	}
	// sh -c "…", bash -c '…': parse the string as shell too.
	if interpreters[s.name] {
		for i, a := range s.args {
			if a == "-c" && i+1 < len(s.args) {
				switch s.name {
				case "sh", "bash", "zsh", "dash", "ksh", "ash", "mksh", "busybox", "fish":
					sub := analyzeShell(s.args[i+1], depth+1)
					merge(f, &sub)
				case "python", "python2", "python3":
					sub := analyzePython(s.args[i+1], depth+1)
					merge(f, &sub)
				}
				break
			}
		}
		if hasFlag(s.args, 'i') && (s.name == "bash" || s.name == "sh" || s.name == "zsh") {
			for _, r := range s.redirs {
				t := wordStr(r.Word)
				if strings.HasPrefix(t, "/dev/tcp/") || strings.HasPrefix(t, "/dev/udp/") {
					f.add(FactorShellDanger, 1, s.name+" -i with its streams on "+t+" (reverse shell)")
				}
			}
		}
	}
	// A here-string into base64 -d.
	if s.name == "base64" && hasFlag(s.args, 'd', "--decode") {
		for _, r := range s.redirs {
			if r.Op == syntax.WordHdoc {
				decodedShell(wordStr(r.Word), f, depth)
			}
		}
	}
}

// restrictiveMode reports chmod modes that only take permissions away
// (600, 0644, go-w, o-rwx).
func restrictiveMode(m string) bool {
	if strings.Contains(m, "-") && !strings.Contains(m, "+") && !strings.Contains(m, "=") {
		return true
	}
	if len(m) < 3 || len(m) > 4 {
		return false
	}
	for _, c := range m {
		if c < '0' || c > '7' {
			return false
		}
	}
	if len(m) == 4 && m[0] != '0' {
		return false // setuid, setgid, sticky
	}
	g, o := m[len(m)-2]-'0', m[len(m)-1]-'0'
	return g&2 == 0 && o&2 == 0 && o&1 == 0 && g <= 5
}

func containsArg(args []string, x string) bool {
	for _, a := range args {
		if a == x {
			return true
		}
	}
	return false
}

func merge(dst, src *shellFacts) {
	dst.findings = append(dst.findings, src.findings...)
	dst.paths = append(dst.paths, src.paths...)
	dst.urls = append(dst.urls, src.urls...)
	for k, v := range src.remotes {
		dst.remotes[k] = v
	}
	dst.pushes = append(dst.pushes, src.pushes...)
	dst.fetched = append(dst.fetched, src.fetched...)
	dst.uploads = append(dst.uploads, src.uploads...)
	dst.executed = append(dst.executed, src.executed...)
	if dst.network == "" {
		dst.network = src.network
	}
}

func stmtsUse(stmts []*syntax.Stmt, set map[string]bool) bool {
	found := false
	for _, st := range stmts {
		syntax.Walk(st, func(n syntax.Node) bool {
			if ce, ok := n.(*syntax.CallExpr); ok && len(ce.Args) > 0 {
				s := toSimple(ce, nil)
				if set[s.name] {
					found = true
				}
			}
			return !found
		})
	}
	return found
}

// noteNet records the hosts and URLs a network command contacts.
func noteNet(s *simple, f *shellFacts) {
	if f.network == "" {
		f.network = s.name
	}
	nf := nonFlagsWithValues(s.name, s.args)
	for i, a := range nf {
		switch {
		case strings.Contains(a, "://"):
			f.urls = append(f.urls, a)
		case s.name == "scp" || s.name == "rsync" || s.name == "sftp" || s.name == "ssh":
			at := a
			if j := strings.IndexByte(at, '@'); j >= 0 {
				at = at[j+1:]
			}
			if j := strings.IndexByte(at, ':'); j >= 0 {
				at = at[:j]
			} else if s.name != "ssh" || i > 0 {
				continue
			}
			if hostLike(at) {
				f.urls = append(f.urls, "ssh://"+at)
			}
		case (s.name == "nc" || s.name == "ncat" || s.name == "netcat" || s.name == "telnet" || s.name == "cryptcat") && i == 0:
			f.urls = append(f.urls, "tcp://"+a)
		case hostLike(a) && (s.name == "curl" || s.name == "wget" || s.name == "http" || s.name == "xh"):
			f.urls = append(f.urls, "http://"+a)
		}
	}
}

// nonFlagsWithValues drops flags and the values of the flags known to take one.
func nonFlagsWithValues(name string, args []string) []string {
	takes := map[string]bool{}
	switch name {
	case "curl":
		for _, x := range []string{"-o", "-d", "-H", "-X", "-u", "-A", "-e", "-F", "-T", "-x", "-w", "--data", "--data-binary", "--data-raw", "--data-urlencode", "--header", "--request", "--user", "--output", "--form", "--upload-file", "--proxy", "--write-out", "--max-time", "-m", "--connect-timeout", "-b", "-c", "--cookie", "--resolve", "--retry"} {
			takes[x] = true
		}
	case "wget":
		for _, x := range []string{"-O", "-o", "--output-document", "--header", "--post-data", "--post-file", "-U", "--user-agent", "-P"} {
			takes[x] = true
		}
	case "ssh", "scp":
		for _, x := range []string{"-i", "-p", "-P", "-o", "-l", "-F", "-J", "-L", "-R", "-D", "-c", "-b"} {
			takes[x] = true
		}
	case "crontab":
		takes["-u"] = true
	case "nc", "ncat", "netcat":
		for _, x := range []string{"-e", "-c", "-w", "-s", "-p", "-i", "-x"} {
			takes[x] = true
		}
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && a != "-" {
			if takes[a] {
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

func hostLike(a string) bool {
	if a == "" || strings.ContainsAny(a, " /\\") && !strings.Contains(a, "://") {
		h := a
		if i := strings.IndexByte(h, '/'); i > 0 {
			h = h[:i]
		}
		a = h
	}
	if a == "" || strings.HasPrefix(a, ".") || strings.HasPrefix(a, "$") {
		return false
	}
	if i := strings.LastIndexByte(a, ':'); i > 0 && !strings.Contains(a, "]") {
		a = a[:i]
	}
	if strings.Count(a, ".") == 0 {
		return a == "localhost" || isNumericHost(a)
	}
	for _, r := range a {
		if !(r == '.' || r == '-' || r == '_' || r == '[' || r == ']' || r == ':' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			return false
		}
	}
	ext := strings.ToLower(a[strings.LastIndexByte(a, '.')+1:])
	switch ext {
	case "sh", "py", "txt", "json", "csv", "md", "log", "yaml", "yml", "js", "go", "tar", "gz", "zip", "conf", "env", "html", "sql":
		return false
	}
	return true
}

func isNumericHost(a string) bool {
	if a == "" {
		return false
	}
	if strings.HasPrefix(a, "0x") || strings.HasPrefix(a, "0X") {
		return len(a) > 2
	}
	for _, r := range a {
		if r < '0' || r > '9' {
			return false
		}
	}
	return len(a) >= 8
}

func gitFacts(s *simple, f *shellFacts) {
	nf := nonFlags(s.args)
	if len(nf) == 0 {
		return
	}
	switch nf[0] {
	case "remote":
		if len(nf) >= 4 && (nf[1] == "add" || nf[1] == "set-url") {
			f.remotes[nf[2]] = nf[3]
			f.urls = append(f.urls, gitURL(nf[3]))
		}
	case "push":
		remote := "origin"
		if len(nf) >= 2 {
			remote = nf[1]
		}
		f.pushes = append(f.pushes, remote)
		if strings.Contains(remote, "://") || strings.Contains(remote, "@") {
			f.urls = append(f.urls, gitURL(remote))
		}
		if f.network == "" {
			f.network = "git push"
		}
	case "clone", "fetch", "pull":
		for _, a := range nf[1:] {
			if strings.Contains(a, "://") || strings.Contains(a, "@") {
				f.urls = append(f.urls, gitURL(a))
			}
		}
	case "config":
		for _, a := range nf {
			if strings.Contains(a, "core.hooksPath") || strings.Contains(a, "core.sshCommand") || strings.Contains(a, "core.pager") {
				f.add(FactorShellDanger, 0.6, "git config "+a+" runs a program on later git commands")
			}
		}
	}
}

// gitURL turns scp-like git remotes (git@host:org/repo) into URLs.
func gitURL(u string) string {
	if strings.Contains(u, "://") {
		return u
	}
	if i := strings.IndexByte(u, '@'); i >= 0 {
		u = u[i+1:]
	}
	if i := strings.IndexByte(u, ':'); i >= 0 {
		return "ssh://" + u[:i] + "/" + u[i+1:]
	}
	return "file://" + u
}

// checkPipeline looks at a pipeline as a whole: download or decode piped
// into an interpreter, data piped into a raw socket.
func checkPipeline(stmts []*syntax.Stmt, f *shellFacts, depth int) {
	var cmds []simple
	for _, st := range stmts {
		ce, ok := st.Cmd.(*syntax.CallExpr)
		if !ok || len(ce.Args) == 0 {
			// A subshell or block stage: take its last simple command (echo … | sh inside).
			cmds = append(cmds, simple{name: "(group)"})
			if sub, ok := st.Cmd.(*syntax.Subshell); ok {
				cmds[len(cmds)-1] = lastSimple(sub.Stmts)
			} else if blk, ok := st.Cmd.(*syntax.Block); ok {
				cmds[len(cmds)-1] = lastSimple(blk.Stmts)
			}
			continue
		}
		cmds = append(cmds, toSimple(ce, st.Redirs))
	}
	download, decode, source, readFile := -1, -1, -1, -1
	for i, c := range cmds {
		switch {
		case downloaders[c.name]:
			if download < 0 {
				download = i
			}
		case (c.name == "base64" || c.name == "base32" || c.name == "basenc") && hasFlag(c.args, 'd', "--decode"),
			c.name == "xxd" && hasFlag(c.args, 'r'),
			c.name == "openssl" && containsArg(c.args, "-d"),
			(c.name == "gunzip" || c.name == "gzip" || c.name == "zcat") && (c.name != "gzip" || hasFlag(c.args, 'd')):
			if decode < 0 {
				decode = i
			}
		case c.name == "echo" || c.name == "printf" || c.name == "cat" && len(nonFlags(c.args)) == 0:
			if source < 0 {
				source = i
			}
		case c.name == "cat" || c.name == "tar" || c.name == "zip" || c.name == "gzip" || c.name == "head" || c.name == "tail" || c.name == "base64" || c.name == "xxd" || c.name == "mysqldump" || c.name == "pg_dump" || c.name == "env" || c.name == "printenv" || c.name == "find":
			if readFile < 0 {
				readFile = i
			}
		}
		runs := interpreters[c.name] && !hasFlag(c.args, 'c') && (len(nonFlags(c.args)) == 0 || hasFlag(c.args, 's') || strings.HasPrefix(nonFlags(c.args)[0], "/dev/stdin")) ||
			(interpreters[c.name] && containsArg(c.args, "-")) || c.name == "source" || c.name == "." || c.name == "eval" ||
			(c.name == "xargs" && len(c.args) > 0 && interpreters[path.Base(c.args[0])])
		if runs {
			if download >= 0 && download < i {
				f.add(FactorShellDanger, 1, cmds[download].name+" … | "+sudoPrefix(c)+c.name+": runs a downloaded script")
			}
			if decode >= 0 && decode < i {
				f.add(FactorShellDanger, 1, cmds[decode].name+" -d … | "+sudoPrefix(c)+c.name+": runs a decoded payload")
				if source >= 0 && source < decode {
					for _, a := range nonFlags(cmds[source].args) {
						decodedShell(a, f, depth)
					}
				}
			}
			if hasFlag(c.args, 'i') && (c.name == "bash" || c.name == "sh") {
				for _, o := range cmds {
					if netSinks[o.name] {
						f.add(FactorShellDanger, 1, "interactive shell wired to "+o.name+" (reverse shell)")
					}
				}
			}
		}
		if netSinks[c.name] && i > 0 {
			src := cmds[i-1]
			if readFile >= 0 {
				src = cmds[readFile]
			}
			d := src.name + " " + strings.Join(nonFlags(src.args), " ") + " | " + c.name + " " + strings.Join(nonFlags(c.args), " ")
			f.add(FactorExfiltration, 0.7, "pipes data to a raw network socket: "+clip(d, 80))
			for j := i + 1; j < len(cmds); j++ {
				if interpreters[cmds[j].name] {
					f.add(FactorShellDanger, 1, c.name+" output piped to "+cmds[j].name+" (reverse shell)")
				}
			}
		}
		if (c.name == "curl" && (containsArg(c.args, "@-") || containsArgPrefix(c.args, "-d@") || containsArg(c.args, "-T") || containsArg(c.args, "--data-binary") || containsArg(c.args, "-d") || containsArg(c.args, "--upload-file") || containsArg(c.args, "-F"))) && i > 0 && readFile >= 0 && readFile < i {
			f.add(FactorExfiltration, 0.6, "pipes "+cmds[readFile].name+" output into an upload by curl")
		}
	}
}

func containsArgPrefix(args []string, p string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}

func sudoPrefix(c simple) string {
	if c.sudo {
		return "sudo "
	}
	return ""
}

func lastSimple(stmts []*syntax.Stmt) simple {
	var out simple
	out.name = "(group)"
	for _, st := range stmts {
		if ce, ok := st.Cmd.(*syntax.CallExpr); ok && len(ce.Args) > 0 {
			out = toSimple(ce, st.Redirs)
		}
	}
	return out
}

// decodedShell decodes a base64 payload and checks the result as shell.
func decodedShell(s string, f *shellFacts, depth int) {
	s = strings.TrimSpace(s)
	if len(s) < 8 || len(s) > 64<<10 {
		return
	}
	var dec []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if dec, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil || !printable(string(dec)) {
		return
	}
	sub := analyzeShell(string(dec), depth+1)
	for i := range sub.findings {
		sub.findings[i].detail = "decoded payload: " + sub.findings[i].detail
	}
	if len(sub.findings) == 0 {
		sub.add(FactorShellDanger, 0.3, "decoded payload: "+clip(string(dec), 60))
	}
	merge(f, &sub)
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' || r == 0xfffd {
			return false
		}
	}
	return true
}

// looksLikePath reports whether a shell word names a file.
func looksLikePath(a string) bool {
	if a == "" || strings.Contains(a, "://") || strings.ContainsAny(a, " \t\n*?") && !strings.HasPrefix(a, "/") {
		return false
	}
	switch {
	case strings.HasPrefix(a, "/"), strings.HasPrefix(a, "~"), strings.HasPrefix(a, "./"), strings.HasPrefix(a, "../"), strings.HasPrefix(a, "$HOME"):
		return true
	case strings.HasPrefix(a, "."):
		return len(a) > 1 && a[1] != '.'
	}
	return strings.Contains(a, "/") && !strings.Contains(a, "=")
}

package risk

import (
	"strings"
)

// pyShellCalls are Python calls whose string argument is a shell command.
var pyShellCalls = []string{".system(", ".popen(", "subprocess.run(", "subprocess.call(", "subprocess.Popen(",
	"subprocess.check_output(", "subprocess.check_call(", "subprocess.getoutput(", "subprocess.getstatusoutput(",
	"os.execv(", "os.execvp(", "os.spawnv(", "pty.spawn(", "commands.getoutput(",
	// Node, PHP and Java equivalents, for code tools in other languages.
	".execSync(", ".spawnSync(", "child_process.exec(", "shell_exec(", "passthru(", ".getRuntime().exec("}

// analyzePython looks at Python source cheaply: shell strings handed to
// os.system/subprocess are parsed as shell, string literals that look like
// paths or URLs feed the path and URL checks, and a few unmistakable shapes
// (socket + dup2 reverse shell, exec of decoded or downloaded code,
// shutil.rmtree of a broad path) score directly.
func analyzePython(code string, depth int) shellFacts {
	var f shellFacts
	f.remotes = map[string]string{}
	if depth > 3 {
		return f
	}
	for _, call := range pyShellCalls {
		for off := 0; ; {
			i := strings.Index(code[off:], call)
			if i < 0 {
				break
			}
			i += off + len(call)
			off = i
			args := pyCallArgs(code[i:])
			if len(args) == 0 {
				continue
			}
			cmd := strings.Join(args, " ")
			if strings.HasPrefix(call, "subprocess.") && len(args) == 1 || strings.HasPrefix(call, "os.") {
				cmd = args[0]
				if strings.HasPrefix(call, "os.exec") || strings.HasPrefix(call, "os.spawn") {
					cmd = strings.Join(args, " ")
				}
			}
			sub := analyzeShell(cmd, depth+1)
			for k := range sub.findings {
				sub.findings[k].detail = strings.TrimSuffix(call, "(") + ": " + sub.findings[k].detail
			}
			merge(&f, &sub)
		}
	}
	low := strings.ToLower(code)
	if strings.Contains(low, "socket") && (strings.Contains(low, "dup2") || strings.Contains(low, "pty.spawn")) &&
		(strings.Contains(low, "/bin/sh") || strings.Contains(low, "/bin/bash") || strings.Contains(low, "subprocess") || strings.Contains(low, "pty.spawn")) {
		f.add(FactorShellDanger, 1, "python socket with dup2/pty.spawn of a shell (reverse shell)")
	}
	if (strings.Contains(low, "exec(") || strings.Contains(low, "eval(")) &&
		(strings.Contains(low, "b64decode") || strings.Contains(low, "urlopen") || strings.Contains(low, "requests.get") || strings.Contains(low, "marshal.loads") || strings.Contains(low, "zlib.decompress")) {
		f.add(FactorShellDanger, 0.8, "python exec/eval of decoded or downloaded code")
	}
	// SQL run through a DB-API cursor or an ORM session.
	for _, call := range []string{".execute(", ".executemany(", ".executescript(", ".exec_driver_sql(", ".raw("} {
		for off := 0; ; {
			i := strings.Index(code[off:], call)
			if i < 0 {
				break
			}
			i += off + len(call)
			off = i
			args := pyCallArgs(strings.TrimPrefix(strings.TrimLeft(code[i:], " \n"), "text("))
			if len(args) > 0 && looksLikeSQL(args[0]) {
				for _, x := range analyzeSQL(args[0]).findings {
					f.add(x.name, x.weight, strings.TrimSuffix(strings.TrimPrefix(call, "."), "(")+": "+x.detail)
				}
			}
		}
	}
	for off := 0; ; {
		i := strings.Index(code[off:], "rmtree(")
		if i < 0 {
			break
		}
		i += off + len("rmtree(")
		off = i
		if args := pyCallArgs(code[i:]); len(args) > 0 {
			if b := broadPath(args[0]); b > 0 {
				f.add(FactorShellDanger, b, "shutil.rmtree("+args[0]+")")
			}
		}
	}
	// String literals that look like paths or URLs.
	for _, lit := range pyStrings(code, 256) {
		switch {
		case strings.Contains(lit, "://"):
			if pyNetwork(low) {
				f.urls = append(f.urls, strings.TrimSpace(lit))
			}
		case looksLikePath(lit) && !strings.ContainsAny(lit, "\n"):
			f.paths = append(f.paths, lit)
		}
	}
	if pyNetwork(low) && f.network == "" {
		f.network = "python"
	}
	if containsAny(low, ".post(", ".put(", "sendall(", "sendmail(", "send_message(", "storbinary(", "upload") && pyNetwork(low) {
		f.uploads = append(f.uploads, "(python upload)")
	}
	return f
}

func pyNetwork(low string) bool {
	return strings.Contains(low, "requests.") || strings.Contains(low, "urllib") || strings.Contains(low, "http.client") ||
		strings.Contains(low, "httpx") || strings.Contains(low, "socket") || strings.Contains(low, "smtplib") || strings.Contains(low, "ftplib") || strings.Contains(low, "aiohttp")
}

// pyCallArgs reads the leading string-literal arguments of a call (a string,
// or a list of strings), stopping at the first thing that is not one.
func pyCallArgs(s string) []string {
	s = strings.TrimLeft(s, " \t\n")
	if strings.HasPrefix(s, "[") || strings.HasPrefix(s, "(") {
		var out []string
		s = s[1:]
		for {
			s = strings.TrimLeft(s, " \t\n")
			v, rest, ok := pyString(s)
			if !ok {
				return out
			}
			out = append(out, v)
			s = strings.TrimLeft(rest, " \t\n")
			if !strings.HasPrefix(s, ",") {
				return out
			}
			s = s[1:]
		}
	}
	if v, _, ok := pyString(s); ok {
		return []string{v}
	}
	return nil
}

// pyString reads one Python string literal (with r/b/f/u prefixes and
// triple quotes) at the start of s.
func pyString(s string) (string, string, bool) {
	i := 0
	raw := false
	for i < len(s) && i < 3 && strings.IndexByte("rRbBfFuU", s[i]) >= 0 {
		if s[i] == 'r' || s[i] == 'R' {
			raw = true
		}
		i++
	}
	if i >= len(s) || (s[i] != '\'' && s[i] != '"') {
		return "", s, false
	}
	q := string(s[i])
	if strings.HasPrefix(s[i:], q+q+q) {
		q = q + q + q
	}
	i += len(q)
	var b strings.Builder
	for i < len(s) {
		if strings.HasPrefix(s[i:], q) {
			return b.String(), s[i+len(q):], true
		}
		c := s[i]
		if c == '\\' && !raw && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'x':
				if i+3 < len(s) {
					if v, ok := hexByte(s[i+2 : i+4]); ok {
						b.WriteByte(v)
						i += 4
						continue
					}
				}
				b.WriteString("\\x")
			default:
				b.WriteByte(s[i+1])
			}
			i += 2
			continue
		}
		if c == '\n' && len(q) == 1 {
			break
		}
		b.WriteByte(c)
		i++
	}
	return "", s, false
}

func hexByte(h string) (byte, bool) {
	var v byte
	for i := 0; i < 2; i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9':
			v = v*16 + c - '0'
		case c >= 'a' && c <= 'f':
			v = v*16 + c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = v*16 + c - 'A' + 10
		default:
			return 0, false
		}
	}
	return v, true
}

// pyStrings returns up to n string literals in code (comments skipped).
func pyStrings(code string, n int) []string {
	var out []string
	for i := 0; i < len(code) && len(out) < n; {
		c := code[i]
		if c == '#' {
			for i < len(code) && code[i] != '\n' {
				i++
			}
			continue
		}
		if c == '\'' || c == '"' {
			if v, rest, ok := pyString(code[i:]); ok {
				out = append(out, v)
				i = len(code) - len(rest)
				continue
			}
		}
		i++
	}
	return out
}

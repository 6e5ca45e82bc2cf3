package sandbox

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/airlock/airlock/broker/policy"
)

// FromProfile builds the Spec for one call of a sandboxed tool from the
// tool's policy `sandbox:` block and the call's arguments.
//
// With lang, the code is args[code_arg] (default "code", or "command" for
// shell) and runs as that language's source. With command, the argv
// template's placeholders {name} are replaced by the string form of
// args[name] (a string, number or boolean; "{{" is a literal "{"); the code
// argument goes to the program's stdin unless the template names it. Each
// template element stays one argv element: no shell parses it. In both
// cases a missing or non-string code argument is an error.
//
// env names variables passed through from airlock's own environment (unset
// ones are left out). network: true needs an allow list: an empty allow
// list means no network, and full network is not offered.
func FromProfile(p *policy.SandboxProfile, args map[string]any) (Spec, error) {
	if p == nil {
		return Spec{}, errors.New("sandbox: no sandbox profile")
	}
	codeArg := profileCodeArg(p)
	raw, ok := args[codeArg]
	if !ok {
		return Spec{}, fmt.Errorf("sandbox: argument %q (the code to run) is missing", codeArg)
	}
	code, ok := raw.(string)
	if !ok {
		return Spec{}, fmt.Errorf("sandbox: argument %q must be a string, got %s", codeArg, jsonKind(raw))
	}
	s := Spec{
		WallTimeout: p.Timeout,
		CPUTime:     p.CPUTime,
		Memory:      p.Memory,
		Pids:        int64(p.Pids),
		CPUs:        p.CPUs,
		FileSize:    p.FileSize,
		TmpSize:     p.TmpSize,
		OutputCap:   p.Output,
		Network:     NetworkOff,
		Workspace:   p.Workspace,
		WorkspaceRW: p.WorkspaceRW,
	}
	switch {
	case p.Lang != "" && len(p.Command) > 0:
		return Spec{}, errors.New("sandbox: profile sets both lang and command")
	case p.Lang != "":
		s.Lang, s.Source = p.Lang, code
	case len(p.Command) > 0:
		argv, usedCode, err := expandCommand(p.Command, args, codeArg)
		if err != nil {
			return Spec{}, err
		}
		s.Argv = argv
		if !usedCode {
			s.Stdin = []byte(code)
		}
	default:
		return Spec{}, errors.New("sandbox: profile sets neither lang nor command")
	}
	if p.Network {
		if len(p.Allow) == 0 {
			return Spec{}, errors.New("sandbox: network: true needs an allow list (an empty list means no network)")
		}
		s.Network, s.Allow = NetworkAllowlist, append([]string(nil), p.Allow...)
	}
	for _, name := range p.Env {
		if v, ok := os.LookupEnv(name); ok {
			if s.Env == nil {
				s.Env = map[string]string{}
			}
			s.Env[name] = v
		}
	}
	return s, nil
}

func profileCodeArg(p *policy.SandboxProfile) string {
	if p.CodeArg != "" {
		return p.CodeArg
	}
	switch p.Lang {
	case "shell", "sh", "bash":
		return "command"
	}
	return "code"
}

var placeholderRe = regexp.MustCompile(`\{\{|\{([A-Za-z_][A-Za-z0-9_.-]*)\}`)

// expandCommand fills an argv template from the call's arguments. It
// reports whether the code argument was used.
func expandCommand(tmpl []string, args map[string]any, codeArg string) ([]string, bool, error) {
	argv := make([]string, len(tmpl))
	usedCode := false
	for i, el := range tmpl {
		var err error
		argv[i] = placeholderRe.ReplaceAllStringFunc(el, func(m string) string {
			if m == "{{" {
				return "{"
			}
			name := m[1 : len(m)-1]
			v, ok := args[name]
			if !ok {
				err = fmt.Errorf("sandbox: command placeholder {%s}: argument missing", name)
				return ""
			}
			str, ok := scalarString(v)
			if !ok {
				err = fmt.Errorf("sandbox: command placeholder {%s}: argument is %s, want a string, number or boolean", name, jsonKind(v))
				return ""
			}
			if strings.IndexByte(str, 0) >= 0 {
				err = fmt.Errorf("sandbox: command placeholder {%s}: argument contains a NUL byte", name)
				return ""
			}
			if name == codeArg {
				usedCode = true
			}
			return str
		})
		if err != nil {
			return nil, false, err
		}
	}
	return argv, usedCode, nil
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case interface{ String() string }: // json.Number
		return x.String(), true
	}
	return "", false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// IsolationSummary is what the console shows before approval: the
// isolation a call of this tool will run under, with defaults filled in.
// Keys: backend, run, network, memory, cpu, cpu_time, pids, timeout,
// workspace, env, output, files, tmp.
func IsolationSummary(p *policy.SandboxProfile) map[string]string {
	if p == nil {
		return map[string]string{"backend": "none (not sandboxed)"}
	}
	backend := p.Backend
	if backend == "" {
		backend = "native"
	}
	m := map[string]string{"backend": backend}
	switch {
	case p.Lang != "":
		m["run"] = p.Lang + " code from argument " + strconv.Quote(profileCodeArg(p))
	case len(p.Command) > 0:
		m["run"] = strings.Join(p.Command, " ")
	}
	switch {
	case !p.Network:
		m["network"] = "off"
	case len(p.Allow) == 0:
		m["network"] = "off (empty allow list)"
	default:
		m["network"] = "allowlist: " + strings.Join(p.Allow, ", ")
	}
	m["memory"] = formatBytes(limitOrDefault(p.Memory, Defaults.Memory))
	cpus := p.CPUs
	if cpus <= 0 {
		cpus = Defaults.CPUs
	}
	m["cpu"] = strconv.FormatFloat(cpus, 'f', -1, 64) + " CPU"
	m["cpu_time"] = limitOrDefault(p.CPUTime, Defaults.CPUTime).String()
	pids := int64(p.Pids)
	m["pids"] = strconv.FormatInt(limitOrDefault(pids, Defaults.Pids), 10)
	m["timeout"] = limitOrDefault(p.Timeout, Defaults.WallTimeout).String()
	switch {
	case p.Workspace == "":
		m["workspace"] = "none (empty scratch)"
	case p.WorkspaceRW:
		m["workspace"] = p.Workspace + " (read-write)"
	default:
		m["workspace"] = p.Workspace + " (read-only)"
	}
	if len(p.Env) == 0 {
		m["env"] = "none"
	} else {
		m["env"] = strings.Join(p.Env, ", ")
	}
	m["output"] = formatBytes(limitOrDefault(p.Output, Defaults.OutputCap)) + " kept per stream"
	m["files"] = formatBytes(limitOrDefault(p.FileSize, Defaults.FileSize)) + " max file size"
	m["tmp"] = formatBytes(limitOrDefault(p.TmpSize, Defaults.TmpSize))
	return m
}

// formatBytes renders n in the largest binary unit that divides it evenly,
// e.g. 256 MiB, 1536 KiB, 100 B.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + " " + u.name
		}
	}
	if n >= 1<<20 {
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

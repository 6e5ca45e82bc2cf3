package sandbox

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/broker/policy"
)

func TestFromProfile(t *testing.T) {
	t.Setenv("AIRLOCK_TEST_PASS", "through")
	tests := []struct {
		name    string
		profile policy.SandboxProfile
		args    map[string]any
		check   func(t *testing.T, s Spec)
	}{
		{
			name:    "python-code",
			profile: policy.SandboxProfile{Backend: "native", Lang: "python", Timeout: 10 * time.Second, Memory: 256 << 20},
			args:    map[string]any{"code": "print(1)"},
			check: func(t *testing.T, s Spec) {
				if s.Lang != "python" || s.Source != "print(1)" || len(s.Argv) != 0 {
					t.Errorf("Lang, Source, Argv = %q, %q, %q", s.Lang, s.Source, s.Argv)
				}
				if s.WallTimeout != 10*time.Second || s.Memory != 256<<20 || s.Network != NetworkOff {
					t.Errorf("WallTimeout, Memory, Network = %v, %d, %q", s.WallTimeout, s.Memory, s.Network)
				}
			},
		},
		{
			name:    "shell-defaults-to-command-arg",
			profile: policy.SandboxProfile{Lang: "shell"},
			args:    map[string]any{"command": "ls -la", "code": "ignored"},
			check: func(t *testing.T, s Spec) {
				if s.Source != "ls -la" {
					t.Errorf("Source = %q, want the command argument", s.Source)
				}
			},
		},
		{
			name:    "custom-code-arg",
			profile: policy.SandboxProfile{Lang: "python", CodeArg: "script"},
			args:    map[string]any{"script": "x = 1"},
			check: func(t *testing.T, s Spec) {
				if s.Source != "x = 1" {
					t.Errorf("Source = %q", s.Source)
				}
			},
		},
		{
			name:    "all-limits",
			profile: policy.SandboxProfile{Lang: "python", CPUTime: 3 * time.Second, Pids: 7, CPUs: 0.5, FileSize: 1 << 20, TmpSize: 2 << 20, Output: 4096, Workspace: "/srv/ws", WorkspaceRW: true},
			args:    map[string]any{"code": ""},
			check: func(t *testing.T, s Spec) {
				if s.CPUTime != 3*time.Second || s.Pids != 7 || s.CPUs != 0.5 || s.FileSize != 1<<20 || s.TmpSize != 2<<20 || s.OutputCap != 4096 {
					t.Errorf("limits = %+v", s)
				}
				if s.Workspace != "/srv/ws" || !s.WorkspaceRW {
					t.Errorf("Workspace, WorkspaceRW = %q, %v", s.Workspace, s.WorkspaceRW)
				}
			},
		},
		{
			name:    "network-allowlist",
			profile: policy.SandboxProfile{Lang: "python", Network: true, Allow: []string{"pypi.org"}},
			args:    map[string]any{"code": "x"},
			check: func(t *testing.T, s Spec) {
				if s.Network != NetworkAllowlist || !slices.Equal(s.Allow, []string{"pypi.org"}) {
					t.Errorf("Network, Allow = %q, %q", s.Network, s.Allow)
				}
			},
		},
		{
			name:    "env-pass-through-only-set-names",
			profile: policy.SandboxProfile{Lang: "python", Env: []string{"AIRLOCK_TEST_PASS", "AIRLOCK_TEST_UNSET_XYZ"}},
			args:    map[string]any{"code": "x"},
			check: func(t *testing.T, s Spec) {
				if len(s.Env) != 1 || s.Env["AIRLOCK_TEST_PASS"] != "through" {
					t.Errorf("Env = %v, want only AIRLOCK_TEST_PASS=through", s.Env)
				}
			},
		},
		{
			name:    "command-template",
			profile: policy.SandboxProfile{Command: []string{"/usr/bin/jq", "-r", "{filter}", "--arg", "n", "{count}", "{{literal}"}, CodeArg: "input"},
			args:    map[string]any{"filter": ".a; rm -rf /", "count": float64(3), "input": `{"a":1}`},
			check: func(t *testing.T, s Spec) {
				want := []string{"/usr/bin/jq", "-r", ".a; rm -rf /", "--arg", "n", "3", "{literal}"}
				if !slices.Equal(s.Argv, want) {
					t.Errorf("Argv = %q, want %q", s.Argv, want)
				}
				if string(s.Stdin) != `{"a":1}` {
					t.Errorf("Stdin = %q, want the code argument (not in the template)", s.Stdin)
				}
			},
		},
		{
			name:    "command-template-uses-code",
			profile: policy.SandboxProfile{Command: []string{"/usr/bin/node", "-e", "{code}"}},
			args:    map[string]any{"code": "1+1"},
			check: func(t *testing.T, s Spec) {
				if !slices.Equal(s.Argv, []string{"/usr/bin/node", "-e", "1+1"}) || s.Stdin != nil {
					t.Errorf("Argv, Stdin = %q, %q", s.Argv, s.Stdin)
				}
			},
		},
		{
			name:    "json-number-argument",
			profile: policy.SandboxProfile{Command: []string{"seq", "{n}"}},
			args:    map[string]any{"n": json.Number("12"), "code": ""},
			check: func(t *testing.T, s Spec) {
				if !slices.Equal(s.Argv, []string{"seq", "12"}) {
					t.Errorf("Argv = %q", s.Argv)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromProfile(&tt.profile, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestFromProfileErrors(t *testing.T) {
	tests := []struct {
		name    string
		profile *policy.SandboxProfile
		args    map[string]any
		want    string
	}{
		{name: "nil-profile", want: "no sandbox profile"},
		{name: "missing-code", profile: &policy.SandboxProfile{Lang: "python"}, args: map[string]any{}, want: `"code"`},
		{name: "code-not-string", profile: &policy.SandboxProfile{Lang: "python"}, args: map[string]any{"code": float64(1)}, want: "a number"},
		{name: "code-null", profile: &policy.SandboxProfile{Lang: "python"}, args: map[string]any{"code": nil}, want: "null"},
		{name: "shell-missing-command", profile: &policy.SandboxProfile{Lang: "shell"}, args: map[string]any{"code": "ls"}, want: `"command"`},
		{name: "both-lang-and-command", profile: &policy.SandboxProfile{Lang: "python", Command: []string{"x"}}, args: map[string]any{"code": ""}, want: "both"},
		{name: "neither", profile: &policy.SandboxProfile{}, args: map[string]any{"code": ""}, want: "neither"},
		{name: "placeholder-missing", profile: &policy.SandboxProfile{Command: []string{"x", "{nope}"}}, args: map[string]any{"code": ""}, want: "{nope}"},
		{name: "placeholder-object", profile: &policy.SandboxProfile{Command: []string{"x", "{o}"}}, args: map[string]any{"code": "", "o": map[string]any{}}, want: "an object"},
		{name: "placeholder-nul", profile: &policy.SandboxProfile{Command: []string{"x", "{s}"}}, args: map[string]any{"code": "", "s": "a\x00b"}, want: "NUL"},
		{name: "network-without-allow", profile: &policy.SandboxProfile{Lang: "python", Network: true}, args: map[string]any{"code": ""}, want: "allow list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromProfile(tt.profile, tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromProfile error = %v, want one mentioning %s", err, tt.want)
			}
		})
	}
}

func TestIsolationSummary(t *testing.T) {
	tests := []struct {
		name    string
		profile *policy.SandboxProfile
		want    map[string]string
	}{
		{
			name:    "design-example",
			profile: &policy.SandboxProfile{Backend: "native", Lang: "python", Timeout: 10 * time.Second, Memory: 256 << 20},
			want: map[string]string{
				"backend": "native", "run": `python code from argument "code"`, "network": "off",
				"memory": "256 MiB", "cpu": "1 CPU", "cpu_time": "1m0s", "pids": "128", "timeout": "10s",
				"workspace": "none (empty scratch)", "env": "none", "output": "1 MiB kept per stream",
				"files": "64 MiB max file size", "tmp": "64 MiB",
			},
		},
		{
			name: "allowlist-and-rw-workspace",
			profile: &policy.SandboxProfile{Backend: "bwrap", Command: []string{"make", "test"}, Network: true, Allow: []string{"a.com", "b.org"},
				Workspace: "/srv/ws", WorkspaceRW: true, Env: []string{"GOPATH"}, CPUs: 2, Pids: 64, Memory: 1536 << 10},
			want: map[string]string{
				"backend": "bwrap", "run": "make test", "network": "allowlist: a.com, b.org",
				"memory": "1536 KiB", "cpu": "2 CPU", "pids": "64", "workspace": "/srv/ws (read-write)", "env": "GOPATH",
			},
		},
		{
			name:    "read-only-workspace-default-backend",
			profile: &policy.SandboxProfile{Lang: "shell", Workspace: "/srv/ws"},
			want:    map[string]string{"backend": "native", "workspace": "/srv/ws (read-only)", "run": `shell code from argument "command"`},
		},
		{
			name:    "network-true-empty-allow",
			profile: &policy.SandboxProfile{Lang: "python", Network: true},
			want:    map[string]string{"network": "off (empty allow list)"},
		},
		{name: "no-profile", want: map[string]string{"backend": "none (not sandboxed)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := IsolationSummary(tt.profile)
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {100, "100 B"}, {1024, "1 KiB"}, {512 << 20, "512 MiB"}, {3 << 30, "3 GiB"}, {1<<20 + 1, "1.0 MiB"}} {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

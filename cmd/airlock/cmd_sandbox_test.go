package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/internal/testenv"
	"github.com/airlock/airlock/sandbox"
)

// sandboxCLI runs `airlock ARGS…` with stdin and returns stdout, stderr and
// the exit code main would use.
func sandboxCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	code := exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// needNative skips (or fails under AIRLOCK_REQUIRE_E2E=1) where the native
// backend cannot run.
func needNative(t *testing.T) {
	t.Helper()
	if _, err := sandbox.NewNative(); err != nil {
		testenv.Missing(t, "native sandbox unavailable: %v", err)
	}
}

func TestSandboxRunNative(t *testing.T) {
	needNative(t)
	dir := t.TempDir()
	codeFile := filepath.Join(dir, "code.sh")
	if err := os.WriteFile(codeFile, []byte("echo from-file"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		stdin     string
		args      []string
		wantOut   string
		wantErrIn []string
		wantCode  int
	}{
		{name: "argv", args: []string{"sandbox", "run", "--", "/bin/echo", "hello"}, wantOut: "hello\n",
			wantErrIn: []string{"backend native · exit 0 · ", " · limit none"}},
		{name: "shell-exit-code", args: []string{"sandbox", "run", "--lang", "shell", "--code", "echo out; echo err >&2; exit 7"},
			wantOut: "out\n", wantErrIn: []string{"err\n", "exit 7"}, wantCode: 7},
		{name: "timeout-exits-1", args: []string{"sandbox", "run", "--timeout", "200ms", "--", "/bin/sleep", "5"},
			wantErrIn: []string{"killed", "limit timeout"}, wantCode: 1},
		{name: "code-from-stdin", stdin: "echo from-stdin", args: []string{"sandbox", "run", "--lang", "shell", "--code", "-"}, wantOut: "from-stdin\n"},
		{name: "code-file", args: []string{"sandbox", "run", "--lang", "shell", "--code-file", codeFile}, wantOut: "from-file\n"},
		{name: "program-stdin", stdin: "abc", args: []string{"sandbox", "run", "--stdin", "-", "--", "/bin/cat"}, wantOut: "abc"},
		{name: "env-allow-list", args: []string{"sandbox", "run", "--env", "FOO=bar", "--lang", "shell", "--code", `echo "$FOO:$HOME:${SECRET-unset}"`},
			wantOut: "bar:/workspace:unset\n"},
		{name: "output-cap", args: []string{"sandbox", "run", "--output", "1KiB", "--lang", "shell", "--code", "head -c 100000 /dev/zero | tr '\\0' y"},
			wantErrIn: []string{"limit output", "output truncated (100000+"}},
		{name: "workspace-read-only", args: []string{"sandbox", "run", "--workspace", dir, "--lang", "shell", "--code", "cat code.sh; echo x > new"},
			wantOut: "echo from-file", wantErrIn: []string{"exit "}, wantCode: -2},
		{name: "no-network", args: []string{"sandbox", "run", "--lang", "bash", "--code", "echo > /dev/tcp/1.1.1.1/443 && echo CONNECTED; echo done"},
			wantOut: "done\n", wantErrIn: []string{"/dev/tcp/1.1.1.1/443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := sandboxCLI(t, tt.stdin, tt.args...)
			switch {
			case tt.wantCode == -2 && code == 0:
				t.Errorf("exit code 0, want a failure (stderr %q)", errOut)
			case tt.wantCode >= 0 && code != tt.wantCode:
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			for _, w := range tt.wantErrIn {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr = %q, want it to contain %q", errOut, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Errorf("the read-only workspace was written on the host")
	}
}

func TestSandboxRunJSON(t *testing.T) {
	needNative(t)
	out, errOut, code := sandboxCLI(t, "", "sandbox", "run", "--json", "--memory", "128MiB", "--", "/bin/echo", "hi")
	if code != 0 {
		t.Fatalf("exit code = %d, stderr %q", code, errOut)
	}
	var got sandboxJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if got.Backend != "native" || got.ExitCode != 0 || got.Stdout != "hi\n" || got.StdoutBytes != 3 || got.LimitHit != "" {
		t.Errorf("result = %+v, want native, exit 0, stdout hi", got)
	}
	if len(got.Isolation) == 0 {
		t.Errorf("isolation is empty, want the effective mechanisms")
	}
	if errOut != "" {
		t.Errorf("stderr = %q, want nothing with --json", errOut)
	}
}

// wasmHello is a hand-assembled WASI command: it writes "hi\n" with
// fd_write and exits with proc_exit(3).
func wasmHello() []byte {
	sec := func(id byte, payload ...byte) []byte { return append([]byte{id, byte(len(payload))}, payload...) }
	str := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	wasi := str("wasi_snapshot_preview1")
	return cat(
		[]byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
		sec(1, cat([]byte{3},
			[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f}, // (i32 i32 i32 i32) -> i32
			[]byte{0x60, 1, 0x7f, 0},                         // (i32) -> ()
			[]byte{0x60, 0, 0})...),                          // () -> ()
		sec(2, cat([]byte{2}, wasi, str("fd_write"), []byte{0, 0}, wasi, str("proc_exit"), []byte{0, 1})...),
		sec(3, 1, 2),
		sec(5, 1, 0, 1),
		sec(7, cat([]byte{2}, str("memory"), []byte{2, 0}, str("_start"), []byte{0, 2})...),
		sec(10, cat([]byte{1}, func() []byte {
			body := []byte{0,
				0x41, 0, 0x41, 16, 0x36, 2, 0, // mem[0] = 16 (iovec.buf)
				0x41, 4, 0x41, 3, 0x36, 2, 0, // mem[4] = 3 (iovec.len)
				0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // drop(fd_write(1, 0, 1, 8))
				0x41, 3, 0x10, 1, // proc_exit(3)
				0x0b}
			return append([]byte{byte(len(body))}, body...)
		}())...),
		sec(11, cat([]byte{1, 0, 0x41, 16, 0x0b}, str("hi\n"))...),
	)
}

func TestSandboxRunWasm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(path, wasmHello(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := sandboxCLI(t, "", "sandbox", "run", "--backend", "wasm", "--", path)
	if out != "hi\n" || code != 3 {
		t.Errorf("stdout, exit = %q, %d, want hi, 3 (stderr %q)", out, code, errOut)
	}
	if !strings.Contains(errOut, "backend wasm · exit 3") {
		t.Errorf("stderr = %q, want the wasm summary", errOut)
	}
}

func TestSandboxRunRefusedAndUsage(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "absent.sock"))
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no-subcommand", args: []string{"sandbox"}},
		{name: "unknown-subcommand", args: []string{"sandbox", "jump"}, wantErr: "unknown subcommand"},
		{name: "nothing-to-run", args: []string{"sandbox", "run"}, wantErr: "nothing to run"},
		{name: "lang-without-code", args: []string{"sandbox", "run", "--lang", "python"}, wantErr: "needs --code"},
		{name: "code-without-lang", args: []string{"sandbox", "run", "--code", "x"}, wantErr: "need --lang"},
		{name: "lang-and-argv", args: []string{"sandbox", "run", "--lang", "shell", "--code", "x", "--", "ls"}, wantErr: "not both"},
		{name: "code-and-code-file", args: []string{"sandbox", "run", "--lang", "shell", "--code", "x", "--code-file", "f"}, wantErr: "not both"},
		{name: "rw-without-workspace", args: []string{"sandbox", "run", "--rw", "--", "ls"}, wantErr: "--rw needs --workspace"},
		{name: "bad-network", args: []string{"sandbox", "run", "--network", "on", "--", "ls"}, wantErr: "want off or allowlist"},
		{name: "allow-without-allowlist", args: []string{"sandbox", "run", "--allow", "a.com", "--", "ls"}, wantErr: "--allow needs"},
		{name: "allowlist-without-hosts", args: []string{"sandbox", "run", "--network", "allowlist", "--", "ls"}, wantErr: "needs --allow"},
		{name: "bad-memory", args: []string{"sandbox", "run", "--memory", "lots", "--", "ls"}},
		{name: "bad-env-name", args: []string{"sandbox", "run", "--env", "1X=2", "--", "ls"}},
		{name: "missing-code-file", args: []string{"sandbox", "run", "--lang", "shell", "--code-file", "/nonexistent/x"}, wantErr: "no such file"},
		{name: "stdin-twice", args: []string{"sandbox", "run", "--lang", "shell", "--code", "-", "--stdin", "-"}, wantErr: "only one"},
		{name: "docker-refused", args: []string{"sandbox", "run", "--backend", "docker", "--", "true"}, wantErr: "no engine"},
		{name: "unknown-backend", args: []string{"sandbox", "run", "--backend", "vm", "--", "true"}, wantErr: "unknown backend"},
		{name: "doctor-extra-arg", args: []string{"sandbox", "doctor", "now"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := sandboxCLI(t, "", tt.args...)
			want := 2
			if tt.name == "unknown-backend" {
				want = 1
			}
			if code != want {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, want, errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr = %q, want it to mention %q", errOut, tt.wantErr)
			}
			if strings.Contains(errOut, "goroutine ") {
				t.Errorf("stderr has a stack trace: %q", errOut)
			}
		})
	}
}

func TestSandboxHelp(t *testing.T) {
	for _, args := range [][]string{{"sandbox", "--help"}, {"sandbox", "run", "--help"}, {"sandbox", "doctor", "-h"}} {
		t.Run(strings.Join(args, "-"), func(t *testing.T) {
			out, errOut, code := sandboxCLI(t, "", args...)
			if code != 0 {
				t.Errorf("exit code = %d, want 0", code)
			}
			if !strings.Contains(out+errOut, "usage: airlock sandbox") {
				t.Errorf("output = %q, want usage", out+errOut)
			}
		})
	}
}

func TestSandboxDoctor(t *testing.T) {
	out, errOut, code := sandboxCLI(t, "", "sandbox", "doctor")
	_, nativeErr := sandbox.NewNative()
	if want := map[bool]int{true: 0, false: 1}[nativeErr == nil]; code != want {
		t.Errorf("exit code = %d, want %d (native: %v; stderr %q)", code, want, nativeErr, errOut)
	}
	for _, want := range []string{"BACKEND", "native (default)", "bwrap", "docker", "wasm", "landlock_abi"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = sandboxCLI(t, "", "sandbox", "doctor", "--json")
	var reports []sandbox.BackendReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(reports) != len(sandbox.Backends) {
		t.Errorf("got %d reports, want %d", len(reports), len(sandbox.Backends))
	}
}

func TestSandboxExitCode(t *testing.T) {
	tests := []struct {
		name string
		res  sandbox.Result
		want int
	}{
		{"success", sandbox.Result{ExitCode: 0}, 0},
		{"program-code", sandbox.Result{ExitCode: 42}, 42},
		{"killed", sandbox.Result{ExitCode: -1, Signal: "killed", LimitHit: sandbox.LimitTimeout}, 1},
		{"memory-with-zero-code", sandbox.Result{ExitCode: 0, LimitHit: sandbox.LimitMemory}, 1},
		{"output-cap-keeps-code", sandbox.Result{ExitCode: 0, LimitHit: sandbox.LimitOutput, Truncated: true}, 0},
		{"wasm-code-over-255", sandbox.Result{ExitCode: 256}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sandboxExitCode(tt.res); got != tt.want {
				t.Errorf("sandboxExitCode = %d, want %d", got, tt.want)
			}
		})
	}
	var ee *exitError
	if err := sandboxErr(sandbox.ErrRefused); !errors.As(err, &ee) || ee.Code != 2 {
		t.Errorf("sandboxErr(ErrRefused) = %v, want exit 2", err)
	}
}

//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRun covers the Spec surface on every Linux backend: languages, stdin,
// environment, workspaces, exit statuses, the isolation report.
func TestRun(t *testing.T) {
	for _, b := range linuxBackends {
		t.Run(b.name, func(t *testing.T) {
			r := b.new(t)
			ws := openDir(t)
			if err := os.WriteFile(filepath.Join(ws, "in.txt"), []byte("from host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name       string
				spec       Spec
				wantOut    string
				wantExit   int
				wantSignal string
			}{
				{"python", Spec{Lang: "python", Source: "import sys; print(6*7); print(sys.version_info[0])"}, "42\n3\n", 0, ""},
				{"shell-stdin", Spec{Lang: "shell", Source: "tr a-z A-Z", Stdin: []byte("hello")}, "HELLO", 0, ""},
				{"bash", Spec{Lang: "bash", Source: "echo ${BASH_VERSINFO[0]:+bash}"}, "bash\n", 0, ""},
				{"env-allow-list", Spec{Argv: []string{"/bin/sh", "-c", "echo $FOO $HOME $TMPDIR $LANG; env | sort | cut -d= -f1 | tr '\\n' ' '"}, Env: map[string]string{"FOO": "bar", "LANG": "C"}},
					"bar /workspace /tmp C\nFOO HOME LANG PATH PWD TMPDIR ", 0, ""},
				{"workspace-ro", Spec{Argv: []string{"/bin/sh", "-c", "cat in.txt; pwd; touch x 2>/dev/null || echo ro"}, Workspace: ws}, "from host\n/workspace\nro\n", 0, ""},
				{"scratch-workspace-writable", Spec{Argv: []string{"/bin/sh", "-c", "echo hi > f && cat f && ls -ld /workspace | cut -c1-10"}}, "hi\ndrwxr-xr-x\n", 0, ""},
				{"exit-code", Spec{Argv: []string{"/bin/sh", "-c", "exit 7"}}, "", 7, ""},
				{"killed-by-signal", Spec{Argv: []string{"/bin/sh", "-c", "kill -9 $$"}}, "", -1, "killed"},
				{"hostname", Spec{Argv: []string{"hostname"}}, "sandbox\n", 0, ""},
				{"identity", Spec{Argv: []string{"id"}}, "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)\n", 0, ""},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					res := runT(t, r, c.spec)
					if string(res.Stdout) != c.wantOut {
						t.Errorf("stdout = %q, want %q (stderr %q)", res.Stdout, c.wantOut, res.Stderr)
					}
					if res.ExitCode != c.wantExit || res.Signal != c.wantSignal {
						t.Errorf("exit %d signal %q, want %d %q", res.ExitCode, res.Signal, c.wantExit, c.wantSignal)
					}
					for _, k := range []string{"backend", "userns", "host_uids", "pidns", "mountns", "netns", "landlock", "seccomp", "cgroup", "rlimits", "no_new_privs", "caps", "network"} {
						if res.Isolation[k] == "" {
							t.Errorf("isolation report lacks %q", k)
						}
					}
					if res.Isolation["backend"] != r.Name() {
						t.Errorf("isolation backend = %q, want %q", res.Isolation["backend"], r.Name())
					}
					if res.Setup <= 0 || res.Wall <= 0 {
						t.Errorf("setup %v wall %v, want > 0", res.Setup, res.Wall)
					}
				})
			}
		})
	}
}

func TestWorkspaceWritable(t *testing.T) {
	for _, b := range linuxBackends {
		t.Run(b.name, func(t *testing.T) {
			r := b.new(t)
			ws := openDir(t)
			if err := os.WriteFile(filepath.Join(ws, "a.txt"), []byte("a"), 0o644); err != nil {
				t.Fatal(err)
			}
			res := runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", "echo b >> a.txt && mkdir d && echo c > d/c.txt && rm -f gone"}, Workspace: ws, WorkspaceRW: true})
			if res.ExitCode != 0 {
				t.Fatalf("exit %d: %s", res.ExitCode, res.Stderr)
			}
			b, _ := os.ReadFile(filepath.Join(ws, "a.txt"))
			if string(b) != "ab\n" {
				t.Errorf("a.txt = %q, want %q", b, "ab\n")
			}
			for _, p := range []string{ws, filepath.Join(ws, "a.txt"), filepath.Join(ws, "d"), filepath.Join(ws, "d", "c.txt")} {
				var st syscall.Stat_t
				if err := syscall.Lstat(p, &st); err != nil || st.Uid != uint32(os.Getuid()) {
					t.Errorf("%s owned by %d (%v) after the run, want %d", p, st.Uid, err, os.Getuid())
				}
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	for _, b := range linuxBackends {
		t.Run(b.name, func(t *testing.T) {
			r := b.new(t)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			res, err := r.Run(ctx, Spec{Argv: []string{"sleep", "30"}})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want context.DeadlineExceeded", err)
			}
			if res.LimitHit != LimitTimeout || res.Signal != "killed" {
				t.Errorf("limit %q signal %q, want timeout/killed", res.LimitHit, res.Signal)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("cancel took %v", el)
			}
			if res.Isolation != nil {
				assertHostClean(t, res)
			}
		})
	}
}

// Concurrent runs get distinct host uid ranges and do not disturb each other.
func TestConcurrentRunsDistinctUIDs(t *testing.T) {
	r := linuxBackends[0].new(t)
	const n = 6
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = r.Run(context.Background(), Spec{Argv: []string{"/bin/sh", "-c", fmt.Sprintf("sleep 0.2; echo %d", i)}})
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if got := strings.TrimSpace(string(results[i].Stdout)); got != fmt.Sprint(i) {
			t.Errorf("run %d stdout %q", i, got)
		}
		u := results[i].Isolation["host_uids"]
		if seen[u] {
			t.Errorf("host uid range %s used by two concurrent runs", u)
		}
		seen[u] = true
	}
}

func TestSpecValidation(t *testing.T) {
	r := linuxBackends[0].new(t)
	for _, c := range []struct {
		name    string
		spec    Spec
		refused bool
	}{
		{"empty-argv", Spec{}, false},
		{"argv-and-lang", Spec{Argv: []string{"true"}, Lang: "python", Source: "1"}, false},
		{"unknown-lang", Spec{Lang: "cobol", Source: "x"}, true},
		{"unknown-network", Spec{Argv: []string{"true"}, Network: "host"}, true},
		{"allowlist-empty", Spec{Argv: []string{"true"}, Network: NetworkAllowlist}, true},
		{"allowlist-bad-entry", Spec{Argv: []string{"true"}, Network: NetworkAllowlist, Allow: []string{"ex*ample.com"}}, true},
		{"reserved-bind", Spec{Argv: []string{"true"}, Binds: []Bind{{Source: "/tmp", Target: "/etc"}}}, false},
		{"bind-under-workspace", Spec{Argv: []string{"true"}, Binds: []Bind{{Source: "/tmp", Target: "/workspace/data"}}}, false},
		{"bind-under-usr", Spec{Argv: []string{"true"}, Binds: []Bind{{Source: "/tmp", Target: "/usr/local/x"}}}, false},
		{"relative-bind", Spec{Argv: []string{"true"}, Binds: []Bind{{Source: "tmp", Target: "/x"}}}, false},
		{"missing-workspace", Spec{Argv: []string{"true"}, Workspace: "/nonexistent/ws"}, false},
		{"nul-in-arg", Spec{Argv: []string{"echo", "a\x00b"}}, false},
		{"bad-env", Spec{Argv: []string{"true"}, Env: map[string]string{"A=B": "c"}}, false},
		{"missing-program", Spec{Argv: []string{"no-such-program"}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := r.Run(context.Background(), c.spec)
			if err == nil {
				t.Fatalf("Run accepted an invalid spec")
			}
			if got := errors.Is(err, ErrRefused); got != c.refused {
				t.Errorf("err = %v: refused %v, want %v", err, got, c.refused)
			}
		})
	}
}

// A daemon SIGKILLed mid-run takes its sandbox with it (Pdeathsig on the
// helper, pid namespace teardown): no process of the run survives.
func TestDaemonKilledMidRun(t *testing.T) {
	if os.Getenv("AIRLOCK_SBX_DAEMON") == "1" {
		n, err := NewNative()
		if err != nil {
			os.Exit(3)
		}
		_, _ = n.Run(context.Background(), Spec{Argv: []string{"/bin/sh", "-c", "(setsid sleep 1000 &); echo up; sleep 1000"}, WallTimeout: time.Minute})
		os.Exit(0)
	}
	linuxBackends[0].new(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDaemonKilledMidRun$")
	cmd.Env = append(os.Environ(), "AIRLOCK_SBX_DAEMON=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Find the daemon's run: processes in the slot uid ranges whose
	// session leader descends from the daemon appear once it started.
	deadline := time.Now().Add(10 * time.Second)
	var pids []int
	for time.Now().Before(deadline) {
		pids = childrenInSandboxUIDs(cmd.Process.Pid)
		if len(pids) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) < 2 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sandboxed processes of the daemon not found (got %v)", pids)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		alive := 0
		for _, p := range pids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p)); err == nil && !strings.Contains(string(b), "State:\tZ") {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("sandboxed processes %v survived their daemon", pids)
}

// childrenInSandboxUIDs lists descendants of root running as a sandbox uid.
func childrenInSandboxUIDs(root int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	var all []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		var ppid int
		fmt.Sscan(f[1], &ppid)
		parent[pid] = ppid
		all = append(all, pid)
	}
	var out []int
	for _, pid := range all {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				if len(uidProcsOf(pid)) > 0 {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}

// uidProcsOf returns [pid] when pid runs as a slot uid.
func uidProcsOf(pid int) []int {
	lo, _ := slotUIDs(0)
	_, hi := slotUIDs(numSlots - 1)
	for _, p := range uidProcs(lo, hi) {
		if p == pid {
			return []int{pid}
		}
	}
	return nil
}

func TestPreflightReport(t *testing.T) {
	c := Preflight()
	rep := c.Report()
	for _, k := range []string{"userns", "cgroup", "landlock_abi", "seccomp", "ia32", "bwrap", "missing"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if len(c.Missing) == 0 && (c.LandlockABI < MinLandlockABI || c.Cgroup.Version == 0 || !c.UserNS || !c.Seccomp) {
		t.Errorf("capabilities %+v report nothing missing", c)
	}
}

func TestSeccompProgramAssembles(t *testing.T) {
	for _, inet := range []bool{false, true} {
		prog, err := seccompProgram(seccompOptions{AllowInet: inet})
		if err != nil {
			t.Fatalf("seccompProgram: %v", err)
		}
		if len(prog) < 50 || len(prog) > 4096 {
			t.Errorf("program has %d instructions", len(prog))
		}
	}
	for _, name := range []string{"ptrace", "mount", "unshare", "setns", "bpf", "io_uring_setup", "perf_event_open", "userfaultfd", "keyctl", "add_key", "kexec_load", "init_module", "open_by_handle_at", "clock_settime", "settimeofday", "process_vm_readv", "pivot_root", "chroot", "personality", "clone", "clone3", "socket"} {
		for _, a := range seccompAllow {
			if a == name {
				t.Errorf("%s is unconditionally allowed", name)
			}
		}
	}
}

// BenchmarkColdStart measures one complete run (setup, program, teardown)
// of /bin/true and `python3 -c pass`: bare exec, native, bwrap.
func BenchmarkColdStart(b *testing.B) {
	progs := []struct {
		name string
		argv []string
	}{
		{"true", []string{"/bin/true"}},
		{"python", []string{"/usr/bin/python3", "-c", "pass"}},
	}
	for _, p := range progs {
		b.Run("bare/"+p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := exec.Command(p.argv[0], p.argv[1:]...).Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, be := range benchBackends {
			b.Run(be.name+"/"+p.name, func(b *testing.B) {
				r := be.new(b)
				b.ReportAllocs()
				for b.Loop() {
					res, err := r.Run(context.Background(), Spec{Argv: p.argv})
					if err != nil || res.ExitCode != 0 {
						b.Fatalf("run: %v exit %d %s", err, res.ExitCode, res.Stderr)
					}
					if be.settle != nil {
						b.StopTimer()
						be.settle()
						b.StartTimer()
					}
				}
			})
		}
	}
}

// benchBackends: native with a helper started ahead (the pool is refilled
// between iterations, outside the timer, as between approvals), native
// starting every helper from scratch, and bwrap.
var benchBackends = []struct {
	name   string
	new    func(b *testing.B) Runner
	settle func()
}{
	{"native", func(b *testing.B) Runner { return linuxBackends[0].new(b) }, waitWarm},
	{"native-cold", func(b *testing.B) Runner {
		n, err := NewNative(WithoutWarmHelper())
		if err != nil {
			b.Skip(err)
		}
		return n
	}, nil},
	{"bwrap", func(b *testing.B) Runner { return linuxBackends[1].new(b) }, nil},
}

// waitWarm waits until the helper pool is full again.
func waitWarm() {
	go warm.fill()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		warm.mu.Lock()
		n := len(warm.ready)
		warm.mu.Unlock()
		if n >= warm.size {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// A dry run works on a scratch copy: the original workspace is untouched and
// Result.Changed lists what the program created, changed or deleted.
func TestDryRun(t *testing.T) {
	for _, b := range linuxBackends {
		t.Run(b.name, func(t *testing.T) {
			r := b.new(t)
			ws := openDir(t)
			for p, body := range map[string]string{"a.txt": "a", "sub/b.txt": "b", "del.txt": "d", "same.txt": "s"} {
				if err := os.MkdirAll(filepath.Join(ws, filepath.Dir(p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(ws, p), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink("a.txt", filepath.Join(ws, "link")); err != nil {
				t.Fatal(err)
			}
			script := "echo x >> a.txt && rm del.txt && mkdir new && echo n > new/n.txt && ln -sf sub/b.txt link && chmod 600 sub/b.txt && cat same.txt"
			res := runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", script}, Workspace: ws, DryRun: true})
			if res.ExitCode != 0 {
				t.Fatalf("exit %d: %s", res.ExitCode, res.Stderr)
			}
			want := []string{"a.txt", "del.txt", "link", "new/", "new/n.txt", "sub/b.txt"}
			if fmt.Sprint(res.Changed) != fmt.Sprint(want) {
				t.Errorf("Changed = %q, want %q", res.Changed, want)
			}
			for p, body := range map[string]string{"a.txt": "a", "del.txt": "d", "sub/b.txt": "b"} {
				if got, _ := os.ReadFile(filepath.Join(ws, p)); string(got) != body {
					t.Errorf("original %s = %q, want %q", p, got, body)
				}
			}
			if _, err := os.Stat(filepath.Join(ws, "new")); err == nil {
				t.Errorf("dry run created new/ in the original workspace")
			}
			if l, _ := os.Readlink(filepath.Join(ws, "link")); l != "a.txt" {
				t.Errorf("original link -> %q", l)
			}
		})
	}
}

func TestAllowRules(t *testing.T) {
	rules, err := parseAllow([]string{"Example.COM.", "*.pypi.org", "api.test:8443", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host string
		port int
		want bool
	}{
		{"example.com", 443, true},
		{"EXAMPLE.com.", 80, true},
		{"example.com", 8080, false},
		{"www.example.com", 443, false},
		{"files.pypi.org", 443, true},
		{"pypi.org", 443, false},
		{"evilpypi.org", 443, false},
		{"api.test", 8443, true},
		{"api.test", 443, false},
		{"10.1.2.3", 443, true},
		{"10.1.2.4", 443, false},
		{"[::1]", 443, false},
	} {
		if got := allowed(rules, c.host, c.port); got != c.want {
			t.Errorf("allowed(%s:%d) = %v, want %v", c.host, c.port, got, c.want)
		}
	}
	star, _ := parseAllow([]string{"*"})
	if !allowed(star, "anything.example", 443) || allowed(star, "1.1.1.1", 443) {
		t.Errorf("* must allow any name and no IP literal")
	}
	for _, bad := range [][]string{nil, {""}, {"ex*ample.com"}, {"a.*.com"}, {"host:0"}, {"host:x"}, {"http://host"}, {"**"}} {
		if _, err := parseAllow(bad); err == nil {
			t.Errorf("parseAllow(%q) accepted", bad)
		}
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"1.1.1.1", true}, {"2606:4700::1111", true},
		{"127.0.0.1", false}, {"10.0.0.1", false}, {"172.16.5.4", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"100.64.0.1", false}, {"0.0.0.0", false}, {"::1", false},
		{"fd00::1", false}, {"fe80::1", false}, {"::ffff:10.0.0.1", false}, {"224.0.0.1", false},
	} {
		if got := publicAddr(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("publicAddr(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
}

// clientHello returns the first flight of a TLS client for sni.
func clientHello(sni string) []byte {
	var out bytes.Buffer
	c := tls.Client(&recordConn{w: &out}, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_ = c.Handshake() // fails at the read: we only want what was written
	return out.Bytes()
}

type recordConn struct{ w *bytes.Buffer }

func (c *recordConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *recordConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *recordConn) Close() error                     { return nil }
func (c *recordConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recordConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

func TestPeekClientHello(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      []byte
		wantSNI string
		wantTLS bool
	}{
		{"tls-with-sni", clientHello("allowed.test"), "allowed.test", true},
		{"tls-without-sni", clientHello(""), "", true},
		{"plain-http", []byte("GET / HTTP/1.1\r\n\r\n"), "", false},
		{"truncated-record", clientHello("x.test")[:20], "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			first, sni, isTLS := peekClientHello(bufio.NewReader(bytes.NewReader(c.in)))
			if sni != c.wantSNI || isTLS != c.wantTLS {
				t.Errorf("got sni %q tls %v, want %q %v", sni, isTLS, c.wantSNI, c.wantTLS)
			}
			if isTLS && !bytes.HasPrefix(c.in, first) {
				t.Errorf("peeked bytes are not a prefix of the stream")
			}
		})
	}
}

func FuzzPeekClientHello(f *testing.F) {
	f.Add(clientHello("allowed.test"))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte("CONNECT x:1 HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		first, _, isTLS := peekClientHello(bufio.NewReader(bytes.NewReader(data)))
		if !isTLS && len(first) != 0 {
			t.Fatalf("non-TLS stream consumed %d bytes", len(first))
		}
		if !bytes.HasPrefix(data, first) {
			t.Fatalf("peeked bytes are not a prefix of the input")
		}
	})
}

//go:build linux

package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"
)

// The escape suite (SANDBOX.md, programs 1–28) runs against every Linux
// backend available here. A probe exits 0 when any attempt succeeded (a
// breach), 1 when every attempt was denied, 2 when the probe itself broke.
// Every run is also checked on the host: no process of the run's uid range
// left, no cgroup left, plus per-probe host state.

const probeMount = "/probe"

var probeBuild = sync.OnceValues(func() (string, error) {
	src, err := os.ReadFile(filepath.Join("testdata", "escape", "probe", "main.go"))
	if err != nil {
		return "", err
	}
	asm, err := os.ReadFile(filepath.Join("testdata", "escape", "probe", "int80_amd64.s"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(src, asm...))
	dir := filepath.Join(os.TempDir(), "airlock-escape-probe-"+hex.EncodeToString(sum[:6]))
	bin := filepath.Join(dir, "probe")
	if _, err := os.Stat(bin); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./testdata/escape/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=amd64", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build probe: %v: %s", err, out)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	return dir, os.Rename(tmp, bin)
})

// probeDir builds the probe (once per test binary) and returns its host dir.
func probeDir(t testing.TB) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		testenv.Missing(t, "escape probes are amd64 (int 0x80), this is %s", runtime.GOARCH)
	}
	d, err := probeBuild()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// probeSpec runs the probe subcommand with the probe bound at /probe.
func probeSpec(t testing.TB, args ...string) Spec {
	return Spec{
		Argv:        append([]string{probeMount + "/probe"}, args...),
		Binds:       []Bind{{Source: probeDir(t), Target: probeMount}},
		WallTimeout: 20 * time.Second,
	}
}

type backendCtor struct {
	name string
	new  func(t testing.TB) Runner
}

// linuxBackends are the backends the suite runs against.
var linuxBackends = []backendCtor{
	{"native", func(t testing.TB) Runner {
		n, err := NewNative()
		if err != nil {
			testenv.Missing(t, "native backend: %v", err)
		}
		return n
	}},
	{"bwrap", func(t testing.TB) Runner {
		b, err := NewBwrap()
		if err != nil {
			testenv.Missing(t, "bwrap backend: %v", err)
		}
		return b
	}},
}

// hostUIDs parses the run's host uid range from the isolation report.
func hostUIDs(t testing.TB, res Result) (lo, hi uint32) {
	t.Helper()
	s := res.Isolation["host_uids"]
	a, b, ok := strings.Cut(s, "-")
	l, err1 := strconv.ParseUint(a, 10, 32)
	h, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("isolation host_uids = %q, want lo-hi", s)
	}
	if l == 0 || l < uidBase {
		t.Fatalf("host uid range starts at %d: the sandbox must never be host root", l)
	}
	return uint32(l), uint32(h) + 1
}

// assertHostClean checks no process of the run survives and no cgroup of
// this test process is left.
func assertHostClean(t testing.TB, res Result) {
	t.Helper()
	lo, hi := hostUIDs(t, res)
	if p := uidProcs(lo, hi); len(p) > 0 {
		t.Errorf("survivors with host uids %d-%d: %v", lo, hi, p)
	}
	caps := Preflight()
	name := res.Isolation["run"]
	if !strings.HasPrefix(name, "run-") {
		t.Fatalf("isolation run = %q", name)
	}
	for ctrl, parent := range caps.Cgroup.Dirs {
		if _, err := os.Stat(filepath.Join(parent, "airlock", name)); err == nil {
			t.Errorf("cgroup %s/%s left behind", ctrl, name)
		}
	}
}

func runT(t testing.TB, r Runner, spec Spec) Result {
	t.Helper()
	res, err := r.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("exit=%d signal=%q limit=%q\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Signal, res.LimitHit, res.Stdout, res.Stderr)
		}
	})
	assertHostClean(t, res)
	return res
}

// contained asserts the probe reported every attempt denied.
func contained(t testing.TB, res Result) {
	t.Helper()
	switch res.ExitCode {
	case 1:
		if strings.Contains(string(res.Stdout), "BREACH") {
			t.Errorf("probe exited 1 but printed a BREACH")
		}
		if !strings.Contains(string(res.Stdout), "PROBE CONTAINED") {
			t.Errorf("exit 1 without the probe's verdict: the probe did not run to the end\n%s%s", res.Stdout, res.Stderr)
		}
	case 0:
		t.Errorf("BREACH: probe exited 0:\n%s", grepLines(res.Stdout, "BREACH"))
	default:
		t.Errorf("probe failed: exit %d signal %q, want 1 (all denied)\n%s%s", res.ExitCode, res.Signal, res.Stdout, res.Stderr)
	}
}

// failed asserts a "should fail" shell one-liner did not exit 0.
func failed(t testing.TB, res Result) {
	t.Helper()
	if res.ExitCode == 0 {
		t.Errorf("BREACH: should-fail command exited 0\nstdout:%s\nstderr:%s", res.Stdout, res.Stderr)
	}
	if res.ExitCode == 127 {
		t.Errorf("command missing (exit 127): %s", res.Stderr)
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// openDir returns a fresh host directory the sandbox uid can traverse.
func openDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// tcpCounter listens on addr and counts accepted connections.
func tcpCounter(t testing.TB, network, addr string) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l.Addr().String(), &n
}

func hostIP(t testing.TB) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

func fileHash(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "missing"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type escapeCase struct {
	num  int
	name string
	run  func(t *testing.T, r Runner)
}

var escapeCases = []escapeCase{
	{1, "tcp-connect", func(t *testing.T, r Runner) {
		lo, lon := tcpCounter(t, "tcp", "127.0.0.1:0")
		args := []string{"net-connect", lo}
		var ipn *atomic.Int64
		if ip := hostIP(t); ip != "" {
			var a string
			a, ipn = tcpCounter(t, "tcp", net.JoinHostPort(ip, "0"))
			args = append(args, a)
		}
		contained(t, runT(t, r, probeSpec(t, args...)))
		failed(t, runT(t, r, Spec{Argv: []string{"/bin/bash", "-c", "exec 3<>/dev/tcp/1.1.1.1/443"}}))
		if lon.Load() != 0 || (ipn != nil && ipn.Load() != 0) {
			t.Errorf("host listeners accepted %d/%v connections, want 0", lon.Load(), ipn)
		}
	}},
	{2, "dns", func(t *testing.T, r Runner) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var got atomic.Int64
		go func() {
			buf := make([]byte, 512)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				got.Add(1)
			}
		}()
		contained(t, runT(t, r, probeSpec(t, "dns", pc.LocalAddr().String())))
		failed(t, runT(t, r, Spec{Argv: []string{"getent", "ahosts", "example.com"}}))
		if got.Load() != 0 {
			t.Errorf("host DNS listener got %d packets, want 0", got.Load())
		}
	}},
	{3, "raw-sockets", func(t *testing.T, r Runner) {
		contained(t, runT(t, r, probeSpec(t, "raw-sockets")))
		if _, err := os.Stat("/usr/bin/ping"); err == nil {
			failed(t, runT(t, r, Spec{Argv: []string{"/usr/bin/ping", "-c1", "-W1", "127.0.0.1"}}))
		}
	}},
	{4, "console-port-and-abstract-socket", func(t *testing.T, r Runner) {
		addr, n := tcpCounter(t, "tcp", "127.0.0.1:0")
		name := fmt.Sprintf("airlock-console-%d-%d", os.Getpid(), time.Now().UnixNano())
		_, un := tcpCounter(t, "unix", "@"+name)
		contained(t, runT(t, r, probeSpec(t, "local-services", addr, name)))
		if n.Load()+un.Load() != 0 {
			t.Errorf("host console listeners accepted %d connections, want 0", n.Load()+un.Load())
		}
	}},
	{5, "host-unix-sockets", func(t *testing.T, r Runner) {
		sock := filepath.Join(openDir(t), "console.sock")
		_, n := tcpCounter(t, "unix", sock)
		_ = os.Chmod(sock, 0o777)
		contained(t, runT(t, r, probeSpec(t, "host-sockets", sock)))
		if n.Load() != 0 {
			t.Errorf("host control socket accepted %d connections, want 0", n.Load())
		}
	}},
	{6, "network-allowlist", func(t *testing.T, r Runner) {
		allowlistEscape(t, r.Name())
	}},
	{7, "secrets", func(t *testing.T, r Runner) {
		marker := fmt.Sprintf("airlock-secret-%d", time.Now().UnixNano())
		t.Setenv("AIRLOCK_ESCAPE_MARKER", marker)
		secret := filepath.Join(openDir(t), "api-key")
		if err := os.WriteFile(secret, []byte(marker), 0o644); err != nil {
			t.Fatal(err)
		}
		spec := probeSpec(t, "secrets", marker, secret, "/work/main/airlock-data/airlock.db")
		spec.Env = map[string]string{"PROBE_ALLOWED": "1"}
		contained(t, runT(t, r, spec))
	}},
	{8, "write-outside-workspace", func(t *testing.T, r Runner) {
		ws := openDir(t)
		if err := os.MkdirAll(filepath.Join(ws, ".git", "hooks"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(ws, ".git", "config")
		if err := os.WriteFile(cfg, []byte("[core]\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		before := fileHash(t, cfg)
		spec := probeSpec(t, "write-outside", "/workspace/.git/config", "/workspace/.git/hooks/pre-commit", "/workspace/new-file")
		spec.Workspace = ws
		contained(t, runT(t, r, spec))
		if fileHash(t, cfg) != before {
			t.Errorf("host .git/config changed")
		}
		for _, p := range []string{filepath.Join(ws, ".git/hooks/pre-commit"), filepath.Join(ws, "new-file"), "/etc/x", "/usr/bin/x"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("host file %s was created", p)
			}
		}
	}},
	{9, "symlink-escape", func(t *testing.T, r Runner) {
		ws := openDir(t)
		victim := filepath.Join(openDir(t), "victim")
		if err := os.WriteFile(victim, []byte("v"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(victim, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		// A hard link to a file outside the workspace (planted by someone
		// on the host) must not be handed to the sandbox uid.
		outside := filepath.Join(openDir(t), "outside")
		if err := os.WriteFile(outside, []byte("o"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(outside, filepath.Join(ws, "hardlink")); err != nil {
			t.Fatal(err)
		}
		passwd := fileHash(t, "/etc/passwd")
		spec := probeSpec(t, "symlinks")
		spec.Workspace, spec.WorkspaceRW = ws, true
		// The sandbox also plants a link to a host file for the host's
		// post-run chown: it must not be followed.
		spec.Argv = []string{"/bin/sh", "-c", "ln -s " + victim + " /workspace/victim; echo pwned >> /workspace/hardlink 2>/dev/null; cp /bin/sh /workspace/suid && chmod 6755 /workspace/suid; /probe/probe symlinks; exit $?"}
		contained(t, runT(t, r, spec))
		if fileHash(t, "/etc/passwd") != passwd {
			t.Errorf("host /etc/passwd changed")
		}
		for _, p := range []string{"/etc/escaped", "/usr/escaped"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("host %s created", p)
			}
		}
		if fi, err := os.Stat(filepath.Join(ws, "suid")); err != nil || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("set-id file the run created: %v (%v), want it handed back without set-id bits", fi.Mode(), err)
		}
		if b, _ := os.ReadFile(outside); string(b) != "o" {
			t.Errorf("file outside the workspace, hard-linked into it, changed: %q", b)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(victim, &st); err != nil || st.Uid != 4242 {
			t.Errorf("victim owner = %d (%v), want 4242: host chown followed a sandbox symlink", st.Uid, err)
		}
		_ = filepath.WalkDir(ws, func(p string, d os.DirEntry, err error) error {
			var st syscall.Stat_t
			if err == nil && syscall.Lstat(p, &st) == nil && st.Uid != uint32(os.Getuid()) {
				t.Errorf("workspace entry %s owned by %d after the run, want %d", p, st.Uid, os.Getuid())
			}
			return nil
		})
	}},
	{10, "special-files", func(t *testing.T, r Runner) {
		contained(t, runT(t, r, probeSpec(t, "special-files")))
	}},
	{11, "proc-and-sys", func(t *testing.T, r Runner) {
		marker := openDir(t)
		contained(t, runT(t, r, probeSpec(t, "proc", "/proc/1/root"+marker, "/proc/1/root/work")))
	}},
	{12, "fd-leak", func(t *testing.T, r Runner) {
		// Leave a non-close-on-exec descriptor open in the host process.
		f, err := os.Open("/etc/hostname")
		if err == nil {
			defer f.Close()
			syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0)
		}
		contained(t, runT(t, r, probeSpec(t, "fds")))
	}},
	{13, "privilege", func(t *testing.T, r Runner) {
		dir := openDir(t)
		id, err := exec.LookPath("id")
		if err != nil {
			testenv.Missing(t, "no id binary")
		}
		b, err := os.ReadFile(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "id"), b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "id"), 0o4755|os.ModeSetuid); err != nil {
			t.Fatal(err)
		}
		spec := probeSpec(t, "privilege", "/suid/id")
		spec.Binds = append(spec.Binds, Bind{Source: dir, Target: "/suid"})
		spec.Argv = []string{"/bin/sh", "-c", "/probe/probe privilege /suid/id; r=$?; sleep 0.3; exit $r"}
		// Host view: every process in this run's cgroup has only non-zero
		// uids (real, effective, saved, fs).
		stop := make(chan struct{})
		seen := make(chan map[int]string, 1)
		go func() { seen <- watchRunUIDs(stop) }()
		res := runT(t, r, spec)
		close(stop)
		procs := <-seen
		contained(t, res)
		if len(procs) == 0 {
			t.Errorf("no process of the run seen on the host")
		}
		for pid, uids := range procs {
			for _, u := range strings.Fields(uids) {
				if u == "0" {
					t.Errorf("host pid %d of the run has uids %q: host root", pid, uids)
				}
			}
		}
	}},
	{14, "ptrace", func(t *testing.T, r Runner) {
		spec := probeSpec(t)
		spec.Argv = []string{"/bin/sh", "-c", "/probe/probe ptrace; exit $?"}
		contained(t, runT(t, r, spec))
	}},
	{15, "signals", func(t *testing.T, r Runner) {
		canary := exec.Command("sleep", "60")
		if err := canary.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { canary.Wait(); close(exited) }()
		t.Cleanup(func() { canary.Process.Kill(); <-exited })
		contained(t, runT(t, r, probeSpec(t, "signals", strconv.Itoa(canary.Process.Pid), strconv.Itoa(os.Getpid()))))
		select {
		case <-exited:
			t.Errorf("host canary process was killed from inside the sandbox")
		default:
		}
	}},
	{16, "namespaces", func(t *testing.T, r Runner) {
		contained(t, runT(t, r, probeSpec(t, "namespaces")))
	}},
	{17, "alternate-syscall-abis", func(t *testing.T, r Runner) {
		res := runT(t, r, probeSpec(t, "abi"))
		contained(t, res)
		// Every i386/x32 attempt must have been stopped by the filter (the
		// process killed), not merely failed for another reason.
		if n := strings.Count(string(res.Stdout), "killed by bad system call"); n < 8 {
			t.Errorf("only %d of 8 alternate-ABI calls were killed by seccomp", n)
		}
	}},
	{18, "kernel-attack-surface", func(t *testing.T, r Runner) {
		contained(t, runT(t, r, probeSpec(t, "kernel")))
	}},
	{19, "tty-injection", func(t *testing.T, r Runner) {
		contained(t, runT(t, r, probeSpec(t, "tty")))
	}},
	{20, "fork-and-thread-bomb", func(t *testing.T, r Runner) {
		start := time.Now()
		res := runT(t, r, Spec{Argv: []string{"/bin/bash", "-c", ":(){ :|:& };:; wait"}, Pids: 32, WallTimeout: 2 * time.Second})
		if res.LimitHit != LimitPids && res.LimitHit != LimitTimeout {
			t.Errorf("fork bomb: limit = %q, want pids or timeout", res.LimitHit)
		}
		if time.Since(start) > 8*time.Second {
			t.Errorf("fork bomb run took %v", time.Since(start))
		}
		spec := probeSpec(t, "thread-bomb")
		spec.Pids, spec.WallTimeout = 32, 3*time.Second
		res = runT(t, r, spec)
		if res.ExitCode == 0 {
			t.Errorf("thread bomb: exit 0, want the runtime to fail at the pids limit")
		}
		if res.LimitHit != LimitPids {
			t.Errorf("thread bomb: limit = %q, want pids", res.LimitHit)
		}
	}},
	{21, "memory-bomb", func(t *testing.T, r Runner) {
		spec := probeSpec(t, "memory", "256")
		spec.Memory = 64 << 20
		res := runT(t, r, spec)
		if res.LimitHit != LimitMemory || res.ExitCode == 0 {
			t.Errorf("memory bomb: limit=%q exit=%d, want memory and a kill", res.LimitHit, res.ExitCode)
		}
		for _, dir := range []string{"/dev/shm", "/tmp"} {
			res = runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", "dd if=/dev/zero of=" + dir + "/fill bs=1M count=64"}, TmpSize: 8 << 20, Memory: 256 << 20})
			failed(t, res)
			if !strings.Contains(string(res.Stderr), "No space left") {
				t.Errorf("fill %s: stderr %q, want ENOSPC", dir, res.Stderr)
			}
		}
	}},
	{22, "cpu-burn", func(t *testing.T, r Runner) {
		spec := probeSpec(t, "cpu-burn", "2", "1500ms")
		spec.CPUs = 0.5
		res := runT(t, r, spec)
		if res.CPUTime > time.Duration(float64(res.Wall)*0.5*1.3)+100*time.Millisecond {
			t.Errorf("cpu burn with 0.5 CPU: used %v in %v wall, want <= ~%v", res.CPUTime, res.Wall, res.Wall/2)
		}
		res = runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", "while :; do :; done"}, CPUTime: time.Second, WallTimeout: 10 * time.Second})
		if res.LimitHit != LimitCPU {
			t.Errorf("cpu rlimit: limit = %q (signal %q, cpu %v), want cpu", res.LimitHit, res.Signal, res.CPUTime)
		}
	}},
	{23, "disk-fill", func(t *testing.T, r Runner) {
		res := runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", "dd if=/dev/zero of=/workspace/fill bs=1M count=64"}, TmpSize: 8 << 20})
		failed(t, res)
		res = runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", "dd if=/dev/zero of=/tmp/big bs=1M count=4"}, FileSize: 1 << 20})
		failed(t, res)
		if res.Signal == "" && !strings.Contains(string(res.Stderr), "File size limit exceeded") && !strings.Contains(string(res.Stderr), "too large") {
			t.Errorf("fsize: signal %q stderr %q, want SIGXFSZ or EFBIG", res.Signal, res.Stderr)
		}
		contained(t, runT(t, r, probeSpec(t, "fill-files", "/tmp", "200000")))
	}},
	{24, "fd-exhaustion", func(t *testing.T, r Runner) {
		spec := probeSpec(t, "fds-exhaust")
		spec.NoFile = 256
		res := runT(t, r, spec)
		contained(t, res)
		if !strings.Contains(string(res.Stdout), "too many open files") {
			t.Errorf("want EMFILE, got %s", res.Stdout)
		}
	}},
	{25, "time-evasion", func(t *testing.T, r Runner) {
		start := time.Now()
		script := `trap "" TERM; (setsid sh -c 'trap "" TERM; sleep 1000' &); nohup sleep 1000 >/dev/null 2>&1 & sleep 1000`
		res := runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", script}, WallTimeout: time.Second})
		if res.LimitHit != LimitTimeout {
			t.Errorf("limit = %q, want timeout", res.LimitHit)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("run returned after %v, want timeout + grace", el)
		}
	}},
	{26, "output-flood", func(t *testing.T, r Runner) {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		const total = 200_000_000
		res := runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", fmt.Sprintf("yes | head -c %d; head -c 20000000 /dev/zero | tr '\\0' x >&2", total)}, OutputCap: 64 << 10})
		runtime.ReadMemStats(&m1)
		if res.StdoutBytes != total || res.StderrBytes != 20_000_000 {
			t.Errorf("counted %d/%d bytes, want %d/%d", res.StdoutBytes, res.StderrBytes, total, 20_000_000)
		}
		if len(res.Stdout) > 70<<10 || len(res.Stderr) > 70<<10 || !res.Truncated {
			t.Errorf("retained %d/%d bytes truncated=%v, want <= cap", len(res.Stdout), len(res.Stderr), res.Truncated)
		}
		if !strings.Contains(string(res.Stdout), "truncated") {
			t.Errorf("no truncation marker in retained output")
		}
		if res.LimitHit != LimitOutput {
			t.Errorf("limit = %q, want output", res.LimitHit)
		}
		if grew := int64(m1.HeapInuse) - int64(m0.HeapInuse); grew > 32<<20 {
			t.Errorf("runner heap grew by %d bytes during a 220 MB flood", grew)
		}
	}},
	{27, "pipe-holding", func(t *testing.T, r Runner) {
		start := time.Now()
		res := runT(t, r, Spec{Argv: []string{"/bin/sh", "-c", "sleep 100 & echo started"}, WallTimeout: 20 * time.Second})
		if el := time.Since(start); el > DrainTimeout+3*time.Second {
			t.Errorf("run returned after %v, want <= drain timeout", el)
		}
		if !strings.Contains(string(res.Stdout), "started") {
			t.Errorf("stdout %q", res.Stdout)
		}
	}},
	{0, "landlock-every-thread", func(t *testing.T, r Runner) {
		res := runT(t, r, probeSpec(t, "landlock-threads"))
		contained(t, res)
		if n := strings.Count(string(res.Stdout), "permission denied"); n != 16 {
			t.Errorf("%d of 16 threads denied by Landlock (EACCES)", n)
		}
	}},
}

func TestEscape(t *testing.T) {
	for _, b := range linuxBackends {
		t.Run(b.name, func(t *testing.T) {
			r := b.new(t)
			for _, c := range escapeCases {
				t.Run(fmt.Sprintf("%02d-%s", c.num, c.name), func(t *testing.T) { c.run(t, r) })
			}
		})
	}
}

// TestProbesDetectBreaches runs probes outside any sandbox: they must report
// the breach (exit 0), proving a contained result is not an artefact.
func TestProbesDetectBreaches(t *testing.T) {
	dir := probeDir(t)
	for _, args := range [][]string{{"abi-one", "i386", "20"}, {"landlock-threads"}} {
		t.Run(args[0], func(t *testing.T) {
			cmd := exec.Command(filepath.Join(dir, "probe"), args...)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			if err := cmd.Run(); err != nil {
				t.Errorf("unsandboxed probe %v: %v, want exit 0 (breach detected)", args, err)
			}
		})
	}
}

// Program #28: a broken prerequisite refuses the run; nothing executes.
func TestFailClosed(t *testing.T) {
	marker := filepath.Join(openDir(t), "ran")
	spec := Spec{Argv: []string{"/bin/sh", "-c", "touch " + marker}}
	for _, c := range []struct {
		name  string
		hooks preflightHooks
	}{
		{"no-userns", preflightHooks{NoUserNS: true}},
		{"no-landlock", preflightHooks{LandlockABI: -1}},
		{"landlock-too-old", preflightHooks{LandlockABI: 3}},
		{"no-cgroups", preflightHooks{NoCgroups: true}},
		{"no-seccomp", preflightHooks{NoSeccomp: true}},
	} {
		t.Run("native-"+c.name, func(t *testing.T) {
			_, err := NewNative(withPreflight(c.hooks))
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("NewNative: got %v, want ErrRefused", err)
			}
			// A zero or forged backend value refuses too.
			var n *Native
			if _, err := n.Run(context.Background(), spec); !errors.Is(err, ErrRefused) {
				t.Errorf("nil Native Run: got %v, want ErrRefused", err)
			}
			caps := probeCapabilities(c.hooks)
			forged := &Native{caps: caps}
			if _, err := forged.Run(context.Background(), spec); !errors.Is(err, ErrRefused) {
				t.Errorf("Run with missing %v: got %v, want ErrRefused", caps.Missing, err)
			}
			if _, err := NewBwrap(withPreflight(c.hooks)); !errors.Is(err, ErrRefused) {
				t.Errorf("NewBwrap: got %v, want ErrRefused", err)
			}
		})
	}
	// The helper re-checks inside the sandbox: a kernel that cannot give it
	// the Landlock it demands makes it refuse before exec.
	for _, b := range []struct {
		name string
		new  func() (Runner, error)
	}{
		{"native", func() (Runner, error) { return NewNative(withHelperLandlockMin(99)) }},
		{"bwrap", func() (Runner, error) { return NewBwrap(withHelperLandlockMin(99)) }},
	} {
		t.Run(b.name+"-helper-refuses", func(t *testing.T) {
			r, err := b.new()
			if err != nil {
				testenv.Missing(t, "%s: %v", b.name, err)
			}
			_, err = r.Run(context.Background(), spec)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "landlock") {
				t.Errorf("Run: got %v, want ErrRefused naming landlock", err)
			}
		})
	}
	t.Run("bwrap-missing", func(t *testing.T) {
		if _, err := NewBwrap(withPreflight(preflightHooks{NoBwrap: true})); !errors.Is(err, ErrRefused) {
			t.Errorf("NewBwrap without bwrap: got %v, want ErrRefused", err)
		}
	})
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a refused run executed")
	}
}

// watchRunUIDs polls /proc until stop and returns the uids (host view) of
// every process seen in a run cgroup of this test process.
func watchRunUIDs(stop <-chan struct{}) map[int]string {
	tag := fmt.Sprintf("/airlock/run-%d-", os.Getpid())
	out := map[int]string{}
	for {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cg, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
			if err != nil || !strings.Contains(string(cg), tag) {
				continue
			}
			st, err := os.ReadFile("/proc/" + e.Name() + "/status")
			if err != nil {
				continue
			}
			for l := range strings.Lines(string(st)) {
				if v, ok := strings.CutPrefix(l, "Uid:"); ok {
					out[pid] = strings.TrimSpace(v)
				}
			}
		}
		select {
		case <-stop:
			return out
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// allowlistEscape is program #6 against the native backend: a local HTTP
// server stands in for the internet ("allowed.test" and its subdomains
// resolve to it, "internal.allowed.test" to 10.0.0.1; only 127.0.0.1 counts
// as public for the proxy).
func allowlistEscape(t *testing.T, backend string) {
	var hits atomic.Int64
	var hostsMu sync.Mutex
	var hosts []string
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		hostsMu.Lock()
		hosts = append(hosts, r.Host)
		hostsMu.Unlock()
		fmt.Fprint(w, "hello")
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()
	tlsSrv := httptest.NewUnstartedServer(handler)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	_, tlsPort, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	local := netip.MustParseAddr("127.0.0.1")
	ctor := func(opts ...NativeOption) (Runner, error) { return NewNative(opts...) }
	if backend == "bwrap" {
		ctor = func(opts ...NativeOption) (Runner, error) { return NewBwrap(opts...) }
	}
	n, err := ctor(withProxyHooks(proxyHooks{
		resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			switch {
			case host == "internal.allowed.test" || host == "internal.test":
				return []netip.Addr{netip.MustParseAddr("10.0.0.1")}, nil
			case host == "mixed.allowed.test":
				return []netip.Addr{local, netip.MustParseAddr("169.254.169.254")}, nil
			case host == "allowed.test" || strings.HasSuffix(host, ".allowed.test") || host == "denied.test":
				return []netip.Addr{local}, nil
			}
			return nil, errors.New("no such host")
		},
		permit: func(a netip.Addr) bool { return a == local },
	}))
	if err != nil {
		testenv.Missing(t, "%s: %v", backend, err)
	}
	script := `
import socket, ssl, urllib.request, urllib.error
P = ` + port + `
PT = ` + tlsPort + `
ctx = ssl._create_unverified_context()
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=5).read().decode()
    except urllib.error.HTTPError as e:
        return "HTTP %d" % e.code
    except Exception as e:
        return "ERR " + type(e).__name__
def raw(req):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
    s.sendall(req.encode())
    return s.recv(200).split(b"\r\n")[0].decode()
print("allowed", get("http://allowed.test:%d/x" % P))
print("subdomain", get("http://a.allowed.test:%d/x" % P))
print("normalized", get("http://ALLOWED.test.:%d/x" % P))
print("denied", get("http://denied.test:%d/x" % P))
print("ip-literal", get("http://127.0.0.1:%d/x" % P))
print("metadata", get("http://169.254.169.254/latest/meta-data/"))
print("internal", get("http://internal.allowed.test:%d/" % P))
print("mixed", get("http://mixed.allowed.test:%d/" % P))
print("other-port", get("http://allowed.test:1/"))
print("connect-denied", raw("CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n"))
print("host-mismatch", raw("GET http://allowed.test:%d/ HTTP/1.1\r\nHost: denied.test\r\n\r\n" % P))
print("origin-form", raw("GET / HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n" % P))
try:
    print("https", urllib.request.urlopen("https://allowed.test:%d/" % PT, context=ctx, timeout=5).read().decode())
except Exception as e:
    print("https", "ERR", e)
for sni in ["evil.test", None]:
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
    s.sendall(("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test\r\n\r\n" % PT).encode())
    s.recv(200)
    try:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        c.wrap_socket(s, server_hostname=sni).do_handshake()
        print("fronting-%s" % sni, "CONNECTED")
    except Exception as e:
        print("fronting-%s" % sni, "refused")
for addr in [("1.1.1.1", 443), ("127.0.0.1", P), ("127.0.0.1", 22), ("10.0.0.1", 80)]:
    try:
        socket.create_connection(addr, timeout=2)
        print("direct", addr[1], "CONNECTED")
    except Exception as e:
        print("direct", addr[1], type(e).__name__)
try:
    socket.socket().bind(("127.0.0.1", 8080))
    print("bind", "OK")
except Exception as e:
    print("bind", type(e).__name__)
`
	res := runT(t, n, Spec{Lang: "python", Source: script, Network: NetworkAllowlist,
		Allow: []string{"allowed.test:" + port, "*.allowed.test:" + port, "allowed.test:" + tlsPort}})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, res.Stderr)
	}
	want := map[string]string{
		"allowed": "hello", "subdomain": "hello", "normalized": "hello",
		"denied": "HTTP 403", "ip-literal": "HTTP 403", "metadata": "HTTP 403",
		"internal": "HTTP 403", "mixed": "HTTP 403", "other-port": "HTTP 403",
		// An absolute-form target overrides the Host header (RFC 9112
		// 3.2.2): the proxy checks, dials and forwards the URL's host only.
		"connect-denied": "HTTP/1.1 403 Forbidden", "host-mismatch": "HTTP/1.1 200 OK",
		"origin-form": "HTTP/1.1 403 Forbidden", "bind": "PermissionError",
		"https": "hello", "fronting-evil.test": "refused", "fronting-None": "refused",
	}
	got := map[string]string{}
	for l := range strings.Lines(string(res.Stdout)) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		if k == "direct" {
			if strings.Contains(v, "CONNECTED") {
				t.Errorf("BREACH: direct connection %s", v)
			}
			continue
		}
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if h := hits.Load(); h != 5 {
		t.Errorf("the stand-in internet served %d requests, want 5 (the allowed ones)", h)
	}
	hostsMu.Lock()
	for _, h := range hosts {
		if n := normHost(hostOnly(h)); n != "allowed.test" && n != "a.allowed.test" {
			t.Errorf("upstream saw Host %q", h)
		}
	}
	hostsMu.Unlock()
	if !strings.Contains(res.Isolation["proxy"], "denied 10") {
		t.Errorf("proxy record %q, want 10 denials logged", res.Isolation["proxy"])
	}
	// "*" allows any name, never IP literals or forbidden addresses.
	star := `
import urllib.request, urllib.error
P = ` + port + `
for u in ["http://allowed.test:%d/" % P, "http://169.254.169.254:%d/" % P, "http://internal.test:%d/" % P, "http://[fd00::1]:%d/" % P]:
    try:
        print(urllib.request.urlopen(u, timeout=5).read().decode())
    except urllib.error.HTTPError as e:
        print("HTTP %d" % e.code)
`
	res = runT(t, n, Spec{Lang: "python", Source: star, Network: NetworkAllowlist, Allow: []string{"*:" + port}})
	if got, want := string(res.Stdout), "hello\nHTTP 403\nHTTP 403\nHTTP 403\n"; got != want {
		t.Errorf("star allow-list: got %q, want %q (stderr %s)", got, want, res.Stderr)
	}
}

//go:build linux

package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The in-sandbox helper. Both the airlock binary and test binaries re-exec
// themselves with one of these first arguments; init() below dispatches to
// the helper before main (or the test runner) does anything else.
const (
	initArg   = "__sbx_init"   // native: full setup inside fresh namespaces
	innerArg  = "__sbx_inner"  // bwrap: rlimits, Landlock, seccomp, exec
	launchArg = "__sbx_launch" // bwrap: wait for cgroup placement, exec bwrap
	relayArg  = "__sbx_relay"  // bwrap allowlist mode: the in-sandbox relay
)

// Fixed descriptors of the helper.
const (
	fdConfig = 3 // config pipe (read); its arrival means "placed in cgroups"
	fdErr    = 4 // setup error pipe (write, close-on-exec)
)

// sandboxUID is the uid/gid the program runs as inside the user namespace.
const sandboxUID = 1000

// childConfig is what the host sends the helper.
type childConfig struct {
	Argv        []string
	Env         []string
	StatusFD    int    // native: the reaper reports a fatal signal here
	Workspace   string // host path, "" for a scratch tmpfs
	WorkspaceRW bool
	Binds       []Bind
	// StagedWorkspace and StagedBinds are where the root host bind-mounted
	// Workspace and each Bind source for this run (a 0755 directory): the
	// helper, an unprivileged uid on the host, needs no search permission
	// on the sources' ancestors.
	StagedWorkspace string
	StagedBinds     []string
	TmpSize         int64
	NoFile          uint64
	FileSize        uint64
	CPUSeconds      uint64
	Nproc           uint64
	Hostname        string
	LandlockMin     int
	AllowInet       bool
	// ProxySocket (host path) is the allowlist proxy's Unix socket, bound at
	// /run/airlock/proxy.sock; RelayPort is the in-sandbox relay's port.
	ProxySocket string
	RelayPort   int
	// Seccomp is the assembled filter (the host assembles it once).
	Seccomp []bpf.RawInstruction
}

func init() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case initArg, innerArg, launchArg, relayArg:
	default:
		return
	}
	runtime.LockOSThread()
	var err error
	switch os.Args[1] {
	case initArg:
		err = childInit()
	case innerArg:
		err = childInner()
	case launchArg:
		err = childLaunch()
	case relayArg:
		// fd 3: the listener the inner helper opened before Landlock.
		ln, lerr := net.FileListener(os.NewFile(3, "relay"))
		if lerr != nil {
			os.Exit(125)
		}
		relay(ln)
		os.Exit(0)
	}
	// Only reached on failure: exec replaced us otherwise.
	reportChildErr(err)
	os.Exit(125)
}

func reportChildErr(err error) {
	if err == nil {
		err = fmt.Errorf("sandbox: helper returned without exec")
	}
	msg := []byte(err.Error())
	if _, werr := unix.Write(fdErr, msg); werr != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func readConfig() (childConfig, error) {
	var c childConfig
	f := os.NewFile(fdConfig, "config")
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	f.Close()
	if err != nil {
		return c, fmt.Errorf("sandbox: read config: %w", err)
	}
	if len(b) == 0 {
		return c, fmt.Errorf("sandbox: no config (host gave up)")
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("sandbox: config: %w", err)
	}
	if len(c.Argv) == 0 {
		return c, fmt.Errorf("sandbox: empty argv")
	}
	return c, nil
}

// childInit runs inside the new user, mount, pid, net, ipc and uts
// namespaces as namespace-root (steps C1–C13), then execs the target.
func childInit() error {
	unix.CloseOnExec(fdErr)
	c, err := readConfig() // C1: blocks until the host placed us in cgroups
	if err != nil {
		return err
	}
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("sandbox: setgroups: %w", err)
	}
	if err := buildRoot(c); err != nil { // C2–C5
		return err
	}
	return finishAndExec(c, true)
}

// childInner runs inside bwrap's namespaces as uid 1000 without
// capabilities: everything bwrap does not do (C7–C10, C13).
func childInner() error {
	unix.CloseOnExec(fdErr)
	c, err := readConfig()
	if err != nil {
		return err
	}
	return finishAndExec(c, false)
}

// childLaunch runs on the host as the run's unprivileged uid: it waits until
// the host has placed it in the run's cgroups, then execs bwrap.
func childLaunch() error {
	// fd 4 (errors) stays open through bwrap for the inner helper.
	var b [1]byte
	if n, _ := unix.Read(fdConfig, b[:]); n != 1 {
		return fmt.Errorf("sandbox: launch: host gave up")
	}
	unix.Close(fdConfig)
	// The inner config travels on fd 3 again: the host passes it as the
	// next pipe (fd 5), renumbered to 3 for bwrap's child.
	if err := unix.Dup2(5, fdConfig); err != nil {
		return fmt.Errorf("sandbox: launch: %w", err)
	}
	unix.Close(5)
	return syscall.Exec(os.Args[2], os.Args[2:], []string{})
}

// buildRoot assembles the new root on tmpfs and pivots into it.
func buildRoot(c childConfig) error {
	must := func(err error, what string) error {
		if err != nil {
			return fmt.Errorf("sandbox: %s: %w", what, err)
		}
		return nil
	}
	// C2: nothing we mount propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return must(err, "make / private")
	}
	if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
		return must(err, "sethostname")
	}
	// Stage root: a tiny tmpfs over /tmp; the host root moves under
	// /oldroot, so bind sources resolve as /oldroot/<host path> (bwrap's
	// approach: a workspace inside the host /tmp stays reachable).
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64k,mode=0755"); err != nil {
		return must(err, "stage tmpfs")
	}
	for _, d := range []string{"/tmp/newroot", "/tmp/oldroot"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return must(err, "mkdir "+d)
		}
	}
	if err := unix.PivotRoot("/tmp", "/tmp/oldroot"); err != nil {
		return must(err, "pivot_root stage")
	}
	if err := unix.Chdir("/"); err != nil {
		return must(err, "chdir")
	}
	const nr = "/newroot"
	if err := unix.Mount("tmpfs", nr, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return must(err, "root tmpfs")
	}
	host := func(p string) string { return filepath.Join("/oldroot", p) }

	// C3: system directories, read-only, as the host lays them out.
	for _, d := range []string{"usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"} {
		src := host("/" + d)
		fi, err := os.Lstat(src)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err != nil {
				return must(err, "readlink "+src)
			}
			if err := os.Symlink(target, filepath.Join(nr, d)); err != nil {
				return must(err, "symlink "+d)
			}
			continue
		}
		if err := bindMount(src, filepath.Join(nr, d), false); err != nil {
			return err
		}
	}
	if err := writeEtc(nr, host); err != nil {
		return err
	}
	// Workspace.
	ws := filepath.Join(nr, "workspace")
	if c.Workspace != "" {
		if err := bindMount(host(c.StagedWorkspace), ws, c.WorkspaceRW); err != nil {
			return err
		}
	} else {
		if err := os.Mkdir(ws, 0o755); err != nil {
			return must(err, "mkdir workspace")
		}
		opts := fmt.Sprintf("size=%d,nr_inodes=65536,mode=0755,uid=%d,gid=%d", c.TmpSize, sandboxUID, sandboxUID)
		if err := unix.Mount("tmpfs", ws, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return must(err, "workspace tmpfs")
		}
	}
	if c.ProxySocket != "" {
		if err := bindMount(host(c.ProxySocket), filepath.Join(nr, proxySocketPath), false); err != nil {
			return err
		}
	}
	for i, b := range c.Binds {
		if i >= len(c.StagedBinds) {
			return fmt.Errorf("sandbox: bind %s: not staged", b.Target)
		}
		if err := bindMount(host(c.StagedBinds[i]), filepath.Join(nr, b.Target), b.Writable); err != nil {
			return err
		}
	}
	// /tmp and /dev/shm: private, size-capped.
	tmpOpts := fmt.Sprintf("size=%d,nr_inodes=65536,mode=1777", c.TmpSize)
	if err := mkdirMount("tmpfs", filepath.Join(nr, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpOpts); err != nil {
		return err
	}
	if err := buildDev(nr, host, tmpOpts); err != nil {
		return err
	}
	// C4: a fresh /proc for our pid namespace, with the sensitive files
	// masked and the kernel knobs read-only.
	if err := mkdirMount("proc", filepath.Join(nr, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	for _, f := range procMasked {
		p := filepath.Join(nr, "proc", f)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := bindMount(filepath.Join(nr, "dev/null"), p, false); err != nil {
			return must(err, "mask /proc/"+f)
		}
	}
	for _, d := range []string{"acpi", "scsi", "asound", "driver"} {
		p := filepath.Join(nr, "proc", d)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0"); err != nil {
			return must(err, "mask /proc/"+d)
		}
	}
	for _, d := range []string{"sys", "irq", "bus", "fs"} {
		p := filepath.Join(nr, "proc", d)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := bindMount(p, p, false); err != nil {
			return err
		}
	}
	// C5: enter the new root; the stage root and the host root go away.
	if err := unix.Chdir(nr); err != nil {
		return must(err, "chdir newroot")
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return must(err, "pivot_root")
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return must(err, "detach old root")
	}
	if err := unix.Chdir("/"); err != nil {
		return must(err, "chdir /")
	}
	// The root tmpfs itself becomes read-only.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return must(err, "remount / ro")
	}
	return nil
}

// procMasked are /proc files replaced by an empty read-only file.
var procMasked = []string{"kcore", "keys", "key-users", "timer_list", "sched_debug", "latency_stats", "kallsyms", "sysrq-trigger", "config.gz", "kmsg", "kpagecount", "kpageflags", "kpagecgroup", "pagetypeinfo", "vmallocinfo", "slabinfo"}

// bindMount binds src on dst (creating dst like src), then remounts it
// read-only unless rw, keeping the locked nosuid/nodev flags.
func bindMount(src, dst string, rw bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("sandbox: bind source: %w", err)
	}
	if _, lerr := os.Lstat(dst); lerr != nil {
		if fi.IsDir() {
			err = os.MkdirAll(dst, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			var f *os.File
			if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("sandbox: bind target %s: %w", dst, err)
		}
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("sandbox: bind %s: %w", src, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if !rw {
		flags |= unix.MS_RDONLY
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err == nil {
		// Keep flags the kernel locked on the source mount.
		for _, f := range []struct{ st, ms int64 }{
			{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME},
			{unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
		} {
			if st.Flags&f.st != 0 {
				flags |= uintptr(f.ms)
			}
		}
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("sandbox: remount %s: %w", dst, err)
	}
	return nil
}

func mkdirMount(src, dst, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("sandbox: mkdir %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("sandbox: mount %s on %s: %w", fstype, dst, err)
	}
	return nil
}

// writeEtc creates a minimal /etc: generated passwd and group, nsswitch,
// hosts, and the host's ld.so.cache and alternatives (read-only).
func writeEtc(nr string, host func(string) string) error {
	etc := filepath.Join(nr, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		return fmt.Errorf("sandbox: mkdir etc: %w", err)
	}
	files := map[string]string{
		"passwd":        "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"group":         "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
		"hosts":         "127.0.0.1 localhost\n::1 localhost\n",
		"hostname":      "sandbox\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("sandbox: write /etc/%s: %w", name, err)
		}
	}
	for _, name := range []string{"ld.so.cache", "ld.so.conf", "alternatives", "localtime"} {
		if _, err := os.Stat(host("/etc/" + name)); err != nil {
			continue
		}
		if err := bindMount(host("/etc/"+name), filepath.Join(etc, name), false); err != nil {
			return err
		}
	}
	return nil
}

// buildDev creates /dev with only the harmless devices bound from the host.
func buildDev(nr string, host func(string) string, shmOpts string) error {
	dev := filepath.Join(nr, "dev")
	if err := mkdirMount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,mode=0755"); err != nil {
		return err
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom"} {
		// Plain binds: a remount would add nodev and break the devices.
		dst := filepath.Join(dev, d)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("sandbox: /dev/%s: %w", d, err)
		}
		f.Close()
		if err := unix.Mount(host("/dev/"+d), dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("sandbox: bind /dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return fmt.Errorf("sandbox: /dev/%s: %w", name, err)
		}
	}
	if err := mkdirMount("tmpfs", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, shmOpts); err != nil {
		return err
	}
	if err := unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,mode=0755"); err != nil {
		return fmt.Errorf("sandbox: remount /dev ro: %w", err)
	}
	return nil
}

// finishAndExec applies C7–C13 on the locked thread and execs the target.
// asRoot: we are namespace-root and must drop to sandboxUID ourselves.
func finishAndExec(c childConfig, asRoot bool) error {
	// Allowlist mode: lo up and the relay's listener, while we still hold
	// CAP_NET_ADMIN and before Landlock forbids binding.
	var relay net.Listener
	if c.RelayPort > 0 {
		var err error
		if asRoot {
			relay, err = startRelayListener(c.RelayPort)
		} else {
			// bwrap brought lo up; no capability is needed for 3128.
			relay, err = net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(c.RelayPort))
		}
		if err != nil {
			return fmt.Errorf("sandbox: relay listen: %w", err)
		}
	}
	// C13 prerequisites: resolve the program while we can still read.
	path, err := lookPath(c.Argv[0], c.Env)
	if err != nil {
		return err
	}
	if err := unix.Chdir("/workspace"); err != nil {
		return fmt.Errorf("sandbox: chdir /workspace: %w", err)
	}
	// C7: rlimits (no RLIMIT_AS: memcg bounds memory).
	lims := []struct {
		res  int
		soft uint64
		hard uint64
	}{
		{unix.RLIMIT_CORE, 0, 0},
		{unix.RLIMIT_NOFILE, c.NoFile, c.NoFile},
		{unix.RLIMIT_FSIZE, c.FileSize, c.FileSize},
		{unix.RLIMIT_CPU, c.CPUSeconds, c.CPUSeconds + 1},
		{unix.RLIMIT_NPROC, c.Nproc, c.Nproc},
		{unix.RLIMIT_MEMLOCK, 64 << 10, 64 << 10},
	}
	for _, l := range lims {
		if l.soft == 0 && l.res != unix.RLIMIT_CORE {
			continue
		}
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.soft, Max: l.hard}); err != nil {
			return fmt.Errorf("sandbox: setrlimit %d: %w", l.res, err)
		}
	}
	// C8: no inherited descriptors beyond stdio: everything from 3 up is
	// closed by exec (the Go runtime still uses some until then).
	if err := unix.CloseRange(fdConfig, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("sandbox: close_range: %w", err)
	}
	// C11: drop every capability from the bounding and ambient sets, then
	// become the unprivileged sandbox uid (clears permitted/effective).
	if asRoot {
		for capNum := 0; capNum <= lastCap(); capNum++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(capNum), 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("sandbox: capbset drop %d: %w", capNum, err)
			}
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
			return fmt.Errorf("sandbox: ambient caps: %w", err)
		}
		if err := unix.Setresgid(sandboxUID, sandboxUID, sandboxUID); err != nil {
			return fmt.Errorf("sandbox: setresgid: %w", err)
		}
		if err := unix.Setresuid(sandboxUID, sandboxUID, sandboxUID); err != nil {
			return fmt.Errorf("sandbox: setresuid: %w", err)
		}
		// A credential change cleared the parent-death signal: re-arm it.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("sandbox: pdeathsig: %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: no_new_privs: %w", err)
	}
	// C9: Landlock, on the sandbox's own paths.
	ll := landlockPaths{
		RO:      []string{"/"},
		RW:      []string{"/tmp", "/dev/shm"},
		RWFiles: []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"},
	}
	if c.Workspace == "" || c.WorkspaceRW {
		ll.RW = append(ll.RW, "/workspace")
	}
	for _, b := range c.Binds {
		if b.Writable {
			ll.RW = append(ll.RW, b.Target)
		}
	}
	if c.RelayPort > 0 {
		ll.ConnectTCP = []uint16{uint16(c.RelayPort)}
	}
	if _, err := applyLandlock(ll, c.LandlockMin); err != nil {
		return err
	}
	// C10: the allow-list seccomp filter, last.
	if len(c.Seccomp) == 0 {
		return fmt.Errorf("sandbox: no seccomp filter in config")
	}
	if err := loadSeccomp(c.Seccomp); err != nil {
		return err
	}
	if !asRoot {
		// bwrap's own init is pid 1: exec the program directly; in
		// allowlist mode a relay process (restricted like us: forked from
		// this thread) serves the listener.
		if relay != nil {
			if err := startRelayProcess(relay); err != nil {
				return err
			}
		}
		return fmt.Errorf("sandbox: exec %s: %w", path, syscall.Exec(path, c.Argv, c.Env))
	}
	return reap(path, c, relay)
}

// proxySocketPath is where the allowlist proxy's socket appears inside.
const proxySocketPath = "/run/airlock/proxy.sock"

// startRelayListener brings lo up and listens on 127.0.0.1:port.
func startRelayListener(port int) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return nil, fmt.Errorf("sandbox: lo: %w", err)
	}
	ifr.SetUint16(unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("sandbox: lo up: %w", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("sandbox: relay listen: %w", err)
	}
	return ln, nil
}

// startRelayProcess forks our binary in relay mode with the listener on
// fd 3 and nothing else (no pipes to hold).
func startRelayProcess(ln net.Listener) error {
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("sandbox: relay: %w", err)
	}
	devnull, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sandbox: relay: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("sandbox: relay: %w", err)
	}
	_, err = syscall.ForkExec(self, []string{"airlock-sandbox", relayArg}, &syscall.ProcAttr{
		Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd(), f.Fd()},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return fmt.Errorf("sandbox: relay: %w", err)
	}
	return nil
}

// relay forwards every connection on ln to the host proxy's socket.
func relay(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("unix", proxySocketPath)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// reap is pid 1 of a native sandbox (C12): it starts the program as its
// child, reaps every orphan, and when the program exits, exits too, which
// makes the kernel kill whatever is left in the pid namespace. The program
// therefore has ordinary signal semantics (SIGXCPU, SIGTERM), and pid 1 is
// non-dumpable: no same-uid ptrace, /proc/1/mem or /proc/1/exe. It runs
// under the same Landlock domain, seccomp filter and uid as the program.
func reap(path string, c childConfig, ln net.Listener) error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: dumpable: %w", err)
	}
	pid, err := syscall.ForkExec(path, c.Argv, &syscall.ProcAttr{
		Dir:   "/workspace",
		Env:   c.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return fmt.Errorf("sandbox: exec %s: %w", path, err)
	}
	// Started: the host sees EOF on the error pipe.
	unix.Close(fdErr)
	unix.Close(0)
	if ln != nil {
		go relay(ln)
	}
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			os.Exit(125)
		}
		if wpid != pid {
			continue
		}
		if ws.Signaled() {
			// pid 1 cannot die of most signals: tell the host instead.
			_, _ = unix.Write(c.StatusFD, []byte("signal "+strconv.Itoa(int(ws.Signal()))))
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(ws.ExitStatus())
	}
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 63
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 63
	}
	return n
}

// lookPath resolves name against the PATH in env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for dir := range strings.SplitSeq(path, ":") {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("sandbox: %s: not found in PATH", name)
}

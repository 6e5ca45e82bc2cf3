//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// DrainTimeout is how long a run waits for its output pipes to close after
// the program exited (a background grandchild may hold them): then the
// cgroup is killed and the run returns (Codex uses 2 s too).
const DrainTimeout = 2 * time.Second

// maxSourceArg bounds Lang source passed on the command line (the kernel
// refuses single arguments over 128 KiB).
const maxSourceArg = 120 << 10

// Native is the default Linux backend: user, mount, pid, net, ipc and uts
// namespaces, a read-only tmpfs root, a unique unprivileged host uid range
// per run, cgroup limits, rlimits, no_new_privs, no capabilities, Landlock
// and an allow-list seccomp filter that also covers the 32-bit entry.
type Native struct {
	log         *slog.Logger
	caps        Capabilities
	drain       time.Duration
	landlockMin int
}

// NativeOption configures a Native backend.
type NativeOption func(*nativeConfig)

type nativeConfig struct {
	log   *slog.Logger
	hooks *preflightHooks
	drain time.Duration
	// landlockMin overrides the ABI the in-sandbox helper demands (tests:
	// a helper that cannot enforce Landlock must refuse, not run).
	landlockMin int
}

// withHelperLandlockMin makes the in-sandbox helper demand this Landlock
// ABI (tests: simulate a kernel that lost Landlock after preflight).
func withHelperLandlockMin(v int) NativeOption {
	return func(c *nativeConfig) { c.landlockMin = v }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) NativeOption {
	return func(c *nativeConfig) { c.log = l }
}

// withPreflight replaces the machine probe (tests: simulate a missing
// prerequisite).
func withPreflight(h preflightHooks) NativeOption {
	return func(c *nativeConfig) { c.hooks = &h }
}

// withDrain sets the output drain timeout (tests).
func withDrain(d time.Duration) NativeOption {
	return func(c *nativeConfig) { c.drain = d }
}

func applyOptions(opts []NativeOption) (nativeConfig, Capabilities) {
	c := nativeConfig{log: slog.New(slog.DiscardHandler), drain: DrainTimeout}
	for _, o := range opts {
		o(&c)
	}
	var caps Capabilities
	if c.hooks != nil {
		caps = probeCapabilities(*c.hooks)
	} else {
		caps = Preflight()
	}
	return c, caps
}

// NewNative checks the machine (Preflight) and returns the native backend,
// or an ErrRefused error naming every missing prerequisite.
func NewNative(opts ...NativeOption) (*Native, error) {
	c, caps := applyOptions(opts)
	if len(caps.Missing) > 0 {
		return nil, refusal("native", caps.Missing)
	}
	return &Native{log: c.log.With("backend", "native"), caps: caps, drain: c.drain, landlockMin: c.landlockMin}, nil
}

// Name reports "native".
func (n *Native) Name() string { return "native" }

// Capabilities is what the preflight found.
func (n *Native) Capabilities() Capabilities { return n.caps }

// normSpec is a Spec with defaults applied and argv derived.
type normSpec struct {
	Spec
	env []string
}

// normalize applies Defaults, derives Argv from Lang and refuses what no
// Linux backend here can enforce.
func normalize(s Spec) (normSpec, error) {
	d := Defaults
	if s.CPUs <= 0 {
		s.CPUs = d.CPUs
	}
	if s.Memory <= 0 {
		s.Memory = d.Memory
	}
	if s.Pids <= 0 {
		s.Pids = d.Pids
	}
	if s.FileSize <= 0 {
		s.FileSize = d.FileSize
	}
	if s.TmpSize <= 0 {
		s.TmpSize = d.TmpSize
	}
	if s.NoFile <= 0 {
		s.NoFile = d.NoFile
	}
	if s.WallTimeout <= 0 {
		s.WallTimeout = d.WallTimeout
	}
	if s.CPUTime <= 0 {
		s.CPUTime = d.CPUTime
	}
	if s.OutputCap <= 0 {
		s.OutputCap = d.OutputCap
	}
	switch s.Network {
	case "", NetworkOff:
		s.Network = NetworkOff
	case NetworkAllowlist:
		return normSpec{}, fmt.Errorf("%w: network allowlist mode is not implemented by the native and bwrap backends", ErrRefused)
	default:
		return normSpec{}, fmt.Errorf("%w: unknown network mode %q", ErrRefused, s.Network)
	}
	if s.Lang != "" {
		if len(s.Argv) > 0 {
			return normSpec{}, errors.New("sandbox: spec has both argv and lang")
		}
		if len(s.Source) > maxSourceArg {
			return normSpec{}, fmt.Errorf("sandbox: source is %d bytes, the limit is %d", len(s.Source), maxSourceArg)
		}
		if strings.IndexByte(s.Source, 0) >= 0 {
			return normSpec{}, errors.New("sandbox: source contains a NUL byte")
		}
		switch s.Lang {
		case "python", "python3":
			s.Argv = []string{"python3", "-c", s.Source}
		case "shell", "sh":
			s.Argv = []string{"/bin/sh", "-c", s.Source}
		case "bash":
			s.Argv = []string{"/bin/bash", "-c", s.Source}
		default:
			return normSpec{}, fmt.Errorf("%w: language %q not supported", ErrRefused, s.Lang)
		}
	}
	if len(s.Argv) == 0 {
		return normSpec{}, errors.New("sandbox: empty argv")
	}
	for _, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return normSpec{}, errors.New("sandbox: argument contains a NUL byte")
		}
	}
	if s.Workspace != "" {
		abs, err := filepath.Abs(s.Workspace)
		if err != nil {
			return normSpec{}, fmt.Errorf("sandbox: workspace: %w", err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return normSpec{}, fmt.Errorf("sandbox: workspace %s is not a directory", abs)
		}
		s.Workspace = abs
	}
	for i, b := range s.Binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) {
			return normSpec{}, fmt.Errorf("sandbox: bind %s:%s: paths must be absolute", b.Source, b.Target)
		}
		t := filepath.Clean(b.Target)
		for _, reserved := range []string{"/", "/usr", "/etc", "/proc", "/dev", "/tmp", "/workspace", "/bin", "/lib", "/lib64", "/sbin"} {
			if t == reserved || strings.HasPrefix(reserved, t+"/") {
				return normSpec{}, fmt.Errorf("sandbox: bind target %s is reserved", t)
			}
		}
		if strings.HasPrefix(t, "/proc/") || strings.HasPrefix(t, "/dev/") {
			return normSpec{}, fmt.Errorf("sandbox: bind target %s is reserved", t)
		}
		s.Binds[i].Target = t
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "TMPDIR=/tmp", "LANG=C.UTF-8"}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return normSpec{}, fmt.Errorf("sandbox: bad environment variable %q", k)
		}
		env = append(env, k+"="+v)
	}
	return normSpec{Spec: s, env: env}, nil
}

// offFilter is the seccomp program for network-off runs, assembled once.
var offFilter = sync.OnceValues(func() ([]bpf.RawInstruction, error) {
	return seccompProgram(seccompOptions{})
})

// childConfigFor is the helper's configuration for a normalized spec.
func childConfigFor(s normSpec) (childConfig, error) {
	filter, err := offFilter()
	if err != nil {
		return childConfig{}, err
	}
	return childConfig{
		Seccomp:     filter,
		Argv:        s.Argv,
		Env:         s.env,
		Workspace:   s.Workspace,
		WorkspaceRW: s.WorkspaceRW,
		Binds:       s.Binds,
		TmpSize:     s.TmpSize,
		NoFile:      uint64(s.NoFile),
		FileSize:    uint64(s.FileSize),
		CPUSeconds:  uint64((s.CPUTime + time.Second - 1) / time.Second),
		// NPROC backs up pids.max (the uid is unique per run); set above
		// it so the cgroup, which reports the hit, trips first.
		Nproc:       uint64(s.Pids) + 16,
		Hostname:    "sandbox",
		LandlockMin: MinLandlockABI,
	}, nil
}

var runSeq atomic.Uint64

// Run executes spec in a fresh sandbox. See Runner.
func (n *Native) Run(ctx context.Context, spec Spec) (Result, error) {
	if n == nil {
		return Result{}, refusal("native", []string{"backend not initialised (use NewNative)"})
	}
	if len(n.caps.Missing) > 0 || n.caps.Cgroup.Version == 0 {
		return Result{}, refusal("native", n.caps.Missing)
	}
	s, err := normalize(spec)
	if err != nil {
		return Result{}, err
	}
	slot, err := slots.acquire()
	if err != nil {
		return Result{}, err
	}
	defer slots.release(slot)
	lo, _ := slotUIDs(slot)
	cfg, err := childConfigFor(s)
	if err != nil {
		return Result{}, err
	}
	if n.landlockMin != 0 {
		cfg.LandlockMin = n.landlockMin
	}

	run := &hostRun{
		name:  fmt.Sprintf("run-%d-%d", os.Getpid(), runSeq.Add(1)),
		caps:  n.caps,
		spec:  s,
		drain: n.drain,
		log:   n.log,
		uid:   lo + sandboxUID,
	}
	restore, err := prepareWorkspace(s, int(lo+sandboxUID))
	if err != nil {
		return Result{}, err
	}
	defer restore()
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: open own binary: %w", err)
	}
	defer self.Close()
	// fd 5: our binary; fd 6: the reaper's status pipe.
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer statusR.Close()
	extra := []*os.File{self, statusW}
	cfg.StatusFD = 6
	staged, err := stageBinds(run.name, s)
	if err != nil {
		return Result{}, err
	}
	defer staged.cleanup()
	cfg.StagedWorkspace, cfg.StagedBinds = staged.workspace, staged.binds
	cmd := &exec.Cmd{
		// The helper is our own binary, executed through a descriptor the
		// root parent opened read-only: the unprivileged uid needs no path
		// to it, and the descriptor is closed before the program starts.
		Path: "/proc/self/fd/5",
		Args: []string{"airlock-sandbox", initArg},
		Env:  []string{},
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(lo), Size: uidRange}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(lo), Size: uidRange}},
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
		Setsid:                     true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	iso := map[string]string{
		"backend":      "native",
		"userns":       fmt.Sprintf("uid 0-%d -> host %d-%d", uidRange-1, lo, lo+uidRange-1),
		"host_uid":     strconv.FormatUint(uint64(lo+sandboxUID), 10),
		"host_uids":    fmt.Sprintf("%d-%d", lo, lo+uidRange-1),
		"uid":          strconv.Itoa(sandboxUID),
		"pidns":        "yes (non-dumpable reaper is pid 1)",
		"mountns":      "tmpfs root (ro), ro /usr, fresh /proc (masked), minimal /dev",
		"netns":        "empty (lo down)",
		"ipcns":        "yes",
		"utsns":        "yes",
		"network":      NetworkOff,
		"no_new_privs": "yes",
		"caps":         "all dropped (bounding, ambient, effective)",
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer cfgW.Close()
	release := func() error {
		b, err := json.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("sandbox: config: %w", err)
		}
		// The helper reads to EOF; a large config must not block us.
		go func() {
			_, _ = cfgW.Write(b)
			cfgW.Close()
		}()
		return nil
	}
	run.status = statusR
	return run.execute(ctx, launch{cmd: cmd, fd3: cfgR, files: extra, release: release}, iso, cfg)
}

// hostRun is the host side of one run (H2–H7), shared by native and bwrap.
type hostRun struct {
	name  string
	caps  Capabilities
	spec  normSpec
	drain time.Duration
	log   *slog.Logger
	uid   uint32 // host uid of the program
	// status, when set, is the read end of the reaper's status pipe.
	status *os.File
	// exitSignals: the helper reports a program killed by signal N as exit
	// status 128+N (bwrap's init does).
	exitSignals bool
}

// launch is how a backend starts its helper.
type launch struct {
	cmd *exec.Cmd // ExtraFiles are set by execute: fd 3, fd 4 errors, then files
	// fd3 is the child's fd 3 (config or sync pipe read end), files follow
	// the error pipe (fd 5 on). Both are closed in the parent after start.
	fd3   *os.File
	files []*os.File
	// release runs once the helper is in the cgroups: it lets it go on.
	release func() error
}

// execute places the helper in a fresh cgroup, releases it, enforces the
// deadline and collects the result.
func (r *hostRun) execute(ctx context.Context, l launch, iso map[string]string, cfg childConfig) (Result, error) {
	start := time.Now()
	s := r.spec
	cmd := l.cmd
	lim := cgroupLimits{Memory: s.Memory, Pids: s.Pids, CPUs: s.CPUs}
	cg, err := newRunCgroup(r.caps.Cgroup, r.name, lim)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer func() {
		if err := cg.remove(); err != nil {
			r.log.Warn("cgroup cleanup", "err", err)
		}
	}()
	errR, errW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer errR.Close()
	stdout := NewCollector(s.OutputCap)
	stderr := NewCollector(s.OutputCap)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if s.Stdin != nil {
		cmd.Stdin = bytes.NewReader(s.Stdin)
	}
	cmd.ExtraFiles = append([]*os.File{l.fd3, errW}, l.files...)
	cmd.WaitDelay = r.drain

	// Start and Wait on one locked thread: Pdeathsig fires when the thread
	// that forked the helper exits, not the process.
	startErr := make(chan error, 1)
	waitErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		startErr <- err
		if err == nil {
			waitErr <- cmd.Wait()
		}
	}()
	err = <-startErr
	// The child's ends: only the child holds them from now on.
	l.fd3.Close()
	errW.Close()
	for _, f := range l.files {
		f.Close()
	}
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: start helper: %w", err)
	}
	pid := cmd.Process.Pid
	// H4: into the cgroups before the helper runs anything.
	if err := cg.add(pid); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-waitErr
		return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := l.release(); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-waitErr
		return Result{}, err
	}
	// The error pipe closes at the helper's exec (close-on-exec): EOF with
	// no message means the program started.
	setupMsg := make(chan string, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(errR, 4096))
		setupMsg <- string(msg)
	}()

	timer := time.NewTimer(s.WallTimeout)
	defer timer.Stop()
	var (
		limit   string
		waitRes error
		ctxErr  error
		setup   time.Duration
		gotMsg  bool
		msg     string
	)
	kill := func() {
		cg.killAll(2 * time.Second)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
loop:
	for {
		select {
		case m := <-setupMsg:
			gotMsg, msg = true, m
			setup = time.Since(start)
			if m != "" {
				kill()
				<-waitErr
				return Result{}, fmt.Errorf("%w: %s", ErrRefused, m)
			}
		case waitRes = <-waitErr:
			break loop
		case <-timer.C:
			limit = LimitTimeout
			kill()
		case <-ctx.Done():
			ctxErr = ctx.Err()
			limit = LimitTimeout
			kill()
		}
	}
	if !gotMsg {
		msg = <-setupMsg
		setup = time.Since(start)
		if msg != "" {
			return Result{}, fmt.Errorf("%w: %s", ErrRefused, msg)
		}
	}
	wall := time.Since(start) - setup
	// Anything left (a daemon that outlived pid 1 cannot exist in a pid
	// namespace, but the bwrap backend and pipe holders are covered here).
	st := cg.stats()
	empty := cg.killAll(2 * time.Second)
	if !empty {
		r.log.Error("sandbox run left processes behind", "run", r.name)
	}
	if waitRes != nil && !errors.Is(waitRes, exec.ErrWaitDelay) {
		var ee *exec.ExitError
		if !errors.As(waitRes, &ee) {
			return Result{}, fmt.Errorf("sandbox: wait: %w", waitRes)
		}
	}
	res := Result{
		ExitCode:    cmd.ProcessState.ExitCode(),
		Stdout:      stdout.Bytes(),
		Stderr:      stderr.Bytes(),
		StdoutBytes: stdout.Total(),
		StderrBytes: stderr.Total(),
		Truncated:   stdout.Truncated() || stderr.Truncated(),
		PeakMemory:  st.PeakMemory,
		CPUTime:     st.CPUTime,
		Wall:        wall,
		Setup:       setup,
		Isolation:   iso,
	}
	var sig syscall.Signal
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig = ws.Signal()
	} else if r.status != nil {
		// The reaper (pid 1) reports how the program died.
		buf := make([]byte, 32)
		_ = r.status.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if k, _ := r.status.Read(buf); k > 0 {
			if v, ok := strings.CutPrefix(string(buf[:k]), "signal "); ok {
				if n, err := strconv.Atoi(v); err == nil {
					sig = syscall.Signal(n)
				}
			}
		}
	}
	if c := res.ExitCode; sig == 0 && r.exitSignals && c > 128 && c < 128+65 {
		sig = syscall.Signal(c - 128)
	}
	if sig != 0 {
		res.Signal = sig.String()
		res.ExitCode = -1
	}
	switch {
	case limit != "":
	case st.OOMKills > 0:
		limit = LimitMemory
	case sig == syscall.SIGXCPU || (sig == syscall.SIGKILL && st.CPUTime >= s.CPUTime):
		limit = LimitCPU
	case st.PidsMaxHit > 0:
		limit = LimitPids
	case res.Truncated:
		limit = LimitOutput
	}
	res.LimitHit = limit
	iso["cgroup"] = fmt.Sprintf("v%d %s", r.caps.Cgroup.Version, lim)
	iso["rlimits"] = fmt.Sprintf("nofile=%d fsize=%d cpu=%ds nproc=%d core=0", cfg.NoFile, cfg.FileSize, cfg.CPUSeconds, cfg.Nproc)
	iso["landlock"] = fmt.Sprintf("abi %d (fs ro except /workspace,/tmp,/dev/shm; tcp bind/connect denied; signals+abstract unix scoped)", min(r.caps.LandlockABI, 7))
	iso["seccomp"] = "allow-list (default EPERM), non-x86_64 arch and x32 killed, clone3 ENOSYS, namespace clone flags denied"
	iso["tmp"] = fmt.Sprintf("tmpfs size=%d", s.TmpSize)
	if ctxErr != nil {
		return res, fmt.Errorf("sandbox: run cancelled: %w", ctxErr)
	}
	return res, nil
}

// prepareWorkspace makes a writable workspace owned by the run's uid for the
// duration of the run, and gives it back to its owner afterwards (files the
// run created included). Read-only workspaces are left as they are.
func prepareWorkspace(s normSpec, uid int) (func(), error) {
	if s.Workspace == "" || !s.WorkspaceRW {
		return func() {}, nil
	}
	fi, err := os.Lstat(s.Workspace)
	if err != nil {
		return nil, fmt.Errorf("sandbox: workspace: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	owner, group := int(st.Uid), int(st.Gid)
	give := func(from, to, toGroup int) error {
		return chownTree(s.Workspace, func(st *unix.Stat_t) bool {
			// Only directories, symlinks and singly-linked regular files:
			// a hard link to a file outside the workspace must never be
			// handed to the sandbox (or back to the workspace owner).
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR, unix.S_IFLNK:
			case unix.S_IFREG:
				if st.Nlink != 1 && from != uid {
					return false
				}
			default:
				return false
			}
			return from < 0 || int(st.Uid) == from
		}, to, toGroup)
	}
	if err := give(-1, uid, uid); err != nil {
		_ = give(uid, owner, group)
		return nil, err
	}
	return func() { _ = give(uid, owner, group) }, nil
}

// chownTree walks root without following symlinks (every directory is
// opened O_NOFOLLOW relative to its parent's descriptor, so a directory
// swapped for a symlink mid-walk cannot redirect it) and fchownats each
// entry for which pick returns true.
func chownTree(root string, pick func(*unix.Stat_t) bool, uid, gid int) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sandbox: workspace: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("sandbox: workspace: %w", err)
	}
	if pick(&st) {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("sandbox: workspace chown: %w", err)
		}
	}
	return chownDir(fd, pick, uid, gid, 0)
}

func chownDir(dirfd int, pick func(*unix.Stat_t) bool, uid, gid, depth int) error {
	if depth > 256 {
		return errors.New("sandbox: workspace too deep")
	}
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return err
	}
	dd := os.NewFile(uintptr(dup), "dir")
	defer dd.Close()
	names, err := dd.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("sandbox: workspace: %w", err)
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if pick(&st) {
			if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("sandbox: workspace chown %s: %w", name, err)
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			err = chownDir(sub, pick, uid, gid, depth+1)
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// staging is one run's host-side bind staging directory.
type staging struct {
	dir       string
	workspace string
	binds     []string
	mounts    []string
}

// stageBinds bind-mounts the workspace and every Bind source under a
// root-owned 0755 run directory, so the unprivileged helper (or bwrap) can
// reach them whatever the permissions of their ancestors (H1).
func stageBinds(run string, s normSpec) (*staging, error) {
	st := &staging{}
	if s.Workspace == "" && len(s.Binds) == 0 {
		return st, nil
	}
	if err := st.mkdir(run); err != nil {
		return nil, err
	}
	stage := func(src string) (string, error) {
		fi, err := os.Stat(src)
		if err != nil {
			return "", fmt.Errorf("sandbox: bind source: %w", err)
		}
		dst := filepath.Join(st.dir, strconv.Itoa(len(st.mounts)))
		if fi.IsDir() {
			err = os.Mkdir(dst, 0o755)
		} else {
			err = os.WriteFile(dst, nil, 0o644)
		}
		if err != nil {
			return "", fmt.Errorf("sandbox: stage: %w", err)
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			os.Remove(dst)
			return "", fmt.Errorf("sandbox: stage bind %s: %w", src, err)
		}
		_ = unix.Mount("", dst, "", unix.MS_REC|unix.MS_PRIVATE, "")
		st.mounts = append(st.mounts, dst)
		return dst, nil
	}
	if s.Workspace != "" {
		p, err := stage(s.Workspace)
		if err != nil {
			st.cleanup()
			return nil, err
		}
		st.workspace = p
	}
	for _, b := range s.Binds {
		p, err := stage(b.Source)
		if err != nil {
			st.cleanup()
			return nil, err
		}
		st.binds = append(st.binds, p)
	}
	return st, nil
}

// tmpfs mounts a size- and inode-capped tmpfs owned by uid under the
// staging directory (the bwrap backend binds these at /tmp, /dev/shm and a
// scratch /workspace: bwrap itself cannot cap inodes).
func (st *staging) tmpfs(run string, size int64, uid uint32, mode string) (string, error) {
	if st.dir == "" {
		if err := st.mkdir(run); err != nil {
			return "", err
		}
	}
	dst := filepath.Join(st.dir, strconv.Itoa(len(st.mounts)))
	if err := os.Mkdir(dst, 0o755); err != nil {
		return "", fmt.Errorf("sandbox: stage: %w", err)
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=65536,mode=%s,uid=%d,gid=%d", size, mode, uid, uid)
	if err := unix.Mount("tmpfs", dst, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		os.Remove(dst)
		return "", fmt.Errorf("sandbox: stage tmpfs: %w", err)
	}
	_ = unix.Mount("", dst, "", unix.MS_PRIVATE, "")
	st.mounts = append(st.mounts, dst)
	return dst, nil
}

func (st *staging) mkdir(run string) error {
	base := "/run/airlock-sandbox-stage"
	if err := os.MkdirAll(base, 0o755); err != nil {
		base = filepath.Join(os.TempDir(), "airlock-sandbox-stage")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return fmt.Errorf("sandbox: stage dir: %w", err)
		}
	}
	st.dir = filepath.Join(base, run)
	if err := os.Mkdir(st.dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: stage dir: %w", err)
	}
	return nil
}

func (st *staging) cleanup() {
	if st.dir == "" {
		return
	}
	for _, m := range st.mounts {
		_ = unix.Unmount(m, unix.MNT_DETACH)
		_ = os.Remove(m)
	}
	_ = os.Remove(st.dir)
}

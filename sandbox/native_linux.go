//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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
	warm        bool // use the pool of helpers started ahead of their runs
	proxyHooks  proxyHooks
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
	cold        bool
	proxyHooks  proxyHooks
}

// withProxyHooks replaces DNS and the public-address check of the
// allowlist proxy (tests: a local server stands in for the internet).
func withProxyHooks(h proxyHooks) NativeOption {
	return func(c *nativeConfig) { c.proxyHooks = h }
}

// WithoutWarmHelper makes every run start its helper from scratch instead of
// taking one started ahead of time (the default keeps one ready: starting
// our binary is most of a run's setup time).
func WithoutWarmHelper() NativeOption {
	return func(c *nativeConfig) { c.cold = true }
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
	sweepOnce.Do(func() {
		base, _ := stageBase()
		sweepStaleRuns(caps.Cgroup, base)
	})
	n := &Native{log: c.log.With("backend", "native"), caps: caps, drain: c.drain, landlockMin: c.landlockMin, proxyHooks: c.proxyHooks}
	if !c.cold {
		if _, err := stageBase(); err == nil {
			n.warm = true
			warm.mu.Lock()
			warm.caps = caps
			warm.mu.Unlock()
			go warm.fill()
		}
	}
	return n, nil
}

var sweepOnce sync.Once

// Name reports "native".
func (n *Native) Name() string { return "native" }

// Close stops the helpers started ahead of their runs (they would die with
// the process anyway; Close also removes their cgroups). Runs still in
// progress are not affected; a later Run starts helpers again.
func (n *Native) Close(ctx context.Context) error {
	warm.mu.Lock()
	ready := warm.ready
	warm.ready = nil
	warm.mu.Unlock()
	for _, h := range ready {
		h.release()
	}
	return nil
}

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
		if _, err := parseAllow(s.Allow); err != nil {
			return normSpec{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
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
		// Targets live in their own top-level directories: never on or
		// under the system ones, nor under /workspace, whose content the
		// host does not control (a planted symlink must not steer a mount).
		t := filepath.Clean(b.Target)
		if t == "/" {
			return normSpec{}, fmt.Errorf("sandbox: bind target / is reserved")
		}
		for _, reserved := range []string{"/usr", "/etc", "/proc", "/dev", "/tmp", "/workspace", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/run", "/sys"} {
			if t == reserved || strings.HasPrefix(t, reserved+"/") {
				return normSpec{}, fmt.Errorf("sandbox: bind target %s is reserved", t)
			}
		}
		s.Binds[i].Target = t
	}
	base := map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/workspace", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return normSpec{}, fmt.Errorf("sandbox: bad environment variable %q", k)
		}
		base[k] = v
	}
	env := make([]string, 0, len(base))
	for k, v := range base {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return normSpec{Spec: s, env: env}, nil
}

// offFilter is the seccomp program for network-off runs, assembled once;
// inetFilter adds AF_INET/AF_INET6 sockets (allowlist mode: the relay).
var (
	offFilter = sync.OnceValues(func() ([]bpf.RawInstruction, error) {
		return seccompProgram(seccompOptions{})
	})
	inetFilter = sync.OnceValues(func() ([]bpf.RawInstruction, error) {
		return seccompProgram(seccompOptions{AllowInet: true})
	})
)

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
	start := time.Now()
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
	cfg, err := childConfigFor(s)
	if err != nil {
		return Result{}, err
	}
	if n.landlockMin != 0 {
		cfg.LandlockMin = n.landlockMin
	}
	// A helper started ahead of time (namespaces made, runtime up, blocked
	// on its config pipe) or a fresh one.
	var h *nativeHelper
	if n.warm {
		h = warm.get()
		defer func() { go warm.fill() }()
	}
	if h == nil {
		if h, err = spawnNative(n.caps); err != nil {
			return Result{}, err
		}
	}
	defer h.release()
	lo := h.lo
	run := &hostRun{
		name:   h.name,
		caps:   n.caps,
		spec:   s,
		drain:  n.drain,
		log:    n.log,
		uid:    lo + sandboxUID,
		start:  start,
		status: h.statusR,
	}
	restore, err := prepareWorkspace(s, int(lo+sandboxUID))
	if err != nil {
		h.proc.kill()
		return Result{}, err
	}
	defer restore()
	// Staged after the helper's mount namespace was copied: the staging
	// directory is a shared mount, so these binds propagate into it.
	staged, dr, err := stageRun(run.name, s, lo+sandboxUID)
	if err != nil {
		h.proc.kill()
		return Result{}, err
	}
	defer staged.cleanup()
	cfg.StagedWorkspace, cfg.StagedBinds = staged.workspace, staged.binds
	if dr != nil {
		cfg.Workspace, cfg.WorkspaceRW, cfg.StagedWorkspace = "dry-run copy", true, dr.copy
	}
	netDesc := "empty (lo down)"
	var proxy *allowProxy
	if s.Network == NetworkAllowlist {
		if proxy, err = n.startProxy(staged, run.name, s, &cfg); err != nil {
			h.proc.kill()
			return Result{}, err
		}
		defer proxy.close()
		netDesc = fmt.Sprintf("empty but lo: relay 127.0.0.1:%d -> host proxy (allow %s)", relayPort, strings.Join(s.Allow, ", "))
	}
	cfg.StatusFD = 6
	iso := map[string]string{
		"backend":      "native",
		"userns":       fmt.Sprintf("uid 0-%d -> host %d-%d", uidRange-1, lo, lo+uidRange-1),
		"host_uid":     strconv.FormatUint(uint64(lo+sandboxUID), 10),
		"host_uids":    fmt.Sprintf("%d-%d", lo, lo+uidRange-1),
		"uid":          strconv.Itoa(sandboxUID),
		"pidns":        "yes (non-dumpable reaper is pid 1)",
		"mountns":      "tmpfs root (ro), ro /usr, fresh /proc (masked), minimal /dev",
		"netns":        netDesc,
		"ipcns":        "yes",
		"utsns":        "yes",
		"network":      s.Network,
		"no_new_privs": "yes",
		"caps":         "all dropped (bounding, ambient, effective)",
	}
	cfgW := h.cfgW
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
	cg := h.cg
	h.cg = nil // execute owns and removes it
	res, err := run.execute(ctx, h.proc, cg, release, iso, cfg)
	if dr != nil && res.Isolation != nil {
		res.Changed = dr.changed()
		res.Isolation["workspace"] = "dry run: scratch copy, original untouched"
	}
	if proxy != nil && res.Isolation != nil {
		res.Isolation["proxy"] = fmt.Sprintf("allowed %d, denied %d", proxy.allowed.Load(), proxy.denied.Load())
		res.Isolation["landlock"] = strings.Replace(res.Isolation["landlock"], "tcp bind/connect denied", fmt.Sprintf("tcp connect only to %d, bind denied", relayPort), 1)
	}
	return res, err
}

// startProxy serves the allow-list proxy on a Unix socket in the run's
// staging directory and points the helper's config at it.
func (n *Native) startProxy(st *staging, run string, s normSpec, cfg *childConfig) (*allowProxy, error) {
	rules, err := parseAllow(s.Allow)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if st.dir == "" {
		if err := st.mkdir(run); err != nil {
			return nil, err
		}
	}
	sock := filepath.Join(st.dir, "proxy.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("sandbox: proxy: %w", err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("sandbox: proxy: %w", err)
	}
	filter, err := inetFilter()
	if err != nil {
		ln.Close()
		return nil, err
	}
	cfg.ProxySocket, cfg.RelayPort, cfg.Seccomp, cfg.AllowInet = sock, relayPort, filter, true
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d", relayPort)
	vars := []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}
	cfg.Env = slices.DeleteFunc(cfg.Env, func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(vars, k) || k == "NO_PROXY" || k == "no_proxy" || k == "ALL_PROXY" || k == "all_proxy"
	})
	for _, k := range vars {
		cfg.Env = append(cfg.Env, k+"="+proxyURL)
	}
	return newAllowProxy(rules, ln, n.proxyHooks, n.log.With("run", run)), nil
}

// stageRun stages a run's binds and, for a dry run, the scratch copy of
// the workspace (which then replaces the workspace bind).
func stageRun(run string, s normSpec, uid uint32) (*staging, *dryRun, error) {
	if !s.DryRun {
		st, err := stageBinds(run, s)
		return st, nil, err
	}
	noWS := s
	noWS.Workspace = ""
	st, err := stageBinds(run, noWS)
	if err != nil {
		return nil, nil, err
	}
	dr, err := stageDryRun(st, run, s, uid)
	if err != nil {
		st.cleanup()
		return nil, nil, err
	}
	return st, dr, nil
}

// nativeHelper is a started native helper: in fresh namespaces with the
// slot's uid map, blocked until its config arrives.
type nativeHelper struct {
	proc    *proc
	slot    int
	lo      uint32
	cfgW    *os.File
	statusR *os.File
	// name and cg: the run's cgroup, created and joined at spawn time (the
	// first move into a v1 cgroup waits for an RCU grace period: off the
	// run's path); the run writes its limits before releasing the helper.
	name string
	cg   *runCgroup
}

// spawnNative starts a native helper (H3) on a fresh slot, placed in its
// run's cgroup (H4) with default limits.
func spawnNative(caps Capabilities) (*nativeHelper, error) {
	// The staging directory must be a shared mount before the helper's
	// mount namespace is copied, or later staged binds stay invisible.
	if _, err := stageBase(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	slot, err := slots.acquire()
	if err != nil {
		return nil, err
	}
	lo, _ := slotUIDs(slot)
	fail := func(err error, files ...*os.File) (*nativeHelper, error) {
		for _, f := range files {
			f.Close()
		}
		slots.release(slot)
		return nil, err
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fail(fmt.Errorf("sandbox: open own binary: %w", err))
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("sandbox: pipe: %w", err), self)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("sandbox: pipe: %w", err), self, statusR, statusW)
	}
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
	// fd 3 config, fd 4 errors, fd 5 our binary, fd 6 the reaper's status.
	name := fmt.Sprintf("run-%d-%d", os.Getpid(), runSeq.Add(1))
	d := Defaults
	cg, err := newRunCgroup(caps.Cgroup, name, cgroupLimits{Memory: d.Memory, Pids: d.Pids, CPUs: d.CPUs})
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrRefused, err), self, statusR, statusW, cfgR, cfgW)
	}
	p, err := startProc(cmd, cfgR, []*os.File{self, statusW})
	if err != nil {
		cg.remove()
		return fail(err, cfgW, statusR)
	}
	h := &nativeHelper{proc: p, slot: slot, lo: lo, cfgW: cfgW, statusR: statusR, name: name, cg: cg}
	if err := cg.add(p.pid); err != nil {
		h.release()
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return h, nil
}

// release frees everything the helper held once its run is over.
func (h *nativeHelper) release() {
	h.proc.kill()
	if h.cg != nil {
		_ = h.cg.remove()
	}
	h.proc.closeAll()
	h.cfgW.Close()
	h.statusR.Close()
	slots.release(h.slot)
}

// helperPool keeps native helpers started ahead of their runs, so a run
// does not wait for our (large) binary to start. Helpers die with the
// daemon (Pdeathsig) and hold their slot while they wait.
type helperPool struct {
	mu      sync.Mutex
	ready   []*nativeHelper
	filling int
	size    int
	caps    Capabilities
}

var warm = &helperPool{size: 1}

func (p *helperPool) get() *nativeHelper {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) > 0 {
		h := p.ready[0]
		p.ready = p.ready[1:]
		select {
		case <-h.proc.done:
			h.release() // died while waiting
		default:
			return h
		}
	}
	return nil
}

func (p *helperPool) fill() {
	p.mu.Lock()
	if len(p.ready)+p.filling >= p.size {
		p.mu.Unlock()
		return
	}
	p.filling++
	caps := p.caps
	p.mu.Unlock()
	h, err := spawnNative(caps)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filling--
	if err == nil {
		p.ready = append(p.ready, h)
	}
}

// proc is a started helper process.
type proc struct {
	cmd     *exec.Cmd
	pid     int
	done    chan struct{} // closed when Wait returned
	werr    error
	errR    *os.File // setup errors; EOF when the program started
	stdinW  *os.File
	stdoutR *os.File
	stderrR *os.File
}

// startProc starts cmd with pipes on fds 0–2, fd3 on 3, the error pipe on 4
// and files from 5, on a locked OS thread that lives until the process
// exits (Pdeathsig fires when the forking thread exits, not the process).
func startProc(cmd *exec.Cmd, fd3 *os.File, files []*os.File) (*proc, error) {
	var ends [8]*os.File
	for i := 0; i < 8; i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range append(ends[:i], append([]*os.File{fd3}, files...)...) {
				f.Close()
			}
			return nil, fmt.Errorf("sandbox: pipe: %w", err)
		}
		ends[i], ends[i+1] = r, w
	}
	stdinR, stdinW := ends[0], ends[1]
	stdoutR, stdoutW := ends[2], ends[3]
	stderrR, stderrW := ends[4], ends[5]
	errR, errW := ends[6], ends[7]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	cmd.ExtraFiles = append([]*os.File{fd3, errW}, files...)
	p := &proc{cmd: cmd, done: make(chan struct{}), errR: errR, stdinW: stdinW, stdoutR: stdoutR, stderrR: stderrR}
	startErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		startErr <- err
		if err == nil {
			p.werr = cmd.Wait()
			close(p.done)
		}
	}()
	err := <-startErr
	// The child's ends: only the child holds them from now on.
	for _, f := range append([]*os.File{stdinR, stdoutW, stderrW, errW, fd3}, files...) {
		f.Close()
	}
	if err != nil {
		p.closeAll()
		return nil, fmt.Errorf("sandbox: start helper: %w", err)
	}
	p.pid = cmd.Process.Pid
	return p, nil
}

// kill SIGKILLs the process and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) closeAll() {
	for _, f := range []*os.File{p.errR, p.stdinW, p.stdoutR, p.stderrR} {
		f.Close()
	}
}

// hostRun is the host side of one run (H2–H7), shared by native and bwrap.
type hostRun struct {
	name  string
	caps  Capabilities
	spec  normSpec
	drain time.Duration
	log   *slog.Logger
	uid   uint32    // host uid of the program
	start time.Time // when Run was called
	// status, when set, is the read end of the reaper's status pipe.
	status *os.File
	// exitSignals: the helper reports a program killed by signal N as exit
	// status 128+N (bwrap's init does).
	exitSignals bool
}

// execute places the started helper in a fresh cgroup, releases it,
// enforces the deadline and collects the result.
func (r *hostRun) execute(ctx context.Context, p *proc, cg *runCgroup, release func() error, iso map[string]string, cfg childConfig) (Result, error) {
	start := r.start
	s := r.spec
	lim := cgroupLimits{Memory: s.Memory, Pids: s.Pids, CPUs: s.CPUs}
	if cg == nil {
		var err error
		if cg, err = newRunCgroup(r.caps.Cgroup, r.name, lim); err != nil {
			p.kill()
			return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		// H4: into the cgroups before the helper runs anything.
		if err := cg.add(p.pid); err != nil {
			p.kill()
			cg.remove()
			return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
	} else if err := cg.setLimits(lim); err != nil {
		// Placed ahead of time (a pooled helper): now the run's limits.
		p.kill()
		cg.remove()
		return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer func() {
		if err := cg.remove(); err != nil {
			r.log.Warn("cgroup cleanup", "err", err)
		}
	}()
	if err := release(); err != nil {
		p.kill()
		return Result{}, err
	}
	go func() {
		if s.Stdin != nil {
			_, _ = p.stdinW.Write(s.Stdin)
		}
		p.stdinW.Close()
	}()
	// H5: drain both streams into bounded collectors.
	stdout := NewCollector(s.OutputCap)
	stderr := NewCollector(s.OutputCap)
	copied := make(chan struct{}, 2)
	for _, c := range []struct {
		dst *Collector
		src *os.File
	}{{stdout, p.stdoutR}, {stderr, p.stderrR}} {
		go func() {
			_, _ = io.Copy(c.dst, c.src)
			copied <- struct{}{}
		}()
	}
	// The error pipe closes at the program's exec (close-on-exec, or the
	// reaper closes it): EOF with no message means the program started.
	setupMsg := make(chan string, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(p.errR, 4096))
		setupMsg <- string(msg)
	}()

	timer := time.NewTimer(s.WallTimeout)
	defer timer.Stop()
	var (
		limit  string
		ctxErr error
		setup  time.Duration
		gotMsg bool
		msg    string
	)
	kill := func() {
		cg.killAll(2 * time.Second)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	refuse := func(m string) (Result, error) {
		kill()
		<-p.done
		return Result{}, fmt.Errorf("%w: %s", ErrRefused, m)
	}
loop:
	for {
		select {
		case m := <-setupMsg:
			gotMsg, msg = true, m
			setup = time.Since(start)
			if m != "" {
				return refuse(m)
			}
		case <-p.done:
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
			return refuse(msg)
		}
	}
	// Drain: a background process may still hold the pipes (#27).
	drain := time.NewTimer(r.drain)
	defer drain.Stop()
	for pending := 2; pending > 0; {
		select {
		case <-copied:
			pending--
		case <-drain.C:
			cg.killAll(2 * time.Second)
			p.stdoutR.Close()
			p.stderrR.Close()
		}
	}
	wall := time.Since(start) - setup
	st := cg.stats()
	if !cg.killAll(2 * time.Second) {
		r.log.Error("sandbox run left processes behind", "run", r.name)
	}
	if p.werr != nil {
		var ee *exec.ExitError
		if !errors.As(p.werr, &ee) {
			return Result{}, fmt.Errorf("sandbox: wait: %w", p.werr)
		}
	}
	ps := p.cmd.ProcessState
	res := Result{
		ExitCode:    ps.ExitCode(),
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
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
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
	iso["run"] = r.name
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
	if s.Workspace == "" || !s.WorkspaceRW || s.DryRun {
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
			// Never hand out a set-id file (the kernel clears the bits on
			// chown too; this does not depend on it).
			if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
				if err := unix.Fchmodat(dirfd, name, st.Mode&0o777, 0); err != nil {
					return fmt.Errorf("sandbox: workspace chmod %s: %w", name, err)
				}
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
	st.mounts = append(st.mounts, dst)
	return dst, nil
}

// stageBase is the root-owned 0755 directory runs stage their binds in. It
// is made a shared mount of its own, so binds staged after a helper's mount
// namespace was copied (a helper started ahead of its run) propagate into
// it, and their unmounts too.
var stageBase = sync.OnceValues(func() (string, error) {
	base := "/run/airlock-sandbox-stage"
	if err := os.MkdirAll(base, 0o755); err != nil {
		base = filepath.Join(os.TempDir(), "airlock-sandbox-stage")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return "", fmt.Errorf("sandbox: stage dir: %w", err)
		}
	}
	if fi, err := os.Lstat(base); err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("sandbox: stage dir %s must be a root-owned directory not writable by others", base)
	}
	if !isMountPoint(base) {
		if err := unix.Mount(base, base, "", unix.MS_BIND, ""); err != nil {
			return "", fmt.Errorf("sandbox: stage dir: %w", err)
		}
	}
	if err := unix.Mount("", base, "", unix.MS_SHARED, ""); err != nil {
		return "", fmt.Errorf("sandbox: stage dir shared: %w", err)
	}
	return base, nil
})

func isMountPoint(p string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && unescapeMount(f[4]) == p {
			return true
		}
	}
	return false
}

func (st *staging) mkdir(run string) error {
	base, err := stageBase()
	if err != nil {
		return err
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

//go:build linux

package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bwrap runs programs under bubblewrap, started as the run's unprivileged
// host uid (never root: bwrap started by root leaves the sandbox host uid 0)
// inside the run's cgroups. Inside, airlock's own helper applies rlimits,
// Landlock and the seccomp allow-list, then execs the program (the Codex
// two-stage pattern).
type Bwrap struct {
	*Native
	bwrap string
}

// NewBwrap checks the machine and returns the bwrap backend, or an
// ErrRefused error (bwrap missing, or any native prerequisite missing).
func NewBwrap(opts ...NativeOption) (*Bwrap, error) {
	c, caps := applyOptions(opts)
	missing := caps.Missing
	if caps.Bwrap == "" {
		missing = append(missing, "bwrap (install bubblewrap)")
	}
	if len(missing) > 0 {
		return nil, refusal("bwrap", missing)
	}
	n := &Native{log: c.log.With("backend", "bwrap"), caps: caps, drain: c.drain, landlockMin: c.landlockMin, proxyHooks: c.proxyHooks}
	return &Bwrap{Native: n, bwrap: caps.Bwrap}, nil
}

// Name reports "bwrap".
func (b *Bwrap) Name() string { return "bwrap" }

// helperDir holds a read-only copy of our binary and the generated /etc
// files, readable by the unprivileged run uids. The live binary is never
// bound into a sandbox.
var helperDir = sync.OnceValues(func() (string, error) {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("sandbox: open own binary: %w", err)
	}
	defer self.Close()
	h := sha256.New()
	if _, err := io.Copy(h, self); err != nil {
		return "", fmt.Errorf("sandbox: hash own binary: %w", err)
	}
	base := "/run/airlock-sandbox-helper"
	if err := os.MkdirAll(base, 0o755); err != nil {
		base = filepath.Join(os.TempDir(), "airlock-sandbox-helper")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return "", fmt.Errorf("sandbox: helper dir: %w", err)
		}
	}
	dir := filepath.Join(base, hex.EncodeToString(h.Sum(nil)[:8]))
	if _, err := os.Stat(filepath.Join(dir, "airlock")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(base, "tmp-")
	if err != nil {
		return "", fmt.Errorf("sandbox: helper dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := self.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	out, err := os.OpenFile(filepath.Join(tmp, "airlock"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o555)
	if err != nil {
		return "", fmt.Errorf("sandbox: helper copy: %w", err)
	}
	if _, err := io.Copy(out, self); err != nil {
		out.Close()
		return "", fmt.Errorf("sandbox: helper copy: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	for name, body := range map[string]string{
		"passwd":        "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"group":         "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
		"hosts":         "127.0.0.1 localhost\n::1 localhost\n",
	} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o444); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "airlock")); serr != nil {
			return "", fmt.Errorf("sandbox: helper dir: %w", err)
		}
	}
	return dir, nil
})

// Where the helper copy appears inside the sandbox.
const bwrapHelper = "/.airlock/airlock"

// Run executes spec under bubblewrap. See Runner.
func (b *Bwrap) Run(ctx context.Context, spec Spec) (Result, error) {
	start := time.Now()
	if b == nil || b.Native == nil || len(b.caps.Missing) > 0 || b.bwrap == "" {
		var missing []string
		if b != nil && b.Native != nil {
			missing = b.caps.Missing
		}
		return Result{}, refusal("bwrap", append(missing, "bwrap"))
	}
	s, err := normalize(spec)
	if err != nil {
		return Result{}, err
	}
	dir, err := helperDir()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	slot, err := slots.acquire()
	if err != nil {
		return Result{}, err
	}
	defer slots.release(slot)
	uid, _ := slotUIDs(slot) // bwrap maps exactly one uid: 1000 -> uid
	cfg, err := childConfigFor(s)
	if err != nil {
		return Result{}, err
	}
	if b.landlockMin != 0 {
		cfg.LandlockMin = b.landlockMin
	}
	restore, err := prepareWorkspace(s, int(uid))
	if err != nil {
		return Result{}, err
	}
	defer restore()

	var files []*os.File // fd 5 on
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer cfgW.Close()
	files = append(files, cfgR) // fd 5: the inner helper's config
	args := []string{
		"--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--clearenv",
		"--uid", strconv.Itoa(sandboxUID), "--gid", strconv.Itoa(sandboxUID), "--hostname", "sandbox",
		"--ro-bind", "/usr", "/usr",
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64", "lib32", "libx32"} {
		fi, err := os.Lstat("/" + d)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink("/" + d)
			if err != nil {
				return Result{}, fmt.Errorf("sandbox: readlink /%s: %w", d, err)
			}
			args = append(args, "--symlink", target, "/"+d)
		} else {
			args = append(args, "--ro-bind", "/"+d, "/"+d)
		}
	}
	for _, name := range []string{"passwd", "group", "nsswitch.conf", "hosts"} {
		args = append(args, "--ro-bind", filepath.Join(dir, name), "/etc/"+name)
	}
	for _, name := range []string{"ld.so.cache", "ld.so.conf", "alternatives", "localtime"} {
		args = append(args, "--ro-bind-try", "/etc/"+name, "/etc/"+name)
	}
	args = append(args, "--ro-bind", filepath.Join(dir, "airlock"), bwrapHelper)
	runName := fmt.Sprintf("run-%d-%d", os.Getpid(), runSeq.Add(1))
	staged, dr, err := stageRun(runName, s, uid)
	if err != nil {
		return Result{}, err
	}
	defer staged.cleanup()
	netDesc := "empty (lo)"
	var proxy *allowProxy
	if s.Network == NetworkAllowlist {
		if proxy, err = b.startProxy(staged, runName, s, &cfg); err != nil {
			return Result{}, err
		}
		defer proxy.close()
		args = append(args, "--ro-bind", cfg.ProxySocket, proxySocketPath)
		netDesc = fmt.Sprintf("empty but lo: relay 127.0.0.1:%d -> host proxy (allow %s)", relayPort, strings.Join(s.Allow, ", "))
	}
	if dr != nil {
		args = append(args, "--bind", dr.copy, "/workspace")
		cfg.Workspace, cfg.WorkspaceRW = "dry-run copy", true
	} else if s.Workspace != "" {
		flag := "--ro-bind"
		if s.WorkspaceRW {
			flag = "--bind"
		}
		args = append(args, flag, staged.workspace, "/workspace")
	} else {
		ws, err := staged.tmpfs(runName, s.TmpSize, uid, "0755")
		if err != nil {
			return Result{}, err
		}
		args = append(args, "--bind", ws, "/workspace")
	}
	for i, bd := range s.Binds {
		flag := "--ro-bind"
		if bd.Writable {
			flag = "--bind"
		}
		args = append(args, flag, staged.binds[i], bd.Target)
	}
	tmp, err := staged.tmpfs(runName, s.TmpSize, uid, "1777")
	if err != nil {
		return Result{}, err
	}
	shm, err := staged.tmpfs(runName, s.TmpSize, uid, "1777")
	if err != nil {
		return Result{}, err
	}
	args = append(args,
		"--bind", tmp, "/tmp",
		"--dev", "/dev",
		"--bind", shm, "/dev/shm",
		"--proc", "/proc",
	)
	// Docker's masked /proc paths (bwrap's fresh /proc has none).
	for _, f := range procMasked {
		if _, err := os.Stat("/proc/" + f); err == nil {
			args = append(args, "--ro-bind", "/dev/null", "/proc/"+f)
		}
	}
	args = append(args,
		"--remount-ro", "/",
		"--chdir", "/workspace",
		"--cap-drop", "ALL",
		"--", bwrapHelper, innerArg,
	)
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer syncW.Close()
	cmd := &exec.Cmd{
		Path: filepath.Join(dir, "airlock"),
		Args: append([]string{"airlock-sandbox", launchArg, b.bwrap}, args...),
		Env:  []string{},
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}},
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
	}
	release := func() error {
		if _, err := syncW.Write([]byte{1}); err != nil {
			return fmt.Errorf("sandbox: release launcher: %w", err)
		}
		syncW.Close()
		bcfg, err := json.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("sandbox: config: %w", err)
		}
		go func() {
			_, _ = cfgW.Write(bcfg)
			cfgW.Close()
		}()
		return nil
	}
	run := &hostRun{
		name:  runName,
		start: start,
		caps:  b.caps,
		spec:  s,
		drain: b.drain,
		log:   b.log,
		uid:   uid,
		// bwrap's init reports a child killed by signal N as 128+N.
		exitSignals: true,
	}
	iso := map[string]string{
		"backend":      "bwrap",
		"bwrap":        b.bwrap,
		"userns":       fmt.Sprintf("uid %d -> host %d (bwrap run unprivileged)", sandboxUID, uid),
		"host_uids":    fmt.Sprintf("%d-%d", uid, uid),
		"uid":          strconv.Itoa(sandboxUID),
		"pidns":        "yes (bwrap init is pid 1)",
		"mountns":      "tmpfs root (ro), ro /usr, fresh /proc, minimal /dev",
		"netns":        netDesc,
		"ipcns":        "yes",
		"utsns":        "yes",
		"network":      s.Network,
		"no_new_privs": "yes",
		"caps":         "all dropped (bwrap --cap-drop ALL)",
	}
	p, err := startProc(cmd, syncR, files)
	files = nil // closed by startProc
	if err != nil {
		return Result{}, err
	}
	defer p.closeAll()
	defer p.kill()
	res, err := run.execute(ctx, p, nil, release, iso, cfg)
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

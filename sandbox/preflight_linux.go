//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// MinLandlockABI is the lowest Landlock ABI the native and bwrap backends
// accept: 6 scopes signals and abstract Unix sockets to the sandbox (4 adds
// TCP, 5 device ioctls).
const MinLandlockABI = 6

// Capabilities is what this machine offers the native and bwrap backends
// (step H0). Missing lists every mandatory feature that is absent; a backend
// refuses to run while it is non-empty.
type Capabilities struct {
	UserNS      bool
	Cgroup      cgroupLayout
	CgroupErr   string
	LandlockABI int
	Seccomp     bool
	IA32        bool // 32-bit syscall entry live: the filter must handle it
	Bwrap       string
	Missing     []string
}

// CgroupVersion is 1, 2 or 0 (none usable).
func (c Capabilities) CgroupVersion() int { return c.Cgroup.Version }

// Report renders the capabilities as key/value pairs (for `sandbox doctor`
// and the audit log).
func (c Capabilities) Report() map[string]string {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	m := map[string]string{
		"userns":       yes(c.UserNS),
		"cgroup":       fmt.Sprintf("v%d", c.Cgroup.Version),
		"landlock_abi": fmt.Sprint(c.LandlockABI),
		"seccomp":      yes(c.Seccomp),
		"ia32":         yes(c.IA32),
		"bwrap":        c.Bwrap,
		"missing":      strings.Join(c.Missing, ", "),
	}
	if c.Cgroup.Version == 0 {
		m["cgroup"] = "none: " + c.CgroupErr
	}
	return m
}

// preflightHooks let tests simulate a machine lacking a prerequisite
// (escape probe #28: the run must be refused, never executed unsandboxed).
type preflightHooks struct {
	NoUserNS    bool
	NoCgroups   bool
	NoSeccomp   bool
	LandlockABI int // non-zero: pretend the kernel's ABI is this (-1: none)
	NoBwrap     bool
}

var (
	preflightOnce sync.Once
	preflightVal  Capabilities
)

// Preflight probes the machine once (user namespaces, cgroup mounts,
// Landlock ABI, seccomp, IA32 emulation, bwrap) and caches the answer.
func Preflight() Capabilities {
	preflightOnce.Do(func() { preflightVal = probeCapabilities(preflightHooks{}) })
	c := preflightVal
	c.Missing = append([]string(nil), c.Missing...)
	return c
}

func probeCapabilities(h preflightHooks) Capabilities {
	var c Capabilities
	c.UserNS = !h.NoUserNS && probeUserNS()
	if !c.UserNS {
		c.Missing = append(c.Missing, "user namespaces (unshare CLONE_NEWUSER failed)")
	}
	if l, err := findCgroups(); err != nil || h.NoCgroups {
		if err == nil {
			err = errors.New("disabled by test hook")
		}
		c.CgroupErr = err.Error()
		c.Missing = append(c.Missing, "cgroups ("+c.CgroupErr+")")
	} else {
		c.Cgroup = l
	}
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil {
		abi = 0
	}
	if h.LandlockABI != 0 {
		abi = max(h.LandlockABI, 0)
	}
	c.LandlockABI = abi
	if abi < MinLandlockABI {
		c.Missing = append(c.Missing, fmt.Sprintf("landlock ABI >= %d (have %d)", MinLandlockABI, abi))
	}
	c.Seccomp = !h.NoSeccomp && seccomp.Supported()
	if !c.Seccomp {
		c.Missing = append(c.Missing, "seccomp filters")
	}
	_, err = os.Stat("/proc/sys/abi/vsyscall32")
	c.IA32 = err == nil
	if p, err := exec.LookPath("bwrap"); err == nil && !h.NoBwrap {
		c.Bwrap = p
	}
	return c
}

// probeUserNS forks a child into a new user namespace and reports whether
// the kernel allowed it.
func probeUserNS() bool {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd.Run() == nil
}

// refusal builds an ErrRefused error naming what is missing.
func refusal(backend string, missing []string) error {
	return fmt.Errorf("%w: %s backend unavailable: missing %s", ErrRefused, backend, strings.Join(missing, "; "))
}

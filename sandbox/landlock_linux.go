//go:build linux

package sandbox

import (
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// landlockPaths is the Landlock policy, in sandbox paths (after pivot_root).
type landlockPaths struct {
	RO      []string // read + execute
	RW      []string // read, write, create, remove (with refer)
	RWFiles []string // device files
	// ConnectTCP lists the only TCP ports connect(2) may reach (allowlist
	// mode: the in-sandbox relay); empty denies every TCP connect and bind.
	ConnectTCP []uint16
}

// landlockConfig returns the preset for the highest ABI this package
// enforces that the kernel has (V7 on this kernel), or an error below min.
func landlockConfig(min int) (landlock.Config, int, error) {
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil {
		return landlock.Config{}, 0, fmt.Errorf("sandbox: landlock unavailable: %w", err)
	}
	if abi < min {
		return landlock.Config{}, abi, fmt.Errorf("sandbox: landlock ABI %d < required %d", abi, min)
	}
	switch {
	case abi >= 7:
		return landlock.V7, 7, nil
	case abi == 6:
		return landlock.V6, 6, nil
	case abi == 5:
		return landlock.V5, 5, nil
	default:
		return landlock.V4, 4, nil
	}
}

// applyLandlock enforces p on the calling thread, which must be locked and
// must exec next (the exec'd program is single-threaded and inherits the
// domain; every thread it creates inherits it too). no_new_privs is set here.
func applyLandlock(p landlockPaths, min int) (int, error) {
	cfg, abi, err := landlockConfig(min)
	if err != nil {
		return 0, err
	}
	rules := []landlock.Rule{
		landlock.RODirs(p.RO...).IgnoreIfMissing(),
		landlock.RWDirs(p.RW...).WithRefer().IgnoreIfMissing(),
		landlock.RWFiles(p.RWFiles...).IgnoreIfMissing(),
	}
	for _, port := range p.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil {
		return 0, fmt.Errorf("sandbox: landlock ruleset: %w", err)
	}
	if fd < 0 {
		return 0, fmt.Errorf("sandbox: landlock: nothing enforced")
	}
	defer unix.Close(fd)
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("sandbox: no_new_privs: %w", err)
	}
	if err := llsys.LandlockRestrictSelf(fd, flags); err != nil {
		return 0, fmt.Errorf("sandbox: landlock restrict: %w", err)
	}
	return abi, nil
}

//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/internal/testenv"
)

// Mountinfo of this machine class (cgroup v1, cpu and cpuacct apart, the
// memory controller placed in a nested cgroup) and of a cgroup v2 host.
const (
	mountinfoV1 = `25 30 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
30 25 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
31 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	cgroupSelfV1 = `8:pids:/
6:freezer:/
4:memory:/process_api/c288
2:cpuacct:/
1:cpu:/
0::/
`
	mountinfoV2 = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	cgroupSelfV2 = "0::/system.slice/airlock.service\n"
	// co-mounted cpu,cpuacct and a missing freezer
	mountinfoV1Partial = `26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
`
)

func TestParseCgroups(t *testing.T) {
	all := func(string) []string { return []string{"cpuset", "cpu", "io", "memory", "pids"} }
	none := func(string) []string { return nil }
	for _, c := range []struct {
		name, mounts, own string
		v2                func(string) []string
		wantVersion       int
		wantDirs          map[string]string
		wantErr           string
	}{
		{"v1-split-hierarchies", mountinfoV1, cgroupSelfV1, all, 1, map[string]string{
			"memory":  "/sys/fs/cgroup/memory/process_api/c288",
			"pids":    "/sys/fs/cgroup/pids",
			"cpu":     "/sys/fs/cgroup/cpu",
			"cpuacct": "/sys/fs/cgroup/cpuacct",
			"freezer": "/sys/fs/cgroup/freezer",
		}, ""},
		{"v2-unified", mountinfoV2, cgroupSelfV2, all, 2, map[string]string{
			"": "/sys/fs/cgroup/system.slice/airlock.service",
		}, ""},
		{"v2-without-controllers", mountinfoV2, cgroupSelfV2, none, 0, nil, "no usable hierarchy"},
		{"v1-missing-freezer", mountinfoV1Partial, "3:cpu,cpuacct:/\n2:memory:/\n1:pids:/\n", all, 0, nil, "missing freezer"},
		{"nothing", "", "", all, 0, nil, "no usable hierarchy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := parseCgroups(c.mounts, c.own, c.v2)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Version != c.wantVersion {
				t.Errorf("version = %d, want %d", l.Version, c.wantVersion)
			}
			for k, v := range c.wantDirs {
				if l.Dirs[k] != v {
					t.Errorf("dir %q = %q, want %q", k, l.Dirs[k], v)
				}
			}
			if len(l.Dirs) != len(c.wantDirs) {
				t.Errorf("dirs = %v, want %v", l.Dirs, c.wantDirs)
			}
		})
	}
}

func FuzzParseCgroups(f *testing.F) {
	f.Add(mountinfoV1, cgroupSelfV1)
	f.Add(mountinfoV2, cgroupSelfV2)
	f.Add(mountinfoV1Partial, "3:cpu,cpuacct:/\n")
	f.Fuzz(func(t *testing.T, mounts, own string) {
		l, err := parseCgroups(mounts, own, func(string) []string { return []string{"memory", "pids", "cpu"} })
		if err == nil && l.Version != 1 && l.Version != 2 {
			t.Fatalf("no error but version %d", l.Version)
		}
		if err == nil && l.Version == 1 && len(l.Dirs) != len(cgroupV1Controllers) {
			t.Fatalf("v1 layout with %d controllers", len(l.Dirs))
		}
	})
}

func FuzzNormalize(f *testing.F) {
	f.Add("", "echo hi", "python", "FOO", "bar", "/x", int64(0))
	f.Add("/bin/true", "", "", "", "", "", int64(1<<20))
	f.Add("", "x\x00", "shell", "A=B", "c", "/etc", int64(-1))
	f.Fuzz(func(t *testing.T, arg, src, lang, envK, envV, bindTarget string, mem int64) {
		spec := Spec{Lang: lang, Source: src, Memory: mem}
		if arg != "" {
			spec.Argv = []string{arg}
		}
		if envK != "" {
			spec.Env = map[string]string{envK: envV}
		}
		if bindTarget != "" {
			spec.Binds = []Bind{{Source: "/tmp", Target: bindTarget}}
		}
		s, err := normalize(spec)
		if err != nil {
			return
		}
		if len(s.Argv) == 0 || s.Memory <= 0 || s.Pids <= 0 || s.WallTimeout <= 0 || s.OutputCap <= 0 {
			t.Fatalf("accepted spec without argv or limits: %+v", s.Spec)
		}
		hasPath := false
		for _, kv := range append(append([]string{}, s.Argv...), s.env...) {
			if strings.IndexByte(kv, 0) >= 0 {
				t.Fatalf("NUL byte accepted: %q", kv)
			}
			hasPath = hasPath || strings.HasPrefix(kv, "PATH=")
		}
		if !hasPath {
			t.Fatalf("environment without PATH: %q", s.env)
		}
		for _, b := range s.Binds {
			for _, r := range []string{"/usr", "/etc", "/proc", "/dev", "/tmp", "/workspace"} {
				if b.Target == "/" || b.Target == r || strings.HasPrefix(b.Target, r+"/") {
					t.Fatalf("reserved bind target %q accepted", b.Target)
				}
			}
		}
		if s.Network != NetworkOff {
			t.Fatalf("network %q accepted", s.Network)
		}
	})
}

// Cgroups and staging directories of dead airlock processes are swept.
func TestSweepStaleRuns(t *testing.T) {
	caps := Preflight()
	if len(caps.Missing) > 0 {
		testenv.Missing(t, "no native backend here: %v", caps.Missing)
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	name := fmt.Sprintf("run-%d-1", dead)
	cg, err := newRunCgroup(caps.Cgroup, name, cgroupLimits{Memory: 1 << 30, Pids: 8, CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	live, err := newRunCgroup(caps.Cgroup, fmt.Sprintf("run-%d-999", os.Getpid()), cgroupLimits{Memory: 1 << 30, Pids: 8, CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer live.remove()
	stage := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stage, name, "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	sweepStaleRuns(caps.Cgroup, stage)
	for ctrl, d := range cg.dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("stale %s cgroup %s not swept", ctrl, d)
		}
	}
	for ctrl, d := range live.dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("live process's %s cgroup %s swept", ctrl, d)
		}
	}
	if _, err := os.Stat(filepath.Join(stage, name)); err == nil {
		t.Errorf("stale staging dir not swept")
	}
}

//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupV1Controllers are the cgroup v1 controllers a run needs. Each may be
// mounted on its own hierarchy (as here: cpu and cpuacct apart) or co-mounted.
var cgroupV1Controllers = []string{"memory", "pids", "cpu", "cpuacct", "freezer"}

// cgroupLayout is where this process may create run cgroups: per controller,
// the directory of its own cgroup (so a run nests under the daemon's limits).
type cgroupLayout struct {
	Version int               // 1 or 2
	Dirs    map[string]string // v1: controller -> parent dir; v2: "" -> parent dir
	Swap    bool              // v1 memory.memsw.* present
}

// findCgroups reads /proc/self/mountinfo and /proc/self/cgroup and returns the
// parent directories runs are created under.
func findCgroups() (cgroupLayout, error) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cgroupLayout{}, fmt.Errorf("sandbox: cgroups: %w", err)
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return cgroupLayout{}, fmt.Errorf("sandbox: cgroups: %w", err)
	}
	l, err := parseCgroups(string(mounts), string(own), func(dir string) []string {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		return strings.Fields(string(b))
	})
	if err != nil || l.Version != 1 {
		return l, err
	}
	_, err = os.Stat(filepath.Join(l.Dirs["memory"], "memory.memsw.limit_in_bytes"))
	l.Swap = err == nil
	return l, nil
}

// parseCgroups finds the cgroup v1 controller hierarchies (or the v2 mount)
// in a mountinfo text and this process's place in each from its
// /proc/self/cgroup text. v2Controllers lists a v2 directory's controllers.
func parseCgroups(mounts, own string, v2Controllers func(dir string) []string) (cgroupLayout, error) {
	// controller -> own path, from "id:ctrl,ctrl:/path".
	ownPath := map[string]string{}
	for line := range strings.Lines(own) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			ownPath[c] = parts[2]
		}
		if parts[0] == "0" && parts[1] == "" {
			ownPath[""] = parts[2]
		}
	}
	v1 := map[string]string{}
	var v2 string
	var v2root string
	for line := range strings.Lines(mounts) {
		f := strings.Fields(line)
		// id parent maj:min root mountpoint opts... - fstype source superopts
		sep := -1
		for i, s := range f {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 >= len(f) {
			continue
		}
		root, mnt, fstype, super := f[3], unescapeMount(f[4]), f[sep+1], f[sep+3]
		switch fstype {
		case "cgroup":
			for o := range strings.SplitSeq(super, ",") {
				for _, c := range cgroupV1Controllers {
					if o == c {
						if _, dup := v1[c]; !dup {
							rel := strings.TrimPrefix(ownPath[c], root)
							v1[c] = filepath.Join(mnt, rel)
						}
					}
				}
			}
		case "cgroup2":
			if v2 == "" {
				v2, v2root = mnt, root
			}
		}
	}
	if len(v1) == len(cgroupV1Controllers) {
		return cgroupLayout{Version: 1, Dirs: v1}, nil
	}
	if v2 != "" {
		have := v2Controllers(v2)
		need := []string{"memory", "pids", "cpu"}
		ok := true
		for _, n := range need {
			found := false
			for _, h := range have {
				found = found || h == n
			}
			ok = ok && found
		}
		if ok {
			rel := strings.TrimPrefix(ownPath[""], v2root)
			return cgroupLayout{Version: 2, Dirs: map[string]string{"": filepath.Join(v2, rel)}}, nil
		}
	}
	var missing []string
	for _, c := range cgroupV1Controllers {
		if _, ok := v1[c]; !ok {
			missing = append(missing, c)
		}
	}
	return cgroupLayout{}, fmt.Errorf("sandbox: cgroups: no usable hierarchy (v1 missing %s, no v2 with memory+pids+cpu)", strings.Join(missing, ","))
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// cgroupLimits are written into a run's cgroup.
type cgroupLimits struct {
	Memory int64
	Pids   int64
	CPUs   float64
}

// runCgroup is one run's cgroup (one directory per v1 controller).
type runCgroup struct {
	layout cgroupLayout
	dirs   map[string]string
}

// newRunCgroup creates <parent>/airlock/<name> in every controller and writes
// the limits. On any error it removes what it created.
func newRunCgroup(l cgroupLayout, name string, lim cgroupLimits) (*runCgroup, error) {
	cg := &runCgroup{layout: l, dirs: map[string]string{}}
	for ctrl, parent := range l.Dirs {
		base := filepath.Join(parent, "airlock")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return nil, fmt.Errorf("sandbox: cgroup %s: %w", ctrl, err)
		}
		if l.Version == 2 {
			// Enable the controllers for children of base.
			_ = os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0)
			_ = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0)
		}
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			cg.remove()
			return nil, fmt.Errorf("sandbox: cgroup %s: %w", ctrl, err)
		}
		cg.dirs[ctrl] = d
	}
	if err := cg.setLimits(lim); err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

func (cg *runCgroup) write(ctrl, file, val string) error {
	p := filepath.Join(cg.dirs[ctrl], file)
	if err := os.WriteFile(p, []byte(val), 0); err != nil {
		return fmt.Errorf("sandbox: cgroup write %s=%s: %w", p, val, err)
	}
	return nil
}

func (cg *runCgroup) read(ctrl, file string) string {
	b, _ := os.ReadFile(filepath.Join(cg.dirs[ctrl], file))
	return strings.TrimSpace(string(b))
}

func (cg *runCgroup) readInt(ctrl, file string) int64 {
	n, _ := strconv.ParseInt(cg.read(ctrl, file), 10, 64)
	return n
}

// keyed returns the value of "key N" in a flat-keyed cgroup file.
func (cg *runCgroup) keyed(ctrl, file, key string) int64 {
	s := bufio.NewScanner(bytes.NewReader([]byte(cg.read(ctrl, file))))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

const cfsPeriod = 100000 // µs

func (cg *runCgroup) setLimits(lim cgroupLimits) error {
	mem := strconv.FormatInt(lim.Memory, 10)
	pids := strconv.FormatInt(lim.Pids, 10)
	quota := strconv.FormatInt(int64(lim.CPUs*cfsPeriod), 10)
	var steps [][3]string
	if cg.layout.Version == 1 {
		steps = [][3]string{
			{"memory", "memory.limit_in_bytes", mem},
			{"memory", "memory.swappiness", "0"},
			{"memory", "memory.oom_control", "0"}, // OOM killer on
			{"pids", "pids.max", pids},
			{"cpu", "cpu.cfs_period_us", strconv.Itoa(cfsPeriod)},
			{"cpu", "cpu.cfs_quota_us", quota},
		}
		if cg.layout.Swap {
			steps = append(steps, [3]string{"memory", "memory.memsw.limit_in_bytes", mem})
		}
	} else {
		steps = [][3]string{
			{"", "memory.max", mem},
			{"", "memory.swap.max", "0"},
			{"", "memory.oom.group", "1"},
			{"", "pids.max", pids},
			{"", "cpu.max", quota + " " + strconv.Itoa(cfsPeriod)},
		}
	}
	for _, s := range steps {
		if err := cg.write(s[0], s[1], s[2]); err != nil {
			if s[1] == "memory.swap.max" || s[1] == "memory.swappiness" {
				continue // no swap accounting: nothing to limit
			}
			return err
		}
	}
	return nil
}

// add places pid in every controller of the run.
func (cg *runCgroup) add(pid int) error {
	for ctrl := range cg.dirs {
		if err := cg.write(ctrl, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// procs lists the pids in the run (any controller that tracks them all).
func (cg *runCgroup) procs() []int {
	ctrl := "pids"
	if cg.layout.Version == 2 {
		ctrl = ""
	}
	var out []int
	for f := range strings.FieldsSeq(cg.read(ctrl, "cgroup.procs")) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// freeze stops (true) or resumes (false) every process of the run.
func (cg *runCgroup) freeze(on bool) {
	if cg.layout.Version == 2 {
		v := "0"
		if on {
			v = "1"
		}
		_ = cg.write("", "cgroup.freeze", v)
		return
	}
	v := "THAWED"
	if on {
		v = "FROZEN"
	}
	_ = cg.write("freezer", "freezer.state", v)
	if on {
		deadline := time.Now().Add(500 * time.Millisecond)
		for cg.read("freezer", "freezer.state") == "FREEZING" && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// killAll freezes the run, SIGKILLs every process in it and thaws, until the
// cgroup is empty or the deadline passes. It reports whether it is empty.
func (cg *runCgroup) killAll(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		pids := cg.procs()
		if len(pids) == 0 {
			return true
		}
		if cg.layout.Version == 2 {
			_ = cg.write("", "cgroup.kill", "1")
		} else {
			cg.freeze(true)
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			cg.freeze(false)
		}
		if time.Now().After(deadline) {
			return len(cg.procs()) == 0
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stats is what the run's cgroup recorded.
type cgroupStats struct {
	OOMKills   int64
	MemFailcnt int64
	PeakMemory int64
	PidsMaxHit int64
	CPUTime    time.Duration
	Throttled  int64
}

func (cg *runCgroup) stats() cgroupStats {
	var s cgroupStats
	if cg.layout.Version == 1 {
		s.OOMKills = cg.keyed("memory", "memory.oom_control", "oom_kill")
		s.MemFailcnt = cg.readInt("memory", "memory.failcnt")
		s.PeakMemory = cg.readInt("memory", "memory.max_usage_in_bytes")
		s.PidsMaxHit = cg.keyed("pids", "pids.events", "max")
		s.CPUTime = time.Duration(cg.readInt("cpuacct", "cpuacct.usage"))
		s.Throttled = cg.keyed("cpu", "cpu.stat", "nr_throttled")
		return s
	}
	s.OOMKills = cg.keyed("", "memory.events", "oom_kill")
	s.MemFailcnt = cg.keyed("", "memory.events", "max")
	s.PeakMemory = cg.readInt("", "memory.peak")
	s.PidsMaxHit = cg.keyed("", "pids.events", "max")
	s.CPUTime = time.Duration(cg.keyed("", "cpu.stat", "usage_usec")) * time.Microsecond
	s.Throttled = cg.keyed("", "cpu.stat", "nr_throttled")
	return s
}

// remove kills what is left and removes the run's directories.
func (cg *runCgroup) remove() error {
	cg.killAll(2 * time.Second)
	var errs []error
	for ctrl, d := range cg.dirs {
		var err error
		for range 100 {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox: cgroup %s: %w", ctrl, err))
		}
	}
	return errors.Join(errs...)
}

// limitsString describes the limits for the isolation report.
func (lim cgroupLimits) String() string {
	return fmt.Sprintf("memory=%d pids=%d cpus=%g", lim.Memory, lim.Pids, lim.CPUs)
}

// sweepStaleRuns removes run cgroups (and staging directories) left by
// airlock processes that died without cleaning up: a pooled helper's cgroup
// outlives a killed daemon. Only empty cgroups of dead processes go.
func sweepStaleRuns(l cgroupLayout, stageDir string) {
	dead := func(name string) bool {
		rest, ok := strings.CutPrefix(name, "run-")
		if !ok {
			return false
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			return false
		}
		// /proc/N also answers for thread ids: alive means a process
		// whose thread-group id is N.
		b, err := os.ReadFile(filepath.Join("/proc", pidStr, "status"))
		if err != nil {
			return true
		}
		return !strings.Contains(string(b), "\nTgid:\t"+pidStr+"\n")
	}
	for _, parent := range l.Dirs {
		ents, _ := os.ReadDir(filepath.Join(parent, "airlock"))
		for _, e := range ents {
			if e.IsDir() && dead(e.Name()) {
				_ = os.Remove(filepath.Join(parent, "airlock", e.Name())) // fails if not empty
			}
		}
	}
	if stageDir == "" {
		return
	}
	ents, _ := os.ReadDir(stageDir)
	for _, e := range ents {
		if !e.IsDir() || !dead(e.Name()) {
			continue
		}
		d := filepath.Join(stageDir, e.Name())
		subs, _ := os.ReadDir(d)
		for _, sub := range subs {
			_ = syscall.Unmount(filepath.Join(d, sub.Name()), syscall.MNT_DETACH)
			_ = os.Remove(filepath.Join(d, sub.Name()))
		}
		_ = os.Remove(d)
	}
}

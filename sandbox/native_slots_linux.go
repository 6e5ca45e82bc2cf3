//go:build linux

package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Host uid ranges: run slot s owns host uids [uidBase+s·uidRange,
// uidBase+(s+1)·uidRange). No sandboxed process is ever host uid 0, and two
// concurrent runs never share a uid, so RLIMIT_NPROC, ptrace and signal
// checks separate them even without the namespaces.
const (
	uidBase  = 200000
	uidRange = 65536
	numSlots = 512
)

// slotPool hands out run slots. A slot is held by an flock on a file in a
// root-only directory, so separate airlock processes (daemon, CLI, tests)
// never pick the same uid range either.
type slotPool struct {
	mu      sync.Mutex
	dir     string
	next    int
	held    map[int]*os.File
	checked map[int]bool // slots scanned for survivors by this process
}

var slots = &slotPool{held: map[int]*os.File{}, checked: map[int]bool{}}

func slotLockDir() (string, error) {
	for _, d := range []string{"/run/airlock-sandbox", filepath.Join(os.TempDir(), "airlock-sandbox")} {
		if err := os.MkdirAll(d, 0o700); err == nil {
			return d, nil
		}
	}
	return "", errors.New("sandbox: no directory for slot locks")
}

// acquire returns a free slot; release it with release.
func (p *slotPool) acquire() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir == "" {
		d, err := slotLockDir()
		if err != nil {
			return 0, err
		}
		p.dir = d
		p.next = os.Getpid() % numSlots
	}
	for i := range numSlots {
		s := (p.next + i) % numSlots
		if _, busy := p.held[s]; busy {
			continue
		}
		f, err := os.OpenFile(filepath.Join(p.dir, fmt.Sprintf("slot-%d.lock", s)), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return 0, fmt.Errorf("sandbox: slot lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		// Survivors of another process's crashed run: never reuse their
		// uids. Our own runs end with an empty cgroup, so each slot is
		// scanned once per process (the scan reads all of /proc).
		if !p.checked[s] {
			lo, hi := slotUIDs(s)
			if len(uidProcs(lo, hi)) > 0 {
				f.Close()
				continue
			}
			p.checked[s] = true
		}
		p.held[s] = f
		p.next = (s + 1) % numSlots
		return s, nil
	}
	return 0, fmt.Errorf("%w: all %d sandbox slots busy", ErrRefused, numSlots)
}

func (p *slotPool) release(s int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.held[s]; ok {
		f.Close()
		delete(p.held, s)
	}
}

// slotUIDs is the host uid range [lo, hi) of slot s.
func slotUIDs(s int) (lo, hi uint32) {
	lo = uint32(uidBase + s*uidRange)
	return lo, lo + uidRange
}

// uidProcs lists live (non-zombie) host processes whose real or effective
// uid is in [lo, hi).
func uidProcs(lo, hi uint32) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if st, ok := strings.CutPrefix(sc.Text(), "State:"); ok {
				if st = strings.TrimSpace(st); strings.HasPrefix(st, "Z") || strings.HasPrefix(st, "X") {
					break // exited: runs nothing; its parent (or init) reaps it
				}
			}
			rest, ok := strings.CutPrefix(sc.Text(), "Uid:")
			if !ok {
				continue
			}
			for _, u := range strings.Fields(rest)[:2] {
				n, err := strconv.ParseUint(u, 10, 32)
				if err == nil && uint32(n) >= lo && uint32(n) < hi {
					out = append(out, pid)
					break
				}
			}
			break
		}
		f.Close()
	}
	return out
}

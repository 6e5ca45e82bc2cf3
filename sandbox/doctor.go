package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// BackendReport is what `airlock sandbox doctor` shows for one backend.
type BackendReport struct {
	Name      string
	Available bool
	// Detail is why it is unavailable, or what provides it (a version).
	Detail string
	// Mechanisms lists each isolation mechanism and its state here.
	Mechanisms map[string]string
}

// Doctor checks every backend on this machine: native (Preflight), bwrap
// (bwrap --version and the native prerequisites), docker (Ping) and wasm
// (in-process, always there). It runs nothing untrusted.
func Doctor(ctx context.Context) []BackendReport {
	caps := Preflight()
	var out []BackendReport

	native := BackendReport{Name: "native", Mechanisms: caps.Report()}
	delete(native.Mechanisms, "bwrap")
	if _, err := NewNative(); err != nil {
		native.Detail = refusalDetail(err)
	} else {
		native.Available = true
		native.Detail = fmt.Sprintf("namespaces, cgroup v%d, landlock abi %d, seccomp allow-list", caps.CgroupVersion(), caps.LandlockABI)
	}
	out = append(out, native)

	bw := BackendReport{Name: "bwrap", Mechanisms: caps.Report()}
	version := ""
	if caps.Bwrap != "" {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := exec.CommandContext(vctx, caps.Bwrap, "--version").Output()
		cancel()
		if err == nil {
			version = strings.TrimSpace(string(b))
			bw.Mechanisms["bwrap"] = caps.Bwrap + " (" + version + ")"
		} else {
			bw.Mechanisms["bwrap"] = caps.Bwrap + " (--version failed: " + err.Error() + ")"
		}
	} else {
		bw.Mechanisms["bwrap"] = "not installed"
	}
	if _, err := NewBwrap(); err != nil {
		bw.Detail = refusalDetail(err)
	} else if version == "" {
		bw.Detail = "bwrap --version failed"
	} else {
		bw.Available = true
		bw.Detail = version
	}
	out = append(out, bw)

	dk := BackendReport{Name: "docker"}
	if d, err := NewDocker(); err != nil {
		dk.Detail = refusalDetail(err)
	} else {
		dk.Available = true
		dk.Detail = "engine " + d.engine + " at " + d.host
		cfg, _ := containerConfig(Spec{Argv: []string{"true"}}, d.image(Spec{}), d.runtime)
		dk.Mechanisms = d.isolation(cfg)
	}
	out = append(out, dk)

	wm := BackendReport{Name: "wasm"}
	if w, err := NewWasm(); err != nil {
		wm.Detail = err.Error()
	} else {
		wm.Available = true
		wm.Detail = wasmEngine(false) + ", in-process"
		wm.Mechanisms = map[string]string{
			"memory":     "linear-memory cap per run (allocator-enforced)",
			"deadline":   "context deadline closes the module",
			"filesystem": "none, or read-only mounts confined by os.Root",
			"network":    "none (WASI preview1 has no sockets)",
			"output":     "head+tail collectors",
		}
		w.Close(ctx)
	}
	out = append(out, wm)
	return out
}

// refusalDetail strips the ErrRefused prefix for display.
func refusalDetail(err error) string {
	return strings.TrimPrefix(err.Error(), ErrRefused.Error()+": ")
}

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// wasmBuilds caches modules built from sandbox/testdata/wasm/<name> for the
// whole test binary: one `go build` per module, the bytes kept in memory.
var wasmBuilds sync.Map // name → *wasmBuild

type wasmBuild struct {
	once sync.Once
	mod  []byte
	err  error
}

// buildWasm compiles testdata/wasm/<name> with GOOS=wasip1 GOARCH=wasm into
// a temporary directory and returns the module's bytes.
func buildWasm(t testing.TB, name string) []byte {
	t.Helper()
	v, _ := wasmBuilds.LoadOrStore(name, &wasmBuild{})
	b := v.(*wasmBuild)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-wasm-")
		if err != nil {
			b.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, name+".wasm")
		// -trimpath: the same bytes from any checkout, so the persistent
		// compilation cache of sharedWasm hits across clones.
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", out, "./testdata/wasm/"+name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = errors.New(err.Error() + ": " + string(msg))
			return
		}
		b.mod, b.err = os.ReadFile(out)
	})
	if b.err != nil {
		t.Fatalf("build wasm %s: %v", name, b.err)
	}
	return b.mod
}

// Hand-assembled modules, for the cases a Go-built module cannot express
// exactly (raw memory.grow, a bare loop) and for the start-up benchmark.
var (
	wasmHeader = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	// type 0: func () -> ()
	wasmTypeSec = []byte{0x01, 0x04, 0x01, 0x60, 0x00, 0x00}
	// one function of type 0
	wasmFuncSec = []byte{0x03, 0x02, 0x01, 0x00}
	// export "_start" = func 0
	wasmExportStart = []byte{0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00}
)

func wasmRaw(sections ...[]byte) []byte {
	var b []byte
	b = append(b, wasmHeader...)
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

// wasmTrue does nothing: the smallest WASI command.
var wasmTrue = wasmRaw(wasmTypeSec, wasmFuncSec, wasmExportStart,
	[]byte{0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b})

// wasmSpin loops forever: (loop (br 0)).
var wasmSpin = wasmRaw(wasmTypeSec, wasmFuncSec, wasmExportStart,
	[]byte{0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b})

// wasmGrow has one page of memory and grows it by 16 pages at a time until
// memory.grow returns -1, then traps with unreachable.
var wasmGrow = wasmRaw(wasmTypeSec, wasmFuncSec,
	[]byte{0x05, 0x03, 0x01, 0x00, 0x01}, // memory: min 1, no max
	[]byte{0x07, 0x13, 0x02,
		0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00,
		0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00},
	[]byte{0x0a, 0x14, 0x01, 0x12, 0x00,
		0x03, 0x40, // loop
		0x41, 0x10, // i32.const 16
		0x40, 0x00, // memory.grow 0
		0x41, 0x7f, // i32.const -1
		0x46,                   // i32.eq
		0x04, 0x40, 0x00, 0x0b, // if unreachable end
		0x0c, 0x00, // br 0
		0x0b, 0x0b})

// wasmHugeMin declares a 1000-page minimum memory it does not export.
var wasmHugeMin = wasmRaw(wasmTypeSec, wasmFuncSec,
	[]byte{0x05, 0x04, 0x01, 0x00, 0xe8, 0x07},
	wasmExportStart,
	[]byte{0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b})

// wasmNoStart has a function but exports nothing.
var wasmNoStart = wasmRaw(wasmTypeSec, wasmFuncSec,
	[]byte{0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b})

// sharedWasm is one runner for the package's tests, so each module is
// compiled once. It also keeps wazero's file cache under the user cache
// directory: compiling the 4 MB Go probe takes seconds, and tens of seconds
// under -race (wazero's compiler is instrumented), while the cached code is
// byte-for-byte what the compiler produced (keyed by module digest and
// wazero version). BenchmarkWasmCompile measures the uncached path.
var sharedWasm = sync.OnceValue(func() *Wasm {
	var opts []WasmOption
	if dir, err := os.UserCacheDir(); err == nil {
		opts = append(opts, WithWasmCacheDir(filepath.Join(dir, "airlock", "wasm-test-cache")))
	}
	w, err := NewWasm(opts...)
	if err != nil {
		w, err = NewWasm() // an unwritable cache directory: compile in memory
	}
	if err != nil {
		panic(err)
	}
	return w
})

func runWasm(t *testing.T, spec Spec) Result {
	t.Helper()
	res, err := sharedWasm().Run(t.Context(), spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestWasmEcho(t *testing.T) {
	probe := buildWasm(t, "probe")
	res := runWasm(t, Spec{
		Module: probe,
		Argv:   []string{"probe", "echo", "3"},
		Stdin:  []byte("from stdin"),
		Env:    map[string]string{"B": "2", "A": "1"},
	})
	if res.ExitCode != 3 {
		t.Errorf("ExitCode = %d, want 3 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if got := string(res.Stdout); got != "from stdin" {
		t.Errorf("Stdout = %q, want %q", got, "from stdin")
	}
	if want := "args=probe echo 3\nenv=A=1,B=2\n"; string(res.Stderr) != want {
		t.Errorf("Stderr = %q, want %q (only the Spec's environment)", res.Stderr, want)
	}
	if res.LimitHit != "" || res.Signal != "" || res.Truncated {
		t.Errorf("LimitHit, Signal, Truncated = %q, %q, %v, want none", res.LimitHit, res.Signal, res.Truncated)
	}
	if res.Isolation["backend"] != "wasm" || res.Isolation["filesystem"] != "none" {
		t.Errorf("Isolation = %v, want backend wasm, filesystem none", res.Isolation)
	}
	if res.PeakMemory <= 0 {
		t.Errorf("PeakMemory = %d, want > 0", res.PeakMemory)
	}
}

func TestWasmModuleFromPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "probe.wasm")
	if err := os.WriteFile(path, buildWasm(t, "probe"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runWasm(t, Spec{Argv: []string{path, "echo"}})
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d, want 0 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if !bytes.HasPrefix(res.Stderr, []byte("args=probe.wasm echo\n")) {
		t.Errorf("Stderr = %q, want argv[0] probe.wasm", res.Stderr)
	}
}

// TestWasmMemory is escape-suite row 29's memory.grow past the limit.
func TestWasmMemory(t *testing.T) {
	probe := buildWasm(t, "probe")
	const limit = 32 << 20
	tests := []struct {
		name      string
		spec      Spec
		wantLimit string
		wantExit  func(int) bool
		wantOut   string
	}{
		{name: "go-chunks-past-limit", spec: Spec{Module: probe, Argv: []string{"probe", "mem"}, Memory: limit},
			wantLimit: LimitMemory, wantExit: func(c int) bool { return c != 0 }},
		{name: "go-one-huge-allocation", spec: Spec{Module: probe, Argv: []string{"probe", "bigmem", "256"}, Memory: limit},
			wantLimit: LimitMemory, wantExit: func(c int) bool { return c != 0 }},
		{name: "go-under-limit-runs", spec: Spec{Module: probe, Argv: []string{"probe", "bigmem", "4"}, Memory: limit},
			wantExit: func(c int) bool { return c == 0 }, wantOut: "allocated\n"},
		{name: "raw-memory-grow-traps", spec: Spec{Module: wasmGrow, Memory: 4 << 20},
			wantLimit: LimitMemory, wantExit: func(c int) bool { return c == -1 }},
		{name: "declared-minimum-over-limit", spec: Spec{Module: wasmHugeMin, Memory: 1 << 20},
			wantLimit: LimitMemory, wantExit: func(c int) bool { return c == -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runWasm(t, tt.spec)
			if res.LimitHit != tt.wantLimit {
				t.Errorf("LimitHit = %q, want %q (exit %d, stderr %q)", res.LimitHit, tt.wantLimit, res.ExitCode, firstErrLine(string(res.Stderr)))
			}
			if !tt.wantExit(res.ExitCode) {
				t.Errorf("ExitCode = %d, unexpected", res.ExitCode)
			}
			if tt.wantOut != "" && string(res.Stdout) != tt.wantOut {
				t.Errorf("Stdout = %q, want %q", res.Stdout, tt.wantOut)
			}
			if res.PeakMemory > tt.spec.Memory {
				t.Errorf("PeakMemory = %d, want <= limit %d", res.PeakMemory, tt.spec.Memory)
			}
		})
	}
}

// TestWasmDeadline is row 29's infinite loop: killed at the deadline.
func TestWasmDeadline(t *testing.T) {
	probe := buildWasm(t, "probe")
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{name: "go-loop-wall", spec: Spec{Module: probe, Argv: []string{"probe", "loop"}, WallTimeout: 200 * time.Millisecond}, want: LimitTimeout},
		{name: "raw-loop-wall", spec: Spec{Module: wasmSpin, WallTimeout: 200 * time.Millisecond}, want: LimitTimeout},
		{name: "raw-loop-cpu", spec: Spec{Module: wasmSpin, WallTimeout: 10 * time.Second, CPUTime: 200 * time.Millisecond}, want: LimitCPU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := runWasm(t, tt.spec)
			if res.LimitHit != tt.want || res.Signal != "killed" || res.ExitCode != -1 {
				t.Errorf("LimitHit, Signal, ExitCode = %q, %q, %d, want %q, killed, -1", res.LimitHit, res.Signal, res.ExitCode, tt.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Run took %v, want the deadline to stop it promptly", took)
			}
		})
	}
}

func TestWasmCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan Result, 1)
	go func() {
		res, _ := sharedWasm().Run(ctx, Spec{Module: wasmSpin, WallTimeout: time.Minute})
		done <- res
	}()
	cancel()
	select {
	case res := <-done:
		if res.Signal != "killed" || res.LimitHit != "" {
			t.Errorf("Signal, LimitHit = %q, %q, want killed and no limit", res.Signal, res.LimitHit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the context was cancelled")
	}
}

// TestWasmFilesystem is row 29's WASI path escapes: "..", absolute paths
// and symlinks out of the preopen are denied; the mount is read-only.
func TestWasmFilesystem(t *testing.T) {
	probe := buildWasm(t, "probe")
	ws := t.TempDir()
	wasmWriteFile(t, filepath.Join(ws, "ok.txt"), "inside")
	wasmMkdir(t, filepath.Join(ws, "sub"))
	for name, target := range map[string]string{
		"link-passwd": "/etc/passwd",
		"link-etc":    "/etc",
		"up":          "../../../../../../..",
	} {
		if err := os.Symlink(target, filepath.Join(ws, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		workspace string
		allowed   []string // every other probe line must be denied
	}{
		{name: "read-only-workspace", workspace: ws, allowed: []string{"read-workspace", "getwd"}},
		{name: "no-filesystem", allowed: []string{"getwd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runWasm(t, Spec{Module: probe, Argv: []string{"probe", "fs"}, Workspace: tt.workspace})
			if res.ExitCode != 0 {
				t.Fatalf("ExitCode = %d, want 0 (stderr %q)", res.ExitCode, res.Stderr)
			}
			lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
			if len(lines) < 16 {
				t.Fatalf("probe printed %d lines, want all probes:\n%s", len(lines), res.Stdout)
			}
			for _, line := range lines {
				name, verdict, _ := strings.Cut(line, ": ")
				if name == "root-listing" {
					if strings.Contains(verdict, "etc") || strings.Contains(verdict, "root") {
						t.Errorf("root listing shows host directories: %q", verdict)
					}
					continue
				}
				allowed := false
				for _, a := range tt.allowed {
					allowed = allowed || a == name
				}
				switch {
				case allowed && verdict != "ok":
					t.Errorf("%s: got %q, want ok", name, verdict)
				case !allowed && !strings.HasPrefix(verdict, "denied"):
					t.Errorf("%s: got %q, want denied (a sandbox escape)", name, verdict)
				}
			}
			// Host side: nothing written, nothing changed.
			if b, _ := os.ReadFile(filepath.Join(ws, "ok.txt")); string(b) != "inside" {
				t.Errorf("workspace ok.txt = %q, want unchanged %q", b, "inside")
			}
			for _, n := range []string{"new.txt", "d", "evil", "moved.txt"} {
				if _, err := os.Lstat(filepath.Join(ws, n)); err == nil {
					t.Errorf("workspace/%s exists on the host, want not created", n)
				}
			}
			if fi, err := os.Stat(filepath.Join(ws, "ok.txt")); err != nil || fi.Mode().Perm() != 0o644 || fi.ModTime().Unix() == 0 {
				t.Errorf("workspace ok.txt stat = %v, %v, want mode 0644 and mtime unchanged", fi, err)
			}
			if res.Isolation["filesystem"] == "" {
				t.Errorf("Isolation lacks filesystem")
			}
		})
	}
}

func TestWasmNetwork(t *testing.T) {
	res := runWasm(t, Spec{Module: buildWasm(t, "probe"), Argv: []string{"probe", "net"}})
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		if !strings.Contains(line, ": denied") {
			t.Errorf("got %q, want denied", line)
		}
	}
	if !bytes.Contains(res.Stdout, []byte("dial: ")) {
		t.Errorf("Stdout = %q, want the dial probe", res.Stdout)
	}
}

// TestWasmFlood is row 29's stdout flood: capped, counted, not blocking.
func TestWasmFlood(t *testing.T) {
	const capBytes = 64 << 10
	res := runWasm(t, Spec{Module: buildWasm(t, "probe"), Argv: []string{"probe", "flood", "16"}, OutputCap: capBytes})
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d, want 0", res.ExitCode)
	}
	for name, got := range map[string]struct {
		kept  []byte
		total int64
	}{"stdout": {res.Stdout, res.StdoutBytes}, "stderr": {res.Stderr, res.StderrBytes}} {
		if got.total != 16<<20 {
			t.Errorf("%s bytes = %d, want %d", name, got.total, 16<<20)
		}
		if len(got.kept) > capBytes+64 {
			t.Errorf("%s retained %d bytes, want <= cap %d + marker", name, len(got.kept), capBytes)
		}
		if !bytes.Contains(got.kept, []byte("bytes truncated]")) {
			t.Errorf("%s lacks the truncation marker", name)
		}
	}
	if !res.Truncated || res.LimitHit != LimitOutput {
		t.Errorf("Truncated, LimitHit = %v, %q, want true, output", res.Truncated, res.LimitHit)
	}
}

func TestWasmRefuses(t *testing.T) {
	probe := buildWasm(t, "probe")
	tests := []struct {
		name    string
		spec    Spec
		refused bool
	}{
		{name: "language-source", spec: Spec{Lang: "python", Source: "print(1)"}, refused: true},
		{name: "network-allowlist", spec: Spec{Module: probe, Network: NetworkAllowlist, Allow: []string{"example.com"}}, refused: true},
		{name: "writable-workspace", spec: Spec{Module: probe, Workspace: t.TempDir(), WorkspaceRW: true}, refused: true},
		{name: "writable-bind", spec: Spec{Module: probe, Binds: []Bind{{Source: t.TempDir(), Target: "/data", Writable: true}}}, refused: true},
		{name: "memory-over-4gib", spec: Spec{Module: probe, Memory: 5 << 30}, refused: true},
		{name: "no-module", spec: Spec{Argv: []string{"/bin/true"}}},
		{name: "no-start-export", spec: Spec{Module: wasmNoStart}},
		{name: "not-wasm", spec: Spec{Module: []byte("#!/bin/sh\necho hi\n")}},
		{name: "bad-env-name", spec: Spec{Module: probe, Env: map[string]string{"A=B": "1"}}},
		{name: "nul-in-env-value", spec: Spec{Module: probe, Env: map[string]string{"A": "x\x00y"}}},
		{name: "missing-workspace", spec: Spec{Module: probe, Workspace: filepath.Join(t.TempDir(), "nope")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sharedWasm().Run(t.Context(), tt.spec)
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			if got := errors.Is(err, ErrRefused); got != tt.refused {
				t.Errorf("errors.Is(%v, ErrRefused) = %v, want %v", err, got, tt.refused)
			}
		})
	}
}

func TestWasmReadOnlyBind(t *testing.T) {
	dir := t.TempDir()
	wasmWriteFile(t, filepath.Join(dir, "ok.txt"), "bound")
	// The probe reads /workspace/ok.txt; bind dir there explicitly.
	res := runWasm(t, Spec{Module: buildWasm(t, "probe"), Argv: []string{"probe", "fs"},
		Binds: []Bind{{Source: dir, Target: "/workspace"}}})
	if !bytes.Contains(res.Stdout, []byte("read-workspace: ok")) || !bytes.Contains(res.Stdout, []byte("write-new: denied")) {
		t.Errorf("Stdout = %q, want the bind readable and not writable", res.Stdout)
	}
}

func wasmWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wasmMkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkWasmStart(b *testing.B) {
	w, err := NewWasm()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(context.Background())
	// Each module is compiled once before its loop: this measures a run of
	// a cached module (BenchmarkWasmCompile measures the first run).
	b.Run("wasm-trivial", func(b *testing.B) {
		w.Run(b.Context(), Spec{Module: wasmTrue})
		b.ReportAllocs()
		for b.Loop() {
			res, err := w.Run(b.Context(), Spec{Module: wasmTrue})
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("Run = %d, %v", res.ExitCode, err)
			}
		}
	})
	b.Run("wasm-go-hello", func(b *testing.B) {
		probe := buildWasm(b, "probe")
		w.Run(b.Context(), Spec{Module: probe, Argv: []string{"probe", "echo"}})
		b.ReportAllocs()
		for b.Loop() {
			res, err := w.Run(b.Context(), Spec{Module: probe, Argv: []string{"probe", "echo"}})
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("Run = %d, %v", res.ExitCode, err)
			}
		}
	})
	b.Run("bare-bin-true", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWasmCompile is the first run of a module: a fresh runner, so
// nothing is cached (run with a small -benchtime, e.g. 3x).
func BenchmarkWasmCompile(b *testing.B) {
	probe := buildWasm(b, "probe")
	b.ReportAllocs()
	for b.Loop() {
		w, err := NewWasm()
		if err != nil {
			b.Fatal(err)
		}
		res, err := w.Run(b.Context(), Spec{Module: probe, Argv: []string{"probe", "echo"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("Run = %d, %v", res.ExitCode, err)
		}
		w.Close(b.Context())
	}
}

// TestWasmConcurrentLimits runs modules with different memory limits at the
// same time on one runner: each run's limit is its own (the runtime is
// shared, the allocator is per run).
func TestWasmConcurrentLimits(t *testing.T) {
	probe := buildWasm(t, "probe")
	type outcome struct {
		small bool
		res   Result
		err   error
	}
	results := make(chan outcome, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		small := i%2 == 0
		wg.Go(func() {
			spec := Spec{Module: probe, Argv: []string{"probe", "bigmem", "48"}, Memory: 256 << 20}
			if small {
				spec.Memory = 16 << 20
			}
			res, err := sharedWasm().Run(t.Context(), spec)
			results <- outcome{small, res, err}
		})
	}
	wg.Wait()
	close(results)
	for o := range results {
		switch {
		case o.err != nil:
			t.Errorf("Run: %v", o.err)
		case o.small && o.res.LimitHit != LimitMemory:
			t.Errorf("16 MiB run: LimitHit = %q, exit %d, want memory", o.res.LimitHit, o.res.ExitCode)
		case !o.small && (o.res.ExitCode != 0 || string(o.res.Stdout) != "allocated\n"):
			t.Errorf("256 MiB run: exit %d, stdout %q, LimitHit %q, want success", o.res.ExitCode, o.res.Stdout, o.res.LimitHit)
		}
	}
}

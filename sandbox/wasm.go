package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

const (
	wasmPageSize = 64 << 10
	// wasmMaxPages is the 32-bit wasm ceiling (4 GiB), wazero's own maximum.
	wasmMaxPages = 65536
)

// Wasm runs WASI (preview1) command modules in-process with wazero. The
// guest has no network (preview1 has no sockets), no filesystem unless a
// workspace is given (then read-only, confined to it), only the Spec's
// environment, a linear-memory cap and a deadline. Compiled code is cached
// across runs. It is safe for concurrent use.
//
// Untrusted modules still run inside the airlock process: a bug in wazero's
// compiler is a bug in airlock. For code nobody vetted, prefer running the
// wasm runner itself under the native backend.
type Wasm struct {
	cacheDir string
	interp   bool
	cache    wazero.CompilationCache
	// rt is one runtime for every run: its configuration does not depend
	// on the Spec (the memory limit is enforced per instance by the
	// allocator), so compiled modules are shared and a run only
	// instantiates.
	rt wazero.Runtime

	mu       sync.Mutex
	compiled map[[32]byte]*wasmCompiled
}

// wasmCompiledMax bounds the compiled modules kept in memory.
const wasmCompiledMax = 32

type wasmCompiled struct {
	mu  sync.Mutex // held while compiling: one compilation per module
	mod wazero.CompiledModule
}

// WasmOption configures NewWasm.
type WasmOption func(*Wasm)

// WithWasmCacheDir persists compiled modules in dir, so restarts do not
// recompile (wazero's file cache; the directory must be airlock's alone).
func WithWasmCacheDir(dir string) WasmOption { return func(w *Wasm) { w.cacheDir = dir } }

// WithWasmInterpreter uses wazero's interpreter instead of its compiler
// (slower, but no generated machine code).
func WithWasmInterpreter() WasmOption { return func(w *Wasm) { w.interp = true } }

// NewWasm returns the wasm backend. Close releases it.
func NewWasm(opts ...WasmOption) (*Wasm, error) {
	w := &Wasm{compiled: map[[32]byte]*wasmCompiled{}}
	for _, o := range opts {
		o(w)
	}
	if w.cacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(w.cacheDir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: wasm cache: %w", err)
		}
		w.cache = c
	} else {
		w.cache = wazero.NewCompilationCache()
	}
	cfg := wazero.NewRuntimeConfigCompiler()
	if w.interp {
		cfg = wazero.NewRuntimeConfigInterpreter()
	}
	// The exact memory limit of a run is enforced by its allocator
	// (wasmMemory), which can tell a refused memory.grow apart from any
	// other failure; wazero's own page limit is its 4 GiB ceiling so that
	// every grow request reaches the allocator.
	cfg = cfg.WithCompilationCache(w.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(wasmMaxPages)
	ctx := context.Background()
	w.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, w.rt); err != nil {
		w.rt.Close(ctx)
		w.cache.Close(ctx)
		return nil, fmt.Errorf("sandbox: wasm: wasi: %w", err)
	}
	return w, nil
}

// Name implements Runner.
func (w *Wasm) Name() string { return "wasm" }

// Close releases the runtime, compiled modules and the compilation cache.
func (w *Wasm) Close(ctx context.Context) error {
	return errors.Join(w.rt.Close(ctx), w.cache.Close(ctx))
}

// Run implements Runner. The module is Spec.Module, or the file named by
// Spec.Argv[0] when it ends in .wasm; Spec.Argv is the guest's argv.
func (w *Wasm) Run(ctx context.Context, spec Spec) (Result, error) {
	start := time.Now()
	module, argv, err := wasmModule(spec)
	if err != nil {
		return Result{}, err
	}
	if err := wasmCheck(spec); err != nil {
		return Result{}, err
	}
	limitPages := wasmLimitPages(spec.Memory)
	outCap := limitOrDefault(spec.OutputCap, Defaults.OutputCap)
	wall := limitOrDefault(spec.WallTimeout, Defaults.WallTimeout)
	// The guest is one goroutine on one core: its CPU time is its wall time,
	// so a CPU limit shorter than the wall limit is the deadline.
	limitName := LimitTimeout
	if spec.CPUTime > 0 && spec.CPUTime < wall {
		wall, limitName = spec.CPUTime, LimitCPU
	}
	mem := &wasmMemory{limit: uint64(limitPages) * wasmPageSize}

	// Compilation (once per module) does not count against the program's
	// deadline; the caller's ctx still bounds it.
	compiled, err := w.compile(ctx, module)
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: wasm: compile: %w", err)
	}
	if compiled.ExportedFunctions()["_start"] == nil {
		return Result{}, errors.New("sandbox: wasm: module exports no _start (not a WASI command)")
	}
	for _, m := range compiled.ImportedMemories() {
		if m.Min() > limitPages {
			return Result{}, fmt.Errorf("%w: wasm: imported memory needs %d pages, limit %d", ErrRefused, m.Min(), limitPages)
		}
	}

	stdout, stderr := NewCollector(outCap), NewCollector(outCap)
	fsCfg, fsDesc, closeFS, err := wasmFS(spec)
	if err != nil {
		return Result{}, err
	}
	defer closeFS()
	mc := wazero.NewModuleConfig().
		WithName("").
		WithArgs(argv...).
		WithStdin(bytes.NewReader(spec.Stdin)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithFSConfig(fsCfg).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithStartFunctions() // _start is called below, to time setup apart
	for k, v := range spec.Env {
		mc = mc.WithEnv(k, v)
	}

	res := Result{ExitCode: -1}
	res.Isolation = map[string]string{
		"backend":    "wasm",
		"runtime":    wasmEngine(w.interp),
		"memory":     fmt.Sprintf("%d pages (%d MiB) linear memory", limitPages, uint64(limitPages)*wasmPageSize>>20),
		"deadline":   wall.String(),
		"filesystem": fsDesc,
		"network":    "none (WASI preview1 has no sockets)",
		"env":        fmt.Sprintf("allow-list (%d variables)", len(spec.Env)),
		"processes":  "none (single wasm instance)",
	}

	runCtx, cancel := context.WithTimeout(ctx, wall)
	defer cancel()
	runCtx = experimental.WithMemoryAllocator(runCtx, mem)
	runErr := func() (err error) {
		// A module whose own (unexported) memory minimum is over the limit
		// makes wazero index a nil buffer; report it as the memory limit.
		defer func() {
			if r := recover(); r != nil {
				if mem.refused.Load() {
					err = errWasmMemory
					return
				}
				err = fmt.Errorf("wasm: instantiate: %v", r)
			}
		}()
		mod, err := w.rt.InstantiateModule(runCtx, compiled, mc)
		if err != nil {
			return err
		}
		defer mod.Close(context.WithoutCancel(ctx))
		res.Setup = time.Since(start)
		_, err = mod.ExportedFunction("_start").Call(runCtx)
		return err
	}()
	if res.Setup == 0 {
		res.Setup = time.Since(start)
	}
	res.Wall = time.Since(start) - res.Setup
	res.CPUTime = res.Wall
	res.PeakMemory = int64(mem.peak.Load())

	var exit *sys.ExitError
	switch {
	case runErr == nil:
		res.ExitCode = 0
	case errors.As(runErr, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		res.Signal = "killed"
		res.LimitHit = limitName
	case errors.As(runErr, &exit) && exit.ExitCode() == sys.ExitCodeContextCanceled:
		res.Signal = "killed"
	case errors.As(runErr, &exit):
		res.ExitCode = int(exit.ExitCode())
	case runCtx.Err() != nil && ctx.Err() == nil:
		// The deadline fired while instantiating (no ExitError yet).
		res.Signal = "killed"
		res.LimitHit = limitName
	case ctx.Err() != nil:
		res.Signal = "killed"
	case errors.Is(runErr, errWasmMemory):
		res.Signal = "trap"
		fmt.Fprintf(stderr, "\nwasm: module memory minimum exceeds the limit of %d pages\n", limitPages)
	default:
		// A trap: unreachable, out-of-bounds access, stack overflow…
		res.Signal = "trap"
		fmt.Fprintf(stderr, "\nwasm: %s\n", firstErrLine(runErr.Error()))
	}
	if res.ExitCode != 0 && res.LimitHit == "" && mem.refused.Load() {
		res.LimitHit = LimitMemory
	}
	res.Stdout, res.StdoutBytes = stdout.Bytes(), stdout.Total()
	res.Stderr, res.StderrBytes = stderr.Bytes(), stderr.Total()
	res.Truncated = stdout.Truncated() || stderr.Truncated()
	if res.Truncated && res.LimitHit == "" {
		res.LimitHit = LimitOutput
	}
	return res, nil
}

// compile returns the compiled module, compiling it once per distinct module
// (concurrent first runs wait for one compilation instead of each doing it).
func (w *Wasm) compile(ctx context.Context, module []byte) (wazero.CompiledModule, error) {
	key := sha256.Sum256(module)
	w.mu.Lock()
	e := w.compiled[key]
	if e == nil {
		if len(w.compiled) >= wasmCompiledMax {
			// Evict one; instances running from it keep working.
			for k, old := range w.compiled {
				delete(w.compiled, k)
				go func() {
					old.mu.Lock()
					defer old.mu.Unlock()
					if old.mod != nil {
						old.mod.Close(context.Background())
					}
				}()
				break
			}
		}
		e = &wasmCompiled{}
		w.compiled[key] = e
	}
	w.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mod != nil {
		return e.mod, nil
	}
	mod, err := w.rt.CompileModule(ctx, module)
	if err != nil {
		return nil, err // not kept: a cancelled compile may succeed later
	}
	e.mod = mod
	return mod, nil
}

var errWasmMemory = errors.New("wasm: memory limit")

// wasmModule returns the module bytes and the guest's argv.
func wasmModule(spec Spec) ([]byte, []string, error) {
	if spec.Lang != "" || spec.Source != "" {
		return nil, nil, fmt.Errorf("%w: wasm: runs WASI modules, not %q source", ErrRefused, spec.Lang)
	}
	argv := spec.Argv
	if len(spec.Module) > 0 {
		if len(argv) == 0 {
			argv = []string{"module.wasm"}
		}
		return spec.Module, argv, nil
	}
	if len(argv) == 0 || !strings.HasSuffix(argv[0], ".wasm") {
		return nil, nil, errors.New("sandbox: wasm: no module (Spec.Module or a .wasm path as Argv[0])")
	}
	b, err := os.ReadFile(argv[0])
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: wasm: %w", err)
	}
	guest := append([]string{path.Base(argv[0])}, argv[1:]...)
	return b, guest, nil
}

// wasmCheck refuses what this backend cannot enforce or provide.
func wasmCheck(spec Spec) error {
	switch {
	case spec.Network != "" && spec.Network != NetworkOff:
		return fmt.Errorf("%w: wasm: network %q is not available (WASI preview1 has no sockets)", ErrRefused, spec.Network)
	case spec.WorkspaceRW:
		return fmt.Errorf("%w: wasm: the workspace can only be mounted read-only", ErrRefused)
	case spec.Memory > int64(wasmMaxPages)*wasmPageSize:
		return fmt.Errorf("%w: wasm: memory %d bytes exceeds the 4 GiB wasm32 maximum", ErrRefused, spec.Memory)
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("sandbox: wasm: bad environment variable %q", k)
		}
	}
	for _, b := range spec.Binds {
		if b.Writable {
			return fmt.Errorf("%w: wasm: writable bind %s: only read-only mounts", ErrRefused, b.Target)
		}
		if !path.IsAbs(b.Target) {
			return fmt.Errorf("%w: wasm: bind target %q is not absolute", ErrRefused, b.Target)
		}
	}
	return nil
}

// wasmFS mounts the workspace (and any binds) read-only, each confined to
// its directory through os.Root: "..", absolute symlinks and symlinks that
// lead out of the directory are refused by the host kernel's openat
// resolution, not by string checks. (wazero's WithReadOnlyDirMount joins
// paths and follows host symlinks, so a symlink left in the workspace would
// read /etc/passwd; its own tests say as much.)
func wasmFS(spec Spec) (wazero.FSConfig, string, func(), error) {
	cfg := wazero.NewFSConfig()
	var roots []*os.Root
	closeAll := func() {
		for _, r := range roots {
			r.Close()
		}
	}
	var desc []string
	mount := func(src, target string) error {
		r, err := os.OpenRoot(src)
		if err != nil {
			return fmt.Errorf("sandbox: wasm: mount %s: %w", target, err)
		}
		roots = append(roots, r)
		cfg = cfg.WithFSMount(r.FS(), target)
		desc = append(desc, target+" (read-only)")
		return nil
	}
	if spec.Workspace != "" {
		if err := mount(spec.Workspace, "/workspace"); err != nil {
			closeAll()
			return nil, "", nil, err
		}
	}
	for _, b := range spec.Binds {
		if err := mount(b.Source, b.Target); err != nil {
			closeAll()
			return nil, "", nil, err
		}
	}
	if len(desc) == 0 {
		return cfg, "none", closeAll, nil
	}
	return cfg, strings.Join(desc, ", "), closeAll, nil
}

func wasmLimitPages(memory int64) uint32 {
	if memory <= 0 {
		memory = Defaults.Memory
	}
	pages := memory / wasmPageSize
	if pages < 1 {
		pages = 1
	}
	return uint32(min(pages, wasmMaxPages))
}

func wasmEngine(interp bool) string {
	if interp {
		return "wazero v1.12 interpreter"
	}
	return "wazero v1.12 compiler"
}

func limitOrDefault[T int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func firstErrLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// wasmMemory is the allocator of one run's linear memory: it enforces the
// byte limit, records whether a grow was refused, and the peak size.
type wasmMemory struct {
	limit   uint64
	peak    atomic.Uint64
	refused atomic.Bool
}

// Allocate implements experimental.MemoryAllocator.
func (m *wasmMemory) Allocate(_, max uint64) experimental.LinearMemory {
	return &wasmLinear{m: m, max: min(max, m.limit)}
}

type wasmLinear struct {
	m   *wasmMemory
	max uint64
	buf []byte
}

// Reallocate implements experimental.LinearMemory: nil refuses the grow
// (memory.grow returns -1 to the guest).
func (l *wasmLinear) Reallocate(size uint64) []byte {
	if size > l.max {
		l.m.refused.Store(true)
		return nil
	}
	if size <= uint64(cap(l.buf)) {
		l.buf = l.buf[:size]
	} else {
		// Grow geometrically up to the limit; fresh large allocations come
		// from the OS zeroed and untouched, so capacity costs no RSS.
		c := min(max(size, 2*uint64(cap(l.buf))), l.max)
		nb := make([]byte, size, c)
		copy(nb, l.buf)
		l.buf = nb
	}
	for {
		p := l.m.peak.Load()
		if size <= p || l.m.peak.CompareAndSwap(p, size) {
			break
		}
	}
	return l.buf
}

// Free implements experimental.LinearMemory.
func (l *wasmLinear) Free() { l.buf = nil }

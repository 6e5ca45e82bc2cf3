package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Backends are the backend names Open accepts, default first.
var Backends = []string{"native", "bwrap", "docker", "wasm"}

// DefaultBackend is the backend used when none is named.
const DefaultBackend = "native"

// OpenOption configures Open.
type OpenOption func(*openConfig)

type openConfig struct {
	log    *slog.Logger
	native []NativeOption
	docker []DockerOption
	wasm   []WasmOption
}

// WithOpenLogger gives the native and bwrap backends a logger.
func WithOpenLogger(l *slog.Logger) OpenOption {
	return func(c *openConfig) { c.log = l }
}

// WithNativeOptions passes options to the native and bwrap backends.
func WithNativeOptions(opts ...NativeOption) OpenOption {
	return func(c *openConfig) { c.native = append(c.native, opts...) }
}

// WithDockerOptions passes options to the docker backend.
func WithDockerOptions(opts ...DockerOption) OpenOption {
	return func(c *openConfig) { c.docker = append(c.docker, opts...) }
}

// WithWasmOptions passes options to the wasm backend.
func WithWasmOptions(opts ...WasmOption) OpenOption {
	return func(c *openConfig) { c.wasm = append(c.wasm, opts...) }
}

// Open returns the named backend ("" is DefaultBackend). A backend this
// machine cannot provide fails with an error wrapping ErrRefused; there is
// no fallback to a weaker one. Open is cheap enough to call per run: native
// and bwrap reuse the cached Preflight, docker pings the engine (so a
// vanished engine refuses), and wasm without options is one runner shared
// by the process (its compiled modules are the point; it has no Close).
// A wasm runner opened with options holds its own runtime: close it
// (interface{ Close(context.Context) error }) when done.
func Open(backend string, opts ...OpenOption) (Runner, error) {
	var c openConfig
	for _, o := range opts {
		o(&c)
	}
	native := c.native
	if c.log != nil {
		native = append([]NativeOption{WithLogger(c.log)}, native...)
	}
	switch strings.ToLower(strings.TrimSpace(backend)) {
	case "", "native":
		return asRunner(NewNative(native...))
	case "bwrap", "bubblewrap":
		return asRunner(NewBwrap(native...))
	case "docker":
		return asRunner(NewDocker(c.docker...))
	case "wasm", "wazero":
		if len(c.wasm) == 0 {
			w, err := processWasm()
			if err != nil {
				return nil, err
			}
			return sharedWasmRunner{w}, nil
		}
		return asRunner(NewWasm(c.wasm...))
	}
	return nil, fmt.Errorf("sandbox: unknown backend %q (one of %s)", backend, strings.Join(Backends, ", "))
}

// processWasm is the process-wide wasm runner Open hands out.
var processWasm = sync.OnceValues(func() (*Wasm, error) { return NewWasm() })

// sharedWasmRunner exposes the process-wide runner without its Close, so no
// caller can close it under the others.
type sharedWasmRunner struct{ w *Wasm }

func (s sharedWasmRunner) Name() string { return s.w.Name() }

func (s sharedWasmRunner) Run(ctx context.Context, spec Spec) (Result, error) {
	return s.w.Run(ctx, spec)
}

// asRunner converts a constructor's result, keeping a failed constructor's
// nil pointer from becoming a non-nil Runner.
func asRunner[R Runner](r R, err error) (Runner, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

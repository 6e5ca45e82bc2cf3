package sandbox

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestOpen(t *testing.T) {
	absent := "unix://" + filepath.Join(t.TempDir(), "no-engine.sock")
	type openCase struct {
		name     string
		backend  string
		opts     []OpenOption
		wantName string
		refused  bool // the backend exists but this machine (or option) cannot provide it
		unknown  bool
	}
	tests := []openCase{
		{name: "wasm", backend: "wasm", wantName: "wasm"},
		{name: "wazero-alias", backend: " Wazero ", wantName: "wasm"},
		{name: "docker-without-engine", backend: "docker", opts: []OpenOption{WithDockerOptions(WithDockerHost(absent))}, refused: true},
		{name: "unknown", backend: "firecracker", unknown: true},
	}
	// native and bwrap depend on the machine: either they open, or they
	// refuse with ErrRefused (never another error, never a nil Runner).
	if _, err := NewNative(); err == nil {
		tests = append(tests, openCase{name: "default-is-native", backend: "", wantName: "native"})
	} else {
		tests = append(tests, openCase{name: "default-native-refused", backend: "", refused: true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(tt.backend, tt.opts...)
			switch {
			case tt.unknown:
				if err == nil || errors.Is(err, ErrRefused) {
					t.Fatalf("Open(%q) error = %v, want an unknown-backend error", tt.backend, err)
				}
			case tt.refused:
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("Open(%q) error = %v, want ErrRefused", tt.backend, err)
				}
			default:
				if err != nil {
					t.Fatalf("Open(%q): %v", tt.backend, err)
				}
				if r.Name() != tt.wantName {
					t.Errorf("Name() = %q, want %q", r.Name(), tt.wantName)
				}
			}
			if err != nil && r != nil {
				t.Errorf("Open(%q) returned a non-nil Runner %#v with error %v", tt.backend, r, err)
			}
		})
	}
}

// TestOpenWasmShared: Open("wasm") without options hands out one runner
// for the process (opened per call by the broker, it must not leak a
// runtime per run), and it cannot be closed by a caller.
func TestOpenWasmShared(t *testing.T) {
	a, err := Open("wasm")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open("wasm")
	if err != nil {
		t.Fatal(err)
	}
	if a.(sharedWasmRunner).w != b.(sharedWasmRunner).w {
		t.Errorf("Open(wasm) twice gave two runners, want the shared one")
	}
	if _, ok := a.(interface{ Close(context.Context) error }); ok {
		t.Errorf("the shared wasm runner has Close, want none")
	}
	own, err := Open("wasm", WithWasmOptions(WithWasmInterpreter()))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := own.(interface{ Close(context.Context) error })
	if !ok {
		t.Fatalf("a wasm runner opened with options has no Close")
	}
	defer c.Close(t.Context())
	for _, r := range []Runner{a, own} {
		res, err := r.Run(t.Context(), Spec{Module: wasmGrow, Memory: 1 << 20})
		if err != nil || res.LimitHit != LimitMemory || res.Isolation["runtime"] == "" {
			t.Errorf("Run on %s = %+v, %v, want the memory limit hit", res.Isolation["runtime"], res, err)
		}
	}
}

func TestDoctor(t *testing.T) {
	reports := Doctor(t.Context())
	var names []string
	byName := map[string]BackendReport{}
	for _, r := range reports {
		names = append(names, r.Name)
		byName[r.Name] = r
		if r.Detail == "" {
			t.Errorf("%s: empty Detail", r.Name)
		}
	}
	if got, want := len(names), len(Backends); got != want {
		t.Fatalf("Doctor reported %v, want %v", names, Backends)
	}
	for i, n := range Backends {
		if names[i] != n {
			t.Errorf("report %d = %q, want %q", i, names[i], n)
		}
	}
	if !byName["wasm"].Available {
		t.Errorf("wasm unavailable: %s", byName["wasm"].Detail)
	}
	_, nativeErr := NewNative()
	if got := byName["native"].Available; got != (nativeErr == nil) {
		t.Errorf("native Available = %v, but NewNative error = %v", got, nativeErr)
	}
	if byName["native"].Mechanisms["landlock_abi"] == "" {
		t.Errorf("native mechanisms lack landlock_abi: %v", byName["native"].Mechanisms)
	}
	_, dockerErr := NewDocker()
	if got := byName["docker"].Available; got != (dockerErr == nil) {
		t.Errorf("docker Available = %v, but NewDocker error = %v", got, dockerErr)
	}
}

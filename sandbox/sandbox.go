// Package sandbox runs approved code isolated and limited: one Runner
// interface, one Spec, several backends (native namespaces + Landlock +
// seccomp + cgroups, bubblewrap, docker, wazero), and one escape suite every
// backend must pass. A backend that cannot enforce what a Spec asks refuses
// to run: nothing ever runs unsandboxed.
package sandbox

import (
	"context"
	"errors"
	"time"
)

// Runner runs one Spec to completion.
type Runner interface {
	// Name is the backend's name: native, bwrap, docker, wasm.
	Name() string
	// Run executes spec and returns its result. An error means the run was
	// refused or could not be set up; a program that ran and failed is a
	// Result with a non-zero ExitCode, not an error.
	Run(ctx context.Context, spec Spec) (Result, error)
}

// Network modes.
const (
	NetworkOff       = "off"
	NetworkAllowlist = "allowlist"
)

// Bind is a host path made visible inside the sandbox.
type Bind struct {
	Source   string // host path
	Target   string // path inside the sandbox
	Writable bool   // read-only unless set
}

// Spec is everything a backend needs to run one program.
type Spec struct {
	// Argv is the program and its arguments. For Lang runs it is derived.
	Argv []string
	// Lang and Source run code in a language instead of Argv: "python",
	// "shell"/"sh"/"bash". For the wasm backend, Module holds the WASI binary.
	Lang   string
	Source string
	Module []byte
	Stdin  []byte
	// Workspace is a host directory bound at /workspace (read-only unless
	// WorkspaceRW). Empty: an empty scratch /workspace.
	Workspace   string
	WorkspaceRW bool
	Binds       []Bind
	// Env is the environment allow-list: only these variables reach the
	// program (plus PATH, HOME=/workspace, TMPDIR=/tmp, LANG).
	Env map[string]string
	// Network is NetworkOff (default) or NetworkAllowlist with Allow hosts.
	Network string
	Allow   []string
	// Limits; zero means the default in Defaults.
	CPUs        float64       // CPU quota in CPUs (1 = one core)
	Memory      int64         // bytes
	Pids        int64         // max processes/threads
	FileSize    int64         // RLIMIT_FSIZE bytes
	TmpSize     int64         // /tmp tmpfs bytes
	NoFile      int64         // RLIMIT_NOFILE
	WallTimeout time.Duration // wall clock
	CPUTime     time.Duration // RLIMIT_CPU
	OutputCap   int64         // retained bytes per stream (head + tail)
	// DryRun marks a reviewer's trial run (scratch copy of the workspace).
	DryRun bool
}

// Limit names reported in Result.LimitHit.
const (
	LimitTimeout = "timeout"
	LimitMemory  = "memory"
	LimitPids    = "pids"
	LimitOutput  = "output"
	LimitCPU     = "cpu"
)

// Result is what a run produced.
type Result struct {
	ExitCode int    // -1 when killed by a signal
	Signal   string // e.g. "killed"
	Stdout   []byte // retained output (head + marker + tail when truncated)
	Stderr   []byte
	// StdoutBytes/StderrBytes count everything the program wrote.
	StdoutBytes int64
	StderrBytes int64
	Truncated   bool
	LimitHit    string // one of the Limit* names, or empty
	PeakMemory  int64
	CPUTime     time.Duration
	Wall        time.Duration
	Setup       time.Duration // time spent before the program started
	// Isolation is the effective isolation: backend and each mechanism in
	// force (e.g. "landlock": "abi 7", "seccomp": "allow-list", "netns": "empty").
	Isolation map[string]string
	// Changed lists workspace files the run created, changed or deleted
	// (dry runs).
	Changed []string
}

// ErrRefused wraps every refusal to run because a requested property cannot
// be enforced (missing user namespaces, Landlock, cgroups, bwrap, engine…).
var ErrRefused = errors.New("sandbox: refused")

// Defaults are the limits applied where a Spec leaves zero.
var Defaults = Spec{
	CPUs:        1,
	Memory:      512 << 20,
	Pids:        128,
	FileSize:    64 << 20,
	TmpSize:     64 << 20,
	NoFile:      1024,
	WallTimeout: 30 * time.Second,
	CPUTime:     60 * time.Second,
	OutputCap:   1 << 20,
}

//go:build !linux

package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// MinLandlockABI is the lowest Landlock ABI the native and bwrap backends
// accept.
const MinLandlockABI = 6

// DrainTimeout is how long a run waits for its output pipes after exit.
const DrainTimeout = 2 * time.Second

// Capabilities is what this machine offers the native and bwrap backends:
// nothing outside Linux.
type Capabilities struct {
	LandlockABI int
	Bwrap       string
	Missing     []string
}

// CgroupVersion is 0: no cgroups outside Linux.
func (c Capabilities) CgroupVersion() int { return 0 }

// Report renders the capabilities as key/value pairs.
func (c Capabilities) Report() map[string]string {
	return map[string]string{"missing": "linux (namespaces, cgroups, landlock, seccomp)"}
}

// Preflight reports that the native and bwrap backends need Linux.
func Preflight() Capabilities {
	return Capabilities{Missing: []string{"linux"}}
}

// NativeOption configures a Native backend.
type NativeOption func(*nativeConfig)

type nativeConfig struct{ log *slog.Logger }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) NativeOption { return func(c *nativeConfig) { c.log = l } }

// WithoutWarmHelper disables the helper pool.
func WithoutWarmHelper() NativeOption { return func(*nativeConfig) {} }

// Native is the Linux namespace backend; it refuses outside Linux.
type Native struct{}

// Bwrap is the bubblewrap backend; it refuses outside Linux.
type Bwrap struct{}

func refusedOS(b string) error {
	return fmt.Errorf("%w: %s backend unavailable: missing linux", ErrRefused, b)
}

// NewNative refuses outside Linux.
func NewNative(...NativeOption) (*Native, error) { return nil, refusedOS("native") }

// NewBwrap refuses outside Linux.
func NewBwrap(...NativeOption) (*Bwrap, error) { return nil, refusedOS("bwrap") }

// Name reports "native".
func (*Native) Name() string { return "native" }

// Run refuses.
func (*Native) Run(context.Context, Spec) (Result, error) { return Result{}, refusedOS("native") }

// Capabilities is empty outside Linux.
func (*Native) Capabilities() Capabilities { return Preflight() }

// Name reports "bwrap".
func (*Bwrap) Name() string { return "bwrap" }

// Run refuses.
func (*Bwrap) Run(context.Context, Spec) (Result, error) { return Result{}, refusedOS("bwrap") }

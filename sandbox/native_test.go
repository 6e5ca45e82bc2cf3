//go:build linux

package sandbox

import (
	"context"
	"testing"
)

func newNativeT(t testing.TB) *Native {
	t.Helper()
	n, err := NewNative()
	if err != nil {
		t.Fatalf("NewNative: %v", err)
	}
	return n
}

func TestNativeSmoke(t *testing.T) {
	n := newNativeT(t)
	res, err := n.Run(context.Background(), Spec{Argv: []string{"/bin/sh", "-c", "echo hi; id; cat /proc/self/status | grep -E 'Cap|Seccomp|NoNew'; ls /; ls /proc"}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%v %s %d %v %v\nstdout=%s\nstderr=%s", res.ExitCode, res.Signal, res.PeakMemory, res.Setup, res.Wall, res.Stdout, res.Stderr)
}

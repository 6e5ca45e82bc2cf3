// Package testenv holds helpers shared by airlock's tests: finding external
// tools, and skipping (or, under AIRLOCK_REQUIRE_E2E=1, failing) when one is
// missing.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireE2E reports whether missing tools must fail tests instead of skipping
// them (CI sets AIRLOCK_REQUIRE_E2E=1).
func RequireE2E() bool { return os.Getenv("AIRLOCK_REQUIRE_E2E") == "1" }

// Missing skips the test, or fails it under AIRLOCK_REQUIRE_E2E=1.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireE2E() {
		t.Fatalf("required for e2e (AIRLOCK_REQUIRE_E2E=1): "+format, args...)
	}
	t.Skipf(format, args...)
}

// Tool returns the path of an external program, or skips/fails the test when
// it is not installed.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not installed", name)
	}
	return p
}

// Chaos marks a chaos test (kill -9 of brokers and NATS nodes under load,
// tens of seconds each). They are part of `make test` and CI; -short or
// AIRLOCK_CHAOS=0 leaves them out for a quick local run.
func Chaos(t testing.TB) {
	t.Helper()
	if RequireE2E() {
		return // CI runs them whatever else is set
	}
	if testing.Short() || os.Getenv("AIRLOCK_CHAOS") == "0" {
		t.Skip("chaos test: left out by -short or AIRLOCK_CHAOS=0")
	}
}

package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets end-to-end tests run this test binary as the airlock
// command (in tmux, as a hook, as a second broker process) without a
// separate go build: with AIRLOCK_TEST_MAIN=1 it behaves exactly like main.
func TestMain(m *testing.M) {
	if os.Getenv("AIRLOCK_TEST_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(exitCode(err, os.Stderr))
	}
	os.Exit(m.Run())
}

// selfCommand returns argv and env that run this test binary as `airlock`.
func selfCommand(t testing.TB, args ...string) ([]string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe}, args...), append(os.Environ(), "AIRLOCK_TEST_MAIN=1")
}

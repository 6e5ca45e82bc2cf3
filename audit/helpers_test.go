package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock/airlock/audit/audittest"
)

// fixtureBase is the fixed time of the fixture's recent events (golden files).
var fixtureBase = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// newFixture writes the fixture log to a fresh database, closes it and
// returns the path.
func newFixture(t testing.TB, base time.Time, opts ...Option) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	l, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := audittest.Populate(context.Background(), l, base); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path
}

func openRO(t testing.TB, path string) *Reader {
	t.Helper()
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func verifyPath(t testing.TB, path string) VerifyReport {
	t.Helper()
	cps, err := ReadCheckpoints(CheckpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	r := openRO(t, path)
	rep, err := Verify(context.Background(), r, cps)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

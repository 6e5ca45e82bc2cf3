package broker_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
)

// TestAuditFailClosed locks the audit database from another process-like
// connection mid-run: nothing may be approved while the log cannot be
// written, and calls are approved again once it can.
func TestAuditFailClosed(t *testing.T) {
	h := startHarness(t, testPolicy)
	if d := h.submit(call("fc0", "a1", "search_web", map[string]any{"q": "before"})); d.Verdict != airlock.VerdictApproved {
		t.Fatalf("before the lock: %s", d.Verdict)
	}
	// Restart with a short busy timeout on the log so the test is quick.
	h.stopBroker()
	h.bootWithLog(testPolicy, audit.WithBusyTimeout(100*time.Millisecond))

	locker, err := sql.Open("sqlite3", "file:"+audit.PathIn(h.dir)+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatalf("lock: %v", err)
	}
	d := h.submit(call("fc1", "a1", "search_web", map[string]any{"q": "while locked"}))
	if d.Verdict == airlock.VerdictApproved || !strings.Contains(d.Reason, "audit_unavailable") {
		t.Fatalf("while the audit log is locked: %s %q, want denied audit_unavailable", d.Verdict, d.Reason)
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The failed call was forgotten, so the same id is evaluated afresh.
	d = h.submit(call("fc1", "a1", "search_web", map[string]any{"q": "while locked"}))
	if d.Verdict != airlock.VerdictApproved {
		t.Fatalf("after the lock: %s %q", d.Verdict, d.Reason)
	}
	if rows := h.decisionRows("fc1"); len(rows) != 1 || rows[0] != "approved/policy" {
		t.Fatalf("audit rows for fc1: %v", rows)
	}
}

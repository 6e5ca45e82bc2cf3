package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
)

// TestCanary: at canary_rate 1 every held call brings an attention check
// shaped like it. Denying it is a catch, approving it a miss; neither runs
// anything or reaches an agent, and the audit report counts both.
func TestCanary(t *testing.T) {
	pol := strings.Replace(testPolicy, "orgs:", "review: {canary_rate: 1}\norgs:", 1)
	h := startHarness(t, pol)
	ctx := context.Background()
	canaries := func() []airlock.Pending {
		var out []airlock.Pending
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			ps, _ := h.client.Pending(ctx)
			out = out[:0]
			for _, p := range ps {
				if p.Canary {
					out = append(out, p)
				}
			}
			if len(out) > 0 {
				return out
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no attention check appeared")
		return nil
	}
	h.submitAsync(call("real1", "a1", "execute_sql", map[string]any{"query": "SELECT 1"}))
	h.waitPending("real1")
	c := canaries()[0]
	if c.Call.Agent != "a1" || c.Call.User != "u1" || c.Call.Session != "s1" {
		t.Fatalf("the check does not look like its neighbour: %+v", c.Call)
	}
	rep, err := h.client.Review(ctx, airlock.Review{CallID: c.Call.ID, Action: airlock.ActionDeny, Reviewer: "bob", Reason: "looks wrong"})
	if err != nil || !rep.Accepted || !rep.Canary || !strings.Contains(rep.Note, "caught") {
		t.Fatalf("deny a check: %+v %v", rep, err)
	}
	h.submitAsync(call("real2", "a1", "execute_sql", map[string]any{"query": "SELECT 2"}))
	h.waitPending("real2")
	var c2 airlock.Pending
	for _, p := range canaries() {
		if p.Call.ID != c.Call.ID {
			c2 = p
		}
	}
	if c2.Call.ID == "" {
		t.Fatal("no second check")
	}
	rep, err = h.client.Review(ctx, airlock.Review{CallID: c2.Call.ID, Action: airlock.ActionApprove, Reviewer: "carol"})
	if err != nil || !rep.Accepted || !rep.Canary || rep.Decision != nil {
		t.Fatalf("approve a check: %+v %v", rep, err)
	}
	// Nothing about the checks reaches the decisions view; the report counts them.
	var n int
	_ = h.db().QueryRow(`select count(*) from decisions where call_id in (?, ?)`, c.Call.ID, c2.Call.ID).Scan(&n)
	if n != 0 {
		t.Fatalf("%d decision rows for attention checks", n)
	}
	r, err := audit.OpenReadOnly(audit.PathIn(h.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sum, err := r.Report(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for _, rv := range sum.Reviewers {
		got[rv.Reviewer] = [2]int{rv.CanaryCaught, rv.CanaryMissed}
	}
	if got["bob"] != [2]int{1, 0} || got["carol"] != [2]int{0, 1} {
		t.Fatalf("report canaries %v, want bob caught 1, carol missed 1", got)
	}
}

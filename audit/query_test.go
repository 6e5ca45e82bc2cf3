package audit

import (
	"database/sql"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"

	"github.com/airlock/airlock"
)

func ids(ds []Decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.CallID
	}
	return out
}

func TestDecisionsFilters(t *testing.T) {
	path := newFixture(t, fixtureBase)
	r := openRO(t, path)
	recent := fixtureBase.Add(-time.Hour)
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all-recent", Filter{Since: recent}, []string{"s1", "s2", "s3", "s4", "s5", "q1", "q2", "q3", "e1", "f1", "r1", "x1", "d1", "bad1", "p1"}},
		{"until-excludes-recent", Filter{Until: recent}, []string{"old1", "old2"}},
		{"since-and-until", Filter{Since: fixtureBase.Add(2 * time.Second), Until: fixtureBase.Add(4 * time.Second)}, []string{"s2", "s3"}},
		{"agent", Filter{Agent: "ops-bot"}, []string{"f1", "p1"}},
		{"user", Filter{User: "erin"}, []string{"q2", "q3"}},
		{"org", Filter{Org: "acme", Tool: "send_email"}, []string{"e1"}},
		{"session", Filter{Session: "sess-gina"}, []string{"f1", "p1"}},
		{"tool", Filter{Tool: "execute_sql"}, []string{"old1", "q1", "q2", "q3", "x1"}},
		{"verdict-denied", Filter{Verdict: "denied"}, []string{"q3", "d1"}},
		{"verdict-expired", Filter{Verdict: "expired"}, []string{"x1"}},
		{"verdict-rate-limited", Filter{Verdict: "rate_limited"}, []string{"r1"}},
		{"verdict-rejected", Filter{Verdict: "rejected"}, []string{"bad1"}},
		{"decided-by-grant", Filter{DecidedBy: "grant:g1"}, []string{"f1"}},
		{"decided-by-ratelimit", Filter{DecidedBy: "ratelimit"}, []string{"r1"}},
		{"reviewer-bob", Filter{Reviewer: "bob"}, []string{"q1", "q3", "p1"}},
		{"reviewer-carol-since", Filter{Reviewer: "carol", Since: recent}, []string{"q2", "e1"}},
		{"min-risk", Filter{MinRisk: 80}, []string{"q2", "q3"}},
		{"limit", Filter{Tool: "search_web", Limit: 2}, []string{"old2", "s1"}},
		{"limit-offset", Filter{Tool: "search_web", Limit: 2, Offset: 2}, []string{"s2", "s3"}},
		{"after-seq-paging", Filter{Tool: "execute_sql", AfterSeq: 13}, []string{"q2", "q3", "x1"}},
		{"newest-first", Filter{Tool: "execute_sql", Desc: true, Limit: 2}, []string{"x1", "q3"}},
		{"no-match", Filter{Agent: "nobody"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := r.Decisions(t.Context(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ds); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecisionColumns(t *testing.T) {
	r := openRO(t, newFixture(t, fixtureBase))
	ds, err := r.Decisions(t.Context(), Filter{Verdict: "denied", Reviewer: "bob"})
	if err != nil || len(ds) != 1 {
		t.Fatalf("got %v %v", ds, err)
	}
	d := ds[0]
	want := Decision{CallID: "q3", Seq: d.Seq, DecidedAt: "2026-12-01T09:00:58.131Z", Agent: "billing-bot", User: "erin", Org: "acme",
		Session: "sess-erin", Tool: "execute_sql", Verdict: "denied", DecidedBy: "reviewer:bob", Tier: "approve", RiskScore: 95,
		Reason: "DELETE without WHERE on users"}
	args := string(d.Arguments)
	d.Arguments = nil
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v\nwant %+v", d, want)
	}
	if args != `{"query":"DELETE FROM users"}` {
		t.Errorf("arguments %s", args)
	}
}

func TestSearch(t *testing.T) {
	path := newFixture(t, fixtureBase)
	tests := []struct {
		name, q string
		f       Filter
		want    []string
	}{
		{"argument-word", "zebra", Filter{}, []string{"s1", "s4", "r1"}},
		{"two-words", "zebra crossing", Filter{}, []string{"s4"}},
		{"case-insensitive", "PENGUIN", Filter{}, []string{"s3"}},
		{"decision-reason", "refunds desk", Filter{}, []string{"e1"}},
		{"review-reason-and-argument", "WHERE", Filter{}, []string{"old1", "q1", "q3"}},
		{"agent-context-reason", "customer", Filter{}, []string{"e1"}},
		{"combined-with-filter", "zebra", Filter{Verdict: "rate_limited"}, []string{"r1"}},
		{"fts-syntax-is-quoted", `"zebra" OR`, Filter{}, []string{}},
		{"no-match", "platypus", Filter{}, []string{}},
	}
	for _, mode := range []string{"index", "like"} {
		t.Run(mode, func(t *testing.T) {
			r := openRO(t, path)
			if mode == "like" {
				r.fts = false
			} else if !r.fts {
				testenv.Missing(t, "FTS5 not compiled in (go test -tags sqlite_fts5 covers this path)")
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.f.Search = tc.q
					ds, err := r.Decisions(t.Context(), tc.f)
					if err != nil {
						t.Fatal(err)
					}
					if got := ids(ds); !slices.Equal(got, tc.want) {
						t.Fatalf("got %v, want %v", got, tc.want)
					}
				})
			}
		})
	}
}

func TestReport(t *testing.T) {
	r := openRO(t, newFixture(t, fixtureBase))
	sum, err := r.Report(t.Context(), fixtureBase.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Decisions != 15 {
		t.Errorf("decisions %d, want 15", sum.Decisions)
	}
	want := []ReviewerStats{
		{Reviewer: "bob", Decisions: 3, Approved: 2, Denied: 1, ApprovalRate: 2.0 / 3, MedianWaitMS: 8000, MedianShownMS: 4200, CanaryCaught: 1},
		{Reviewer: "carol", Decisions: 2, Approved: 2, ApprovalRate: 1, MedianWaitMS: 35000, MedianShownMS: 5750, CanaryMissed: 1},
	}
	if !slices.Equal(sum.Reviewers, want) {
		t.Errorf("reviewers\n got %+v\nwant %+v", sum.Reviewers, want)
	}
	var billing *GroupStats
	for i := range sum.Agents {
		if sum.Agents[i].Name == "billing-bot" {
			billing = &sum.Agents[i]
		}
	}
	if billing == nil || billing.Calls != 4 || billing.Approved != 2 || billing.Denied != 1 || billing.Expired != 1 {
		t.Fatalf("billing-bot: %+v", billing)
	}
	if len(billing.TopFactors) == 0 || billing.TopFactors[0] != (FactorCount{Name: "destructive_sql", Count: 3}) {
		t.Errorf("billing-bot top factors %+v, want destructive_sql×3 first", billing.TopFactors)
	}
	if got := ids(sum.Expired); !slices.Equal(got, []string{"x1"}) {
		t.Errorf("expired %v, want [x1]", got)
	}
	var b strings.Builder
	if err := sum.Render(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"REVIEWER", "bob", "67%", "billing-bot", "destructive_sql×3", "EXPIRED CALLS (1)", "x1"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
}

// TestSearchIndexCatchUp: events appended by a writer without FTS5 (here:
// straight SQL, as such a binary leaves them) are found by search at once
// through the LIKE tail, and indexed when an FTS5 writer opens the log.
func TestSearchIndexCatchUp(t *testing.T) {
	path := newFixture(t, fixtureBase)
	if r := openRO(t, path); !r.FullText() {
		testenv.Missing(t, "FTS5 not compiled in (go test -tags sqlite_fts5 runs this)")
	}
	tamper(t, path, func(db *sql.DB) error {
		var seq int64
		var prev string
		if err := db.QueryRow("SELECT seq, hash FROM event_log ORDER BY seq DESC LIMIT 1").Scan(&seq, &prev); err != nil {
			return err
		}
		payload, _ := airlock.CanonicalJSON(airlock.DecisionRecord{
			Call:     airlock.ToolCall{ID: "late1", Agent: "a", Tool: "search_web", Arguments: map[string]any{"query": "okapi sightings"}},
			Decision: airlock.Decision{CallID: "late1", Verdict: airlock.VerdictApproved, DecidedBy: "policy"}})
		row := Row{Seq: seq + 1, TS: fixtureBase.Add(time.Hour).Format(TimeLayout), Kind: "decision", CallID: "late1", Payload: string(payload), PrevHash: prev}
		row.Hash = HashRow(&row)
		_, err := db.Exec("INSERT INTO event_log VALUES (?, ?, ?, ?, ?, ?, ?)", row.Seq, row.TS, row.Kind, row.CallID, row.Payload, row.PrevHash, row.Hash)
		return err
	})
	search := func() []string {
		r := openRO(t, path)
		ds, err := r.Decisions(t.Context(), Filter{Search: "okapi"})
		if err != nil {
			t.Fatal(err)
		}
		return ids(ds)
	}
	if got := search(); !slices.Equal(got, []string{"late1"}) {
		t.Fatalf("before catch-up: got %v, want [late1] through the LIKE tail", got)
	}
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close(t.Context())
	r := openRO(t, path)
	var through, indexed int64
	r.DB().QueryRow("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_through'").Scan(&through)
	r.DB().QueryRow("SELECT count(*) FROM search WHERE search MATCH 'okapi'").Scan(&indexed)
	if head, _, _ := r.Head(t.Context()); through != head || indexed != 1 {
		t.Fatalf("after Open: fts_through %d (head %d), %d indexed rows for okapi; want the index caught up", through, head, indexed)
	}
	if got := search(); !slices.Equal(got, []string{"late1"}) {
		t.Fatalf("after catch-up: got %v", got)
	}
	if rep := verifyPath(t, path); !rep.OK() {
		t.Fatal(rep.Problem.Message)
	}
}

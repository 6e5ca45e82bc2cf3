package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock/airlock/internal/sanitize"
)

// ReviewerStats summarises one reviewer's decisions.
type ReviewerStats struct {
	Reviewer     string  `json:"reviewer"`
	Decisions    int     `json:"decisions"`
	Approved     int     `json:"approved"`
	Denied       int     `json:"denied"`
	ApprovalRate float64 `json:"approval_rate"`
	// MedianWaitMS is the median time calls waited for a decision;
	// MedianShownMS the median time on the reviewer's screen.
	MedianWaitMS  int64 `json:"median_wait_ms"`
	MedianShownMS int64 `json:"median_shown_ms"`
	CanaryCaught  int   `json:"canary_caught"`
	CanaryMissed  int   `json:"canary_missed"`
}

// FactorCount is how often a risk factor appeared.
type FactorCount struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// GroupStats summarises the calls of one agent or tool.
type GroupStats struct {
	Name        string        `json:"name"`
	Calls       int           `json:"calls"`
	Approved    int           `json:"approved"`
	Denied      int           `json:"denied"`
	RateLimited int           `json:"rate_limited"`
	Expired     int           `json:"expired"`
	Rejected    int           `json:"rejected"`
	TopFactors  []FactorCount `json:"top_factors"`
}

// Summary is the auditor's report over a period.
type Summary struct {
	Since     string          `json:"since,omitempty"`
	Decisions int             `json:"decisions"`
	Reviewers []ReviewerStats `json:"reviewers"`
	Agents    []GroupStats    `json:"agents"`
	Tools     []GroupStats    `json:"tools"`
	Expired   []Decision      `json:"expired"`
}

// Report summarises decisions with ts >= since (all when zero): per
// reviewer, per agent, per tool, and the calls that expired unanswered.
func (r *Reader) Report(ctx context.Context, since time.Time) (*Summary, error) {
	sum := &Summary{}
	from := ""
	if !since.IsZero() {
		from = since.UTC().Format(TimeLayout)
		sum.Since = from
	}
	if err := r.reportReviewers(ctx, from, sum); err != nil {
		return nil, err
	}
	agents, n, err := r.reportGroups(ctx, from, "agent")
	if err != nil {
		return nil, err
	}
	sum.Agents, sum.Decisions = agents, n
	if sum.Tools, _, err = r.reportGroups(ctx, from, "tool"); err != nil {
		return nil, err
	}
	sum.Expired, err = r.Decisions(ctx, Filter{Since: since, Verdict: "expired"})
	if err != nil {
		return nil, err
	}
	return sum, nil
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (r *Reader) reportReviewers(ctx context.Context, from string, sum *Summary) error {
	rows, err := r.db.QueryContext(ctx, `SELECT coalesce(reviewer, substr(decided_by, 10)), verdict, waited_ms, coalesce(shown_ms, 0)
		FROM decisions WHERE decided_by LIKE 'reviewer:%' AND ts >= ?`, from)
	if err != nil {
		return fmt.Errorf("audit: report: %w", err)
	}
	defer rows.Close()
	type acc struct {
		st          ReviewerStats
		wait, shown []int64
	}
	by := map[string]*acc{}
	get := func(name string) *acc {
		a := by[name]
		if a == nil {
			a = &acc{st: ReviewerStats{Reviewer: name}}
			by[name] = a
		}
		return a
	}
	for rows.Next() {
		var name, verdict sql.NullString
		var wait, shown sql.NullFloat64
		if err := rows.Scan(&name, &verdict, &wait, &shown); err != nil {
			return fmt.Errorf("audit: report: %w", err)
		}
		a := get(name.String)
		a.st.Decisions++
		switch verdict.String {
		case "approved":
			a.st.Approved++
		case "denied":
			a.st.Denied++
		}
		if wait.Float64 > 0 {
			a.wait = append(a.wait, int64(wait.Float64))
		}
		if shown.Float64 > 0 {
			a.shown = append(a.shown, int64(shown.Float64))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: report: %w", err)
	}
	// Canary events (airlock.CanaryRecord): {"reviewer": …, "outcome":
	// "caught"|"missed"|"expired"}; an expired check was seen by nobody.
	crows, err := r.db.QueryContext(ctx, `SELECT coalesce(json_extract(payload,'$.reviewer'), json_extract(payload,'$.review.reviewer'), ''),
		coalesce(json_extract(payload,'$.outcome') = 'caught', json_extract(payload,'$.caught'), 0)
		FROM event_log WHERE kind = 'canary' AND ts >= ? AND coalesce(json_extract(payload,'$.outcome'), '') != 'expired'`, from)
	if err != nil {
		return fmt.Errorf("audit: report: %w", err)
	}
	defer crows.Close()
	for crows.Next() {
		var name string
		var caught int
		if err := crows.Scan(&name, &caught); err != nil {
			return fmt.Errorf("audit: report: %w", err)
		}
		a := get(name)
		if caught != 0 {
			a.st.CanaryCaught++
		} else {
			a.st.CanaryMissed++
		}
	}
	if err := crows.Err(); err != nil {
		return fmt.Errorf("audit: report: %w", err)
	}
	for _, a := range by {
		if a.st.Decisions > 0 {
			a.st.ApprovalRate = float64(a.st.Approved) / float64(a.st.Decisions)
		}
		a.st.MedianWaitMS, a.st.MedianShownMS = median(a.wait), median(a.shown)
		sum.Reviewers = append(sum.Reviewers, a.st)
	}
	sort.Slice(sum.Reviewers, func(i, j int) bool { return sum.Reviewers[i].Reviewer < sum.Reviewers[j].Reviewer })
	return nil
}

// reportGroups counts verdicts and top risk factors per agent or tool.
func (r *Reader) reportGroups(ctx context.Context, from, col string) ([]GroupStats, int, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT coalesce(`+col+`, ''), coalesce(verdict, ''), count(*) FROM decisions WHERE ts >= ? GROUP BY 1, 2`, from)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: report: %w", err)
	}
	defer rows.Close()
	by := map[string]*GroupStats{}
	total := 0
	for rows.Next() {
		var name, verdict string
		var n int
		if err := rows.Scan(&name, &verdict, &n); err != nil {
			return nil, 0, fmt.Errorf("audit: report: %w", err)
		}
		g := by[name]
		if g == nil {
			g = &GroupStats{Name: name}
			by[name] = g
		}
		g.Calls += n
		total += n
		switch verdict {
		case "approved":
			g.Approved += n
		case "denied":
			g.Denied += n
		case "rate_limited":
			g.RateLimited += n
		case "expired":
			g.Expired += n
		case "rejected":
			g.Rejected += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("audit: report: %w", err)
	}
	frows, err := r.db.QueryContext(ctx, `SELECT coalesce(d.`+col+`, ''), coalesce(json_extract(f.value, '$.name'), ''), count(*)
		FROM decisions d, json_each(d.payload, '$.decision.risk.factors') f WHERE d.ts >= ? GROUP BY 1, 2`, from)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: report: %w", err)
	}
	defer frows.Close()
	for frows.Next() {
		var name, factor string
		var n int
		if err := frows.Scan(&name, &factor, &n); err != nil {
			return nil, 0, fmt.Errorf("audit: report: %w", err)
		}
		if g := by[name]; g != nil {
			g.TopFactors = append(g.TopFactors, FactorCount{Name: factor, Count: n})
		}
	}
	if err := frows.Err(); err != nil {
		return nil, 0, fmt.Errorf("audit: report: %w", err)
	}
	out := make([]GroupStats, 0, len(by))
	for _, g := range by {
		sort.Slice(g.TopFactors, func(i, j int) bool {
			if g.TopFactors[i].Count != g.TopFactors[j].Count {
				return g.TopFactors[i].Count > g.TopFactors[j].Count
			}
			return g.TopFactors[i].Name < g.TopFactors[j].Name
		})
		if len(g.TopFactors) > 3 {
			g.TopFactors = g.TopFactors[:3]
		}
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Calls != out[j].Calls {
			return out[i].Calls > out[j].Calls
		}
		return out[i].Name < out[j].Name
	})
	return out, total, nil
}

// Render writes the report as aligned text tables.
func (s *Summary) Render(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	period := "all time"
	if s.Since != "" {
		period = "since " + s.Since
	}
	p("audit report, %s: %d decisions\n", period, s.Decisions)
	p("\nREVIEWER\tDECISIONS\tAPPROVED\tDENIED\tAPPROVAL\tMEDIAN WAIT\tMEDIAN ON SCREEN\tCANARIES CAUGHT\tMISSED\n")
	for _, r := range s.Reviewers {
		p("%s\t%d\t%d\t%d\t%.0f%%\t%s\t%s\t%d\t%d\n", cell(r.Reviewer), r.Decisions, r.Approved, r.Denied,
			100*r.ApprovalRate, ms(r.MedianWaitMS), ms(r.MedianShownMS), r.CanaryCaught, r.CanaryMissed)
	}
	for _, g := range []struct {
		title string
		rows  []GroupStats
	}{{"AGENT", s.Agents}, {"TOOL", s.Tools}} {
		p("\n%s\tCALLS\tAPPROVED\tDENIED\tRATE LIMITED\tEXPIRED\tREJECTED\tTOP RISK FACTORS\n", g.title)
		for _, r := range g.rows {
			var f []string
			for _, fc := range r.TopFactors {
				f = append(f, fmt.Sprintf("%s×%d", fc.Name, fc.Count))
			}
			p("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", cell(r.Name), r.Calls, r.Approved, r.Denied, r.RateLimited, r.Expired, r.Rejected, cell(strings.Join(f, ", ")))
		}
	}
	p("\nEXPIRED CALLS (%d)\n", len(s.Expired))
	if len(s.Expired) > 0 {
		p("SEQ\tDECIDED AT\tCALL\tAGENT\tTOOL\tRISK\n")
		for _, d := range s.Expired {
			p("%d\t%s\t%s\t%s\t%s\t%d\n", d.Seq, d.DecidedAt, cell(d.CallID), cell(d.Agent), cell(d.Tool), d.RiskScore)
		}
	}
	return tw.Flush()
}

// cell makes untrusted text safe for one table cell.
func cell(s string) string {
	s = sanitize.Line(s)
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, "\t", " ")
}

// WriteJSON writes the report as one JSON document.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(s)
}

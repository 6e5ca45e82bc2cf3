package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Filter selects decisions. Zero fields do not filter.
type Filter struct {
	Since, Until time.Time // on the event timestamp: Since <= ts < Until
	Agent        string
	User         string
	Org          string
	Session      string
	Tool         string
	Verdict      string
	DecidedBy    string // exact: policy, reviewer:bob, grant:g1, ratelimit
	Reviewer     string // the reviewer's name (decided_by reviewer:NAME or the review's reviewer)
	MinRisk      int    // risk_score >= MinRisk when > 0
	Search       string // words that must all appear in the arguments or reasons
	AfterSeq     int64  // paging: only seq > AfterSeq (or < BeforeSeq when Desc)
	BeforeSeq    int64
	Desc         bool // newest first
	Limit        int  // 0: no limit
	Offset       int
}

// Decision is one row of the decisions view.
type Decision struct {
	CallID    string          `json:"call_id"`
	Seq       int64           `json:"seq"`
	DecidedAt string          `json:"decided_at"`
	Agent     string          `json:"agent"`
	User      string          `json:"user"`
	Org       string          `json:"org"`
	Session   string          `json:"session"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
	Verdict   string          `json:"verdict"`
	DecidedBy string          `json:"decided_by"`
	Tier      string          `json:"tier"`
	RiskScore int             `json:"risk_score"`
	Reason    string          `json:"reason"`
}

// DecisionColumns are the decisions view's contract columns, in order.
var DecisionColumns = []string{"call_id", "seq", "decided_at", "agent", "user", "org", "session", "tool", "arguments", "verdict", "decided_by", "tier", "risk_score", "reason"}

// Decisions returns the decisions matching f, in chain order (or newest
// first with f.Desc).
func (r *Reader) Decisions(ctx context.Context, f Filter) ([]Decision, error) {
	var out []Decision
	err := r.EachDecision(ctx, f, func(d *Decision) error {
		out = append(out, *d)
		return nil
	})
	return out, err
}

// EachDecision streams the decisions matching f to fn.
func (r *Reader) EachDecision(ctx context.Context, f Filter, fn func(*Decision) error) error {
	q, args, err := r.decisionQuery(ctx, f)
	if err != nil {
		return err
	}
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("audit: query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d Decision
		var callID, decidedAt, agent, user, org, session, tool, args, verdict, by, tier, reason sql.NullString
		var risk sql.NullFloat64
		if err := rows.Scan(&callID, &d.Seq, &decidedAt, &agent, &user, &org, &session, &tool, &args, &verdict, &by, &tier, &risk, &reason); err != nil {
			return fmt.Errorf("audit: query: %w", err)
		}
		d.CallID, d.DecidedAt, d.Agent, d.User, d.Org, d.Session, d.Tool = callID.String, decidedAt.String, agent.String, user.String, org.String, session.String, tool.String
		d.Verdict, d.DecidedBy, d.Tier, d.Reason = verdict.String, by.String, tier.String, reason.String
		d.RiskScore = int(risk.Float64)
		if args.Valid && json.Valid([]byte(args.String)) {
			d.Arguments = json.RawMessage(args.String)
		} else {
			d.Arguments = json.RawMessage("null")
		}
		if err := fn(&d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: query: %w", err)
	}
	return nil
}

// Column expressions of the decisions view, evaluated straight on
// event_log so that the query can steer SQLite's plan (see decisionQuery).
var decisionExpr = map[string]string{
	"agent":      "json_extract(payload,'$.call.agent')",
	"user":       "json_extract(payload,'$.call.user')",
	"org":        "json_extract(payload,'$.call.org')",
	"session":    "json_extract(payload,'$.call.session')",
	"tool":       "json_extract(payload,'$.call.tool')",
	"verdict":    "json_extract(payload,'$.decision.verdict')",
	"decided_by": "json_extract(payload,'$.decision.decided_by')",
	"reviewer":   "json_extract(payload,'$.review.reviewer')",
	"risk_score": "coalesce(json_extract(payload,'$.decision.risk.score'),0)",
}

const decisionSelect = `SELECT call_id, seq,
  strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(nullif(json_extract(payload,'$.decision.decided_at'),'0001-01-01T00:00:00Z'), ts)),
  json_extract(payload,'$.call.agent'), json_extract(payload,'$.call.user'), json_extract(payload,'$.call.org'),
  json_extract(payload,'$.call.session'), json_extract(payload,'$.call.tool'), json_extract(payload,'$.call.arguments'),
  json_extract(payload,'$.decision.verdict'), json_extract(payload,'$.decision.decided_by'), json_extract(payload,'$.decision.tier'),
  coalesce(json_extract(payload,'$.decision.risk.score'),0), json_extract(payload,'$.decision.reason')
FROM event_log`

// decisionQuery builds the SQL for f. It selects the same columns as the
// decisions view but from event_log, so that it can choose the plan: with a
// time filter it uses the (kind, ts) index; without one it walks the table in
// seq order (kind unindexed with +kind) and stops at the limit instead of
// sorting every decision.
func (r *Reader) decisionQuery(ctx context.Context, f Filter) (string, []any, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.Since.IsZero() && f.Until.IsZero() {
		add("+kind = 'decision'")
	} else {
		add("kind = 'decision'")
	}
	if !f.Since.IsZero() {
		add("ts >= ?", f.Since.UTC().Format(TimeLayout))
	}
	if !f.Until.IsZero() {
		add("ts < ?", f.Until.UTC().Format(TimeLayout))
	}
	for _, c := range []struct{ col, v string }{
		{"agent", f.Agent}, {"user", f.User}, {"org", f.Org}, {"session", f.Session},
		{"tool", f.Tool}, {"verdict", f.Verdict}, {"decided_by", f.DecidedBy},
	} {
		if c.v != "" {
			add(decisionExpr[c.col]+" = ?", c.v)
		}
	}
	if f.Reviewer != "" {
		add("("+decisionExpr["decided_by"]+" = ? OR "+decisionExpr["reviewer"]+" = ?)", "reviewer:"+f.Reviewer, f.Reviewer)
	}
	if f.MinRisk > 0 {
		add(decisionExpr["risk_score"]+" >= ?", f.MinRisk)
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if f.BeforeSeq > 0 {
		add("seq < ?", f.BeforeSeq)
	}
	if words := strings.Fields(f.Search); len(words) > 0 {
		cond, a, err := r.searchCond(ctx, words)
		if err != nil {
			return "", nil, err
		}
		add(cond, a...)
	}
	var b strings.Builder
	b.WriteString(decisionSelect)
	b.WriteString(" WHERE ")
	b.WriteString(strings.Join(where, " AND "))
	if f.Desc {
		b.WriteString(" ORDER BY seq DESC")
	} else {
		b.WriteString(" ORDER BY seq")
	}
	if f.Limit > 0 || f.Offset > 0 {
		limit := f.Limit
		if limit <= 0 {
			limit = -1
		}
		b.WriteString(" LIMIT ? OFFSET ?")
		args = append(args, limit, f.Offset)
	}
	return b.String(), args, nil
}

// jsonEscaped reports whether canonical JSON writes r escaped.
func jsonEscaped(r rune) bool {
	return r < 0x20 || r == '"' || r == '\\' || r == 0x2028 || r == 0x2029 || r == 0xfffd
}

// searchCond matches decisions whose arguments or reasons contain every
// word: through the FTS5 index (word prefixes) for the seqs it covers, and
// with LIKE (substrings) for the rest or when FTS5 is unavailable. The LIKE
// path first tests the raw payload (cheap, a superset), then the fields.
func (r *Reader) searchCond(ctx context.Context, words []string) (string, []any, error) {
	var likes []string
	var args []any
	for _, w := range words {
		if strings.ContainsFunc(w, jsonEscaped) {
			// The payload holds this word escaped; only the fields can tell.
			likes = append(likes, "("+ftsText+") LIKE ? ESCAPE '\\'")
			args = append(args, likePattern(w))
			continue
		}
		likes = append(likes, "payload LIKE ? ESCAPE '\\' AND ("+ftsText+") LIKE ? ESCAPE '\\'")
		args = append(args, likePattern(w), likePattern(w))
	}
	like := strings.Join(likes, " AND ")
	if !r.fts {
		return "(" + like + ")", args, nil
	}
	var through, head int64
	err := r.db.QueryRowContext(ctx, "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key='fts_through'),0), coalesce((SELECT max(seq) FROM event_log),0)").Scan(&through, &head)
	if err != nil {
		return "", nil, fmt.Errorf("audit: search: %w", err)
	}
	var match []string
	for _, w := range words {
		match = append(match, `"`+strings.ReplaceAll(w, `"`, `""`)+`"*`)
	}
	q := strings.Join(match, " ")
	if through >= head {
		return "seq IN (SELECT rowid FROM search WHERE search MATCH ?)", []any{q}, nil
	}
	cond := "(seq IN (SELECT rowid FROM search WHERE search MATCH ?) OR (seq > ? AND " + like + "))"
	return cond, append([]any{q, through}, args...), nil
}

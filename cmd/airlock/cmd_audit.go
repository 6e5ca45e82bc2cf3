package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock/airlock"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/sanitize"
)

func init() {
	register(command{Name: "audit", Summary: "the auditor's tools: query, show, verify, export, tail, report", Run: runAudit})
}

const auditUsage = `usage: airlock audit SUBCOMMAND [flags]

subcommands:
  query   [filters] [--format table|json|csv]   decisions matching filters
  show    CALL_ID                               the whole story of one call
  verify  [--checkpoints FILE]                  recompute the hash chain; exit 1 on any problem
  export  [--after SEQ]                         every event as JSON Lines with its hashes
  tail    [--follow=false] [-n N]               print events as they are appended
  report  [--since D]                           per reviewer, agent and tool; expired calls

Every subcommand reads DIR/audit.db read-only: --data DIR (default $AIRLOCK_DATA
or ./airlock-data) or --db FILE. Flags may come before or after arguments.
`

func runAudit(ctx context.Context, e env) error {
	if len(e.Args) == 0 {
		fmt.Fprint(e.Stderr, auditUsage)
		return silentExit(2)
	}
	sub, args := e.Args[0], e.Args[1:]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(e.Stdout, auditUsage)
		return nil
	case "query":
		return auditQuery(ctx, e, args)
	case "show":
		return auditShow(ctx, e, args)
	case "verify":
		return auditVerify(ctx, e, args)
	case "export":
		return auditExport(ctx, e, args)
	case "tail":
		return auditTail(ctx, e, args)
	case "report":
		return auditReport(ctx, e, args)
	}
	return usageErr("audit: unknown subcommand %q (query, show, verify, export, tail, report)", sub)
}

// auditSource is the --data/--db pair every subcommand takes.
type auditSource struct{ data, db string }

func (s *auditSource) register(fs *flag.FlagSet) {
	fs.StringVar(&s.data, "data", dataDefault(), "data directory holding audit.db")
	fs.StringVar(&s.db, "db", "", "audit database file (instead of --data)")
}

func (s *auditSource) path() string {
	if s.db != "" {
		return s.db
	}
	return audit.PathIn(s.data)
}

func (s *auditSource) open() (*audit.Reader, error) {
	return audit.OpenReadOnly(s.path())
}

// auditTime parses a --since/--until value: a duration before now (90m,
// 24h, 7d) or a timestamp (RFC 3339, or 2006-01-02[T15:04:05] in UTC).
func auditTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.ParseFloat(n, 64); err == nil && days >= 0 {
			return now.Add(-time.Duration(days * float64(24*time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a duration (24h, 7d) or a timestamp (2026-12-04T10:00:00Z): %q", s)
}

func auditQuery(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "audit query", "[filters] [--format table|json|csv] [--data DIR | --db FILE]")
	var src auditSource
	src.register(fs)
	var f audit.Filter
	var since, until, format string
	fs.StringVar(&since, "since", "", "only decisions at or after this time: a duration ago (24h, 7d) or a timestamp")
	fs.StringVar(&until, "until", "", "only decisions before this time: a duration ago or a timestamp")
	fs.StringVar(&f.Agent, "agent", "", "only this agent")
	fs.StringVar(&f.User, "user", "", "only this user")
	fs.StringVar(&f.Org, "org", "", "only this org")
	fs.StringVar(&f.Session, "session", "", "only this session")
	fs.StringVar(&f.Tool, "tool", "", "only this tool")
	fs.StringVar(&f.Verdict, "verdict", "", "only this verdict: approved, denied, expired, rate_limited, rejected")
	fs.StringVar(&f.DecidedBy, "decided-by", "", "only decisions by: policy, reviewer:NAME, grant:ID, ratelimit")
	fs.StringVar(&f.Reviewer, "reviewer", "", "only decisions by this reviewer")
	fs.IntVar(&f.MinRisk, "min-risk", 0, "only risk scores at or above this")
	fs.StringVar(&f.Search, "search", "", "words that must all appear in the arguments or reasons (full text)")
	fs.IntVar(&f.Limit, "limit", 1000, "at most this many rows (0: all)")
	fs.Int64Var(&f.AfterSeq, "after", 0, "paging: only decisions with seq above this")
	fs.IntVar(&f.Offset, "offset", 0, "skip this many rows")
	fs.BoolVar(&f.Desc, "reverse", false, "newest first")
	fs.StringVar(&format, "format", "table", "output: table, json (JSON Lines) or csv")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("audit query: unexpected argument %q", pos[0])
	}
	now := time.Now()
	if f.Since, err = auditTime(since, now); err != nil {
		return usageErr("audit query: --since: %v", err)
	}
	if f.Until, err = auditTime(until, now); err != nil {
		return usageErr("audit query: --until: %v", err)
	}
	if f.Verdict != "" && !airlock.Verdict(f.Verdict).Valid() {
		return usageErr("audit query: --verdict must be approved, denied, expired, rate_limited or rejected, not %q", f.Verdict)
	}
	if f.Limit < 0 || f.Offset < 0 {
		return usageErr("audit query: --limit and --offset must not be negative")
	}
	var out auditRowWriter
	switch format {
	case "table":
		out = newAuditTable(e.Stdout)
	case "json":
		out = newAuditJSON(e.Stdout)
	case "csv":
		out = newAuditCSV(e.Stdout)
	default:
		return usageErr("audit query: --format must be table, json or csv, not %q", format)
	}
	r, err := src.open()
	if err != nil {
		return err
	}
	defer r.Close()
	n := 0
	var last int64
	err = r.EachDecision(ctx, f, func(d *audit.Decision) error {
		n++
		last = d.Seq
		return out.write(d)
	})
	if ferr := out.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if f.Limit > 0 && n == f.Limit && !f.Desc {
		fmt.Fprintf(e.Stderr, "airlock audit query: %d rows shown; more with --after %d\n", n, last)
	}
	return nil
}

type auditRowWriter interface {
	write(*audit.Decision) error
	flush() error
}

// auditTable is the aligned, sanitised table for terminals.
type auditTable struct {
	tw *tabwriter.Writer
	n  int
}

func newAuditTable(w io.Writer) *auditTable {
	return &auditTable{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func auditCell(s string, max int) string {
	if s == "" {
		return "-"
	}
	s = sanitize.Line(s)
	if max > 0 && len([]rune(s)) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return strings.ReplaceAll(s, "\t", " ")
}

func (t *auditTable) write(d *audit.Decision) error {
	if t.n == 0 {
		fmt.Fprintln(t.tw, "SEQ\tDECIDED AT\tCALL\tAGENT\tUSER\tTOOL\tVERDICT\tDECIDED BY\tRISK\tARGUMENTS\tREASON")
	}
	t.n++
	_, err := fmt.Fprintf(t.tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.DecidedAt,
		auditCell(d.CallID, 28), auditCell(d.Agent, 20), auditCell(d.User, 16), auditCell(d.Tool, 20),
		d.Verdict, auditCell(d.DecidedBy, 20), d.RiskScore, auditCell(string(d.Arguments), 40), auditCell(d.Reason, 50))
	return err
}

func (t *auditTable) flush() error {
	if t.n == 0 {
		fmt.Fprintln(t.tw, "no decisions match")
	}
	return t.tw.Flush()
}

// auditJSON writes JSON Lines, one decision per line.
type auditJSON struct {
	enc *json.Encoder
	bw  *bufferedWriter
}

type bufferedWriter struct {
	w   io.Writer
	buf []byte
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		return len(p), b.Flush()
	}
	return len(p), nil
}

func (b *bufferedWriter) Flush() error {
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

func newAuditJSON(w io.Writer) *auditJSON {
	bw := &bufferedWriter{w: w}
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &auditJSON{enc: enc, bw: bw}
}

func (j *auditJSON) write(d *audit.Decision) error { return j.enc.Encode(d) }
func (j *auditJSON) flush() error                  { return j.bw.Flush() }

// auditCSV writes a header and one row per decision; cells are sanitised
// (newlines kept, quoted) so the file is safe to cat.
type auditCSV struct {
	w *csv.Writer
	n int
}

func newAuditCSV(w io.Writer) *auditCSV { return &auditCSV{w: csv.NewWriter(w)} }

func (c *auditCSV) write(d *audit.Decision) error {
	if c.n == 0 {
		if err := c.w.Write(audit.DecisionColumns); err != nil {
			return err
		}
	}
	c.n++
	return c.w.Write([]string{sanitize.Text(d.CallID), strconv.FormatInt(d.Seq, 10), d.DecidedAt, sanitize.Text(d.Agent),
		sanitize.Text(d.User), sanitize.Text(d.Org), sanitize.Text(d.Session), sanitize.Text(d.Tool), sanitize.Text(string(d.Arguments)),
		d.Verdict, sanitize.Text(d.DecidedBy), d.Tier, strconv.Itoa(d.RiskScore), sanitize.Text(d.Reason)})
}

func (c *auditCSV) flush() error {
	if c.n == 0 {
		if err := c.w.Write(audit.DecisionColumns); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

func auditShow(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "audit show", "CALL_ID [--format text|json] [--data DIR | --db FILE]")
	var src auditSource
	src.register(fs)
	format := fs.String("format", "text", "output: text or json (the call's events as export lines)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("audit show: want exactly one CALL_ID")
	}
	if *format != "text" && *format != "json" {
		return usageErr("audit show: --format must be text or json, not %q", *format)
	}
	r, err := src.open()
	if err != nil {
		return err
	}
	defer r.Close()
	st, err := r.Story(ctx, pos[0])
	if err != nil {
		return err
	}
	if *format == "json" {
		var line []byte
		for i := range st.Events {
			line = append(audit.AppendExportLine(line[:0], &st.Events[i]), '\n')
			if _, err := e.Stdout.Write(line); err != nil {
				return err
			}
		}
		return nil
	}
	return st.Render(e.Stdout)
}

func auditVerify(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "audit verify", "[--checkpoints FILE] [--data DIR | --db FILE]")
	var src auditSource
	src.register(fs)
	var extra auditList
	fs.Var(&extra, "checkpoints", "also compare with the checkpoints in this file (JSON lines {seq, hash}); repeatable")
	sigs := fs.Bool("signatures", false, "also check every reviewer's verdict signature against the policy's reviewers (needs --policy)")
	policyFile := fs.String("policy", os.Getenv("AIRLOCK_POLICY"), "with --signatures: the policy whose auth: section names the reviewers' keys")
	natsURL := fs.String("nats", "", "also compare with the chain head the broker keeps in JetStream (airlock_state)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("audit verify: unexpected argument %q", pos[0])
	}
	// Checkpoints first: they never run ahead of what is committed.
	cps, err := audit.ReadCheckpoints(audit.CheckpointPath(src.path()))
	if err != nil {
		return err
	}
	for _, f := range extra {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		more, err := audit.ReadCheckpoints(f)
		if err != nil {
			return err
		}
		cps = append(cps, more...)
	}
	if *natsURL != "" {
		cp, err := kvCheckpoint(ctx, *natsURL)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if cp != nil {
			cps = append(cps, *cp)
		}
	}
	r, err := src.open()
	if err != nil {
		return err
	}
	defer r.Close()
	rep, err := audit.Verify(ctx, r, cps)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("audit verify: FAILED after %d good events: %s", rep.Events, rep.Problem.Message)
	}
	cp := "no checkpoints found"
	if len(cps) > 0 {
		cp = fmt.Sprintf("%d of %d checkpoints match", rep.Matched, rep.Checkpoints)
	}
	fmt.Fprintf(e.Stdout, "ok: %d events, head seq %d hash %s (%s)\n", rep.Events, rep.HeadSeq, rep.HeadHash, cp)
	if *sigs {
		if *policyFile == "" {
			return usageErr("audit verify --signatures: --policy FILE is required")
		}
		pol, err := policy.Load(*policyFile)
		if err != nil {
			return err
		}
		keys := auth.ReviewerKeys(pol)
		if len(keys) == 0 {
			return fmt.Errorf("audit verify --signatures: the policy names no reviewer keys (auth: reviewers)")
		}
		n, err := auth.VerifyAuditedReviews(r.DB(), keys)
		if err != nil {
			return fmt.Errorf("audit verify --signatures: FAILED after %d good verdicts: %w", n, err)
		}
		fmt.Fprintf(e.Stdout, "ok: %d reviewer verdicts carry valid signatures by the reviewers the policy names\n", n)
	}
	return nil
}

// kvCheckpoint reads the chain head the broker records in JetStream.
func kvCheckpoint(ctx context.Context, url string) (*audit.Checkpoint, error) {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, "airlock_state")
	if err != nil {
		return nil, err
	}
	ent, err := kv.Get(ctx, checkpointKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cp audit.Checkpoint
	if err := json.Unmarshal(ent.Value(), &cp); err != nil {
		return nil, err
	}
	cp.Source = "jetstream airlock_state/" + checkpointKey
	return &cp, nil
}

// checkpointKey is where the broker records the audit chain's head.
const checkpointKey = "audit.checkpoint"

// auditList is a repeatable string flag.
type auditList []string

func (l *auditList) String() string     { return strings.Join(*l, ",") }
func (l *auditList) Set(s string) error { *l = append(*l, s); return nil }

func auditExport(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "audit export", "[--after SEQ] [--data DIR | --db FILE]")
	var src auditSource
	src.register(fs)
	after := fs.Int64("after", 0, "only events with seq above this")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("audit export: unexpected argument %q", pos[0])
	}
	r, err := src.open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = r.Export(ctx, e.Stdout, *after)
	return err
}

func auditTail(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "audit tail", "[--follow=false] [-n N] [--format text|json] [--data DIR | --db FILE]")
	var src auditSource
	src.register(fs)
	follow := fs.Bool("follow", true, "keep printing new events until interrupted")
	n := fs.Int("n", 10, "start with the last N events")
	format := fs.String("format", "text", "output: text or json (export lines)")
	interval := fs.Duration("interval", 250*time.Millisecond, "how often to look for new events")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("audit tail: unexpected argument %q", pos[0])
	}
	if *format != "text" && *format != "json" {
		return usageErr("audit tail: --format must be text or json, not %q", *format)
	}
	if *interval <= 0 {
		return usageErr("audit tail: --interval must be positive")
	}
	r, err := src.open()
	if err != nil {
		return err
	}
	defer r.Close()
	head, _, err := r.Head(ctx)
	if err != nil {
		return err
	}
	after := max(head-int64(*n), 0)
	var line []byte
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		rows, err := r.EventsAfter(ctx, after, 1000)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := range rows {
			if *format == "json" {
				line = append(audit.AppendExportLine(line[:0], &rows[i]), '\n')
			} else {
				line = append(append(line[:0], audit.Summarize(&rows[i])...), '\n')
			}
			if _, err := e.Stdout.Write(line); err != nil {
				return err
			}
			after = rows[i].Seq
		}
		if len(rows) == 1000 {
			continue
		}
		if !*follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func auditReport(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "audit report", "[--since D] [--format text|json] [--data DIR | --db FILE]")
	var src auditSource
	src.register(fs)
	since := fs.String("since", "", "only decisions at or after this time: a duration ago (24h, 7d) or a timestamp")
	format := fs.String("format", "text", "output: text or json")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("audit report: unexpected argument %q", pos[0])
	}
	from, err := auditTime(*since, time.Now())
	if err != nil {
		return usageErr("audit report: --since: %v", err)
	}
	if *format != "text" && *format != "json" {
		return usageErr("audit report: --format must be text or json, not %q", *format)
	}
	r, err := src.open()
	if err != nil {
		return err
	}
	defer r.Close()
	sum, err := r.Report(ctx, from)
	if err != nil {
		return err
	}
	if *format == "json" {
		return sum.WriteJSON(e.Stdout)
	}
	return sum.Render(e.Stdout)
}

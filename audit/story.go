package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/sanitize"
)

// Story is everything the log holds about one call, in chain order.
type Story struct {
	CallID string
	Events []Row
}

// ErrNoSuchCall is returned by Story for a call id with no events.
var ErrNoSuchCall = fmt.Errorf("audit: no events for that call")

// Story returns every event of callID.
func (r *Reader) Story(ctx context.Context, callID string) (*Story, error) {
	evs, err := r.CallEvents(ctx, callID)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%w %q", ErrNoSuchCall, callID)
	}
	return &Story{CallID: callID, Events: evs}, nil
}

// storyWriter writes indented, sanitised lines.
type storyWriter struct {
	w   io.Writer
	err error
}

func (s *storyWriter) printf(format string, a ...any) {
	if s.err != nil {
		return
	}
	_, s.err = fmt.Fprintf(s.w, format, a...)
}

// field prints "  label  value" with untrusted value sanitised to one line.
func (s *storyWriter) field(indent, label, value string) {
	s.printf("%s%-11s %s\n", indent, label, sanitize.Line(value))
}

// block prints untrusted multi-line text, each line prefixed.
func (s *storyWriter) block(prefix, text string) {
	text = strings.TrimRight(text, "\n")
	for _, line := range strings.Split(text, "\n") {
		s.printf("%s%s\n", prefix, sanitize.Line(line))
	}
}

// prettyJSON indents raw JSON; sanitising happens per line when printed.
func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	default:
		b, err := airlock.CanonicalJSON(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		raw = b
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

func ms(d int64) string {
	return (time.Duration(d) * time.Millisecond).String()
}

// Render writes the story for a terminal: who asked for what, how policy
// held it, how long it waited, who decided after how long on screen, edits,
// grants, the sandbox run, and each event's chain position. All text that
// came from agents, reviewers or programs is sanitised.
func (st *Story) Render(w io.Writer) error {
	s := &storyWriter{w: w}
	var call *airlock.ToolCall
	for i := range st.Events {
		ev := &st.Events[i]
		switch ev.Kind {
		case airlock.EventDecision:
			var rec airlock.DecisionRecord
			if json.Unmarshal([]byte(ev.Payload), &rec) == nil && call == nil {
				call = &rec.Call
			}
		case airlock.EventPending:
			var rec airlock.PendingRecord
			if json.Unmarshal([]byte(ev.Payload), &rec) == nil && call == nil {
				call = &rec.Pending.Call
			}
		}
	}
	s.printf("call %s\n", sanitize.Line(st.CallID))
	if call != nil {
		s.field("  ", "tool", call.Tool)
		s.field("  ", "agent", call.Agent)
		s.field("  ", "user", orDash(call.User))
		s.field("  ", "org", orDash(call.Org))
		s.field("  ", "session", orDash(call.Session))
		if r := call.Reason(); r != "" {
			s.field("  ", "why", r)
		}
		if call.InputTokens != 0 || call.OutputTokens != 0 || call.CostUSD != 0 {
			s.field("  ", "usage", fmt.Sprintf("%d input tokens, %d output tokens, $%.4f", call.InputTokens, call.OutputTokens, call.CostUSD))
		}
		s.printf("  arguments\n")
		s.block("    ", prettyJSON(call.Arguments))
	}
	for i := range st.Events {
		ev := &st.Events[i]
		s.printf("\nseq %d  %s  %s\n", ev.Seq, ev.TS, sanitize.Line(ev.Kind))
		renderEvent(s, ev)
		s.printf("  %-11s %s\n", "hash", ev.Hash)
		s.printf("  %-11s %s\n", "prev_hash", ev.PrevHash)
	}
	return s.err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func renderRisk(s *storyWriter, r airlock.Risk) {
	band := ""
	if r.Band != "" {
		band = " (" + r.Band + ")"
	}
	s.field("  ", "risk", fmt.Sprintf("%d%s", r.Score, band))
	factors := append([]airlock.Factor(nil), r.Factors...)
	sort.SliceStable(factors, func(i, j int) bool { return factors[i].Points > factors[j].Points })
	for _, f := range factors {
		s.printf("  %-11s %s\n", "", sanitize.Line(fmt.Sprintf("%+d %s: %s", f.Points, f.Name, f.Detail)))
	}
}

func renderRateLimit(s *storyWriter, label string, rl airlock.RateLimit) {
	line := fmt.Sprintf("%s %s: %s %g/%g", rl.Scope, rl.Key, rl.Dimension, rl.Used, rl.Limit)
	if rl.Window != "" {
		line += " per " + rl.Window
	}
	if rl.RetryAfter != "" {
		line += ", retry after " + rl.RetryAfter
	}
	s.field("  ", label, line)
}

func renderEvent(s *storyWriter, ev *Row) {
	raw := []byte(ev.Payload)
	switch ev.Kind {
	case airlock.EventDecision:
		var rec airlock.DecisionRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			break
		}
		d := rec.Decision
		s.field("  ", "verdict", string(d.Verdict))
		s.field("  ", "decided by", d.DecidedBy)
		if !d.DecidedAt.IsZero() {
			s.field("  ", "decided at", d.DecidedAt.UTC().Format(time.RFC3339Nano))
		}
		tier := string(d.Tier)
		if rec.Rule != "" {
			tier += "  (rule: " + rec.Rule + ")"
		}
		if tier != "" {
			s.field("  ", "tier", tier)
		}
		if rec.PolicyVersion != "" {
			s.field("  ", "policy", rec.PolicyVersion)
		}
		renderRisk(s, d.Risk)
		if d.Reason != "" {
			s.field("  ", "reason", d.Reason)
		}
		if rec.WaitedMS > 0 {
			s.field("  ", "waited", ms(rec.WaitedMS)+" for a human")
		}
		if rv := rec.Review; rv != nil {
			line := fmt.Sprintf("%s %sd", rv.Reviewer, rv.Action)
			if rv.ShownMS > 0 {
				line += " after " + ms(rv.ShownMS) + " on screen"
			}
			s.field("  ", "reviewer", line)
			if rv.Reason != "" {
				s.field("  ", "review note", rv.Reason)
			}
			if rv.Signature != "" {
				s.field("  ", "signed", "yes (key "+shortKey(rv.PublicKey)+")")
			}
		}
		if rec.Edited || d.UpdatedArguments != nil {
			s.printf("  edited to\n")
			s.block("    ", prettyJSON(d.UpdatedArguments))
		}
		if rec.Grant != "" {
			s.field("  ", "grant", rec.Grant)
		}
		if d.RateLimit != nil {
			renderRateLimit(s, "limited by", *d.RateLimit)
		}
		for _, rl := range rec.RateLimits {
			renderRateLimit(s, "usage", rl)
		}
		if rec.Raw != "" {
			s.field("  ", "raw body", rec.Raw)
		}
		if d.Execution != nil {
			renderExec(s, d.Execution)
		}
		return
	case airlock.EventPending:
		var rec airlock.PendingRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			break
		}
		p := rec.Pending
		tier := string(p.Tier)
		if p.Rule != "" {
			tier += "  (rule: " + p.Rule + ")"
		}
		s.field("  ", "held", tier)
		if p.Reason != "" {
			s.field("  ", "why held", p.Reason)
		}
		renderRisk(s, p.Risk)
		if !p.ExpiresAt.IsZero() {
			s.field("  ", "expires", p.ExpiresAt.UTC().Format(time.RFC3339))
		}
		if len(p.Sandbox) > 0 {
			s.field("  ", "sandbox", kv(p.Sandbox))
		}
		if p.Canary {
			s.field("  ", "canary", "yes (attention check, never executes)")
		}
		return
	case airlock.EventReview:
		var rec airlock.ReviewRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			break
		}
		rv := rec.Review
		line := fmt.Sprintf("%s: %s", rv.Reviewer, rv.Action)
		if rv.ShownMS > 0 {
			line += " after " + ms(rv.ShownMS) + " on screen"
		}
		s.field("  ", "reviewer", line)
		if rec.Accepted {
			s.field("  ", "accepted", "yes")
		} else {
			s.field("  ", "accepted", "no: "+rec.Error)
		}
		if rv.Reason != "" {
			s.field("  ", "reason", rv.Reason)
		}
		if rv.UpdatedArguments != nil {
			s.printf("  edited to\n")
			s.block("    ", prettyJSON(rv.UpdatedArguments))
		}
		return
	case airlock.EventExecStart, airlock.EventExecution, airlock.EventDryRun:
		var rec airlock.ExecRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			break
		}
		if len(rec.Profile) > 0 {
			s.field("  ", "sandbox", kv(rec.Profile))
		}
		if rec.Execution != nil {
			renderExec(s, rec.Execution)
		}
		return
	}
	// Anything else: the payload, indented.
	s.printf("  payload\n")
	s.block("    ", prettyJSON(json.RawMessage(ev.Payload)))
}

func renderExec(s *storyWriter, x *airlock.Execution) {
	line := fmt.Sprintf("%s, exit %d in %s", x.Backend, x.ExitCode, ms(x.DurationMS))
	if x.Signal != "" {
		line += ", signal " + x.Signal
	}
	if x.LimitHit != "" {
		line += ", limit hit: " + x.LimitHit
	}
	if x.Truncated {
		line += ", output truncated"
	}
	if x.DryRun {
		line += " (dry run)"
	}
	s.field("  ", "run", line)
	if x.Error != "" {
		s.field("  ", "error", x.Error)
	}
	if len(x.Isolation) > 0 {
		s.field("  ", "isolation", kv(x.Isolation))
	}
	if x.Stdout != "" {
		s.printf("  stdout\n")
		s.block("    | ", x.Stdout)
	}
	if x.Stderr != "" {
		s.printf("  stderr\n")
		s.block("    | ", x.Stderr)
	}
}

func kv(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

func shortKey(k string) string {
	if len(k) > 16 {
		return k[:16] + "…"
	}
	return k
}

// Summarize returns one sanitised line describing an event, for tail:
// "seq  ts  kind  call_id  what happened".
func Summarize(ev *Row) string {
	what := ""
	raw := []byte(ev.Payload)
	switch ev.Kind {
	case airlock.EventDecision:
		var rec airlock.DecisionRecord
		if json.Unmarshal(raw, &rec) == nil {
			d := rec.Decision
			what = fmt.Sprintf("%s %s → %s by %s, risk %d", rec.Call.Agent, rec.Call.Tool, d.Verdict, d.DecidedBy, d.Risk.Score)
			if d.Reason != "" {
				what += ": " + d.Reason
			}
		}
	case airlock.EventPending:
		var rec airlock.PendingRecord
		if json.Unmarshal(raw, &rec) == nil {
			p := rec.Pending
			what = fmt.Sprintf("%s %s held for review, risk %d", p.Call.Agent, p.Call.Tool, p.Risk.Score)
		}
	case airlock.EventReview:
		var rec airlock.ReviewRecord
		if json.Unmarshal(raw, &rec) == nil {
			what = fmt.Sprintf("%s %s", rec.Review.Reviewer, rec.Review.Action)
			if !rec.Accepted {
				what += " (refused: " + rec.Error + ")"
			}
		}
	case airlock.EventExecStart, airlock.EventExecution, airlock.EventDryRun:
		var rec airlock.ExecRecord
		if json.Unmarshal(raw, &rec) == nil && rec.Execution != nil {
			x := rec.Execution
			what = fmt.Sprintf("%s exit %d in %s", x.Backend, x.ExitCode, ms(x.DurationMS))
			if x.LimitHit != "" {
				what += ", limit hit: " + x.LimitHit
			}
		} else if ev.Kind == airlock.EventExecStart {
			what = "run started"
		}
	}
	if what == "" {
		what = ev.Payload
		if len(what) > 120 {
			what = what[:120] + "…"
		}
	}
	callID := ev.CallID
	if callID == "" {
		callID = "-"
	}
	return fmt.Sprintf("%d  %s  %s  %s  %s", ev.Seq, ev.TS, sanitize.Line(ev.Kind), sanitize.Line(callID), sanitize.Line(what))
}

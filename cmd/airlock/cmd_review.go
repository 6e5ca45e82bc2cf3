package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/argdiff"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/sanitize"
)

func init() {
	register(command{Name: "pending", Summary: "list waiting calls, or show one (with --diff)", Run: runPending})
	register(command{Name: "review", Summary: "approve or deny a waiting call from the command line", Run: runReview})
}

func runPending(ctx context.Context, e env) error {
	fs := newFlags(e, "pending", "[show ID [--diff] | dryrun ID --reviewer NAME] [--json]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL of the broker")
	asJSON := fs.Bool("json", false, "print JSON")
	diff := fs.Bool("diff", false, "with show: the difference from the agent's last approved call of the same tool")
	reviewer := fs.String("reviewer", reviewerDefault(), "your reviewer name (for a token login; a --key names you)")
	cf := addConnFlags(fs)
	args, err := parseInterspersed(fs, e.Args)
	if err != nil {
		return err
	}
	copts, _, _, err := cf.options(client.RoleReviewer, *reviewer)
	if err != nil {
		return err
	}
	c, err := client.Connect(*natsURL, nil, copts...)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	defer c.Close()
	if len(args) >= 1 && args[0] == "dryrun" {
		if len(args) != 2 || *reviewer == "" {
			return usageErr("pending dryrun: want `airlock pending dryrun ID --reviewer NAME`")
		}
		return runDryRun(ctx, e, c, args[1], *reviewer, *asJSON)
	}
	if len(args) >= 1 && args[0] == "show" {
		if len(args) != 2 {
			return usageErr("pending show: want exactly one call id")
		}
		p, err := c.GetPending(ctx, args[1])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e, p)
		}
		printPending(e, p)
		if *diff {
			base, err := lastApproved(ctx, c, p)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.Stdout, "\ndiff:")
			if base == nil {
				fmt.Fprintf(e.Stdout, "  (no earlier approved %s call by %s to compare with)\n", sanitize.Text(p.Call.Tool), sanitize.Text(p.Call.Agent))
			} else {
				fmt.Fprintf(e.Stdout, "  against %s (approved %s)\n", base.Decision.CallID, base.Decision.DecidedAt.Format(time.RFC3339))
				fmt.Fprintln(e.Stdout, sanitize.Text(argdiff.Render(argdiff.Diff(base.Call.Arguments, p.Call.Arguments), 100)))
			}
		}
		return nil
	}
	if len(args) > 0 {
		return usageErr("pending: unknown argument %q (want: pending, or pending show ID)", args[0])
	}
	ps, err := c.Pending(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e, ps)
	}
	if len(ps) == 0 {
		fmt.Fprintln(e.Stdout, "no calls are waiting")
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRISK\tAGE\tAGENT\tUSER/ORG\tTOOL\tARGUMENTS")
	now := time.Now()
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%d %s\t%s\t%s\t%s/%s\t%s\t%s\n", sanitize.Text(p.Call.ID), p.Risk.Score, p.Risk.Band,
			now.Sub(p.ReceivedAt).Round(time.Second), sanitize.Text(p.Call.Agent), sanitize.Text(p.Call.User), sanitize.Text(p.Call.Org),
			sanitize.Text(p.Call.Tool), oneLine(p.Call.Arguments, 60))
	}
	return tw.Flush()
}

// lastApproved finds the agent's most recent approved call of the same tool,
// from the broker's recent decisions in the call's session.
func lastApproved(ctx context.Context, c *client.Client, p *airlock.Pending) (*airlock.DecisionRecord, error) {
	recs, err := c.Recent(ctx, p.Call.Session, 50)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		r := recs[i]
		if r.Call.Tool == p.Call.Tool && r.Call.Agent == p.Call.Agent && r.Decision.Verdict == airlock.VerdictApproved && r.Call.ID != p.Call.ID {
			return &r, nil
		}
	}
	return nil, nil
}

func printPending(e env, p *airlock.Pending) {
	w := e.Stdout
	fmt.Fprintf(w, "call      %s\n", sanitize.Text(p.Call.ID))
	fmt.Fprintf(w, "agent     %s   user %s   org %s   session %s\n", sanitize.Text(p.Call.Agent), sanitize.Text(p.Call.User), sanitize.Text(p.Call.Org), sanitize.Text(p.Call.Session))
	fmt.Fprintf(w, "tool      %s   tier %s\n", sanitize.Text(p.Call.Tool), p.Tier)
	fmt.Fprintf(w, "waiting   since %s, expires %s\n", p.ReceivedAt.Format(time.RFC3339), p.ExpiresAt.Format(time.RFC3339))
	if p.Reason != "" {
		fmt.Fprintf(w, "held      %s\n", sanitize.Text(p.Reason))
	}
	if r := p.Call.Reason(); r != "" {
		fmt.Fprintf(w, "agent says %s\n", sanitize.Text(r))
	}
	fmt.Fprintf(w, "risk      %d (%s)\n", p.Risk.Score, p.Risk.Band)
	for _, f := range p.Risk.Factors {
		fmt.Fprintf(w, "  +%-3d %-18s %s\n", f.Points, f.Name, sanitize.Text(f.Detail))
	}
	if len(p.Sandbox) > 0 {
		keys := make([]string, 0, len(p.Sandbox))
		for k := range p.Sandbox {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+p.Sandbox[k])
		}
		fmt.Fprintf(w, "sandbox   %s\n", strings.Join(parts, " "))
	}
	b, _ := json.MarshalIndent(p.Call.Arguments, "  ", "  ")
	fmt.Fprintf(w, "arguments\n  %s\n", sanitize.Text(string(b)))
}

func oneLine(args map[string]any, n int) string {
	b, _ := json.Marshal(args)
	s := sanitize.Text(string(b))
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

func writeJSON(e env, v any) error {
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runReview(ctx context.Context, e env) error {
	fs := newFlags(e, "review", "approve|deny CALL_ID --reviewer NAME [--key FILE] [--reason TEXT] [--args JSON]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL of the broker")
	reviewer := fs.String("reviewer", os.Getenv("AIRLOCK_REVIEWER"), "your reviewer name")
	reason := fs.String("reason", "", "reason (shown to the agent and audited)")
	edited := fs.String("args", "", "approve with these edited arguments (JSON object)")
	cf := addConnFlags(fs)
	args, err := parseInterspersed(fs, e.Args)
	if err != nil {
		return err
	}
	if len(args) != 2 || (args[0] != "approve" && args[0] != "deny") {
		return usageErr("review: want `airlock review approve|deny CALL_ID --reviewer NAME [--key FILE]`")
	}
	copts, name, _, err := cf.options(client.RoleReviewer, *reviewer)
	if err != nil {
		return err
	}
	*reviewer = name
	if *reviewer == "" {
		return usageErr("review: --reviewer NAME is required")
	}
	c, err := client.Connect(*natsURL, nil, copts...)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	defer c.Close()
	r := airlock.Review{CallID: args[1], Action: airlock.ReviewAction(args[0]), Reviewer: *reviewer, Reason: *reason}
	if *edited != "" {
		if r.Action != airlock.ActionApprove {
			return usageErr("review: --args goes with approve")
		}
		if err := json.Unmarshal([]byte(*edited), &r.UpdatedArguments); err != nil || r.UpdatedArguments == nil {
			return usageErr("review: --args must be a JSON object: %v", errOr(err, "got null"))
		}
		r.ArgsHash = airlock.ArgsHash(r.UpdatedArguments)
	} else if p, err := c.GetPending(ctx, r.CallID); err == nil {
		// Bind the verdict to the arguments shown and the policy that holds them.
		r.ArgsHash = p.ArgsHash
		r.PolicyVersion = p.PolicyVersion
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rep, err := c.Review(rctx, r)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	switch {
	case rep.Canary:
		fmt.Fprintf(e.Stdout, "%s: %s\n", r.CallID, rep.Note)
	case rep.Waiting:
		fmt.Fprintf(e.Stdout, "approval recorded for %s; a second reviewer must approve too\n", r.CallID)
	case rep.Accepted:
		fmt.Fprintf(e.Stdout, "%s %s by %s\n", r.CallID, map[airlock.ReviewAction]string{"approve": "approved", "deny": "denied"}[r.Action], *reviewer)
		if rep.Note != "" {
			fmt.Fprintln(e.Stdout, rep.Note)
		}
	default:
		return fmt.Errorf("review %s: %s", r.CallID, rep.Error)
	}
	return nil
}

// runDryRun runs a waiting sandboxed call in a throw-away sandbox.
func runDryRun(ctx context.Context, e env, c *client.Client, id, reviewer string, asJSON bool) error {
	body, _ := json.Marshal(map[string]string{"call_id": id, "reviewer": reviewer})
	rctx, cancel := context.WithTimeout(ctx, 11*time.Minute)
	defer cancel()
	msg, err := c.Conn().RequestWithContext(rctx, "airlock.admin.dryrun", body)
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("pending dryrun: %w", err)}
	}
	var rep struct {
		Execution *airlock.Execution `json:"execution"`
		Error     string             `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return err
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	if asJSON {
		return writeJSON(e, rep.Execution)
	}
	ex := rep.Execution
	fmt.Fprintf(e.Stdout, "dry run of %s (nothing was approved; no network; scratch workspace)\n", id)
	fmt.Fprintf(e.Stdout, "backend %s · exit %d · %d ms · limit %s\n", ex.Backend, ex.ExitCode, ex.DurationMS, orNone(ex.LimitHit))
	if ex.Error != "" {
		fmt.Fprintf(e.Stdout, "error: %s\n", sanitize.Text(ex.Error))
	}
	if len(ex.ChangedFile) > 0 {
		fmt.Fprintln(e.Stdout, "files it would change:")
		for _, f := range ex.ChangedFile {
			fmt.Fprintf(e.Stdout, "  %s\n", sanitize.Text(f))
		}
	}
	fmt.Fprintf(e.Stdout, "── stdout ──\n%s\n── stderr ──\n%s\n", sanitize.Text(ex.Stdout), sanitize.Text(ex.Stderr))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

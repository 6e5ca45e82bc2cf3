package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/sanitize"
)

func init() {
	register(command{Name: "grants", Summary: "list or revoke scoped, expiring grants (approve-similar)", Run: runGrants})
}

func runGrants(ctx context.Context, e env) error {
	fs := newFlags(e, "grants", "[list] | revoke ID --reviewer NAME   [--nats URL] [--json]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL of the broker")
	reviewer := fs.String("reviewer", reviewerDefault(), "your reviewer name (revoke)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the broker")
	cf := addConnFlags(fs)
	pos, err := parseInterspersed(fs, e.Args)
	if err != nil {
		return err
	}
	op := "list"
	if len(pos) > 0 {
		op, pos = pos[0], pos[1:]
	}
	switch op {
	case "list":
		if len(pos) > 0 {
			return usageErr("grants list: unexpected argument %q", pos[0])
		}
	case "revoke":
		if len(pos) != 1 {
			return usageErr("grants revoke: give one grant ID (airlock grants list shows them)")
		}
		if *reviewer == "" {
			return usageErr("grants revoke: --reviewer NAME is required (revocations are audited by name)")
		}
	default:
		return usageErr("grants: unknown action %q (list or revoke)", op)
	}
	copts, name, _, err := cf.options(client.RoleReviewer, *reviewer)
	if err != nil {
		return err
	}
	if name != "" {
		*reviewer = name
	}
	c, err := client.Connect(*natsURL, []nats.Option{nats.Name("airlock grants"), nats.Timeout(*timeout)}, copts...)
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("grants: connect to %s: %w", *natsURL, err)}
	}
	defer c.Close()
	nc := c.Conn()
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if op == "revoke" {
		id := pos[0]
		if err := revokeGrant(rctx, nc, id, *reviewer); err != nil {
			return fmt.Errorf("grants: revoke %s: %w", id, err)
		}
		if *asJSON {
			return json.NewEncoder(e.Stdout).Encode(map[string]string{"revoked": id, "by": "reviewer:" + *reviewer})
		}
		fmt.Fprintf(e.Stdout, "revoked grant %s (by reviewer:%s)\n", sanitize.Line(id), sanitize.Line(*reviewer))
		return nil
	}
	gs, err := listGrants(rctx, nc)
	if err != nil {
		return fmt.Errorf("grants: %w", err)
	}
	if *asJSON {
		if gs == nil {
			gs = []airlock.Grant{}
		}
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"grants": gs})
	}
	return printGrants(e.Stdout, gs, time.Now())
}

// printGrants writes the grants as an aligned table, soonest to end first.
func printGrants(w io.Writer, gs []airlock.Grant, now time.Time) error {
	if len(gs) == 0 {
		_, err := fmt.Fprintln(w, "no live grants")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGENT\tTOOL\tEXPIRES IN\tUSES\tCREATED BY\tCONSTRAINT")
	for _, g := range sortedGrants(gs) {
		uses := strconv.Itoa(g.Uses)
		if g.MaxUses > 0 {
			uses += "/" + strconv.Itoa(g.MaxUses)
		}
		left := g.ExpiresAt.Sub(now).Round(time.Second)
		exp := left.String()
		if left <= 0 {
			exp = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sanitize.Line(g.ID), sanitize.Line(g.Agent), sanitize.Line(g.Tool),
			exp, uses, sanitize.Line(g.CreatedBy), sanitize.Line(g.When))
	}
	return tw.Flush()
}

func sortedGrants(gs []airlock.Grant) []airlock.Grant {
	out := slices.Clone(gs)
	slices.SortFunc(out, func(a, b airlock.Grant) int {
		if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

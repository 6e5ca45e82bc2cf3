package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock/broker/ratelimit"
)

func init() {
	register(command{Name: "limits", Summary: "show current usage against each rate limit", Run: runLimits})
}

func runLimits(ctx context.Context, e env) error {
	fs := newFlags(e, "limits", "[--user U | --org O | --agent A | --session U/S] [--nats URL] [--json]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL of the broker")
	user := fs.String("user", "", "only this user (with its sessions)")
	org := fs.String("org", "", "only this organisation")
	agent := fs.String("agent", "", "only this agent")
	session := fs.String("session", "", "only this session, as USER/SESSION (or USER for all of a user's sessions)")
	asJSON := fs.Bool("json", false, "print the broker's JSON reply")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the broker")
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("limits: unexpected argument %q", fs.Arg(0))
	}
	var q ratelimit.Query
	n := 0
	for _, f := range []struct{ scope, key string }{{"user", *user}, {"org", *org}, {"agent", *agent}, {"session", *session}} {
		if f.key != "" {
			q = ratelimit.Query{Scope: f.scope, Key: f.key}
			n++
		}
	}
	if n > 1 {
		return usageErr("limits: give at most one of --user, --org, --agent, --session")
	}
	body, _ := json.Marshal(q)

	nc, err := nats.Connect(*natsURL, nats.Name("airlock limits"), nats.Timeout(*timeout))
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("limits: connect to %s: %w", *natsURL, err)}
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, ratelimit.Subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return &exitError{Code: 2, Err: fmt.Errorf("limits: no broker answers on %s at %s (is airlock serve running?)", ratelimit.Subject, *natsURL)}
	case err != nil:
		return &exitError{Code: 2, Err: fmt.Errorf("limits: ask the broker: %w", err)}
	}
	var reply ratelimit.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("limits: bad reply from the broker: %w", err)
	}
	if reply.Error != "" {
		return fmt.Errorf("limits: %s", reply.Error)
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reply)
	}
	return printLimits(e.Stdout, reply.Usage)
}

// printLimits writes usage as an aligned table.
func printLimits(w io.Writer, us []ratelimit.Usage) error {
	if len(us) == 0 {
		_, err := fmt.Fprintln(w, "no rate-limit usage")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tKEY\tDIMENSION\tWINDOW\tUSED/LIMIT\tPRESSURE")
	for _, u := range us {
		win := ratelimit.FormatWindow(u.Window)
		if win == "" {
			win = "-"
		}
		pressure := "-"
		if u.Window > 0 && (u.Scope == "user" || u.Scope == "org") {
			pressure = fmt.Sprintf("%d%%", int(math.Round(u.Pressure*100)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\n", u.Scope, printable(u.Key), u.Dimension, win,
			number(u.Used), number(u.Limit), pressure)
	}
	return tw.Flush()
}

// number prints a count without decimals and a cost with up to four.
func number(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e4)/1e4, 'f', -1, 64)
}

// printable keeps control characters of a user-supplied key off the terminal.
func printable(s string) string {
	q := strconv.Quote(s)
	if q[1:len(q)-1] == s {
		return s
	}
	return q
}

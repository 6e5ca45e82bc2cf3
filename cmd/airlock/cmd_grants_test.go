package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
)

const grantsPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  read_file:   {tier: approve}
  drop_table:  {tier: approve}
orgs:
  acme: {mail_domains: [acme.com], hosts: [acme.com]}
`

// grantsBroker starts a real broker and returns its URL and an agent client.
func grantsBroker(t *testing.T) (string, *client.Client) {
	t.Helper()
	dir := t.TempDir()
	return inProcessBroker(t, dir, writePolicy(t, dir, grantsPolicy))
}

// approveWithGrant submits a call, waits for it to be pending and approves it
// asking for a grant; it returns the broker's reply.
func approveWithGrant(t *testing.T, c *client.Client, call *airlock.ToolCall, g *airlock.GrantRequest) airlock.ReviewReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan airlock.Decision, 1)
	go func() {
		d, _ := c.Submit(ctx, call)
		done <- d
	}()
	var p *airlock.Pending
	for p == nil {
		if ctx.Err() != nil {
			t.Fatalf("%s never became pending", call.ID)
		}
		p, _ = c.GetPending(ctx, call.ID)
	}
	reply, err := c.Review(ctx, airlock.Review{CallID: call.ID, Action: airlock.ActionApprove, Reviewer: "carol",
		ArgsHash: p.ArgsHash, Grant: g})
	if err != nil {
		t.Fatal(err)
	}
	if d := <-done; d.Verdict != airlock.VerdictApproved {
		t.Fatalf("%s: got %+v, want approved", call.ID, d)
	}
	return reply
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := exitCode(run(context.Background(), args, strings.NewReader(""), &out, &errb), &errb)
	return out.String(), errb.String(), code
}

func TestGrantsCommand(t *testing.T) {
	url, c := grantsBroker(t)
	reply := approveWithGrant(t, c, &airlock.ToolCall{ID: "c1", Agent: "reports", User: "u", Org: "acme", Session: "s",
		Tool: "read_file", Arguments: map[string]any{"path": "/srv/reports/a.csv"}}, &airlock.GrantRequest{For: "15m", MaxUses: 3})
	if reply.Grant == nil {
		t.Fatalf("no grant created: %+v", reply)
	}
	id := reply.Grant.ID

	out, errs, code := runCLI(t, "grants", "--nats", url)
	if code != 0 {
		t.Fatalf("grants list: exit %d: %s", code, errs)
	}
	for _, want := range []string{"ID", "CONSTRAINT", id, "reports", "read_file", "0/3", "reviewer:carol", `args.path.startsWith("/srv/reports/")`} {
		if !strings.Contains(out, want) {
			t.Errorf("grants list lacks %q:\n%s", want, out)
		}
	}
	out, errs, code = runCLI(t, "grants", "list", "--json", "--nats", url)
	var js struct{ Grants []airlock.Grant }
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || len(js.Grants) != 1 || js.Grants[0].ID != id || js.Grants[0].MaxUses != 3 {
		t.Fatalf("grants list --json: exit %d, %s %s", code, out, errs)
	}

	// A later matching call is approved by the grant; then revoke it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := c.Submit(ctx, &airlock.ToolCall{ID: "c2", Agent: "reports", User: "u", Org: "acme", Session: "s",
		Tool: "read_file", Arguments: map[string]any{"path": "/srv/reports/b.csv"}})
	if err != nil || d.Verdict != airlock.VerdictApproved || d.DecidedBy != "grant:"+id {
		t.Fatalf("c2: got %+v %v, want approved by grant:%s", d, err, id)
	}
	out, errs, code = runCLI(t, "grants", "revoke", id, "--reviewer", "dave", "--nats", url)
	if code != 0 || !strings.Contains(out, "revoked grant "+id+" (by reviewer:dave)") {
		t.Fatalf("grants revoke: exit %d: %s %s", code, out, errs)
	}
	out, _, code = runCLI(t, "grants", "--nats", url)
	if code != 0 || strings.TrimSpace(out) != "no live grants" {
		t.Fatalf("after revoke: exit %d: %s", code, out)
	}
	_, errs, code = runCLI(t, "grants", "revoke", id, "--reviewer", "dave", "--nats", url)
	if code != 1 || !strings.Contains(errs, "no grant "+id) {
		t.Fatalf("revoking twice: exit %d: %s", code, errs)
	}
}

func TestGrantsCommandUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"grants", "--help"}, 0, ""},
		{"unknown-action", []string{"grants", "extend"}, 2, "unknown action"},
		{"revoke-without-id", []string{"grants", "revoke", "--reviewer", "bob"}, 2, "one grant ID"},
		{"revoke-without-reviewer", []string{"grants", "revoke", "g1"}, 2, "--reviewer NAME is required"},
		{"list-extra-argument", []string{"grants", "list", "x"}, 2, "unexpected argument"},
		{"no-broker", []string{"grants", "--nats", "nats://127.0.0.1:1", "--timeout", "1s"}, 2, "connect to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AIRLOCK_REVIEWER", "")
			_, errs, code := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Errorf("got exit %d, stderr %q; want %d and %q", code, errs, tt.code, tt.want)
			}
			if tt.code != 0 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("got a multi-line error %q, want one line", errs)
			}
		})
	}
}

// TestConsoleBackendAdmin runs the console's admin side (Grants, RevokeGrant,
// Replay) against a real broker.
func TestConsoleBackendAdmin(t *testing.T) {
	_, c := grantsBroker(t)
	b := newConsoleBackend(c, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	reply := approveWithGrant(t, c, &airlock.ToolCall{ID: "c1", Agent: "reports", User: "u", Org: "acme", Session: "s",
		Tool: "read_file", Arguments: map[string]any{"path": "/srv/reports/a.csv"}}, &airlock.GrantRequest{For: "10m"})
	if reply.Grant == nil {
		t.Fatalf("no grant: %+v", reply)
	}
	gs, err := b.Grants(ctx)
	if err != nil || len(gs) != 1 || gs[0].ID != reply.Grant.ID {
		t.Fatalf("Grants: got %+v %v, want the one grant", gs, err)
	}
	if err := b.RevokeGrant(ctx, "gnope", "carol"); err == nil || !strings.Contains(err.Error(), "no grant gnope") {
		t.Errorf("revoking an unknown grant: got %v", err)
	}
	if err := b.RevokeGrant(ctx, gs[0].ID, "carol"); err != nil {
		t.Fatal(err)
	}
	if gs, err := b.Grants(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("after revoke: got %+v %v, want none", gs, err)
	}
	// A grant over a call at the ceiling is refused with the reason.
	reply = approveWithGrant(t, c, &airlock.ToolCall{ID: "c3", Agent: "reports", User: "u", Org: "acme", Session: "s",
		Tool: "drop_table", Arguments: map[string]any{"query": "DROP TABLE invoices"}}, &airlock.GrantRequest{For: "10m"})
	if reply.Grant != nil || !strings.Contains(reply.Note, "no grant") {
		t.Errorf("grant over a destructive call: got %+v, want a refusal note", reply)
	}

	res, err := b.Replay(ctx, "reports", "read_file", `args.path.startsWith("/srv/reports/")`)
	switch {
	case err != nil:
		// serve does not wire the audit history into the broker yet.
		if !strings.Contains(err.Error(), "no audit history") {
			t.Fatalf("Replay: %v", err)
		}
	case res.Replayed < 1 || res.Matched < 1 || res.MatchedDenied != 0:
		t.Fatalf("Replay: got %+v, want the approved call matched", res)
	}
	if _, err := b.Replay(ctx, "reports", "read_file", `args.path.startsWith(`); err == nil {
		t.Errorf("Replay of a rule that does not compile: got no error")
	}
}

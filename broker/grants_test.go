package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
)

// TestGrants: an approval with a grant lets matching calls through as
// grant:<id>; calls outside its constraint still wait; a revoked grant
// stops at once; grants never cover deny-tier tools or high-risk calls.
func TestGrants(t *testing.T) {
	h := startHarness(t, testPolicy)
	ctx := context.Background()
	mail := func(id, to string) *airlock.ToolCall {
		return call(id, "a1", "send_email", map[string]any{"to": []any{to}, "subject": "weekly", "body": "numbers attached"})
	}
	first := h.submitAsync(mail("g1", "dana@acme.com"))
	h.waitPending("g1")
	rep, err := h.client.Review(ctx, airlock.Review{CallID: "g1", Action: airlock.ActionApprove, Reviewer: "bob",
		Grant: &airlock.GrantRequest{For: "15m"}})
	if err != nil || !rep.Accepted || rep.Grant == nil {
		t.Fatalf("approve with a grant: %+v %v", rep, err)
	}
	g := rep.Grant
	if !strings.Contains(g.When, "@acme.com") {
		t.Fatalf("grant constraint %q is not bound to the recipient domain", g.When)
	}
	if d := <-first; d.Verdict != airlock.VerdictApproved {
		t.Fatalf("g1: %+v", d)
	}
	if d := h.submit(mail("g2", "ops@acme.com")); d.Verdict != airlock.VerdictApproved || d.DecidedBy != "grant:"+g.ID {
		t.Fatalf("a covered call: %s/%s (%s)", d.Verdict, d.DecidedBy, d.Reason)
	}
	// Outside the constraint: waits for a human.
	h.submitAsync(mail("g3", "someone@evil.example"))
	if p := h.waitPending("g3"); p.Call.ID != "g3" {
		t.Fatal("g3 not pending")
	}
	// Revoke: the next covered call waits again.
	m, err := h.nc.Request("airlock.admin.grants", []byte(`{"op":"revoke","id":"`+g.ID+`","by":"bob"}`), 5*time.Second)
	if err != nil || !strings.Contains(string(m.Data), "revoked") {
		t.Fatalf("revoke: %s %v", m.Data, err)
	}
	h.submitAsync(mail("g4", "ops@acme.com"))
	h.waitPending("g4")
	// The grant's life is audited: created and revoked.
	var ops []string
	rows, _ := h.db().Query(`select json_extract(payload, '$.op') from events where kind = 'grant' order by seq`)
	for rows.Next() {
		var op string
		_ = rows.Scan(&op)
		ops = append(ops, op)
	}
	rows.Close()
	if strings.Join(ops, ",") != "created,revoked" {
		t.Fatalf("grant events %v, want created,revoked", ops)
	}
	// No grant for a high-risk call.
	h.submitAsync(call("g5", "a1", "execute_sql", map[string]any{"query": "DELETE FROM customers"}))
	p := h.waitPending("g5")
	rep, _ = h.client.Review(ctx, airlock.Review{CallID: "g5", Action: airlock.ActionApprove, Reviewer: "bob", ArgsHash: p.ArgsHash,
		Grant: &airlock.GrantRequest{For: "15m"}})
	if rep.Grant != nil || !strings.Contains(rep.Note, "no grant") {
		t.Fatalf("a grant over a high-risk call: %+v", rep)
	}
	var list struct {
		Grants []airlock.Grant `json:"grants"`
	}
	m, _ = h.nc.Request("airlock.admin.grants", []byte(`{"op":"list"}`), 5*time.Second)
	_ = json.Unmarshal(m.Data, &list)
	if len(list.Grants) != 0 {
		t.Fatalf("live grants %+v, want none", list.Grants)
	}
}

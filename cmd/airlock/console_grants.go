package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/tui"
)

// The broker's admin subjects for grants and rule replays (default prefix).
const (
	grantsSubject = "airlock.admin.grants"
	replaySubject = "airlock.admin.replay"
	replayLimit   = 1000
)

// grantsReply is what airlock.admin.grants answers.
type grantsReply struct {
	Grants  []airlock.Grant `json:"grants"`
	Revoked string          `json:"revoked,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// adminRequest sends one JSON request to a broker admin subject and decodes
// the JSON reply.
func adminRequest(ctx context.Context, nc *nats.Conn, subject string, req, reply any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	msg, err := nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("no broker answers on %s (is airlock serve running?)", subject)
	case err != nil:
		return fmt.Errorf("ask the broker on %s: %w", subject, err)
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("bad reply from the broker on %s: %w", subject, err)
	}
	return nil
}

// listGrants returns the broker's stored grants.
func listGrants(ctx context.Context, nc *nats.Conn) ([]airlock.Grant, error) {
	var r grantsReply
	if err := adminRequest(ctx, nc, grantsSubject, map[string]string{"op": "list"}, &r); err != nil {
		return nil, err
	}
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return r.Grants, nil
}

// revokeGrant ends a grant at once in a reviewer's name.
func revokeGrant(ctx context.Context, nc *nats.Conn, id, reviewer string) error {
	var r grantsReply
	if err := adminRequest(ctx, nc, grantsSubject, map[string]string{"op": "revoke", "id": id, "by": reviewer}, &r); err != nil {
		return err
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	if r.Revoked != id {
		return fmt.Errorf("the broker did not confirm revoking %s", id)
	}
	return nil
}

// replayRule asks the broker how a CEL rule would have decided past calls.
func replayRule(ctx context.Context, nc *nats.Conn, req broker.ReplayRequest) (broker.ReplayResult, error) {
	var r broker.ReplayResult
	if err := adminRequest(ctx, nc, replaySubject, req, &r); err != nil {
		return r, err
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// Grants lists the live grants (tui.AdminBackend).
func (b *consoleBackend) Grants(ctx context.Context) ([]airlock.Grant, error) {
	return listGrants(ctx, b.c.Conn())
}

// RevokeGrant revokes a grant in the reviewer's name (tui.AdminBackend).
func (b *consoleBackend) RevokeGrant(ctx context.Context, id, reviewer string) error {
	return revokeGrant(ctx, b.c.Conn(), id, reviewer)
}

// Replay replays a proposed rule against the audit log (tui.AdminBackend).
func (b *consoleBackend) Replay(ctx context.Context, agent, tool, when string) (tui.ReplaySummary, error) {
	r, err := replayRule(ctx, b.c.Conn(), broker.ReplayRequest{Agent: agent, Tool: tool, When: when, Limit: replayLimit})
	if err != nil {
		return tui.ReplaySummary{}, err
	}
	return tui.ReplaySummary{Replayed: r.Replayed, Matched: r.Matched, MatchedApproved: r.MatchedApproved,
		MatchedDenied: r.MatchedDenied, Examples: r.Examples}, nil
}

var _ tui.AdminBackend = (*consoleBackend)(nil)

package auth

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/airlock/airlock"
)

// SignatureError names the first audited verdict that does not prove who
// approved what.
type SignatureError struct {
	Seq      int64
	CallID   string
	Reviewer string
	Reason   string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("auth: audit row %d (call %s, reviewer %s): %s", e.Seq, e.CallID, e.Reviewer, e.Reason)
}

// VerifyAuditedReviews checks the signature of every reviewer's verdict in
// the audit log's decision events against reviewers (name → the public keys
// their verdicts may be signed with, as in the policy's auth.reviewers; see
// ReviewerKeys). It returns how
// many verdicts it checked and a *SignatureError for the first that is
// unsigned, signed by another key, or whose signature does not verify.
// Decisions no human made (policy, grants, expiry) carry no verdict and are
// not counted. For `airlock audit verify --signatures`.
func VerifyAuditedReviews(db *sql.DB, reviewers map[string][]string) (checked int, err error) {
	rows, err := db.QueryContext(context.Background(),
		`SELECT seq, call_id, payload FROM events WHERE kind = ? AND json_extract(payload, '$.review') IS NOT NULL ORDER BY seq`,
		airlock.EventDecision)
	if err != nil {
		return 0, fmt.Errorf("auth: read audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var id, payload string
		if err := rows.Scan(&seq, &id, &payload); err != nil {
			return checked, fmt.Errorf("auth: read audit log: %w", err)
		}
		var rec airlock.DecisionRecord
		if err := json.Unmarshal([]byte(payload), &rec); err != nil {
			return checked, &SignatureError{Seq: seq, CallID: id, Reason: "payload does not decode: " + err.Error()}
		}
		if rec.Review == nil {
			continue
		}
		r := *rec.Review
		if !strings.HasPrefix(rec.Decision.DecidedBy, "reviewer:") {
			continue
		}
		keys, ok := reviewers[r.Reviewer]
		if !ok {
			return checked, &SignatureError{Seq: seq, CallID: id, Reviewer: r.Reviewer, Reason: "not a reviewer with a verdict key (nkey or ed25519 ssh_key) in the policy"}
		}
		if err := VerifyReviewAny(r, keys); err != nil {
			return checked, &SignatureError{Seq: seq, CallID: id, Reviewer: r.Reviewer, Reason: strings.TrimPrefix(err.Error(), "auth: ")}
		}
		checked++
	}
	if err := rows.Err(); err != nil {
		return checked, fmt.Errorf("auth: read audit log: %w", err)
	}
	return checked, nil
}

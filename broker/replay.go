package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// HistoryFunc returns an agent's past decided calls of one tool, newest
// first (the audit log's decisions view), for replaying a proposed rule.
type HistoryFunc func(ctx context.Context, agent, tool string, limit int) ([]airlock.DecisionRecord, error)

// ReplayRequest asks how a proposed rule would have decided past calls.
type ReplayRequest struct {
	Agent string `json:"agent"`
	Tool  string `json:"tool"`
	When  string `json:"when"`
	Limit int    `json:"limit,omitempty"` // calls to replay, default 1000
}

// ReplayResult counts what the rule would have matched in the history.
type ReplayResult struct {
	Replayed int `json:"replayed"` // past calls looked at
	Matched  int `json:"matched"`  // the rule would have decided them
	// MatchedApproved and MatchedDenied split Matched by what reviewers or
	// policy actually decided: a rule that matches denied calls is too wide.
	MatchedApproved int      `json:"matched_approved"`
	MatchedDenied   int      `json:"matched_denied"`
	Examples        []string `json:"examples,omitempty"` // call ids of denied calls it would have approved
	Error           string   `json:"error,omitempty"`
}

// Replay runs a proposed CEL rule over an agent's history of one tool.
func (b *Broker) Replay(ctx context.Context, r ReplayRequest) ReplayResult {
	if b.cfg.History == nil {
		return ReplayResult{Error: "this broker has no audit history to replay against"}
	}
	cond, err := policy.CompileCond(r.When)
	if err != nil {
		return ReplayResult{Error: err.Error()}
	}
	if r.Limit <= 0 || r.Limit > 100000 {
		r.Limit = 1000
	}
	hist, err := b.cfg.History(ctx, r.Agent, r.Tool, r.Limit)
	if err != nil {
		return ReplayResult{Error: "history: " + err.Error()}
	}
	var res ReplayResult
	for i := range hist {
		h := &hist[i]
		if h.Decision.Verdict == airlock.VerdictRejected {
			continue
		}
		res.Replayed++
		ok, err := cond.Match(&h.Call)
		if err != nil || !ok {
			continue
		}
		res.Matched++
		if h.Decision.Verdict == airlock.VerdictApproved {
			res.MatchedApproved++
		} else {
			res.MatchedDenied++
			if len(res.Examples) < 5 {
				res.Examples = append(res.Examples, h.Call.ID)
			}
		}
	}
	return res
}

func (b *Broker) handleReplay(req micro.Request) {
	var r ReplayRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil {
		respondJSON(req, ReplayResult{Error: "bad request: " + err.Error()})
		return
	}
	b.spawn(func() {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		respondJSON(req, b.Replay(ctx, r))
	})
}

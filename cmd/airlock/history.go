package main

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
)

// auditHistory reads an agent's past decisions of one tool from the audit
// log, read-only, for replaying proposed rules. The reader is opened on
// first use and shared.
func auditHistory(dbPath string) broker.HistoryFunc {
	var (
		once sync.Once
		r    *audit.Reader
		err  error
	)
	return func(ctx context.Context, agent, tool string, limit int) ([]airlock.DecisionRecord, error) {
		once.Do(func() { r, err = audit.OpenReadOnly(dbPath) })
		if err != nil {
			return nil, err
		}
		rows, qerr := r.DB().QueryContext(ctx, `select payload from events
			where kind = 'decision' and json_extract(payload, '$.call.agent') = ? and json_extract(payload, '$.call.tool') = ?
			order by seq desc limit ?`, agent, tool, limit)
		if qerr != nil {
			return nil, qerr
		}
		defer rows.Close()
		var out []airlock.DecisionRecord
		for rows.Next() {
			var payload string
			if err := rows.Scan(&payload); err != nil {
				return nil, err
			}
			var rec airlock.DecisionRecord
			if json.Unmarshal([]byte(payload), &rec) == nil {
				out = append(out, rec)
			}
		}
		return out, rows.Err()
	}
}

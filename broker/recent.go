package broker

import (
	"sync"

	"github.com/airlock/airlock"
)

// recentLog keeps the last few decisions of each session, for the console's
// detail pane. Bounded: at most maxSessions sessions of perSession records;
// the oldest session is dropped first.
type recentLog struct {
	mu          sync.Mutex
	maxSessions int
	perSession  int
	bySession   map[string][]airlock.DecisionRecord
	order       []string // sessions, oldest first (may hold stale names)
}

func newRecentLog(maxSessions, perSession int) *recentLog {
	return &recentLog{maxSessions: maxSessions, perSession: perSession, bySession: map[string][]airlock.DecisionRecord{}}
}

func (r *recentLog) add(session string, rec airlock.DecisionRecord) {
	if session == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	list, ok := r.bySession[session]
	if !ok {
		r.order = append(r.order, session)
		for len(r.bySession) >= r.maxSessions && len(r.order) > 0 {
			delete(r.bySession, r.order[0])
			r.order = r.order[1:]
		}
	}
	list = append(list, rec)
	if len(list) > r.perSession {
		list = list[len(list)-r.perSession:]
	}
	r.bySession[session] = list
}

// get returns up to n records of a session, newest first.
func (r *recentLog) get(session string, n int) []airlock.DecisionRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.bySession[session]
	if n <= 0 || n > len(list) {
		n = len(list)
	}
	out := make([]airlock.DecisionRecord, 0, n)
	for i := len(list) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, list[i])
	}
	return out
}

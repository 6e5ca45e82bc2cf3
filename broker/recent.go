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
	bySession   map[string]*recentRing
	order       []string // sessions, oldest first (may hold stale names)
}

// recentRing holds a session's last perSession records: appended until
// full, then overwritten oldest first (next is the oldest), so adding a
// record never reallocates.
type recentRing struct {
	recs []airlock.DecisionRecord
	next int
}

func newRecentLog(maxSessions, perSession int) *recentLog {
	return &recentLog{maxSessions: maxSessions, perSession: perSession, bySession: map[string]*recentRing{}}
}

func (r *recentLog) add(session string, rec airlock.DecisionRecord) {
	if session == "" || r.perSession <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ring, ok := r.bySession[session]
	if !ok {
		r.order = append(r.order, session)
		for len(r.bySession) >= r.maxSessions && len(r.order) > 0 {
			delete(r.bySession, r.order[0])
			r.order = r.order[1:]
		}
		ring = &recentRing{}
		r.bySession[session] = ring
	}
	if len(ring.recs) < r.perSession {
		ring.recs = append(ring.recs, rec)
		return
	}
	ring.recs[ring.next] = rec
	ring.next = (ring.next + 1) % len(ring.recs)
}

// get returns up to n records of a session, newest first.
func (r *recentLog) get(session string, n int) []airlock.DecisionRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	ring := r.bySession[session]
	if ring == nil {
		return []airlock.DecisionRecord{}
	}
	total := len(ring.recs)
	if n <= 0 || n > total {
		n = total
	}
	out := make([]airlock.DecisionRecord, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, ring.recs[(ring.next-i+total)%total])
	}
	return out
}

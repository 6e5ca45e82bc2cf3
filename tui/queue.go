package tui

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/sanitize"
)

// item is one pending call as the console knows it.
type item struct {
	p       airlock.Pending
	version uint64
	addedAt time.Time // when this console first saw it
	hash    string    // hash of the arguments shown (binds the verdict)
	summary string    // sanitised one-line summary of the arguments
	group   string    // batch group: agent, tool and argument shape
	// Fields shown in the row, sanitised once.
	agent, userOrg, tool, id string
	search                   string // lowercased text the filter matches

	inflight bool // a verdict was sent; greyed until the broker removes it
	waiting  bool // approved by this reviewer, a second approval is needed

	// Differences from the batch representative, computed once per representative.
	diffRep   string
	diff      []change
	sensitive bool
}

// row is one line of the queue: a single call, or a batch of look-alike
// calls with items[0] as the representative.
type row struct {
	key     string
	items   []*item
	risk    int
	band    string
	oldest  time.Time
	version uint64
}

func (r *row) batch() bool { return len(r.items) > 1 }

func (r *row) inflight() bool {
	for _, it := range r.items {
		if !it.inflight {
			return false
		}
	}
	return true
}

func newItem(p airlock.Pending, version uint64, now time.Time) *item {
	if p.ReceivedAt.IsZero() {
		p.ReceivedAt = now
	}
	c := &p.Call
	it := &item{
		p:       p,
		version: version,
		addedAt: now,
		hash:    airlock.ArgsHash(c.Arguments),
		summary: summarize(c),
		agent:   sanitize.Line(c.Agent),
		tool:    sanitize.Line(c.Tool),
		id:      sanitize.Line(c.ID),
	}
	switch {
	case c.User != "" && c.Org != "":
		it.userOrg = sanitize.Line(c.User + "@" + c.Org)
	case c.User != "":
		it.userOrg = sanitize.Line(c.User)
	default:
		it.userOrg = sanitize.Line(c.Org)
	}
	it.group = c.Agent + "\x00" + c.Tool + "\x00" + shape(c.Arguments)
	it.search = strings.ToLower(strings.Join([]string{it.agent, it.tool, it.userOrg, it.id, it.summary, sanitize.Line(c.Session)}, "\x00"))
	return it
}

// highRisk reports whether a call is in the high or critical band.
func highRisk(p *airlock.Pending) bool {
	switch p.Risk.Band {
	case airlock.BandHigh, airlock.BandCritical:
		return true
	case "":
		return p.Risk.Score >= 50
	}
	return false
}

// onEvent applies one broker event. Changes to the queue are coalesced: the
// rows are rebuilt at most once per flushDelay (and before any key).
func (m *Model) onEvent(ev Event) tea.Cmd {
	switch ev.Kind {
	case EventConnection:
		m.connected, m.connErr = ev.Connected, ev.Err
		if ev.Connected {
			m.everConn = true
		}
		return nil
	case EventSnapshot:
		seen := make(map[string]bool, len(ev.Pendings))
		for _, p := range ev.Pendings {
			seen[p.Call.ID] = true
			m.upsert(p)
		}
		for id := range m.items {
			if !seen[id] {
				delete(m.items, id)
			}
		}
		m.connected, m.connErr, m.everConn = true, "", true
		return m.refresh()
	case EventAdded:
		if ev.Pending != nil {
			m.upsert(*ev.Pending)
		}
	case EventRemoved:
		it, ok := m.items[ev.CallID]
		if !ok {
			return nil
		}
		delete(m.items, ev.CallID)
		if ev.Decision != nil && !it.inflight && m.isSelected(it) {
			m.setStatus("the call you were looking at was "+string(ev.Decision.Verdict)+" by "+sanitize.Line(ev.Decision.DecidedBy), false)
		}
	case EventFeed:
		m.onFeed(ev)
		return nil
	}
	m.dirty = true
	if m.flushOn {
		return nil
	}
	m.flushOn = true
	return m.after(flushDelay, flushMsg{})
}

func (m *Model) upsert(p airlock.Pending) {
	if old, ok := m.items[p.Call.ID]; ok {
		if old.hash == airlock.ArgsHash(p.Call.Arguments) && old.p.Risk.Score == p.Risk.Score &&
			len(old.p.Approvals) == len(p.Approvals) && old.p.ExpiresAt.Equal(p.ExpiresAt) {
			return
		}
		m.seq++
		it := newItem(p, m.seq, old.addedAt)
		it.inflight, it.waiting = old.inflight, old.waiting
		if old.hash != it.hash {
			it.addedAt = m.now // new arguments: a new call as far as the reviewer is concerned
			it.inflight, it.waiting = false, false
		}
		m.items[p.Call.ID] = it
		return
	}
	m.seq++
	m.items[p.Call.ID] = newItem(p, m.seq, m.now)
}

func (m *Model) isSelected(it *item) bool {
	r := m.selected()
	return r != nil && slices.Contains(r.items, it)
}

func (m *Model) onFeed(ev Event) {
	if ev.Decision == nil && ev.Call == nil {
		return
	}
	e := feedEntry{at: m.now, call: ev.Call}
	if ev.Decision != nil {
		e.decision = *ev.Decision
		if !ev.Decision.DecidedAt.IsZero() {
			e.at = ev.Decision.DecidedAt
		}
	}
	m.feed = append(m.feed, e)
	if len(m.feed) > feedMax {
		m.feed = slices.Delete(m.feed, 0, len(m.feed)-feedMax)
	}
	if ev.Call != nil && ev.Call.Session != "" {
		delete(m.recent, ev.Call.Session) // stale; fetched again when shown
	}
}

// refresh rebuilds the rows: filter, batch, sort; keeps the selection on the
// same row when it still exists.
func (m *Model) refresh() tea.Cmd {
	m.dirty = false
	var singles []*item
	groups := map[string][]*item{}
	batching := m.opts.Review.Batch
	ceiling := m.batchMaxRisk()
	for _, it := range m.items {
		if !m.matches(it) {
			continue
		}
		if batching && !m.split[it.p.Call.ID] && !highRisk(&it.p) && it.p.Risk.Score < ceiling {
			groups[it.group] = append(groups[it.group], it)
			continue
		}
		singles = append(singles, it)
	}
	rows := make([]*row, 0, len(singles)+len(groups))
	for _, it := range singles {
		rows = append(rows, singleRow(it))
	}
	for g, members := range groups {
		if len(members) == 1 {
			rows = append(rows, singleRow(members[0]))
			continue
		}
		slices.SortFunc(members, byAge)
		rep := members[0]
		kept := members[:1:1]
		for _, it := range members[1:] {
			m.diffFromRep(it, rep)
			if it.sensitive {
				rows = append(rows, singleRow(it)) // auto-split: a sensitive field differs
				continue
			}
			kept = append(kept, it)
		}
		if len(kept) == 1 {
			rows = append(rows, singleRow(rep))
			continue
		}
		r := &row{key: "batch:" + g, items: kept, oldest: rep.p.ReceivedAt}
		for _, it := range kept {
			if it.p.Risk.Score >= r.risk {
				r.risk, r.band = it.p.Risk.Score, it.p.Risk.Band
			}
			r.version = r.version*31 + it.version
		}
		r.version = r.version*31 + uint64(len(kept))
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *row) int {
		if c := cmp.Compare(b.risk, a.risk); c != 0 {
			return c
		}
		if c := a.oldest.Compare(b.oldest); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	m.rows = rows
	if len(m.rowCache) > 4096 {
		clear(m.rowCache)
	}
	// Keep the selection on the same row; else stay at the same place.
	if i := slices.IndexFunc(rows, func(r *row) bool { return r.key == m.selKey }); i >= 0 {
		m.sel = i
		if r := rows[i]; !r.batch() && r.version != m.shownVer {
			// The call itself changed under the reviewer: look again.
			m.shownAt, m.shownVer = m.now, r.version
		}
	} else {
		m.sel = min(max(m.sel, 0), max(len(rows)-1, 0))
		// Prefer a row that is not already decided.
		for m.sel < len(rows)-1 && rows[m.sel].inflight() {
			m.sel++
		}
	}
	m.ensureVisible()
	return m.selectionChanged()
}

func singleRow(it *item) *row {
	return &row{key: it.p.Call.ID, items: []*item{it}, risk: it.p.Risk.Score, band: it.p.Risk.Band,
		oldest: it.p.ReceivedAt, version: it.version}
}

func byAge(a, b *item) int {
	if c := a.p.ReceivedAt.Compare(b.p.ReceivedAt); c != 0 {
		return c
	}
	return strings.Compare(a.p.Call.ID, b.p.Call.ID)
}

// diffFromRep records how it differs from the representative, once per
// representative.
func (m *Model) diffFromRep(it, rep *item) {
	if it.diffRep == rep.p.Call.ID+"\x00"+rep.hash {
		return
	}
	it.diffRep = rep.p.Call.ID + "\x00" + rep.hash
	it.diff = argChanges(rep.p.Call.Arguments, it.p.Call.Arguments)
	it.sensitive = false
	for _, c := range it.diff {
		if c.Sensitive {
			it.sensitive = true
		}
	}
}

// setFilter sets the filter and rebuilds the rows.
func (m *Model) setFilter(f string) {
	m.filter = strings.TrimSpace(f)
	m.refresh()
}

// matches applies the filter: agent:X, tool:X, user:X, org:X, or free text
// anywhere in the row; every term must match.
func (m *Model) matches(it *item) bool {
	if m.filter == "" {
		return true
	}
	for _, term := range strings.Fields(strings.ToLower(m.filter)) {
		field, val, ok := strings.Cut(term, ":")
		if !ok {
			if !strings.Contains(it.search, term) {
				return false
			}
			continue
		}
		var in string
		switch field {
		case "agent":
			in = it.agent
		case "tool":
			in = it.tool
		case "user", "org":
			in = it.userOrg
		case "session":
			in = it.p.Call.Session
		default:
			if !strings.Contains(it.search, term) {
				return false
			}
			continue
		}
		if !strings.Contains(strings.ToLower(in), val) {
			return false
		}
	}
	return true
}

// fetchRecent loads a session's recent decisions for the detail pane.
func (m *Model) fetchRecent(session string) tea.Cmd {
	if session == "" || m.b == nil {
		return nil
	}
	if _, ok := m.recent[session]; ok {
		return nil
	}
	m.recent[session] = &recentState{loading: true}
	b, ctx := m.b, m.ctx
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, decideWait)
		defer cancel()
		recs, err := b.Recent(ctx, session, recentN)
		return recentMsg{session: session, records: recs, err: err}
	}
}

func (m *Model) onRecent(msg recentMsg) {
	st := &recentState{records: msg.records}
	if msg.err != nil {
		st.err = msg.err.Error()
		m.log.Warn("recent calls", "session", msg.session, "err", msg.err)
	}
	m.recent[msg.session] = st
	m.detCache = detailCache{}
}

// queueHeight is the number of queue rows on screen.
func (m *Model) queueHeight() int {
	_, qh, _ := m.layout()
	return qh
}

// ensureVisible scrolls the queue so the selected row is on screen.
func (m *Model) ensureVisible() {
	qh := m.queueHeight()
	if m.sel < m.qoff {
		m.qoff = m.sel
	}
	if m.sel >= m.qoff+qh {
		m.qoff = m.sel - qh + 1
	}
	m.qoff = min(max(m.qoff, 0), max(len(m.rows)-qh, 0))
}

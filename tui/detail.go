package tui

import (
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/sanitize"
)

type detailKey struct {
	row      string
	version  uint64
	width    int
	expand   bool
	diffView bool
	member   int
	mode     mode
	focus    bool
	recent   int
}

type detailCache struct {
	ok    bool
	key   detailKey
	lines []string
}

// viewDetail draws the detail pane of the selected row: a header that
// changes with time (ages, countdown), then the cached body, scrolled.
func (m *Model) viewDetail(w, h int) []string {
	if m.mode == modeEdit {
		return strings.Split(m.editor.View(), "\n")
	}
	if m.mode == modeGrant && m.gform != nil {
		lines := m.grantFormLines(w)
		return lines[:min(len(lines), max(h, 1))]
	}
	r := m.selected()
	if r == nil {
		return nil
	}
	head := m.detailHead(r, w)
	rs := 0
	if st, ok := m.recent[r.items[0].p.Call.Session]; ok {
		rs = len(st.records) + 1
		if st.loading {
			rs = -1
		}
	}
	k := detailKey{r.key, r.version, w, m.expand, m.diffView, m.member, m.mode, m.focusDet, rs}
	if !m.detCache.ok || m.detCache.key != k {
		m.detCache = detailCache{ok: true, key: k, lines: m.detailBody(r, w)}
	}
	body := m.detCache.lines
	room := max(h-len(head), 0)
	off := min(m.detailOff, max(len(body)-room, 0))
	end := min(off+room, len(body))
	out := append(head, body[off:end]...)
	if end < len(body) && len(out) > 0 {
		out[len(out)-1] = m.styles.Muted.Render(fmt.Sprintf("  ↓ %d more lines (enter, then j/k)", len(body)-end+1))
	}
	return out
}

// detailHead is the part of the detail that changes with the clock.
func (m *Model) detailHead(r *row, w int) []string {
	st := &m.styles
	it := r.items[0]
	p := &it.p
	band := bandOr(r.band, r.risk)
	title := st.Header.Render(it.tool)
	if r.batch() {
		title += st.Warn.Render(fmt.Sprintf(" ×%d", len(r.items)))
	}
	title += " · " + it.agent
	if it.userOrg != "" {
		title += " · " + it.userOrg
	}
	if p.Call.Session != "" {
		title += " · session " + sanitize.Line(p.Call.Session)
	}
	title += "  " + st.band(band).Render(fmt.Sprintf("%s %d", strings.ToUpper(band), r.risk))
	left := p.ExpiresAt.Sub(m.now)
	exp := "expires in " + fmtLeft(left)
	if p.ExpiresAt.IsZero() {
		exp = "no expiry"
	}
	es := st.Muted
	if !p.ExpiresAt.IsZero() && left < 60e9 {
		es = st.Error
	}
	when := st.Muted.Render("received "+fmtAge(m.now.Sub(r.oldest))+" ago · ") + es.Render(exp) +
		st.Muted.Render(" · id "+it.id)
	return []string{truncate(title, w), truncate(when, w)}
}

// detailBody is everything below the head, wrapped to w.
func (m *Model) detailBody(r *row, w int) []string {
	var lines []string
	if r.batch() {
		lines = m.batchBody(r, w)
	} else {
		lines = m.singleBody(r.items[0], w)
	}
	var out []string
	for _, l := range lines {
		if ansi.StringWidth(l) <= w {
			out = append(out, l)
			continue
		}
		out = append(out, strings.Split(ansi.Wrap(l, max(w, 10), ""), "\n")...)
	}
	return out
}

func (m *Model) section(title string, w int) string {
	t := "── " + title + " "
	return m.styles.Header.Render(t + strings.Repeat("─", max(w-ansi.StringWidth(t), 0)))
}

func (m *Model) singleBody(it *item, w int) []string {
	st := &m.styles
	p := &it.p
	c := &p.Call
	var out []string
	if reason := c.Reason(); reason != "" {
		out = append(out, st.Label.Render("agent's reason: ")+"“"+sanitize.Line(reason)+"”")
	} else {
		out = append(out, st.Label.Render("agent's reason: ")+st.Muted.Render("(none given)"))
	}
	if p.Reason != "" || p.Rule != "" {
		held := sanitize.Line(p.Reason)
		if p.Rule != "" {
			held += st.Muted.Render(" (rule: " + sanitize.Line(p.Rule) + ")")
		}
		out = append(out, st.Label.Render("held because: ")+held)
	}
	if len(p.Approvals) > 0 {
		names := make([]string, len(p.Approvals))
		for i, a := range p.Approvals {
			names[i] = sanitize.Line(a)
		}
		out = append(out, st.Warn.Render("approved so far by: "+strings.Join(names, ", ")+" — another reviewer is needed"))
	}
	if it.waiting {
		out = append(out, st.Info.Render("you approved this call; waiting for a second reviewer"))
	}

	switch {
	case m.mode == modeEditConfirm && m.act != nil && m.act.edited != nil:
		out = append(out, m.section("your edits (diff against the agent's arguments)", w))
		out = append(out, m.changeLines(argChanges(c.Arguments, m.act.edited))...)
		out = append(out, m.section("arguments as they will be approved", w))
		out = append(out, m.argLines(c, m.act.edited, w, m.expand)...)
	case m.diffView:
		base, ok := m.lastApproved[c.Agent+"\x00"+c.Tool]
		if !ok {
			out = append(out, m.section("arguments (no earlier approval of this tool for this agent to diff against)", w))
			out = append(out, m.argLines(c, c.Arguments, w, m.expand)...)
			break
		}
		out = append(out, m.section("diff against the last "+it.tool+" you approved for "+it.agent, w))
		cs := argChanges(base, c.Arguments)
		if len(cs) == 0 {
			out = append(out, st.Muted.Render("  identical arguments"))
		}
		out = append(out, m.changeLines(cs)...)
	default:
		out = append(out, m.section("arguments", w))
		out = append(out, m.argLines(c, c.Arguments, w, m.expand)...)
	}

	out = append(out, m.section(fmt.Sprintf("risk %d (%s)", p.Risk.Score, bandOr(p.Risk.Band, p.Risk.Score)), w))
	if len(p.Risk.Factors) == 0 {
		out = append(out, st.Muted.Render("  no risk factors"))
	}
	for _, f := range p.Risk.Factors {
		out = append(out, fmt.Sprintf("  %s %s  %s", st.Warn.Render(fmt.Sprintf("%+4d", f.Points)),
			st.Value.Bold(true).Render(sanitize.Line(f.Name)), sanitize.Line(f.Detail)))
	}
	if len(p.Sandbox) > 0 {
		out = append(out, m.section("sandbox it will run in", w))
		keys := make([]string, 0, len(p.Sandbox))
		for k := range p.Sandbox {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, st.Label.Render(sanitize.Line(k)+"=")+sanitize.Line(p.Sandbox[k]))
		}
		out = append(out, "  "+strings.Join(parts, "  "))
	}
	out = append(out, m.recentLines(c.Session, w)...)
	return out
}

// bandOr returns the band the broker sent when it is one of the four, else
// the band of the score (a band is never shown as the broker spelled it).
func bandOr(b string, score int) string {
	switch b {
	case airlock.BandLow, airlock.BandMedium, airlock.BandHigh, airlock.BandCritical:
		return b
	}
	return bandOf(score)
}

func (m *Model) recentLines(session string, w int) []string {
	st := &m.styles
	if session == "" {
		return nil
	}
	out := []string{m.section("recent in session "+sanitize.Line(session), w)}
	rs, ok := m.recent[session]
	switch {
	case !ok || rs.loading:
		out = append(out, st.Muted.Render("  loading…"))
	case rs.err != "":
		out = append(out, st.Error.Render("  could not load: "+sanitize.Line(rs.err)))
	case len(rs.records) == 0:
		out = append(out, st.Muted.Render("  no earlier decisions in this session"))
	}
	if ok {
		for _, rec := range rs.records {
			d := rec.Decision
			out = append(out, fmt.Sprintf("  %s %-9s %s %s %s", d.DecidedAt.Format("15:04:05"),
				sanitize.Line(string(d.Verdict)), pad(sanitize.Line(rec.Call.Tool), 14), pad(sanitize.Line(d.DecidedBy), 16),
				summarize(&rec.Call)))
		}
	}
	return out
}

func (m *Model) batchBody(r *row, w int) []string {
	st := &m.styles
	rep := r.items[0]
	out := []string{
		st.Info.Render(fmt.Sprintf("batch of %d look-alike calls: same agent, tool and argument shape, each below risk %d.",
			len(r.items), m.batchMaxRisk())),
		st.Muted.Render("a / d decide all of them; enter, then j/k and s split one out."),
	}
	out = append(out, m.section("representative (oldest) "+rep.id, w))
	out = append(out, m.argLines(&rep.p.Call, rep.p.Call.Arguments, w, m.expand)...)
	out = append(out, m.section("members: what differs from the representative", w))
	for i, it := range r.items {
		mark := "  "
		if m.focusDet && i == m.member {
			mark = "▶ "
		}
		desc := st.Muted.Render("representative")
		if i > 0 {
			m.diffFromRep(it, rep)
			if len(it.diff) == 0 {
				desc = st.Muted.Render("identical arguments")
			} else {
				desc = m.oneLine(it.diff)
			}
		}
		line := fmt.Sprintf("%s%s %s %s", mark, st.band(bandOr(it.p.Risk.Band, it.p.Risk.Score)).Render(fmt.Sprintf("%3d", it.p.Risk.Score)), pad(it.id, 12), desc)
		if m.focusDet && i == m.member {
			line = st.Selected.Render(ansi.Strip(line))
		}
		out = append(out, line)
	}
	return out
}

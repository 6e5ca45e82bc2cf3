package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/sanitize"
)

// View draws the console. It reads no clock and does no I/O; it only fills
// render caches.
func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "airlock console"
	return v
}

// sideBySide is the width from which queue and detail sit side by side.
const sideBySide = 150

// layout returns whether the panes sit side by side, the queue's height and
// the detail pane's height.
func (m *Model) layout() (side bool, qh, dh int) {
	body := max(m.height-3, 2) // tabs, message line, status bar
	if m.width >= sideBySide {
		return true, body, body
	}
	n := max(len(m.rows), 1)
	qh = min(n, max(3, body*2/5))
	return false, qh, max(body-qh-1, 1)
}

func (m *Model) render() string {
	w := m.width
	lines := make([]string, 0, m.height)
	lines = append(lines, m.viewTabs(w))
	side, qh, dh := m.layout()
	body := max(m.height-3, 2)
	switch m.tab {
	case tabQueue:
		if side {
			qw := w * 2 / 5
			dw := w - qw - 1
			q := m.viewQueue(qw, qh)
			d := m.viewDetail(dw, dh)
			sep := m.styles.Muted.Render("│")
			for i := 0; i < body; i++ {
				lines = append(lines, pad(at(q, i), qw)+sep+at(d, i))
			}
		} else {
			lines = append(lines, m.viewQueue(w, qh)...)
			for i := len(lines); i < 1+qh; i++ {
				lines = append(lines, "")
			}
			lines = append(lines, m.divider(w))
			lines = append(lines, m.viewDetail(w, dh)...)
		}
	case tabFeed:
		lines = append(lines, m.viewFeed(w, body)...)
	case tabHistory:
		lines = append(lines, m.viewHistory(w, body)...)
	case tabGrants:
		lines = append(lines, m.viewGrants(w, body)...)
	case tabHelp:
		lines = append(lines, m.viewHelp(w, body)...)
	}
	for len(lines) < m.height-2 {
		lines = append(lines, "")
	}
	lines = lines[:m.height-2]
	lines = append(lines, truncate(m.viewMessage(w), w), m.viewStatus(w))
	for i, l := range lines {
		lines[i] = truncate(l, w)
	}
	return strings.Join(lines, "\n")
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func truncate(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

func (m *Model) viewTabs(w int) string {
	st := &m.styles
	var b strings.Builder
	b.WriteString(st.Title.Render("airlock"))
	b.WriteString(" ")
	for i, name := range tabNames {
		label := name
		if tab(i) == tabQueue {
			label = fmt.Sprintf("%s %d", name, len(m.items))
		}
		if tab(i) == m.tab {
			b.WriteString(st.ActiveTab.Render("[" + label + "]"))
		} else {
			b.WriteString(st.Tab.Render(" " + label + " "))
		}
		b.WriteString(" ")
	}
	if m.filter != "" {
		b.WriteString(st.Warn.Render("/" + sanitize.Line(m.filter)))
		fmt.Fprintf(&b, " (%d rows)", len(m.rows))
	}
	return b.String()
}

func (m *Model) divider(w int) string {
	label := " detail "
	if m.focusDet {
		label = " detail (focused: j/k scroll, esc back) "
	}
	return m.styles.Muted.Render("──" + label + strings.Repeat("─", max(w-2-len(label), 0)))
}

// viewQueue draws only the rows on screen.
func (m *Model) viewQueue(w, h int) []string {
	if len(m.rows) == 0 {
		msg := "  nothing waiting — calls that need a human appear here"
		if m.filter != "" {
			msg = "  no call matches the filter (esc clears it)"
		}
		return []string{m.styles.Muted.Render(msg)}
	}
	off := min(max(m.qoff, 0), max(len(m.rows)-h, 0))
	if m.sel < off {
		off = m.sel
	} else if m.sel >= off+h {
		off = m.sel - h + 1
	}
	end := min(off+h, len(m.rows))
	out := make([]string, 0, end-off)
	for i := off; i < end; i++ {
		out = append(out, m.rowLine(m.rows[i], i == m.sel, w))
	}
	return out
}

type rowCacheKey struct {
	key      string
	width    int
	version  uint64
	inflight bool
	waiting  bool
}

// rowLine draws one queue row; the part that does not change with time
// (agent, user, tool, summary) is cached by (row, width, version).
func (m *Model) rowLine(r *row, selected bool, w int) string {
	st := &m.styles
	inflight := r.inflight()
	ck := rowCacheKey{r.key, w, r.version, inflight, r.items[0].waiting}
	rest, ok := m.rowCache[ck]
	if !ok {
		rest = m.rowRest(r, w)
		m.rowCache[ck] = rest
	}
	band := bandOr(r.band, r.risk)
	badge := fmt.Sprintf("%-4s %3d", bandAbbrev(band), r.risk)
	age := fmtAge(m.now.Sub(r.oldest))
	marker := "  "
	switch {
	case selected:
		marker = "▶ "
	case inflight:
		marker = "… "
	}
	if selected || inflight {
		line := pad(marker+badge+" "+fmt.Sprintf("%4s", age)+" "+rest, w)
		if inflight {
			return st.Greyed.Render(line)
		}
		return st.Selected.Render(line)
	}
	return marker + st.band(band).Render(badge) + " " + st.Dim.Render(fmt.Sprintf("%4s", age)) + " " + rest
}

// rowRest is the cached part of a row: agent, user@org, tool (×count for a
// batch) and the summary, laid out for the width.
func (m *Model) rowRest(r *row, w int) string {
	it := r.items[0]
	tool := it.tool
	if r.batch() {
		tool += " ×" + strconv.Itoa(len(r.items))
	}
	if it.waiting {
		tool += " ✓½"
	}
	rest := w - 2 - 8 - 1 - 4 - 1
	var cols []string
	switch {
	case w >= 100:
		cols = []string{pad(it.agent, 16), pad(it.userOrg, 16), pad(tool, 20)}
	case w >= 60:
		cols = []string{pad(it.agent, 14), pad(tool, 18)}
	default:
		cols = []string{pad(tool, 12)}
	}
	s := strings.Join(cols, " ") + " "
	return truncate(s+it.summary, max(rest, 1))
}

func bandOf(score int) string {
	switch {
	case score >= 80:
		return airlock.BandCritical
	case score >= 50:
		return airlock.BandHigh
	case score >= 25:
		return airlock.BandMedium
	}
	return airlock.BandLow
}

func bandAbbrev(b string) string {
	switch b {
	case airlock.BandCritical:
		return "CRIT"
	case airlock.BandHigh:
		return "HIGH"
	case airlock.BandMedium:
		return "MED"
	}
	return "LOW"
}

func fmtAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

func fmtLeft(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	d = d.Round(time.Second)
	if d < time.Minute {
		return strconv.Itoa(int(d.Seconds())) + "s"
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// viewMessage is the line under the panes: the open prompt, a notice, the
// last status, or the short help.
func (m *Model) viewMessage(w int) string {
	st := &m.styles
	switch m.mode {
	case modeDeny, modeFilter:
		return m.input.View()
	case modeTyped:
		return st.Warn.Render("critical call: ") + m.input.View()
	case modeConfirm:
		return st.Warn.Render("high-risk call: press y to approve, n or Esc to cancel")
	case modeEdit:
		if m.statusErr && m.status != "" {
			return st.Error.Render(m.status + " · ctrl+s to retry · Esc cancels")
		}
		return st.Info.Render("editing the arguments: ctrl+s to review the change · Esc cancels")
	case modeEditConfirm:
		return st.Warn.Render("approve with these edits? y approves · n or Esc discards")
	case modeGrant:
		if m.statusErr && m.status != "" {
			return st.Error.Render(m.status)
		}
		return st.Info.Render("grant: tab next field · enter approves and creates the grant · Esc cancels")
	case modeRevoke:
		return st.Warn.Render("revoke grant " + sanitize.Line(m.revokeID) + " at once? y revokes · n or Esc keeps it")
	}
	if m.notice != "" && (m.noticeUrgent || m.status == "" || !m.statusAt.After(m.noticeAt)) {
		return st.Notice.Render(m.notice)
	}
	if m.status != "" {
		if m.statusErr {
			return st.Error.Render(m.status)
		}
		return st.Info.Render(m.status)
	}
	m.help.SetWidth(w)
	short := m.keys.ShortHelp()
	switch {
	case m.tab == tabGrants:
		short = []key.Binding{m.keys.Up, m.keys.Down, m.keys.Revoke, m.keys.NextTab, m.keys.Help, m.keys.Quit}
	case m.tab == tabQueue && m.grantable(m.selected()):
		// Offered only where a grant may be made: never on a high-risk call.
		short = slices.Insert(short, 2, m.keys.Grant)
	}
	return m.help.ShortHelpView(short)
}

func (m *Model) viewStatus(w int) string {
	st := &m.styles
	var conn string
	switch {
	case m.connected:
		conn = st.Connected.Render("● connected")
	case m.everConn:
		e := ""
		if m.connErr != "" {
			e = " (" + sanitize.Line(m.connErr) + ")"
		}
		conn = st.Disconnected.Render("● reconnecting…" + e)
	default:
		conn = st.Disconnected.Render("● connecting…")
	}
	left := fmt.Sprintf("%s │ reviewer %s │ %d pending │ %d today │ %d/min",
		conn, sanitize.Line(m.opts.Reviewer), len(m.items), m.DecisionsToday(), m.approvalsPerMinute())
	right := "? help"
	// Telemetry when it fits: approval rate and median time on screen.
	if n, rate, median := m.stats(); n > 0 {
		for _, extra := range []string{
			fmt.Sprintf(" │ %d%% approved │ median %.1f s", rate, median.Seconds()),
			fmt.Sprintf(" │ %d%% ok", rate),
		} {
			if ansi.StringWidth(left)+ansi.StringWidth(extra)+len(right)+1 <= w {
				left += extra
				break
			}
		}
	}
	gap := w - ansi.StringWidth(left) - len(right)
	if gap < 1 {
		return st.StatusBar.Render(pad(left, w))
	}
	return st.StatusBar.Render(left + strings.Repeat(" ", gap) + right)
}

func (m *Model) viewFeed(w, h int) []string {
	st := &m.styles
	out := []string{st.Header.Render("Feed — notify-tier calls and decisions by anyone, newest first")}
	if len(m.feed) == 0 {
		out = append(out, st.Muted.Render("  nothing yet"))
	}
	for i := len(m.feed) - 1; i >= 0 && len(out) < h; i-- {
		e := m.feed[i]
		d := e.decision
		verdict := strings.ToUpper(sanitize.Line(string(d.Verdict)))
		if d.Tier == airlock.TierNotify {
			verdict = "NOTIFY"
		}
		vs := st.Muted
		switch d.Verdict {
		case airlock.VerdictApproved:
			vs = st.Added
		case airlock.VerdictDenied, airlock.VerdictRejected:
			vs = st.Removed
		case airlock.VerdictExpired, airlock.VerdictRateLimited:
			vs = st.Changed
		}
		agent, tool, sum := "", "", ""
		if e.call != nil {
			agent, tool, sum = sanitize.Line(e.call.Agent), sanitize.Line(e.call.Tool), summarize(e.call)
		}
		line := e.at.Format("15:04:05") + " " + vs.Render(fmt.Sprintf("%-12s", verdict)) + " " +
			pad(sanitize.Line(d.DecidedBy), 18) + " " + pad(agent, 14) + " " + pad(tool, 16) + " " + sum
		out = append(out, truncate(line, w))
	}
	return out
}

func (m *Model) viewHistory(w, h int) []string {
	st := &m.styles
	out := []string{st.Header.Render(fmt.Sprintf("History — decisions by %s, newest first", sanitize.Line(m.opts.Reviewer))),
		st.Muted.Render(m.telemetry())}
	if len(m.history) == 0 {
		out = append(out, st.Muted.Render("  no decisions yet"))
	}
	for i := len(m.history) - 1; i >= 0 && len(out) < h; i-- {
		e := m.history[i]
		a := string(e.action)
		if e.edited {
			a += "+edit"
		}
		as := st.Added
		if e.action == airlock.ActionDeny {
			as = st.Removed
		}
		line := e.at.Format("15:04:05") + " " + as.Render(fmt.Sprintf("%-12s", a)) + " " + pad(e.tool, 16) + " " +
			pad(e.agent, 14) + " " + st.Dim.Render(fmt.Sprintf("%5.1fs", float64(e.shownMS)/1000)) + " " + e.summary
		if e.reason != "" {
			line += st.Muted.Render(" — " + e.reason)
		}
		out = append(out, truncate(line, w))
	}
	return out
}

func (m *Model) viewHelp(w, h int) []string {
	st := &m.styles
	m.help.SetWidth(w)
	out := []string{st.Header.Render("Keys")}
	groups := m.keys.FullHelp()
	per := 2 // groups side by side
	if w >= 110 {
		per = len(groups)
	} else if w < 60 {
		per = 1
	}
	for i := 0; i < len(groups); i += per {
		out = append(out, strings.Split(m.help.FullHelpView(groups[i:min(i+per, len(groups))]), "\n")...)
	}
	out = append(out, "", st.Header.Render("Safety"))
	for _, s := range []string{
		fmt.Sprintf("• keys are ignored for %s after a call appears; Esc never approves", m.grace()),
		fmt.Sprintf("• high-risk calls: %s on screen, then a, then y", m.dwell()),
		fmt.Sprintf("• critical calls (risk ≥ %d): type the field asked for", m.confirmRisk()),
		fmt.Sprintf("• at most %d approvals a minute; a batch (×N) counts once", m.maxApprovals()),
		fmt.Sprintf("• grants (A): routine calls only (risk < %d), %s at most; r revokes", m.batchMaxRisk(), shortDur(m.grantMaxTTL())),
		"• agent text is shown with visible escapes (␛, ⟨U+202E⟩), never obeyed",
	} {
		out = append(out, st.Muted.Render(s))
	}
	if len(out) > h {
		out = out[:h]
	}
	return out
}

// shortDur writes 1h0m0s as 1h and 15m0s as 15m.
func shortDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

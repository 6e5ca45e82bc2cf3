package tui

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	tea "charm.land/bubbletea/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/sanitize"
)

// decisionTarget returns the selected row if a decision key may act on it
// now: something is selected, it is not already decided, and it has been on
// screen for the grace period.
func (m *Model) decisionTarget() (*row, bool) {
	r := m.selected()
	if r == nil {
		m.setStatus("nothing to decide", false)
		return nil, false
	}
	if r.inflight() {
		m.setStatus("verdict already sent; waiting for the broker", false)
		return nil, false
	}
	if m.now.Sub(m.shownAt) < m.grace() {
		msg := "key ignored: this call just appeared"
		if m.status != "" && !strings.HasPrefix(m.status, "key ignored") && m.now.Sub(m.statusAt) < 2*m.grace() {
			msg += " (" + m.status + ")"
		}
		m.setStatus(msg, false)
		return nil, false
	}
	return r, true
}

// actionable returns the members a decision on r applies to: not already
// decided, and (for a batch) on screen for at least the grace period, so a
// call that joins a batch at the last moment is not decided unseen.
func (m *Model) actionable(r *row) []*item {
	var out []*item
	for _, it := range r.items {
		if it.inflight {
			continue
		}
		if r.batch() && m.now.Sub(it.addedAt) < m.grace() {
			continue
		}
		out = append(out, it)
	}
	return out
}

func (m *Model) newAction(r *row, items []*item, kind airlock.ReviewAction) *action {
	a := &action{rowKey: r.key, items: items, kind: kind, shownMS: m.now.Sub(m.shownAt).Milliseconds()}
	for _, it := range items {
		a.versions = append(a.versions, it.version)
	}
	return a
}

// valid reports whether every call of the action is still pending, unchanged
// and undecided.
func (m *Model) valid(a *action) bool {
	for i, it := range a.items {
		cur, ok := m.items[it.p.Call.ID]
		if !ok || cur != it || it.version != a.versions[i] || it.inflight {
			return false
		}
	}
	return len(a.items) > 0
}

// rateWait is how long approvals are paused by the rate guard (0: not paused).
func (m *Model) rateWait() time.Duration {
	limit := m.maxApprovals()
	if limit < 0 {
		return 0
	}
	cut := m.now.Add(-time.Minute)
	i := 0
	for i < len(m.approvals) && !m.approvals[i].After(cut) {
		i++
	}
	m.approvals = m.approvals[i:]
	if len(m.approvals) < limit {
		return 0
	}
	return m.approvals[len(m.approvals)-limit].Add(time.Minute).Sub(m.now)
}

func (m *Model) approveKey() tea.Cmd {
	r, ok := m.decisionTarget()
	if !ok {
		return nil
	}
	return m.tryApprove(r, nil, false, nil)
}

// tryApprove runs the approval guards in order: rate guard, dwell for
// high-risk calls, typed confirmation for critical ones, an explicit y for
// high-risk ones. A plain call is approved by the one key.
//
// grant, when set, rides on the approval of the first call: the broker
// creates the grant from it (or says in the reply's Note why not).
func (m *Model) tryApprove(r *row, edited map[string]any, confirmed bool, grant *airlock.GrantRequest) tea.Cmd {
	items := m.actionable(r)
	if len(items) == 0 {
		m.setStatus("nothing to approve yet: the batch's calls just arrived", false)
		return nil
	}
	for _, it := range items {
		if it.waiting || m.approvedByMe(&it.p) {
			m.setStatus("you already approved "+it.id+"; a different reviewer must approve it", true)
			return nil
		}
	}
	if wait := m.rateWait(); wait > 0 {
		m.setStatus(fmt.Sprintf("rate guard: %d approvals in the last minute; approvals paused for %s — take a breath and read",
			len(m.approvals), fmtSecs(wait)), true)
		return nil
	}
	high := false
	for _, it := range items {
		high = high || highRisk(&it.p)
	}
	if high {
		if left := m.dwell() - m.now.Sub(m.shownAt); left > 0 {
			m.setStatus(fmt.Sprintf("hold on: %s of review left for a high-risk call", fmtSecs(left)), true)
			return nil
		}
	}
	a := m.newAction(r, items, airlock.ActionApprove)
	a.edited = edited
	a.grant = grant
	if r.risk >= m.confirmRisk() {
		lead := items[0]
		a.label, a.expect = confirmField(&lead.p, edited)
		a.expectAl = sanitize.Line(a.expect)
		m.act, m.mode = a, modeTyped
		m.input.Reset()
		m.input.Prompt = "type the " + a.label + " to approve: "
		m.input.Placeholder = ""
		m.setStatus("", false)
		return m.input.Focus()
	}
	if high && !confirmed {
		m.act, m.mode = a, modeConfirm
		m.setStatus("", false)
		return nil
	}
	return m.send(a, "")
}

func (m *Model) denyKey() tea.Cmd {
	r, ok := m.decisionTarget()
	if !ok {
		return nil
	}
	items := m.actionable(r)
	if len(items) == 0 {
		m.setStatus("nothing to deny yet: the batch's calls just arrived", false)
		return nil
	}
	m.act, m.mode = m.newAction(r, items, airlock.ActionDeny), modeDeny
	m.input.Reset()
	m.input.Prompt = "deny — reason: "
	m.input.Placeholder = "why (Enter sends, Esc cancels)"
	m.setStatus("", false)
	return m.input.Focus()
}

func (m *Model) editKey(external bool) tea.Cmd {
	if external && m.opts.EditExternal == nil {
		m.setStatus("no external editor configured; e edits inline", false)
		return nil
	}
	r, ok := m.decisionTarget()
	if !ok {
		return nil
	}
	if r.batch() {
		m.setStatus("edit one call at a time: split it out of the batch first (s)", false)
		return nil
	}
	a := m.newAction(r, r.items, airlock.ActionApprove)
	m.act = a
	doc := editorJSON(r.items[0].p.Call.Arguments)
	if external {
		ed := &extEdit{ctx: m.ctx, fn: m.opts.EditExternal, in: []byte(doc)}
		return tea.Exec(ed, func(err error) tea.Msg { return editedMsg{doc: ed.out, err: err} })
	}
	if len(doc) > inlineEditMax {
		m.act = nil
		if m.opts.EditExternal != nil {
			m.setStatus(fmt.Sprintf("too large to edit inline (%d bytes): E opens your editor", len(doc)), true)
		} else {
			m.setStatus(fmt.Sprintf("too large to edit inline (%d bytes)", len(doc)), true)
		}
		return nil
	}
	m.mode = modeEdit
	m.sizeEditor()
	m.editor.SetValue(doc)
	m.editor.MoveToBegin()
	m.setStatus("", false)
	return m.editor.Focus()
}

func (m *Model) splitKey() tea.Cmd {
	r := m.selected()
	if r == nil || !r.batch() {
		m.setStatus("not a batch: nothing to split", false)
		return nil
	}
	it := r.items[min(max(m.member, 0), len(r.items)-1)]
	m.split[it.p.Call.ID] = true
	m.setStatus("split "+it.id+" out of the batch", false)
	m.refresh()
	return nil
}

// onPromptKey handles a key while a prompt is open. Esc always cancels and
// never approves.
func (m *Model) onPromptKey(msg tea.KeyPressMsg) tea.Cmd {
	s := msg.String()
	if s == "esc" {
		switch m.mode {
		case modeFilter:
			m.setFilter("")
			m.setStatus("filter cleared", false)
		default:
			m.setStatus("cancelled: nothing was sent", false)
		}
		m.closePrompt()
		return nil
	}
	switch m.mode {
	case modeGrant:
		return m.onGrantFormKey(msg)
	case modeRevoke:
		switch s {
		case "y", "Y", "enter":
			id := m.revokeID
			m.closePrompt()
			return m.revokeCmd(id)
		case "n", "N":
			m.closePrompt()
			m.setStatus("not revoked", false)
		}
		return nil
	case modeFilter:
		if s == "enter" {
			m.closePrompt()
			return nil
		}
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		m.setFilter(m.input.Value())
		return cmd
	case modeDeny:
		if s == "enter" {
			a := m.act
			reason := strings.TrimSpace(m.input.Value())
			m.closePrompt()
			if !m.valid(a) {
				m.setStatus("the call changed or left the queue; nothing was sent", true)
				return nil
			}
			return m.send(a, reason)
		}
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return cmd
	case modeTyped:
		if s == "enter" {
			a := m.act
			got := strings.ToLower(strings.TrimSpace(m.input.Value()))
			if got == "" || (got != strings.ToLower(a.expect) && got != strings.ToLower(a.expectAl)) {
				m.input.Reset()
				m.setStatus("that is not the "+a.label+" of this call: read it again (Esc cancels)", true)
				return nil
			}
			m.closePrompt()
			if !m.valid(a) {
				m.setStatus("the call changed or left the queue; nothing was sent", true)
				return nil
			}
			return m.send(a, "")
		}
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return cmd
	case modeConfirm:
		switch s {
		case "y", "Y", "enter":
			a := m.act
			m.closePrompt()
			if !m.valid(a) {
				m.setStatus("the call changed or left the queue; nothing was sent", true)
				return nil
			}
			return m.send(a, "")
		case "n", "N":
			m.closePrompt()
			m.setStatus("not approved", false)
		}
		return nil
	case modeEdit:
		if s == "ctrl+s" {
			doc := m.editor.Value()
			m.editor.Blur()
			m.mode = modeNone
			return m.onEdited(editedMsg{doc: []byte(doc)})
		}
		var cmd tea.Cmd
		m.editor, cmd = m.editor.Update(msg)
		return cmd
	case modeEditConfirm:
		switch s {
		case "y", "Y", "enter":
			a := m.act
			m.closePrompt()
			if !m.valid(a) {
				m.setStatus("the call changed or left the queue; nothing was sent", true)
				return nil
			}
			r := m.rowOf(a.items[0])
			if r == nil {
				return nil
			}
			return m.tryApprove(r, a.edited, true, nil)
		case "n", "N":
			m.closePrompt()
			m.setStatus("edit discarded: nothing was sent", false)
		}
		return nil
	}
	return nil
}

func (m *Model) closePrompt() {
	m.mode = modeNone
	m.act = nil
	m.input.Blur()
	m.input.Reset()
	m.editor.Blur()
	m.gform = nil
	m.revokeID = ""
	m.detCache = detailCache{}
}

func (m *Model) rowOf(it *item) *row {
	for _, r := range m.rows {
		for _, x := range r.items {
			if x == it {
				return r
			}
		}
	}
	return nil
}

// onEdited checks an edited document: it must be a JSON object. A changed
// one is shown as a diff to confirm.
func (m *Model) onEdited(msg editedMsg) tea.Cmd {
	a := m.act
	if a == nil {
		return nil
	}
	if msg.err != nil {
		m.act = nil
		m.setStatus("editor: "+sanitize.Line(msg.err.Error()), true)
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(msg.doc))
	err := dec.Decode(&v)
	if err == nil && dec.More() {
		err = fmt.Errorf("extra data after the object")
	}
	obj, isObj := v.(map[string]any)
	if err != nil || !isObj {
		if err == nil {
			err = fmt.Errorf("the arguments must be a JSON object")
		}
		// Back to the editor with the text kept.
		m.mode = modeEdit
		m.editor.SetValue(string(msg.doc))
		m.setStatus("cannot use the edit: "+sanitize.Line(err.Error()), true)
		return m.editor.Focus()
	}
	if !m.valid(a) {
		m.closePrompt()
		m.setStatus("the call changed or left the queue while you edited; nothing was sent", true)
		return nil
	}
	if airlock.ArgsHash(obj) == a.items[0].hash {
		m.closePrompt()
		m.setStatus("no changes: press a to approve the call as it is", false)
		return nil
	}
	a.edited = obj
	m.mode = modeEditConfirm
	m.detailOff = 0
	m.detCache = detailCache{}
	m.setStatus("", false)
	return nil
}

// send sends one Review per call of the action and greys them until the
// broker removes them.
func (m *Model) send(a *action, reason string) tea.Cmd {
	var cmds []tea.Cmd
	for i, it := range a.items {
		rv := airlock.Review{
			CallID:    it.p.Call.ID,
			Action:    a.kind,
			Reviewer:  m.opts.Reviewer,
			Reason:    reason,
			ArgsHash:  it.hash,
			ShownMS:   a.shownMS,
			Timestamp: m.now,
			Nonce:     nonce(),
		}
		if a.edited != nil {
			rv.UpdatedArguments = a.edited
			rv.ArgsHash = airlock.ArgsHash(a.edited)
		}
		if i == 0 && a.grant != nil {
			g := *a.grant
			rv.Grant = &g
		}
		it.inflight = true
		cmds = append(cmds, m.decideCmd(rv, it))
	}
	if a.kind == airlock.ActionApprove {
		m.approvals = append(m.approvals, m.now)
	}
	n := len(a.items)
	verb := "approving"
	if a.kind == airlock.ActionDeny {
		verb = "denying"
	}
	if a.grant != nil {
		verb += " (with a grant for " + a.grant.For + ")"
	}
	if n == 1 {
		m.setStatus(verb+" "+a.items[0].tool+" "+a.items[0].id+"…", false)
	} else {
		m.setStatus(fmt.Sprintf("%s %d calls…", verb, n), false)
	}
	m.advance()
	return tea.Batch(cmds...)
}

// advance moves the selection off a decided row to the next undecided one.
func (m *Model) advance() {
	if len(m.rows) == 0 {
		return
	}
	for i := m.sel; i < len(m.rows); i++ {
		if !m.rows[i].inflight() {
			m.sel = i
			m.selectionChanged()
			return
		}
	}
	for i := m.sel; i >= 0; i-- {
		if !m.rows[i].inflight() {
			m.sel = i
			m.selectionChanged()
			return
		}
	}
}

func (m *Model) decideCmd(rv airlock.Review, it *item) tea.Cmd {
	b, ctx := m.b, m.ctx
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, decideWait)
		defer cancel()
		reply, err := b.Decide(ctx, rv)
		return decidedMsg{review: rv, item: it, reply: reply, err: err}
	}
}

// onDecided handles the broker's reply to one Review.
func (m *Model) onDecided(msg decidedMsg) tea.Cmd {
	it, rv, reply := msg.item, msg.review, msg.reply
	name := it.tool + " " + it.id
	switch {
	case msg.err != nil:
		it.inflight = false
		m.setStatus("could not send the verdict on "+name+": "+sanitize.Line(msg.err.Error()), true)
		m.log.Warn("decide", "call", rv.CallID, "err", msg.err)
		return nil
	case !reply.Accepted:
		it.inflight = false
		m.log.Info("verdict refused", "call", rv.CallID, "decided_by", reply.DecidedBy, "error", reply.Error)
		switch {
		case reply.DecidedBy != "":
			m.setStatus(name+": already decided by "+sanitize.Line(reply.DecidedBy), true)
		case reply.Error != "":
			m.setStatus(name+": refused: "+sanitize.Line(reply.Error), true)
		default:
			m.setStatus(name+": refused by the broker", true)
		}
		return nil
	}
	if reply.Canary {
		it.inflight = true
		if rv.Action == airlock.ActionDeny {
			m.checksCaught++
			m.notice = "That was an attention check — well caught: it was a planted dangerous call, and denying it was right."
		} else {
			m.checksMissed++
			m.notice = "That was an attention check — you approved a planted dangerous call. Nothing ran; slow down and read each call."
		}
		m.noticeAt, m.noticeUrgent = m.now, true
	}
	if reply.Waiting {
		it.inflight, it.waiting = false, true
		m.setStatus(name+": your approval is recorded; a second reviewer must approve too", false)
	} else if !reply.Canary {
		verb := "approved"
		if rv.Action == airlock.ActionDeny {
			verb = "denied"
		}
		if rv.UpdatedArguments != nil {
			verb += " with edits"
		}
		m.setStatus(verb+": "+name, false)
	}
	if rv.Grant != nil {
		m.onGrantReply(name, reply)
	} else if reply.Note != "" && !reply.Canary {
		m.setStatus(name+": "+sanitize.Line(reply.Note), false)
	}
	m.history = append(m.history, historyEntry{
		at: m.now, action: rv.Action, callID: rv.CallID, agent: it.agent, tool: it.tool,
		summary: it.summary, reason: sanitize.Line(rv.Reason), shownMS: rv.ShownMS, edited: rv.UpdatedArguments != nil,
	})
	if len(m.history) > historyMax {
		m.history = m.history[len(m.history)-historyMax:]
	}
	cmd := m.countShape(it, rv, reply)
	if rv.Action == airlock.ActionApprove && !reply.Canary {
		args := it.p.Call.Arguments
		if rv.UpdatedArguments != nil {
			args = rv.UpdatedArguments
		}
		if len(m.lastApproved) > 256 {
			clear(m.lastApproved)
		}
		m.lastApproved[it.p.Call.Agent+"\x00"+it.p.Call.Tool] = args
	}
	m.detCache = detailCache{}
	return cmd
}

// DecisionsToday is the number of verdicts this reviewer had accepted today.
func (m *Model) DecisionsToday() int {
	y, mo, d := m.now.Date()
	n := 0
	for i := len(m.history) - 1; i >= 0; i-- {
		hy, hm, hd := m.history[i].at.Date()
		if hy != y || hm != mo || hd != d {
			break
		}
		n++
	}
	return n
}

// approvedByMe reports whether this reviewer's approval is already recorded
// on a call that needs more than one.
func (m *Model) approvedByMe(p *airlock.Pending) bool {
	me := m.opts.Reviewer
	for _, a := range p.Approvals {
		if me != "" && (a == me || a == "reviewer:"+me) {
			return true
		}
	}
	return false
}

// telemetry summarises this reviewer's session: decisions, approval rate,
// median time on screen before deciding, attention checks caught.
func (m *Model) telemetry() string {
	n, rate, median := m.stats()
	if n == 0 {
		return "no decisions yet"
	}
	noun := "decisions"
	if n == 1 {
		noun = "decision"
	}
	s := fmt.Sprintf("%d %s · %d%% approved · median %.1f s on screen", n, noun, rate, median.Seconds())
	if c := m.checksCaught + m.checksMissed; c > 0 {
		s += fmt.Sprintf(" · attention checks caught %d/%d", m.checksCaught, c)
	}
	return s
}

// stats returns this reviewer's decisions, approval rate in percent and
// median time on screen before deciding.
func (m *Model) stats() (n, rate int, median time.Duration) {
	n = len(m.history)
	if n == 0 {
		return 0, 0, 0
	}
	approved := 0
	shown := make([]int64, 0, n)
	for _, h := range m.history {
		if h.action == airlock.ActionApprove {
			approved++
		}
		shown = append(shown, h.shownMS)
	}
	slices.Sort(shown)
	return n, approved * 100 / n, time.Duration(shown[n/2]) * time.Millisecond
}

// approvalsPerMinute counts this reviewer's approval decisions in the last minute.
func (m *Model) approvalsPerMinute() int {
	cut := m.now.Add(-time.Minute)
	n := 0
	for _, t := range m.approvals {
		if t.After(cut) {
			n++
		}
	}
	return n
}

func fmtSecs(d time.Duration) string {
	return strconv.FormatFloat(max(d.Seconds(), 0.1), 'f', 1, 64) + " s"
}

func nonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// extEdit runs Options.EditExternal while bubbletea has released the terminal.
type extEdit struct {
	ctx context.Context
	fn  func(context.Context, []byte) ([]byte, error)
	in  []byte
	out []byte
}

func (e *extEdit) Run() error {
	out, err := e.fn(e.ctx, e.in)
	e.out = out
	return err
}
func (e *extEdit) SetStdin(io.Reader)  {}
func (e *extEdit) SetStdout(io.Writer) {}
func (e *extEdit) SetStderr(io.Writer) {}

// editorJSON is the arguments as indented JSON for editing, with every
// character a terminal could act on (DEL, C1, bidi and other format
// characters) written as a \u escape, which decodes back to the same string.
func editorJSON(args map[string]any) string {
	if args == nil {
		args = map[string]any{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(args); err != nil {
		return "{}"
	}
	s := buf.String()
	var b strings.Builder
	for _, r := range s {
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			if r > 0xffff {
				r -= 0x10000
				fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				continue
			}
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var urlHost = regexp.MustCompile(`(?i)\b(?:https?|ftp|wss?)://(?:[^@/\s'"]*@)?([a-z0-9.-]+)`)

var sqlTable = regexp.MustCompile("(?i)\\b(?:from|into|update|table|join)\\s+(?:if\\s+(?:not\\s+)?exists\\s+)?([A-Za-z0-9_.\"`\\[\\]]+)")

// confirmField picks the field a reviewer must type to approve a critical
// call: the recipient's domain, the amount, the table, the host, the path,
// the command, else the tool name.
//
// Among several recipients it asks for the one the risk factors name (the
// external one), else one outside the call's org, else the first.
func confirmField(p *airlock.Pending, edited map[string]any) (label, value string) {
	c := &p.Call
	args := c.Arguments
	if edited != nil {
		args = edited
	}
	var domains []string
	for _, k := range []string{"to", "recipient", "recipients", "cc", "bcc", "email", "address"} {
		for _, s := range strs(args[k]) {
			if i := strings.LastIndexByte(s, '@'); i >= 0 && i < len(s)-1 {
				domains = append(domains, strings.ToLower(strings.Trim(s[i+1:], " >\"'")))
			}
		}
	}
	if len(domains) > 0 {
		for _, d := range domains {
			for _, f := range p.Risk.Factors {
				if strings.Contains(strings.ToLower(f.Detail), d) {
					return "recipient domain", d
				}
			}
		}
		if org := strings.ToLower(c.Org); org != "" {
			for _, d := range domains {
				if !strings.Contains(d, org) {
					return "recipient domain", d
				}
			}
		}
		return "recipient domain", domains[0]
	}
	for _, k := range []string{"amount", "total", "sum", "value", "price", "quantity"} {
		switch v := args[k].(type) {
		case float64:
			return "amount", strconv.FormatFloat(v, 'f', -1, 64)
		case string:
			if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return "amount", strings.TrimSpace(v)
			}
		}
	}
	for _, k := range []string{"query", "sql", "statement"} {
		if s, ok := args[k].(string); ok {
			if mt := sqlTable.FindStringSubmatch(s); mt != nil {
				return "table name", strings.Trim(mt[1], "\"`[]")
			}
		}
	}
	for _, k := range []string{"url", "uri", "endpoint", "host", "hostname", "domain"} {
		if s, ok := args[k].(string); ok && s != "" {
			if u, err := url.Parse(s); err == nil && u.Hostname() != "" {
				return "host", u.Hostname()
			}
			return "host", s
		}
	}
	for _, k := range []string{"path", "file", "filename", "dest", "destination", "target"} {
		if s, ok := args[k].(string); ok && s != "" {
			if len(s) > 48 {
				return "file name", path.Base(s)
			}
			return "path", s
		}
	}
	for _, k := range []string{"command", "cmd", "code", "script"} {
		if s, ok := args[k].(string); ok {
			if mt := urlHost.FindStringSubmatch(s); mt != nil {
				return "host", mt[1]
			}
			if f := strings.Fields(s); len(f) > 0 && k != "code" && k != "script" {
				return "command name", f[0]
			}
		}
	}
	return "tool name", c.Tool
}

// strs returns the strings in a string, a list of strings or a
// comma-separated list.
func strs(v any) []string {
	switch v := v.(type) {
	case string:
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, strs(x)...)
		}
		return out
	}
	return nil
}

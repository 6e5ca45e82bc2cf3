package tui

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/grant"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/sanitize"
)

// Messages of the Grants view and rule suggestions.
type (
	grantsMsg struct {
		grants []airlock.Grant
		err    error
	}
	revokedMsg struct {
		id  string
		err error
	}
	replayMsg struct {
		s   *suggestion
		res ReplaySummary
		err error
	}
)

// grantForm is "approve similar for N minutes": the constraint (CEL), how
// long, and an optional cap on uses.
type grantForm struct {
	in    [3]textinput.Model // constraint, duration, max uses
	focus int
	call  airlock.ToolCall // the call the grant is made from (the constraint must cover it)
	n     int              // calls this approval decides
	warn  string           // the suggested constraint does not cover the call: edit it
}

const (
	fieldWhen = iota
	fieldFor
	fieldUses
)

func (f *grantForm) update(msg tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	f.in[f.focus], cmd = f.in[f.focus].Update(msg)
	return cmd
}

func (f *grantForm) setFocus(i int) tea.Cmd {
	for j := range f.in {
		f.in[j].Blur()
	}
	f.focus = (i + len(f.in)) % len(f.in)
	return f.in[f.focus].Focus()
}

// request checks the form and returns the grant to ask for.
func (f *grantForm) request(maxTTL time.Duration) (*airlock.GrantRequest, error) {
	dur := strings.TrimSpace(f.in[fieldFor].Value())
	d, err := policy.ParseDuration(dur)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("how long: %q is not a duration (e.g. 15m)", dur)
	}
	if d > maxTTL {
		return nil, fmt.Errorf("how long: %s is longer than the %s a grant may last (review.grant_max_ttl)", shortDur(d), shortDur(maxTTL))
	}
	uses := 0
	if s := strings.TrimSpace(f.in[fieldUses].Value()); s != "" {
		uses, err = strconv.Atoi(s)
		if err != nil || uses <= 0 {
			return nil, fmt.Errorf("max uses: %q is not a positive number (leave it empty for no limit)", s)
		}
	}
	when := strings.TrimSpace(f.in[fieldWhen].Value())
	if when == "" {
		return nil, fmt.Errorf("the constraint is empty: a grant must say which calls it covers")
	}
	cond, err := policy.CompileCond(when)
	if err != nil {
		return nil, fmt.Errorf("constraint: %v", err)
	}
	if ok, err := cond.Match(&f.call); err != nil || !ok {
		return nil, fmt.Errorf("the constraint does not cover the call it is made from; widen it or press Esc")
	}
	return &airlock.GrantRequest{For: dur, When: when, MaxUses: uses}, nil
}

func (m *Model) grantMaxTTL() time.Duration {
	if d := m.opts.Review.GrantMaxTTL; d > 0 {
		return d
	}
	return policy.DefaultGrantMaxTTL
}

// grantable reports whether a grant may be offered on a row: routine calls
// only, below the batch ceiling and outside the high band.
func (m *Model) grantable(r *row) bool {
	if r == nil {
		return false
	}
	for _, it := range r.items {
		if highRisk(&it.p) || it.p.Risk.Score >= m.batchMaxRisk() || len(it.p.Approvals) > 0 || it.waiting {
			return false
		}
	}
	return true
}

// grantKey opens the grant form on the selected call: approve it and
// similar ones for a while. Never for a high-risk call.
func (m *Model) grantKey() tea.Cmd {
	r, ok := m.decisionTarget()
	if !ok {
		return nil
	}
	if !m.grantable(r) {
		m.setStatus(fmt.Sprintf("no grant for this call: risk %d — grants cover routine calls only (below %d); decide it on its own",
			r.risk, m.batchMaxRisk()), true)
		return nil
	}
	items := m.actionable(r)
	if len(items) == 0 {
		m.setStatus("nothing to approve yet: the batch's calls just arrived", false)
		return nil
	}
	if wait := m.rateWait(); wait > 0 {
		m.setStatus(fmt.Sprintf("rate guard: approvals (and grants) paused for %s — take a breath and read", fmtSecs(wait)), true)
		return nil
	}
	lead := items[0]
	f := &grantForm{call: lead.p.Call, n: len(items)}
	for i := range f.in {
		f.in[i] = newInput()
	}
	f.in[fieldWhen].Prompt = "  when: "
	f.in[fieldWhen].CharLimit = 4000
	f.in[fieldWhen].SetValue(grant.Suggest(&lead.p.Call))
	f.in[fieldWhen].CursorEnd()
	if cond, err := policy.CompileCond(f.in[fieldWhen].Value()); err != nil {
		f.warn = "the suggested constraint does not compile: write one"
	} else if ok, err := cond.Match(&f.call); err != nil || !ok {
		f.warn = "the suggested constraint does not cover this call: edit it before you send"
	}
	f.in[fieldFor].Prompt = "  for:  "
	f.in[fieldFor].CharLimit = 12
	f.in[fieldFor].SetValue(defaultGrantFor)
	f.in[fieldUses].Prompt = "  uses: "
	f.in[fieldUses].CharLimit = 7
	f.in[fieldUses].Placeholder = "no limit"
	m.act = m.newAction(r, items, airlock.ActionApprove)
	m.mode, m.gform = modeGrant, f
	m.detCache = detailCache{}
	m.setStatus("", false)
	return f.setFocus(fieldWhen)
}

// onGrantFormKey handles a key in the grant form (Esc was handled before).
func (m *Model) onGrantFormKey(msg tea.KeyPressMsg) tea.Cmd {
	f := m.gform
	switch msg.String() {
	case "tab", "down":
		return f.setFocus(f.focus + 1)
	case "shift+tab", "up":
		return f.setFocus(f.focus - 1)
	case "enter":
		req, err := f.request(m.grantMaxTTL())
		if err != nil {
			m.setStatus("grant: "+sanitize.Line(err.Error())+" (Esc cancels)", true)
			return nil
		}
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
		return m.tryApprove(r, nil, false, req)
	}
	return f.update(msg)
}

// onGrantReply says what became of the grant asked for with an approval.
func (m *Model) onGrantReply(name string, reply airlock.ReviewReply) {
	if g := reply.Grant; g != nil {
		m.notice = "grant " + sanitize.Line(g.ID) + " created: " + sanitize.Line(g.Describe()) + " — the Grants view lists it; r there revokes it"
		m.grantsAt = time.Time{}
	} else {
		note := reply.Note
		if note == "" {
			note = "approved, but the broker created no grant"
		}
		m.notice = name + ": " + sanitize.Line(note)
	}
	m.noticeAt, m.noticeUrgent = m.now, false
}

// admin returns the backend's admin side, if it has one.
func (m *Model) admin() AdminBackend {
	a, _ := m.b.(AdminBackend)
	return a
}

func (m *Model) fetchGrants() tea.Cmd {
	ab := m.admin()
	if ab == nil {
		m.grantsErr, m.grantsAt = "this console's backend cannot list grants", m.now
		return nil
	}
	m.grantsBusy = true
	ctx := m.ctx
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, adminWait)
		defer cancel()
		gs, err := ab.Grants(ctx)
		return grantsMsg{grants: gs, err: err}
	}
}

func (m *Model) onGrants(msg grantsMsg) {
	m.grantsBusy, m.grantsAt = false, m.now
	if msg.err != nil {
		m.grantsErr = msg.err.Error()
		m.log.Warn("list grants", "err", msg.err)
		return
	}
	m.grantsErr = ""
	live := msg.grants[:0:0]
	for _, g := range msg.grants {
		if g.RevokedBy == "" && m.now.Before(g.ExpiresAt) {
			live = append(live, g)
		}
	}
	slices.SortFunc(live, func(a, b airlock.Grant) int {
		if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	m.grants = live
	m.clampGrantSel()
}

func (m *Model) clampGrantSel() {
	m.gsel = min(max(m.gsel, 0), max(len(m.grants)+len(m.suggestions)-1, 0))
}

// onGrantsKey handles a key in the Grants view.
func (m *Model) onGrantsKey(msg tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	switch {
	case key.Matches(msg, k.Back):
		return m.setTab(tabQueue)
	case key.Matches(msg, k.Up):
		m.gsel--
	case key.Matches(msg, k.Down):
		m.gsel++
	case key.Matches(msg, k.Top):
		m.gsel = 0
	case key.Matches(msg, k.Bottom):
		m.gsel = len(m.grants) + len(m.suggestions) - 1
	case key.Matches(msg, k.Revoke):
		if m.gsel < 0 || m.gsel >= len(m.grants) {
			m.setStatus("select a grant to revoke (j/k)", false)
			return nil
		}
		m.revokeID = m.grants[m.gsel].ID
		m.mode = modeRevoke
		m.setStatus("", false)
		return nil
	}
	m.clampGrantSel()
	return nil
}

func (m *Model) revokeCmd(id string) tea.Cmd {
	ab := m.admin()
	if ab == nil {
		m.setStatus("this console's backend cannot revoke grants", true)
		return nil
	}
	m.setStatus("revoking grant "+sanitize.Line(id)+"…", false)
	ctx, reviewer := m.ctx, m.opts.Reviewer
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, adminWait)
		defer cancel()
		return revokedMsg{id: id, err: ab.RevokeGrant(ctx, id, reviewer)}
	}
}

func (m *Model) onRevoked(msg revokedMsg) tea.Cmd {
	if msg.err != nil {
		m.setStatus("could not revoke grant "+sanitize.Line(msg.id)+": "+sanitize.Line(msg.err.Error()), true)
		return nil
	}
	m.grants = slices.DeleteFunc(m.grants, func(g airlock.Grant) bool { return g.ID == msg.id })
	m.clampGrantSel()
	m.setStatus("revoked grant "+sanitize.Line(msg.id)+": calls it covered wait for a reviewer again", false)
	if m.grantsBusy {
		return nil
	}
	return m.fetchGrants()
}

// Rule suggestions.

// shapeStat counts this reviewer's verdicts on one batching shape (agent,
// tool, argument shape).
type shapeStat struct {
	agent, tool string
	tier        airlock.Tier
	approved    int
	denied      bool
	calls       []airlock.ToolCall // the latest approved, at most shapeCalls
	suggested   bool
}

const (
	shapeCalls     = 20
	shapesMax      = 512
	suggestionsMax = 20
)

// suggestion is a proposed policy rule with its replay over the audit log.
type suggestion struct {
	stat      *shapeStat
	when      string
	covered   int // of the approved calls kept, how many the constraint matches
	kept      int
	yaml      string
	loading   bool
	replay    *ReplaySummary
	replayErr string
}

func (m *Model) suggestAfter() int {
	if n := m.opts.SuggestAfter; n != 0 {
		return n
	}
	return defaultSuggestAfter
}

// countShape records a verdict on a call's shape and, after enough plain
// approvals of routine calls of one shape (and no denial), proposes a rule.
func (m *Model) countShape(it *item, rv airlock.Review, reply airlock.ReviewReply) tea.Cmd {
	if reply.Canary || reply.Waiting {
		return nil
	}
	st := m.shapes[it.group]
	if st == nil {
		if len(m.shapes) >= shapesMax {
			clear(m.shapes)
		}
		st = &shapeStat{agent: it.p.Call.Agent, tool: it.p.Call.Tool, tier: it.p.Tier}
		m.shapes[it.group] = st
	}
	if rv.Action == airlock.ActionDeny {
		st.denied = true
		return nil
	}
	if rv.UpdatedArguments != nil || highRisk(&it.p) || it.p.Risk.Score >= m.batchMaxRisk() {
		return nil
	}
	st.approved++
	st.calls = append(st.calls, it.p.Call)
	if len(st.calls) > shapeCalls {
		st.calls = st.calls[len(st.calls)-shapeCalls:]
	}
	n := m.suggestAfter()
	if n < 0 || st.suggested || st.denied || st.approved < n {
		return nil
	}
	st.suggested = true
	return m.suggest(st)
}

// suggest builds a rule suggestion for a shape and replays it.
func (m *Model) suggest(st *shapeStat) tea.Cmd {
	last := st.calls[len(st.calls)-1]
	when := grant.Suggest(&last)
	if when == "false" {
		return nil // nothing in the arguments to generalise over
	}
	sg := &suggestion{stat: st, when: when, kept: len(st.calls)}
	if cond, err := policy.CompileCond(when); err == nil {
		for i := range st.calls {
			if ok, err := cond.Match(&st.calls[i]); err == nil && ok {
				sg.covered++
			}
		}
	}
	sg.yaml = ruleSnippet(m.opts.Reviewer, st, when)
	m.suggestions = append(m.suggestions, sg)
	if len(m.suggestions) > suggestionsMax {
		m.suggestions = m.suggestions[len(m.suggestions)-suggestionsMax:]
	}
	m.notice = fmt.Sprintf("%d× approved alike (%s from %s): a rule suggestion is in the Grants view (tab); nothing is adopted by itself",
		st.approved, sanitize.Line(st.tool), sanitize.Line(st.agent))
	m.noticeAt, m.noticeUrgent = m.now, false
	ab := m.admin()
	if ab == nil {
		sg.replayErr = "this console's backend cannot replay rules against the audit log"
		return nil
	}
	sg.loading = true
	ctx, agent, tool := m.ctx, st.agent, st.tool
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, replayWait)
		defer cancel()
		res, err := ab.Replay(ctx, agent, tool, when)
		return replayMsg{s: sg, res: res, err: err}
	}
}

func (m *Model) onReplay(msg replayMsg) {
	sg := msg.s
	sg.loading = false
	if msg.err != nil {
		sg.replayErr = msg.err.Error()
		m.log.Warn("replay", "agent", sg.stat.agent, "tool", sg.stat.tool, "err", msg.err)
		return
	}
	res := msg.res
	sg.replay = &res
}

var yamlPlain = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// snippetWidth is the width the YAML snippet is written for, so that it can
// be copied off an 80-column screen whole.
const snippetWidth = 78

// yamlCEL writes a CEL expression as a YAML scalar: single-quoted when it
// fits on the line, else a folded block (>-) broken only at single spaces
// outside string literals, which folding turns back into the same spaces.
func yamlCEL(cel, indent string, width int) string {
	if len(indent)+len("- when: ")+len(cel)+2 <= width && !strings.ContainsAny(cel, "\n\r") {
		return "'" + strings.ReplaceAll(cel, "'", "''") + "'"
	}
	// Words: split at single spaces outside string literals.
	var words []string
	start := 0
	inStr, esc := byte(0), false
	for i := 0; i < len(cel); i++ {
		c := cel[i]
		switch {
		case esc:
			esc = false
		case inStr != 0 && c == '\\':
			esc = true
		case inStr != 0 && c == inStr:
			inStr = 0
		case inStr == 0 && (c == '"' || c == '\''):
			inStr = c
		case inStr == 0 && c == ' ' && i > start && i+1 < len(cel) && cel[i+1] != ' ':
			words = append(words, cel[start:i])
			start = i + 1
		}
	}
	words = append(words, cel[start:])
	var lines []string
	line := ""
	for _, w := range words {
		switch {
		case line == "":
			line = w
		case len(indent)+len(line)+1+len(w) > width:
			lines = append(lines, line)
			line = w
		default:
			line += " " + w
		}
	}
	lines = append(lines, line)
	return ">-\n" + indent + strings.Join(lines, "\n"+indent)
}

// ruleSnippet is the YAML a reviewer may copy into the policy. Policy rules
// can only raise a tier, so "stop asking for these calls" is written the
// only honest way: the tool becomes notify-tier (it runs, and reviewers see
// it in the feed) and a rule raises every call that is not this agent's
// routine shape back to approve. The risk score still holds any high-risk
// call whatever the tier.
func ruleSnippet(reviewer string, st *shapeStat, when string) string {
	tool := st.tool
	if !yamlPlain.MatchString(tool) {
		tool = strconv.Quote(tool)
	}
	from := string(st.tier)
	if from == "" {
		from = string(airlock.TierApprove)
	}
	cel := "call.agent != " + strconv.Quote(st.agent) + " || !(" + when + ")"
	by := ""
	if reviewer != "" {
		by = " (reviewer " + sanitize.Line(reviewer) + ")"
	}
	lines := []string{
		fmt.Sprintf("# airlock console%s: %d approvals of one shape of", by, st.approved),
		fmt.Sprintf("# %s calls from %s. Rules only raise tiers: the tool becomes", sanitize.Line(st.tool), sanitize.Line(st.agent)),
		"# notify-tier, every other call goes back to a reviewer. Merge by hand (keep",
		"# the tool's rules and scope); a high risk score still holds any call.",
		"tools:",
		"  " + tool + ":",
		"    tier: notify  # was " + from,
		"    rules:",
		"      - when: " + yamlCEL(cel, "          ", snippetWidth),
		"        tier: approve",
		"        reason: outside the routine shape reviewers approved",
	}
	return strings.Join(lines, "\n")
}

// replayLine is the one-line account of a suggestion's replay.
func (sg *suggestion) replayLine() string {
	switch {
	case sg.loading:
		return "replaying against the audit log…"
	case sg.replayErr != "":
		return "replay: " + sanitize.Line(sg.replayErr)
	case sg.replay == nil:
		return "not replayed"
	}
	r := sg.replay
	s := fmt.Sprintf("would have decided %d of the last %d past calls (%d approved by people, %d denied)",
		r.Matched, r.Replayed, r.MatchedApproved, r.MatchedDenied)
	if r.MatchedDenied > 0 {
		ex := make([]string, len(r.Examples))
		for i, e := range r.Examples {
			ex[i] = sanitize.Line(e)
		}
		s += " — too wide: it would have let through denied calls " + strings.Join(ex, ", ")
	}
	return s
}

// viewGrants is the Grants view: live grants, then rule suggestions, then
// the selected entry in full.
func (m *Model) viewGrants(w, h int) []string {
	st := &m.styles
	head := st.Header.Render("Grants — approved as grant:<id> without asking · r revokes the selected one")
	var list []string
	selected := "" // the selected entry's line
	switch {
	case m.grantsErr != "":
		list = append(list, st.Error.Render("  "+sanitize.Line(m.grantsErr)))
	case m.grantsAt.IsZero() && len(m.grants) == 0:
		list = append(list, st.Muted.Render("  loading…"))
	case len(m.grants) == 0:
		list = append(list, st.Muted.Render("  no live grants — A on a routine call in the Queue approves it and creates one"))
	default:
		list = append(list, st.Label.Render("  "+pad("ID", 12)+" "+pad("AGENT", 14)+" "+pad("TOOL", 16)+" "+pad("EXPIRES", 8)+" "+pad("USES", 6)+" CONSTRAINT"))
	}
	for i, g := range m.grants {
		uses := strconv.Itoa(g.Uses)
		if g.MaxUses > 0 {
			uses += "/" + strconv.Itoa(g.MaxUses)
		}
		line := m.gridLine(i, pad(sanitize.Line(g.ID), 12)+" "+pad(sanitize.Line(g.Agent), 14)+" "+pad(sanitize.Line(g.Tool), 16)+" "+
			pad(fmtLeft(g.ExpiresAt.Sub(m.now)), 8)+" "+pad(uses, 6)+" "+sanitize.Line(g.When), w)
		if i == m.gsel {
			selected = line
		}
		list = append(list, line)
	}
	list = append(list, "", st.Header.Render("Rule suggestions — nothing is adopted: copy the YAML into the policy yourself"))
	if len(m.suggestions) == 0 {
		list = append(list, st.Muted.Render(fmt.Sprintf("  none yet: after you approve %d routine calls of one shape here, a rule for them is proposed", max(m.suggestAfter(), 0))))
	}
	for i, sg := range m.suggestions {
		line := m.gridLine(len(m.grants)+i, fmt.Sprintf("%s · %s · approved %d× here · %s", sanitize.Line(sg.stat.agent), sanitize.Line(sg.stat.tool), sg.stat.approved, sg.replayLine()), w)
		if len(m.grants)+i == m.gsel {
			selected = line
		}
		list = append(list, line)
	}
	var detail []string
	switch i := m.gsel; {
	case i >= 0 && i < len(m.grants):
		g := &m.grants[i]
		detail = append(detail, m.section("grant "+sanitize.Line(g.ID), w))
		detail = append(detail, wrapLines(fmt.Sprintf("%s may call %s without asking while: %s", sanitize.Line(g.Agent), sanitize.Line(g.Tool), sanitize.Line(g.When)), w)...)
		detail = append(detail, wrapLines(st.Muted.Render(fmt.Sprintf("created by %s at %s from call %s · ends %s · below risk %d",
			sanitize.Line(g.CreatedBy), g.CreatedAt.Format("15:04:05"), sanitize.Line(g.FromCall), g.ExpiresAt.Format("15:04:05"), g.MaxRisk)), w)...)
	case i >= len(m.grants) && i < len(m.grants)+len(m.suggestions):
		sg := m.suggestions[i-len(m.grants)]
		detail = append(detail, m.section("suggested rule (YAML: select and copy it)", w))
		for _, l := range wrapLines(sg.replayLine(), w) {
			detail = append(detail, st.Muted.Render(l))
		}
		detail = append(detail, st.Muted.Render(fmt.Sprintf("covers %d of the last %d calls of this shape you approved here", sg.covered, sg.kept)))
		for _, l := range strings.Split(sg.yaml, "\n") {
			detail = append(detail, sanitize.Line(l)) // unstyled, so a terminal selection copies valid YAML
		}
	}
	out := append([]string{head}, list...)
	if len(detail) > 0 {
		if 1+len(list)+1+len(detail) > h && selected != "" {
			// Short terminal: the selected entry only, so its detail fits.
			out = []string{head, selected}
		}
		out = append(out, "")
		out = append(out, detail...)
	}
	if len(out) > h {
		out = out[:h]
	}
	return out
}

func (m *Model) gridLine(i int, line string, w int) string {
	if i == m.gsel {
		return m.styles.Selected.Render(pad(truncate("▶ "+line, w), w))
	}
	return truncate("  "+line, w)
}

func wrapLines(s string, w int) []string {
	return strings.Split(ansi.Wrap(s, max(w, 10), " "), "\n")
}

// grantFormLines is the detail pane while the grant form is open.
func (m *Model) grantFormLines(w int) []string {
	st := &m.styles
	f := m.gform
	c := &f.call
	what := "this call"
	if f.n > 1 {
		what = fmt.Sprintf("the %d calls of this batch", f.n)
	}
	out := []string{
		m.section("approve similar calls for a while (a grant)", w),
		fmt.Sprintf("Approves %s and, until the grant ends, later %s → %s calls that satisfy the constraint, without asking.",
			what, sanitize.Line(c.Agent), sanitize.Line(c.Tool)),
		st.Label.Render("constraint (CEL, derived from the call; edit it):"),
	}
	for i := range f.in {
		f.in[i].SetWidth(max(w-10, 10))
	}
	out = append(out, f.in[fieldWhen].View())
	if f.warn != "" {
		out = append(out, st.Warn.Render("  "+f.warn))
	}
	out = append(out, st.Label.Render(fmt.Sprintf("how long (at most %s):", shortDur(m.grantMaxTTL()))), f.in[fieldFor].View())
	out = append(out, st.Label.Render("max uses (empty: no limit):"), f.in[fieldUses].View())
	out = append(out, st.Muted.Render(fmt.Sprintf("The broker refuses grants over deny-tier tools and calls at or above risk %d, and says why.", m.batchMaxRisk())))
	out = append(out, m.section("arguments", w))
	out = append(out, m.argLines(c, c.Arguments, w, m.expand)...)
	var wrapped []string
	for _, l := range out {
		if ansi.StringWidth(l) <= w {
			wrapped = append(wrapped, l)
			continue
		}
		wrapped = append(wrapped, strings.Split(ansi.Wrap(l, max(w, 10), ""), "\n")...)
	}
	return wrapped
}

// Package tui is airlock's reviewer console: a bubbletea program that shows
// the calls waiting for a human, explains each one (arguments laid out for
// the tool, risk factors, the agent's stated reason, the sandbox it would run
// in, the session's recent calls) and sends the reviewer's verdicts.
//
// It talks to the broker only through Backend; it imports no NATS, no
// database and no os/exec. Every piece of text that came from an agent goes
// through internal/sanitize before it reaches the screen.
//
// The console keeps a reviewer's attention where it matters: a grace period
// swallows keys typed before an item was on screen, Esc never approves,
// high-risk calls need a minimum dwell and an explicit confirmation,
// critical calls need a typed field of the call, approvals are rate-guarded,
// and routine look-alike calls are batched so they cost one keystroke.
package tui

import (
	"context"
	"log/slog"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textarea"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// Options configure a console.
type Options struct {
	// Reviewer is the reviewer's name; verdicts are sent as this reviewer and
	// the status bar shows it.
	Reviewer string
	// Clock returns the current time (default time.Now). View never reads
	// the clock: the model samples it in Update.
	Clock func() time.Time
	// Styles overrides the default adaptive styles.
	Styles *Styles
	// KeyMap overrides the default keys.
	KeyMap *KeyMap
	// Review holds the anti-fatigue settings; zero fields take the policy
	// defaults (batch ceiling 50, dwell 2s, 20 approvals a minute, typed
	// confirmation at risk 90, grace 400 ms). A negative GraceMS turns the
	// grace period off.
	Review policy.Review
	// EditExternal, when set, edits a JSON document in an external editor
	// (the `E` key). It runs while the console has released the terminal, so
	// it may use the process's stdin and stdout.
	EditExternal func(ctx context.Context, doc []byte) ([]byte, error)
	// Logger receives diagnostics (never the screen). Default: discard.
	Logger *slog.Logger
	// SuggestAfter is how many calls of one shape (agent, tool, argument
	// shape) this reviewer approves, and none denied, before the console
	// proposes a policy rule for them (default 5; negative: never).
	SuggestAfter int
}

// Review defaults, as in the policy reference.
const (
	defaultBatchMaxRisk = 50
	defaultDwell        = 2 * time.Second
	defaultMaxApprovals = 20
	defaultConfirmRisk  = 90
	defaultGrace        = 400 * time.Millisecond

	flushDelay   = 50 * time.Millisecond // coalesce bursts of events into one refresh
	tickInterval = 250 * time.Millisecond
	decideWait   = 15 * time.Second
	recentN      = 8
	feedMax      = 500
	historyMax   = 1000
	valueLimit   = 2048 // bytes of one argument value shown before "… N more bytes"
	noticeFor    = 10 * time.Second
	// inlineEditMax bounds the inline editor (bubbles' textarea slows down
	// on long lines); larger arguments are edited with E in $EDITOR.
	inlineEditMax = 8 << 10

	defaultSuggestAfter = 5
	defaultGrantFor     = "15m"
	grantsRefresh       = 5 * time.Second // the Grants view refetches this often while shown
	adminWait           = 10 * time.Second
	replayWait          = 30 * time.Second
)

type tab int

const (
	tabQueue tab = iota
	tabFeed
	tabHistory
	tabGrants
	tabHelp
)

var tabNames = []string{"Queue", "Feed", "History", "Grants", "Help"}

type mode int

const (
	modeNone        mode = iota
	modeDeny             // typing a deny reason
	modeConfirm          // y to approve a high-risk call
	modeTyped            // typing a field of a critical call
	modeEdit             // editing arguments inline
	modeEditConfirm      // looking at the diff of an edit, y to approve
	modeFilter           // typing a filter
	modeGrant            // filling in a grant (constraint, duration, uses)
	modeRevoke           // y to revoke the selected grant
)

// Messages.
type (
	tickMsg    struct{}
	flushMsg   struct{}
	decidedMsg struct {
		review airlock.Review
		item   *item
		reply  airlock.ReviewReply
		err    error
	}
	recentMsg struct {
		session string
		records []airlock.DecisionRecord
		err     error
	}
	editedMsg struct {
		doc []byte
		err error
	}
)

// action is a decision waiting for a prompt (reason, confirmation, typed
// field, edit) to complete. It is bound to the row and the exact versions the
// reviewer saw; if any of them changed, the action is dropped.
type action struct {
	rowKey   string
	items    []*item
	versions []uint64
	kind     airlock.ReviewAction
	edited   map[string]any // approve with edits
	expect   string         // typed confirmation: the answer
	expectAl string         // typed confirmation: the sanitised form, also accepted
	label    string         // typed confirmation: what to type
	shownMS  int64
	grant    *airlock.GrantRequest // approve similar calls for a while
}

type feedEntry struct {
	at       time.Time
	decision airlock.Decision
	call     *airlock.ToolCall
}

type historyEntry struct {
	at      time.Time
	action  airlock.ReviewAction
	callID  string
	agent   string
	tool    string
	summary string
	reason  string
	shownMS int64
	edited  bool
}

type recentState struct {
	loading bool
	records []airlock.DecisionRecord
	err     string
}

// Model is the console. Create it with New; run it with Run, or embed it in
// another bubbletea program.
type Model struct {
	b      Backend
	opts   Options
	ctx    context.Context
	log    *slog.Logger
	clock  func() time.Time
	now    time.Time // sampled at every Update; View reads only this
	keys   KeyMap
	styles Styles
	custom bool // styles came from Options
	help   help.Model

	width, height int

	// The pending set and the rows drawn from it.
	items   map[string]*item
	rows    []*row
	dirty   bool
	flushOn bool
	seq     uint64 // version counter
	split   map[string]bool
	filter  string
	rowSeq  uint64

	// Selection and what the reviewer has seen.
	sel       int
	qoff      int
	selKey    string
	shownAt   time.Time
	shownVer  uint64
	focusDet  bool
	detailOff int
	member    int
	diffView  bool
	expand    bool

	// Prompts.
	mode   mode
	act    *action
	input  textinput.Model
	editor textarea.Model
	gform  *grantForm

	// Grants view and rule suggestions.
	grants      []airlock.Grant
	grantsErr   string
	grantsAt    time.Time // last fetch (zero: never)
	grantsBusy  bool
	gsel        int
	revokeID    string
	shapes      map[string]*shapeStat
	suggestions []*suggestion

	// Status.
	connected bool
	connErr   string
	everConn  bool
	status    string
	statusErr bool
	statusAt  time.Time
	notice    string
	noticeAt  time.Time
	// noticeUrgent keeps the notice (an attention check's outcome) over
	// newer status messages; others give way to a newer status.
	noticeUrgent bool

	approvals    []time.Time // approval decisions (one per keystroke), for the rate guard
	checksCaught int         // attention checks denied
	checksMissed int         // attention checks approved
	history      []historyEntry
	feed         []feedEntry
	recent       map[string]*recentState
	lastApproved map[string]map[string]any // agent+tool → arguments last approved here

	rowCache map[rowCacheKey]string
	detCache detailCache

	// after schedules a message; tests replace it to drive time by hand.
	after func(time.Duration, tea.Msg) tea.Cmd
	// queued holds commands started outside the Update path that returns them
	// (a selection change fetching recent calls); Update sends them.
	queued []tea.Cmd
	tab    tab
	quit   bool
}

// New returns a console that talks to b.
func New(b Backend, opts Options) *Model {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Model{
		b:            b,
		opts:         opts,
		ctx:          context.Background(),
		log:          opts.Logger,
		clock:        opts.Clock,
		keys:         DefaultKeyMap(),
		styles:       DefaultStyles(true),
		help:         help.New(),
		width:        80,
		height:       24,
		items:        map[string]*item{},
		split:        map[string]bool{},
		recent:       map[string]*recentState{},
		lastApproved: map[string]map[string]any{},
		shapes:       map[string]*shapeStat{},
		rowCache:     map[rowCacheKey]string{},
		after: func(d time.Duration, msg tea.Msg) tea.Cmd {
			return tea.Tick(d, func(time.Time) tea.Msg { return msg })
		},
	}
	if opts.KeyMap != nil {
		m.keys = *opts.KeyMap
	}
	if opts.EditExternal == nil {
		m.keys.EditExternal.SetEnabled(false)
	}
	if opts.Styles != nil {
		m.styles = *opts.Styles
		m.custom = true
	}
	m.help.Styles = m.styles.Help
	m.now = m.clock()
	m.input = newInput()
	m.editor = newEditor()
	return m
}

func newInput() textinput.Model {
	in := textinput.New()
	st := in.Styles()
	st.Cursor.Blink = false
	in.SetStyles(st)
	in.CharLimit = 500
	return in
}

func newEditor() textarea.Model {
	ed := textarea.New()
	st := ed.Styles()
	st.Cursor.Blink = false
	ed.SetStyles(st)
	ed.ShowLineNumbers = true
	ed.CharLimit = 0
	ed.MaxHeight = 0
	return ed
}

// SetSize sets the console's size (a tea.WindowSizeMsg does the same).
func (m *Model) SetSize(w, h int) {
	m.width, m.height = max(w, 20), max(h, 8)
	m.help.SetWidth(m.width)
	m.detCache = detailCache{}
	m.sizeEditor()
}

// sizeEditor fits the inline editor to the detail pane.
func (m *Model) sizeEditor() {
	side, _, dh := m.layout()
	w := m.width
	if side {
		w = m.width - m.width*2/5 - 1
	}
	m.editor.SetWidth(w)
	m.editor.SetHeight(dh)
}

// grace, dwell, … return the effective review settings.
func (m *Model) grace() time.Duration {
	switch g := m.opts.Review.GraceMS; {
	case g < 0:
		return 0
	case g == 0:
		return defaultGrace
	default:
		return time.Duration(g) * time.Millisecond
	}
}

func (m *Model) dwell() time.Duration {
	if d := m.opts.Review.MinDwellHighRisk; d != 0 {
		return max(d, 0)
	}
	return defaultDwell
}

func (m *Model) maxApprovals() int {
	if n := m.opts.Review.MaxApprovalsPerMinute; n != 0 {
		return n
	}
	return defaultMaxApprovals
}

func (m *Model) confirmRisk() int {
	if n := m.opts.Review.ConfirmRisk; n > 0 {
		return n
	}
	return defaultConfirmRisk
}

func (m *Model) batchMaxRisk() int {
	if n := m.opts.Review.BatchMaxRisk; n > 0 {
		return n
	}
	return defaultBatchMaxRisk
}

// Init asks for the background colour (for light/dark styles) and starts the clock.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(tea.RequestBackgroundColor, m.after(tickInterval, tickMsg{}))
}

// Update handles one message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	m.now = m.clock()
	cmd := m.update(msg)
	if len(m.queued) > 0 {
		cmd = tea.Batch(append(m.queued, cmd)...)
		m.queued = nil
	}
	return m, cmd
}

func (m *Model) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.SetSize(msg.Width, msg.Height)
		m.ensureVisible()
		return nil
	case tea.BackgroundColorMsg:
		return m.onBackground(msg.IsDark())
	case Event:
		return m.onEvent(msg)
	case flushMsg:
		m.flushOn = false
		return m.refresh()
	case tickMsg:
		return m.onTick()
	case decidedMsg:
		return m.onDecided(msg)
	case recentMsg:
		m.onRecent(msg)
		return nil
	case editedMsg:
		return m.onEdited(msg)
	case grantsMsg:
		m.onGrants(msg)
		return nil
	case revokedMsg:
		return m.onRevoked(msg)
	case replayMsg:
		m.onReplay(msg)
		return nil
	case tea.PasteMsg:
		return m.onPaste(msg)
	case tea.KeyPressMsg:
		return m.onKey(msg)
	}
	return nil
}

func (m *Model) onBackground(dark bool) tea.Cmd {
	if m.custom {
		return nil
	}
	m.styles = DefaultStyles(dark)
	m.help.Styles = m.styles.Help
	clear(m.rowCache)
	m.detCache = detailCache{}
	return nil
}

func (m *Model) onTick() tea.Cmd {
	if m.notice != "" && m.now.Sub(m.noticeAt) > noticeFor {
		m.notice = ""
	}
	if m.status != "" && m.now.Sub(m.statusAt) > noticeFor {
		m.status, m.statusErr = "", false
	}
	if m.quit {
		return nil
	}
	var cmd tea.Cmd
	if m.tab == tabGrants && !m.grantsBusy && m.now.Sub(m.grantsAt) >= grantsRefresh {
		cmd = m.fetchGrants()
	}
	return tea.Batch(cmd, m.after(tickInterval, tickMsg{}))
}

// setStatus shows a one-line message under the panes.
func (m *Model) setStatus(s string, isErr bool) {
	m.status, m.statusErr, m.statusAt = s, isErr, m.now
}

func (m *Model) onPaste(msg tea.PasteMsg) tea.Cmd {
	switch m.mode {
	case modeGrant:
		return m.gform.update(msg)
	case modeDeny, modeTyped, modeFilter:
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		if m.mode == modeFilter {
			m.setFilter(m.input.Value())
		}
		return cmd
	case modeEdit:
		var cmd tea.Cmd
		m.editor, cmd = m.editor.Update(msg)
		return cmd
	}
	return nil
}

func (m *Model) onKey(msg tea.KeyPressMsg) tea.Cmd {
	if msg.String() == "ctrl+c" {
		m.quit = true
		return tea.Quit
	}
	if m.mode != modeNone {
		return m.onPromptKey(msg)
	}
	if m.dirty {
		// Act on the freshest queue; a changed selection restarts the grace
		// period, so a key aimed at the old item is swallowed.
		m.refresh()
	}
	k := m.keys
	switch {
	case key.Matches(msg, k.Quit):
		m.quit = true
		return tea.Quit
	case key.Matches(msg, k.NextTab):
		return m.setTab((m.tab + 1) % tab(len(tabNames)))
	case key.Matches(msg, k.PrevTab):
		return m.setTab((m.tab + tab(len(tabNames)) - 1) % tab(len(tabNames)))
	case key.Matches(msg, k.Help):
		if m.tab == tabHelp {
			return m.setTab(tabQueue)
		}
		return m.setTab(tabHelp)
	}
	if m.tab == tabGrants {
		return m.onGrantsKey(msg)
	}
	if m.tab != tabQueue {
		if key.Matches(msg, k.Back) {
			m.setTab(tabQueue)
		}
		return nil
	}
	switch {
	case key.Matches(msg, k.Up):
		return m.move(-1)
	case key.Matches(msg, k.Down):
		return m.move(1)
	case key.Matches(msg, k.Top):
		return m.moveTo(0)
	case key.Matches(msg, k.Bottom):
		return m.moveTo(len(m.rows) - 1)
	case key.Matches(msg, k.PageUp):
		return m.move(-max(1, m.queueHeight()-1))
	case key.Matches(msg, k.PageDown):
		return m.move(max(1, m.queueHeight()-1))
	case key.Matches(msg, k.Focus):
		m.focusDet = !m.focusDet
		return nil
	case key.Matches(msg, k.Back):
		switch {
		case m.focusDet:
			m.focusDet = false
		case m.filter != "":
			m.setFilter("")
			m.setStatus("filter cleared", false)
		}
		return nil
	case key.Matches(msg, k.Filter):
		m.mode = modeFilter
		m.input.Reset()
		m.input.Prompt = "/"
		m.input.Placeholder = "agent:NAME tool:NAME text"
		m.input.SetValue(m.filter)
		m.input.CursorEnd()
		return m.input.Focus()
	case key.Matches(msg, k.Diff):
		m.diffView = !m.diffView
		m.detailOff = 0
		return nil
	case key.Matches(msg, k.Expand):
		m.expand = !m.expand
		return nil
	case msg.IsRepeat && (key.Matches(msg, k.Approve) || key.Matches(msg, k.Deny) || key.Matches(msg, k.Edit)):
		m.setStatus("key ignored: a held-down key never decides", false)
		return nil
	case key.Matches(msg, k.Approve):
		return m.approveKey()
	case key.Matches(msg, k.Deny):
		return m.denyKey()
	case key.Matches(msg, k.Edit):
		return m.editKey(false)
	case key.Matches(msg, k.EditExternal):
		return m.editKey(true)
	case key.Matches(msg, k.Split):
		return m.splitKey()
	case key.Matches(msg, k.Grant):
		return m.grantKey()
	}
	return nil
}

// setTab switches views. Coming back to the queue counts as the selected
// call appearing again: the grace period and the dwell start over.
func (m *Model) setTab(t tab) tea.Cmd {
	if t == tabQueue && m.tab != tabQueue {
		m.shownAt = m.now
	}
	m.tab = t
	if t == tabGrants && !m.grantsBusy {
		return m.fetchGrants()
	}
	return nil
}

// move moves the selection (or, with the detail pane focused, scrolls it or
// moves the batch member cursor).
func (m *Model) move(d int) tea.Cmd {
	if m.focusDet {
		if r := m.selected(); r != nil && r.batch() {
			m.member = min(max(m.member+d, 0), len(r.items)-1)
			return nil
		}
		m.detailOff = max(m.detailOff+d, 0)
		return nil
	}
	return m.moveTo(m.sel + d)
}

func (m *Model) moveTo(i int) tea.Cmd {
	if len(m.rows) == 0 {
		return nil
	}
	i = min(max(i, 0), len(m.rows)-1)
	m.sel = i
	return m.selectionChanged()
}

// selectionChanged restarts the grace period when the selected row is a
// different one and fetches its session's recent calls.
func (m *Model) selectionChanged() tea.Cmd {
	r := m.selected()
	if r == nil {
		m.selKey = ""
		return nil
	}
	if r.key == m.selKey {
		return nil
	}
	m.selKey = r.key
	m.shownAt = m.now
	m.shownVer = r.version
	m.detailOff = 0
	m.member = 0
	m.ensureVisible()
	if cmd := m.fetchRecent(r.items[0].p.Call.Session); cmd != nil {
		m.queued = append(m.queued, cmd)
	}
	return nil
}

func (m *Model) selected() *row {
	if m.sel < 0 || m.sel >= len(m.rows) {
		return nil
	}
	return m.rows[m.sel]
}

// Reviewer returns the reviewer's name as sent in verdicts.
func (m *Model) Reviewer() string { return m.opts.Reviewer }

// Pending returns the number of calls waiting (all of them, not only those
// shown by the filter).
func (m *Model) Pending() int { return len(m.items) }

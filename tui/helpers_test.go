package tui

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// fakeBackend records verdicts and answers them as told. It stands in for
// the broker in unit tests; the lead's tmux tests run the real one.
type fakeBackend struct {
	mu      sync.Mutex
	reviews []airlock.Review
	reply   func(airlock.Review) (airlock.ReviewReply, error)
	recent  map[string][]airlock.DecisionRecord
	events  chan Event

	// The admin side (AdminBackend): grants and rule replays.
	grants    []airlock.Grant
	grantsErr error
	revoked   []string // "id by reviewer"
	replays   []replayCall
	replayRes ReplaySummary
	replayErr error
}

type replayCall struct{ agent, tool, when string }

func (f *fakeBackend) Grants(context.Context) ([]airlock.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]airlock.Grant(nil), f.grants...), f.grantsErr
}

func (f *fakeBackend) RevokeGrant(_ context.Context, id, reviewer string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, g := range f.grants {
		if g.ID == id {
			f.grants = append(f.grants[:i:i], f.grants[i+1:]...)
			f.revoked = append(f.revoked, id+" by "+reviewer)
			return nil
		}
	}
	return fmt.Errorf("no grant %s", id)
}

func (f *fakeBackend) Replay(_ context.Context, agent, tool, when string) (ReplaySummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replays = append(f.replays, replayCall{agent, tool, when})
	return f.replayRes, f.replayErr
}

func (f *fakeBackend) revokes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.revoked...)
}

func (f *fakeBackend) replayed() []replayCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]replayCall(nil), f.replays...)
}

func (f *fakeBackend) Events(ctx context.Context) <-chan Event {
	out := make(chan Event)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-f.events:
				if !ok {
					<-ctx.Done()
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (f *fakeBackend) Decide(_ context.Context, r airlock.Review) (airlock.ReviewReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reviews = append(f.reviews, r)
	if f.reply != nil {
		return f.reply(r)
	}
	return airlock.ReviewReply{Accepted: true}, nil
}

func (f *fakeBackend) Recent(_ context.Context, session string, n int) ([]airlock.DecisionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	recs := f.recent[session]
	return recs[:min(n, len(recs))], nil
}

func (f *fakeBackend) sent() []airlock.Review {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]airlock.Review(nil), f.reviews...)
}

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// harness drives a Model's Update directly with a hand-moved clock. Commands
// are run synchronously and their messages fed back; timers are not run.
type harness struct {
	t   *testing.T
	m   *Model
	b   *fakeBackend
	now time.Time
}

func newHarness(t *testing.T, rv policy.Review) *harness {
	t.Helper()
	h := &harness{t: t, b: &fakeBackend{}, now: t0}
	st := DefaultStyles(true)
	h.m = New(h.b, Options{Reviewer: "alice", Clock: func() time.Time { return h.now }, Review: rv, Styles: &st})
	h.m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	h.m.SetSize(100, 30)
	h.send(Event{Kind: EventConnection, Connected: true})
	return h
}

func (h *harness) send(msg tea.Msg) {
	h.t.Helper()
	_, cmd := h.m.Update(msg)
	h.run(cmd)
}

func (h *harness) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	switch msg := cmd().(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			h.run(c)
		}
	default:
		if fmt.Sprintf("%T", msg) == "tea.QuitMsg" {
			return
		}
		h.send(msg)
	}
}

// add puts calls in the queue and flushes the coalesced refresh.
func (h *harness) add(ps ...airlock.Pending) {
	h.t.Helper()
	for i := range ps {
		h.send(Event{Kind: EventAdded, Pending: &ps[i]})
	}
	h.send(flushMsg{})
}

func (h *harness) wait(d time.Duration) {
	h.now = h.now.Add(d)
	h.send(tickMsg{})
}

// press sends keys: single characters, or names like "enter", "esc", "ctrl+s".
func (h *harness) press(keys ...string) {
	h.t.Helper()
	for _, k := range keys {
		h.send(keyMsg(k))
	}
}

// typeText types each rune of s.
func (h *harness) typeText(s string) {
	h.t.Helper()
	for _, r := range s {
		h.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
}

func keyMsg(k string) tea.KeyPressMsg {
	switch k {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "shift+tab":
		return tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "ctrl+s":
		return tea.KeyPressMsg{Code: 's', Mod: tea.ModCtrl}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}

func (h *harness) screen() string { return ansi.Strip(h.m.View().Content) }

func (h *harness) rowIDs() []string {
	var out []string
	for _, r := range h.m.rows {
		ids := make([]string, len(r.items))
		for i, it := range r.items {
			ids[i] = it.p.Call.ID
		}
		out = append(out, strings.Join(ids, "+"))
	}
	return out
}

func pending(id, agent, tool string, score int, args map[string]any) airlock.Pending {
	return airlock.Pending{
		Call: airlock.ToolCall{ID: id, Agent: agent, User: "bob", Org: "acme", Session: "s-1", Tool: tool,
			Arguments: args, Context: map[string]any{"reason": "the user asked"}},
		Tier:       airlock.TierApprove,
		Risk:       airlock.Risk{Score: score, Band: bandOf(score)},
		ReceivedAt: t0.Add(-time.Minute),
		ExpiresAt:  t0.Add(10 * time.Minute),
	}
}

func lowEmail(id, to, body string) airlock.Pending {
	return pending(id, "mailer", "send_email", 10, map[string]any{"to": to, "subject": "Your ticket", "body": body})
}

func stripANSI(s string) string { return ansi.Strip(s) }

func windowSize(w, h int) tea.WindowSizeMsg { return tea.WindowSizeMsg{Width: w, Height: h} }

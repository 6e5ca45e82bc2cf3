package tui

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// TestSmoke runs the console as a real bubbletea program: a snapshot
// arrives, the reviewer approves with one key and quits.
func TestSmoke(t *testing.T) {
	b := &fakeBackend{}
	m := New(b, Options{Reviewer: "alice", Review: policy.Review{GraceMS: -1}})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	p := pending("01JSMOKE", "billing-bot", "send_email", 20, map[string]any{"to": "ops@acme.com", "subject": "weekly report"})
	tm.Send(Event{Kind: EventSnapshot, Pendings: []airlock.Pending{p}})
	teatest.WaitFor(t, tm.Output(), func(out []byte) bool {
		return bytes.Contains(out, []byte("weekly report")) && bytes.Contains(out, []byte("reviewer alice"))
	}, teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	tm.Send(tea.KeyPressMsg{Code: 'a', Text: "a"})
	deadline := time.Now().Add(10 * time.Second)
	for len(b.sent()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no verdict was sent after pressing a")
		}
		time.Sleep(5 * time.Millisecond) // poll with a deadline
	}
	if got := b.sent()[0]; got.CallID != "01JSMOKE" || got.Action != airlock.ActionApprove || got.Reviewer != "alice" {
		t.Errorf("got %+v, want alice's approval of 01JSMOKE", got)
	}
	tm.Type("q")
	tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
}

// BenchmarkView draws a frame over a large queue. Only visible rows are
// drawn; rows come from the cache after the first frame; the clock moves
// every frame so ages and countdowns are recomputed.
func BenchmarkView(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		for _, batch := range []bool{false, true} {
			b.Run(fmt.Sprintf("pending=%d/batch=%v", n, batch), func(b *testing.B) {
				now := t0
				fb := &fakeBackend{}
				st := DefaultStyles(true)
				m := New(fb, Options{Reviewer: "alice", Clock: func() time.Time { return now }, Styles: &st,
					Review: policy.Review{Batch: batch}})
				m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
				m.SetSize(120, 40)
				ps := make([]airlock.Pending, n)
				for i := range ps {
					ps[i] = pending(fmt.Sprintf("01J%06d", i), fmt.Sprintf("agent-%d", i%50), []string{"send_email", "execute_sql", "read_file"}[i%3],
						i%100, map[string]any{"to": fmt.Sprintf("u%d@acme.com", i), "query": "SELECT * FROM t WHERE id = " + fmt.Sprint(i), "path": "/srv/x"})
					ps[i].ReceivedAt = t0.Add(-time.Duration(i) * time.Second)
				}
				m.Update(Event{Kind: EventSnapshot, Pendings: ps})
				m.View()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					now = now.Add(100 * time.Millisecond)
					m.Update(tickMsg{})
					_ = m.View()
				}
			})
		}
	}
}

// BenchmarkViewBaseline is the comparison for BenchmarkView: the same
// 10,000-call queue drawn the naive way, every row rendered afresh each
// frame (no visible-window, no row cache), and the windowed view with the
// cache cleared every frame.
func BenchmarkViewBaseline(b *testing.B) {
	setup := func() (*Model, *time.Time) {
		now := t0
		st := DefaultStyles(true)
		m := New(&fakeBackend{}, Options{Reviewer: "alice", Clock: func() time.Time { return now }, Styles: &st})
		m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
		m.SetSize(120, 40)
		ps := make([]airlock.Pending, 10000)
		for i := range ps {
			ps[i] = pending(fmt.Sprintf("01J%06d", i), fmt.Sprintf("agent-%d", i%50), []string{"send_email", "execute_sql", "read_file"}[i%3],
				i%100, map[string]any{"to": fmt.Sprintf("u%d@acme.com", i), "query": "SELECT * FROM t WHERE id = " + fmt.Sprint(i), "path": "/srv/x"})
		}
		m.Update(Event{Kind: EventSnapshot, Pendings: ps})
		return m, &now
	}
	b.Run("pending=10000/all-rows-uncached", func(b *testing.B) {
		m, now := setup()
		b.ReportAllocs()
		for b.Loop() {
			*now = now.Add(100 * time.Millisecond)
			m.Update(tickMsg{})
			var sb strings.Builder
			for i, r := range m.rows {
				sb.WriteString(m.rowLineUncached(r, i == m.sel, m.width))
				sb.WriteByte('\n')
			}
			_ = sb.String()
		}
	})
	b.Run("pending=10000/visible-uncached", func(b *testing.B) {
		m, now := setup()
		b.ReportAllocs()
		for b.Loop() {
			*now = now.Add(100 * time.Millisecond)
			m.Update(tickMsg{})
			clear(m.rowCache)
			m.detCache = detailCache{}
			_ = m.View()
		}
	})
}

// rowLineUncached draws a row without the cache (benchmark baseline).
func (m *Model) rowLineUncached(r *row, selected bool, w int) string {
	clear(m.rowCache)
	return m.rowLine(r, selected, w)
}

// BenchmarkRefresh rebuilds (filter, batch, sort) the queue after a burst
// of events: the cost paid once per coalesced refresh.
func BenchmarkRefresh(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			fb := &fakeBackend{}
			st := DefaultStyles(true)
			m := New(fb, Options{Reviewer: "alice", Clock: func() time.Time { return t0 }, Styles: &st, Review: policy.Review{Batch: true}})
			m.after = func(time.Duration, tea.Msg) tea.Cmd { return nil }
			for i := range n {
				p := pending(fmt.Sprintf("01J%06d", i), fmt.Sprintf("agent-%d", i%50), "send_email", i%100,
					map[string]any{"to": "ops@acme.com", "body": fmt.Sprint("ticket ", i)})
				m.Update(Event{Kind: EventAdded, Pending: &p})
			}
			b.ReportAllocs()
			for b.Loop() {
				m.refresh()
			}
		})
	}
}

// TestRunPumpsEvents runs Run with piped input and output: broker events
// reach the screen, and cancelling the context ends it cleanly.
func TestRunPumpsEvents(t *testing.T) {
	b := &fakeBackend{events: make(chan Event, 4)}
	out := &syncBuffer{}
	inR, inW := io.Pipe()
	defer inW.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, b, Options{Reviewer: "alice"}, tea.WithInput(inR), tea.WithOutput(out),
			tea.WithWindowSize(80, 24), tea.WithoutSignals())
	}()
	b.events <- Event{Kind: EventConnection, Connected: true}
	b.events <- Event{Kind: EventSnapshot, Pendings: []airlock.Pending{
		pending("01JRUN", "ops-bot", "execute_sql", 30, map[string]any{"query": "select 42 from pumped"})}}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ansi.Strip(out.String()), "pumped") {
		if time.Now().After(deadline) {
			t.Fatalf("the snapshot never reached the screen:\n%s", ansi.Strip(out.String()))
		}
		time.Sleep(5 * time.Millisecond) // poll with a deadline
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

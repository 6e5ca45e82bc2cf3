package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/webhook"
)

// sink is a Slack-like incoming webhook.
type sink struct {
	mu    sync.Mutex
	texts []string
	got   chan string
	fail  atomic.Int32 // answer 500 this many more times
	srv   *httptest.Server
}

func newSink(t *testing.T) *sink {
	s := &sink{got: make(chan string, 100)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if s.fail.Add(-1) >= 0 {
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
			http.Error(w, "want {\"text\": …}", http.StatusBadRequest)
			return
		}
		text, _ := m["text"].(string)
		s.mu.Lock()
		s.texts = append(s.texts, text)
		s.mu.Unlock()
		s.got <- text
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-s.got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook message")
		return ""
	}
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.texts)
}

// clock is an injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pending(id string, score int, band string, at time.Time) airlock.Pending {
	return airlock.Pending{
		Call: airlock.ToolCall{ID: id, Agent: "billing-bot", User: "alice", Tool: "execute_sql",
			Arguments: map[string]any{"query": "DELETE FROM customers WHERE secret='hunter2'"}},
		Risk:       airlock.Risk{Score: score, Band: band},
		Reason:     "execute_sql needs a reviewer",
		ReceivedAt: at,
	}
}

func start(t *testing.T, s *sink, opts ...webhook.Option) *webhook.Notifier {
	t.Helper()
	n, err := webhook.New(s.srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n
}

func TestHighRiskAnnouncedAtOnce(t *testing.T) {
	s := newSink(t)
	clk := &clock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	n := start(t, s, webhook.WithClock(clk.now))
	n.Waiting(pending("01JHIGH", 72, airlock.BandHigh, clk.now()))
	msg := s.next(t)
	for _, want := range []string{"01JHIGH", "execute_sql", "billing-bot", "alice", "risk 72 (high)", "airlock pending show 01JHIGH"} {
		if !strings.Contains(msg, want) {
			t.Errorf("got %q, want it to mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") || strings.Contains(msg, "DELETE") {
		t.Errorf("got %q: the arguments leaked into the message", msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("got %q, want one line", msg)
	}
}

func TestWaitThreshold(t *testing.T) {
	s := newSink(t)
	clk := &clock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	n := start(t, s, webhook.WithClock(clk.now), webhook.WithWaitThreshold(2*time.Minute))
	n.Waiting(pending("01JLOW", 10, airlock.BandLow, clk.now()))
	n.Waiting(pending("01JGONE", 10, airlock.BandLow, clk.now()))
	clk.add(time.Minute)
	n.Check()
	n.Done("01JGONE") // decided before the threshold: never announced
	clk.add(90 * time.Second)
	n.Check()
	msg := s.next(t)
	if !strings.Contains(msg, "01JLOW") || !strings.Contains(msg, "waiting 2m30s") {
		t.Fatalf("got %q, want the low-risk call after 2m30s", msg)
	}
	n.Check() // announced once only
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if c := s.count(); c != 1 {
		t.Fatalf("got %d messages, want 1", c)
	}
}

func TestRetriesWithBackoff(t *testing.T) {
	s := newSink(t)
	s.fail.Store(2)
	n := start(t, s, webhook.WithRetries(3, time.Millisecond))
	n.Notify("hello")
	if got := s.next(t); got != "hello" {
		t.Fatalf("got %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if sent, failed, _ := n.Stats(); sent != 1 || failed != 0 {
		t.Fatalf("got sent=%d failed=%d, want 1 and 0", sent, failed)
	}
}

func TestGivesUp(t *testing.T) {
	tests := []struct {
		name   string
		status int
		calls  int32
	}{
		{"server-error-after-retries", http.StatusInternalServerError, 3},
		{"client-error-at-once", http.StatusNotFound, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			n, err := webhook.New(srv.URL, webhook.WithRetries(2, time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			n.Start()
			n.Notify("x")
			deadline := time.Now().Add(5 * time.Second)
			for calls.Load() < tt.calls && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := n.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if got := calls.Load(); got != tt.calls {
				t.Errorf("got %d attempts, want %d", got, tt.calls)
			}
			if _, failed, _ := n.Stats(); failed != 1 {
				t.Errorf("got failed=%d, want 1", failed)
			}
		})
	}
}

func TestTimeoutAndBoundedQueue(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	n, err := webhook.New(srv.URL, webhook.WithQueueSize(2), webhook.WithTimeout(50*time.Millisecond), webhook.WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	done := make(chan struct{})
	go func() {
		for range 20 {
			n.Notify("flood")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify blocked on a slow webhook")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sent, failed, dropped := n.Stats()
	if dropped == 0 || sent != 0 || failed+dropped != 20 {
		t.Fatalf("got sent=%d failed=%d dropped=%d, want timeouts and drops adding up to 20", sent, failed, dropped)
	}
}

func TestWithArgumentsAndEscaping(t *testing.T) {
	s := newSink(t)
	n := start(t, s, webhook.WithArguments(true))
	p := pending("01JARGS", 90, airlock.BandCritical, time.Now())
	p.Call.Tool = "send<email>"
	p.Reason = "line\nbreak & \x1b[2Jclear"
	n.Waiting(p)
	msg := s.next(t)
	if !strings.Contains(msg, "hunter2") {
		t.Errorf("got %q, want the arguments when asked for", msg)
	}
	if strings.ContainsAny(msg, "\n\x1b<>") || !strings.Contains(msg, "send&lt;email&gt;") || !strings.Contains(msg, "&amp;") {
		t.Errorf("got %q, want one escaped line", msg)
	}
}

func TestWatchFollowsTheQueue(t *testing.T) {
	s := newSink(t)
	clk := &clock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	n := start(t, s, webhook.WithClock(clk.now), webhook.WithWaitThreshold(time.Minute))
	events := make(chan client.PendingEvent, 4)
	old := pending("01JOLD", 5, airlock.BandLow, clk.now().Add(-5*time.Minute))
	fresh := pending("01JNEW", 5, airlock.BandLow, clk.now())
	events <- client.PendingEvent{Snapshot: []airlock.Pending{old}}
	events <- client.PendingEvent{Added: &fresh}
	events <- client.PendingEvent{Removed: "01JNEW"}
	close(events)
	n.Watch(events)
	if msg := s.next(t); !strings.Contains(msg, "01JOLD") || !strings.Contains(msg, "waiting 5m0s") {
		t.Fatalf("got %q, want the call from the snapshot that already waited 5m", msg)
	}
	clk.add(2 * time.Minute)
	n.Check()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.Close(ctx)
	if c := s.count(); c != 1 {
		t.Fatalf("got %d messages, want 1 (the removed call is never announced)", c)
	}
}

func TestNewRejects(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "not a url", "http://"} {
		if _, err := webhook.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := webhook.New("https://hooks.example.com/x", webhook.WithMinBand("severe")); err == nil {
		t.Error("accepted an unknown band")
	}
}

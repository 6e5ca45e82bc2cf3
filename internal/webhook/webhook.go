// Package webhook tells people outside the console that calls need them: it
// posts Slack-compatible JSON ({"text": "…"}) to an incoming-webhook URL for
// calls that wait longer than a threshold and for calls at or above a risk
// band as soon as they start waiting.
//
// A message names the call id and gives a one-line summary (tool, agent,
// user, risk, the policy's reason); it never carries the call's arguments
// unless WithArguments is set. Messages go through a bounded queue (a full
// queue drops and counts, it never blocks the broker), each POST has a
// timeout, and failures are retried with exponential backoff (honouring
// Retry-After on 429).
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/sanitize"
)

// Notifier posts notifications to one webhook URL.
type Notifier struct {
	url       string
	http      *http.Client
	log       *slog.Logger
	now       func() time.Time
	threshold time.Duration
	minBand   string
	queueSize int
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	withArgs  bool
	prefix    string

	queue   chan string
	dropped atomic.Int64
	sent    atomic.Int64
	failed  atomic.Int64

	mu      sync.Mutex
	pending map[string]*tracked

	startOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type tracked struct {
	p        airlock.Pending
	notified bool
}

// Option configures a Notifier.
type Option func(*Notifier)

// WithWaitThreshold notifies calls still waiting after d (default 2m; 0
// turns waiting notices off).
func WithWaitThreshold(d time.Duration) Option { return func(n *Notifier) { n.threshold = d } }

// WithMinBand notifies calls at or above this risk band (low, medium, high,
// critical) as soon as they wait; "" turns it off. Default high.
func WithMinBand(band string) Option { return func(n *Notifier) { n.minBand = band } }

// WithQueueSize bounds the queue of unsent messages (default 256).
func WithQueueSize(size int) Option { return func(n *Notifier) { n.queueSize = size } }

// WithTimeout bounds one POST (default 5s).
func WithTimeout(d time.Duration) Option { return func(n *Notifier) { n.timeout = d } }

// WithRetries sets how many times a failed POST is retried (default 3) and
// the first backoff (default 500ms, doubling each time).
func WithRetries(retries int, backoff time.Duration) Option {
	return func(n *Notifier) { n.retries, n.backoff = retries, backoff }
}

// WithHTTPClient replaces the HTTP client.
func WithHTTPClient(c *http.Client) Option { return func(n *Notifier) { n.http = c } }

// WithLogger sets the logger for delivery problems.
func WithLogger(l *slog.Logger) Option { return func(n *Notifier) { n.log = l } }

// WithClock injects the clock used to measure waits.
func WithClock(now func() time.Time) Option { return func(n *Notifier) { n.now = now } }

// WithArguments includes the call's arguments (compact, clipped to 300
// characters) in messages. Off by default: arguments may hold secrets and
// personal data that do not belong in a chat channel.
func WithArguments(on bool) Option { return func(n *Notifier) { n.withArgs = on } }

// WithPrefix starts every message with s (default "airlock").
func WithPrefix(s string) Option { return func(n *Notifier) { n.prefix = s } }

// New returns a notifier for rawURL (http or https). Call Start to send.
func New(rawURL string, opts ...Option) (*Notifier, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: %q is not an http(s) URL", rawURL)
	}
	n := &Notifier{
		url: rawURL, http: &http.Client{}, log: slog.New(slog.DiscardHandler), now: time.Now,
		threshold: 2 * time.Minute, minBand: airlock.BandHigh, queueSize: 256, timeout: 5 * time.Second,
		retries: 3, backoff: 500 * time.Millisecond, prefix: "airlock",
		pending: map[string]*tracked{}, stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(n)
	}
	if n.minBand != "" && bandRank(n.minBand) < 0 {
		return nil, fmt.Errorf("webhook: risk band %q: want low, medium, high or critical", n.minBand)
	}
	if n.queueSize <= 0 {
		n.queueSize = 1
	}
	n.queue = make(chan string, n.queueSize)
	return n, nil
}

// Start runs the sender and, when a wait threshold is set, a ticker that
// checks waiting calls, until Close.
func (n *Notifier) Start() {
	n.startOnce.Do(func() {
		go n.send()
		if n.threshold > 0 {
			go n.tick()
		}
	})
}

// Close stops taking messages, sends what is queued (until ctx ends) and
// stops.
func (n *Notifier) Close(ctx context.Context) error {
	n.Start() // a never-started notifier still closes cleanly
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhook: close: %w", ctx.Err())
	}
}

// Stats reports messages sent, given up on after retries, and dropped
// because the queue was full.
func (n *Notifier) Stats() (sent, failed, dropped int64) {
	return n.sent.Load(), n.failed.Load(), n.dropped.Load()
}

// Waiting records a call that waits for a reviewer (a new call, or one from
// a snapshot). A call at or above the risk band is announced at once.
func (n *Notifier) Waiting(p airlock.Pending) {
	if p.Canary {
		return // attention checks are for the console only
	}
	n.mu.Lock()
	t, ok := n.pending[p.Call.ID]
	if !ok {
		t = &tracked{p: p}
		n.pending[p.Call.ID] = t
	} else {
		t.p = p
	}
	announce := !t.notified && n.minBand != "" && bandRank(band(p.Risk)) >= bandRank(n.minBand)
	if announce {
		t.notified = true
	}
	n.mu.Unlock()
	if announce {
		n.enqueue(n.message(p, 0, fmt.Sprintf("%s-risk call waiting for a reviewer", band(p.Risk))))
	}
	n.Check()
}

// Done forgets a call that left the queue (decided or expired).
func (n *Notifier) Done(callID string) {
	n.mu.Lock()
	delete(n.pending, callID)
	n.mu.Unlock()
}

// Check announces every call that has waited longer than the threshold and
// was not announced yet. The notifier's ticker calls it; tests may too.
func (n *Notifier) Check() {
	if n.threshold <= 0 {
		return
	}
	now := n.now()
	var due []airlock.Pending
	n.mu.Lock()
	for _, t := range n.pending {
		if !t.notified && now.Sub(t.p.ReceivedAt) >= n.threshold {
			t.notified = true
			due = append(due, t.p)
		}
	}
	n.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].ReceivedAt.Before(due[j].ReceivedAt) })
	for _, p := range due {
		w := now.Sub(p.ReceivedAt)
		n.enqueue(n.message(p, w, "waiting "+w.Round(time.Second).String()+" for a reviewer"))
	}
}

// Watch follows a pending-queue stream (client.WatchPending) until it ends.
func (n *Notifier) Watch(events <-chan client.PendingEvent) {
	for ev := range events {
		switch {
		case ev.Snapshot != nil:
			live := map[string]bool{}
			for _, p := range ev.Snapshot {
				live[p.Call.ID] = true
				n.Waiting(p)
			}
			n.mu.Lock()
			for id := range n.pending {
				if !live[id] {
					delete(n.pending, id)
				}
			}
			n.mu.Unlock()
		case ev.Added != nil:
			n.Waiting(*ev.Added)
		case ev.Removed != "":
			n.Done(ev.Removed)
		}
	}
}

// Notify queues a free-form message.
func (n *Notifier) Notify(text string) { n.enqueue(text) }

func (n *Notifier) enqueue(text string) {
	select {
	case <-n.stop:
		n.dropped.Add(1)
		return
	default:
	}
	select {
	case n.queue <- text:
	default:
		n.dropped.Add(1)
		n.log.Warn("webhook queue full; message dropped", "dropped", n.dropped.Load())
	}
}

func (n *Notifier) tick() {
	every := n.threshold / 4
	if every > 5*time.Second {
		every = 5 * time.Second
	}
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			n.Check()
		case <-n.stop:
			return
		}
	}
}

func (n *Notifier) send() {
	defer close(n.done)
	for {
		select {
		case text := <-n.queue:
			n.deliver(text)
		case <-n.stop:
			for {
				select {
				case text := <-n.queue:
					n.deliver(text)
				default:
					return
				}
			}
		}
	}
}

// deliver POSTs one message, retrying transient failures.
func (n *Notifier) deliver(text string) {
	body, _ := json.Marshal(map[string]string{"text": text})
	wait := n.backoff
	for attempt := 0; ; attempt++ {
		retryAfter, err := n.post(body)
		if err == nil {
			n.sent.Add(1)
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) || attempt >= n.retries {
			n.failed.Add(1)
			n.log.Warn("webhook delivery failed", "err", err, "attempts", attempt+1)
			return
		}
		d := wait
		if retryAfter > 0 && retryAfter <= 30*time.Second {
			d = retryAfter
		}
		select {
		case <-time.After(d):
		case <-n.stop:
			// Closing: one last try at most, without waiting.
			if _, err := n.post(body); err == nil {
				n.sent.Add(1)
			} else {
				n.failed.Add(1)
			}
			return
		}
		wait *= 2
	}
}

type permanentError struct{ status int }

func (e *permanentError) Error() string {
	return fmt.Sprintf("webhook: rejected with HTTP %d", e.status)
}

func (n *Notifier) post(body []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "airlock-webhook")
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return time.Duration(ra) * time.Second, fmt.Errorf("webhook: HTTP 429")
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout:
		return 0, fmt.Errorf("webhook: HTTP %d", resp.StatusCode)
	}
	return 0, &permanentError{status: resp.StatusCode}
}

// message renders a call as one line of Slack text.
func (n *Notifier) message(p airlock.Pending, waited time.Duration, what string) string {
	c := p.Call
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: call %s, %s by %s", n.prefix, what, c.ID, clean(c.Tool, 64), clean(c.Agent, 64))
	if c.User != "" {
		fmt.Fprintf(&b, " for %s", clean(c.User, 64))
	}
	fmt.Fprintf(&b, ", risk %d (%s)", p.Risk.Score, band(p.Risk))
	if p.Reason != "" {
		fmt.Fprintf(&b, ": %s", clean(p.Reason, 160))
	}
	if n.withArgs {
		a, _ := json.Marshal(c.Arguments)
		fmt.Fprintf(&b, "; arguments %s", clean(string(a), 300))
	}
	fmt.Fprintf(&b, ". Review: airlock pending show %s", c.ID)
	return b.String()
}

// clean makes untrusted text safe for one Slack line: visible escapes for
// controls, Slack's three escapes, and a length cap.
func clean(s string, max int) string {
	s = sanitize.Line(s)
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	s = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
	return s
}

func band(r airlock.Risk) string {
	if r.Band != "" {
		return r.Band
	}
	switch {
	case r.Score >= 80:
		return airlock.BandCritical
	case r.Score >= 50:
		return airlock.BandHigh
	case r.Score >= 25:
		return airlock.BandMedium
	}
	return airlock.BandLow
}

func bandRank(b string) int {
	switch b {
	case airlock.BandLow:
		return 0
	case airlock.BandMedium:
		return 1
	case airlock.BandHigh:
		return 2
	case airlock.BandCritical:
		return 3
	}
	return -1
}

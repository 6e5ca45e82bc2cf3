// Package client is the Go SDK for airlock: agents submit tool calls and get
// decisions; reviewers' tools list, watch and decide waiting calls.
//
//	c, err := client.Connect("nats://127.0.0.1:4222")
//	d, err := c.Submit(ctx, &airlock.ToolCall{Agent: "billing-bot", Tool: "execute_sql",
//		Arguments: map[string]any{"query": "SELECT 1"}})
//
// Submit retries with the same call id until it gets a decision or ctx ends,
// so a broker restart or a long wait for a reviewer never produces a second
// decision.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// Client talks to airlock brokers over NATS.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
	owned  bool
	// Attempt is how long one request waits before it is retried (same id).
	attempt time.Duration
	// dial holds nats options Connect adds (identity, inbox, TLS).
	dial []nats.Option
	// signer signs reviewers' verdicts before they are sent.
	signer func(*airlock.Review) error
}

// Option configures a Client.
type Option func(*Client)

// WithPrefix sets the subject prefix (default "airlock").
func WithPrefix(p string) Option { return func(c *Client) { c.prefix = p } }

// WithAttemptTimeout sets how long one request waits before Submit retries
// it with the same id (default 30s).
func WithAttemptTimeout(d time.Duration) Option { return func(c *Client) { c.attempt = d } }

// WithReviewSigner signs every verdict Review sends, after its timestamp,
// nonce and policy version are filled in (see broker/auth.SignReview).
func WithReviewSigner(sign func(*airlock.Review) error) Option {
	return func(c *Client) { c.signer = sign }
}

// WithNATSOptions adds nats options Connect dials with.
func WithNATSOptions(o ...nats.Option) Option {
	return func(c *Client) { c.dial = append(c.dial, o...) }
}

// WithInbox makes the connection's reply inboxes _INBOX.<role>.<name>.…,
// the only inboxes an identity may read when the broker enforces auth.
// Connect only (New wraps a connection already dialled).
func WithInbox(role, name string) Option {
	return WithNATSOptions(nats.CustomInboxPrefix(InboxPrefix(role, name)))
}

// WithKey authenticates with an nkey (see LoadKey) and uses the key's
// identity's inbox. Connect only.
func WithKey(k *Key) Option {
	return func(c *Client) {
		c.dial = append(c.dial, nats.Nkey(k.Public, k.Sign), nats.CustomInboxPrefix(InboxPrefix(k.Role, k.Name)))
	}
}

// WithTLS verifies the server against the CA file ca (empty: the system's
// roots) and, when cert and key are set, presents that client certificate.
// Connect only.
func WithTLS(ca, cert, key string) Option {
	return func(c *Client) {
		if ca != "" {
			c.dial = append(c.dial, nats.RootCAs(ca))
		}
		if cert != "" || key != "" {
			c.dial = append(c.dial, nats.ClientCert(cert, key))
		}
	}
}

// Connect dials NATS. Extra nats options (credentials, TLS) may follow.
func Connect(url string, natsOpts []nats.Option, opts ...Option) (*Client, error) {
	var pre Client
	for _, o := range opts {
		o(&pre)
	}
	base := []nats.Option{nats.Name("airlock client"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	base = append(base, pre.dial...)
	nc, err := nats.Connect(url, append(base, natsOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: connect %s: %w", url, err)
	}
	c, err := New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.owned = true
	return c, nil
}

// New wraps an existing connection.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: jetstream: %w", err)
	}
	c := &Client{nc: nc, js: js, prefix: "airlock", attempt: 30 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Conn returns the underlying NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Close closes the connection if Connect opened it.
func (c *Client) Close() {
	if c.owned {
		c.nc.Close()
	}
}

func (c *Client) subject(parts ...string) string {
	return c.prefix + "." + strings.Join(parts, ".")
}

// ErrNoBroker means no broker answered on the submit subject.
var ErrNoBroker = errors.New("client: no airlock broker is listening")

// Submit sends a call and waits for its final decision. An empty call.ID is
// filled with a new ULID first, so retries reuse it. Submit retries on
// timeouts and missing responders until ctx ends.
func (c *Client) Submit(ctx context.Context, call *airlock.ToolCall) (airlock.Decision, error) {
	if call.ID == "" {
		call.ID = ulid.Make().String()
	}
	if call.Arguments == nil {
		call.Arguments = map[string]any{}
	}
	body, err := json.Marshal(call)
	if err != nil {
		return airlock.Decision{}, fmt.Errorf("client: encode call: %w", err)
	}
	return c.SubmitRaw(ctx, call.Agent, body)
}

// SubmitRaw sends an already encoded call for agent and waits for the decision.
func (c *Client) SubmitRaw(ctx context.Context, agent string, body []byte) (airlock.Decision, error) {
	subj := c.subject("submit", agent)
	backoff := 100 * time.Millisecond
	var lastErr error
	for {
		actx, cancel := context.WithTimeout(ctx, c.attempt)
		msg, err := c.nc.RequestWithContext(actx, subj, body)
		cancel()
		if err == nil {
			var d airlock.Decision
			if err := json.Unmarshal(msg.Data, &d); err != nil {
				return d, fmt.Errorf("client: broker sent an unreadable decision: %w", err)
			}
			return d, nil
		}
		lastErr = err
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			lastErr = ErrNoBroker
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		case errors.Is(err, nats.ErrConnectionClosed):
			return airlock.Decision{}, fmt.Errorf("client: %w", err)
		}
		if ctx.Err() != nil {
			return airlock.Decision{}, fmt.Errorf("client: no decision before the deadline (last: %v): %w", lastErr, ctx.Err())
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return airlock.Decision{}, fmt.Errorf("client: no decision before the deadline (last: %v): %w", lastErr, ctx.Err())
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// Review sends a reviewer's verdict and returns the broker's reply.
func (c *Client) Review(ctx context.Context, r airlock.Review) (airlock.ReviewReply, error) {
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now().UTC()
	}
	if r.Nonce == "" {
		r.Nonce = ulid.Make().String()
	}
	if c.signer != nil {
		if r.PolicyVersion == "" {
			// Bind the verdict to the policy that holds the call.
			if p, err := c.GetPending(ctx, r.CallID); err == nil {
				r.PolicyVersion = p.PolicyVersion
				if r.ArgsHash == "" {
					r.ArgsHash = p.ArgsHash
				}
			}
		}
		if err := c.signer(&r); err != nil {
			return airlock.ReviewReply{}, fmt.Errorf("client: sign review: %w", err)
		}
	}
	body, err := json.Marshal(r)
	if err != nil {
		return airlock.ReviewReply{}, err
	}
	msg, err := c.nc.RequestWithContext(ctx, c.subject("review", r.CallID), body)
	if errors.Is(err, nats.ErrNoResponders) {
		return airlock.ReviewReply{}, ErrNoBroker
	}
	if err != nil {
		return airlock.ReviewReply{}, fmt.Errorf("client: review: %w", err)
	}
	var rep airlock.ReviewReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, fmt.Errorf("client: unreadable review reply: %w", err)
	}
	return rep, nil
}

func (c *Client) pendingKV(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, "airlock_pending")
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("client: no airlock broker has run on this NATS system yet (bucket airlock_pending missing)")
	}
	if err != nil {
		return nil, fmt.Errorf("client: pending queue: %w", err)
	}
	return kv, nil
}

// Pending lists the calls waiting for a reviewer, highest risk first.
func (c *Client) Pending(ctx context.Context) ([]airlock.Pending, error) {
	kv, err := c.pendingKV(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("client: pending queue: %w", err)
	}
	defer w.Stop()
	var out []airlock.Pending
	for e := range w.Updates() {
		if e == nil {
			break // initial values done
		}
		var p airlock.Pending
		if json.Unmarshal(e.Value(), &p) == nil {
			out = append(out, p)
		}
	}
	SortPending(out)
	return out, nil
}

// SortPending orders calls by risk, highest first, then oldest first.
func SortPending(ps []airlock.Pending) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && lessPending(ps[j], ps[j-1]); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func lessPending(a, b airlock.Pending) bool {
	if a.Risk.Score != b.Risk.Score {
		return a.Risk.Score > b.Risk.Score
	}
	return a.ReceivedAt.Before(b.ReceivedAt)
}

// GetPending returns one waiting call.
func (c *Client) GetPending(ctx context.Context, id string) (*airlock.Pending, error) {
	kv, err := c.pendingKV(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("client: call %s is not waiting for a reviewer", id)
	}
	if err != nil {
		return nil, err
	}
	var p airlock.Pending
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// PendingEvent is a change in the pending queue.
type PendingEvent struct {
	// Snapshot holds the whole queue; it comes first after every (re)connect.
	Snapshot []airlock.Pending
	// Added is a call that started waiting (or changed, e.g. a first approval).
	Added *airlock.Pending
	// Removed is the id of a call that left the queue.
	Removed string
	// Connected reports the connection state; Err why it dropped.
	Connection *bool
	Err        string
}

// WatchPending streams the pending queue: a snapshot, then changes. After a
// lost connection it reports it and, once back, sends a fresh snapshot.
func (c *Client) WatchPending(ctx context.Context) <-chan PendingEvent {
	out := make(chan PendingEvent, 256)
	go func() {
		defer close(out)
		send := func(ev PendingEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ctx.Err() == nil {
			if err := c.watchOnce(ctx, send); err != nil && ctx.Err() == nil {
				f := false
				if !send(PendingEvent{Connection: &f, Err: err.Error()}) {
					return
				}
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (c *Client) watchOnce(ctx context.Context, send func(PendingEvent) bool) error {
	kv, err := c.pendingKV(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.WatchAll(wctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	var snap []airlock.Pending
	initial := true
	idle := time.NewTicker(2 * time.Second)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-idle.C:
			if !c.nc.IsConnected() {
				return errors.New("connection to NATS lost; reconnecting")
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("pending watch ended")
			}
			if e == nil {
				if initial {
					initial = false
					SortPending(snap)
					t := true
					if !send(PendingEvent{Snapshot: snap, Connection: &t}) {
						return nil
					}
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				if initial {
					continue
				}
				if !send(PendingEvent{Removed: e.Key()}) {
					return nil
				}
				continue
			}
			var p airlock.Pending
			if json.Unmarshal(e.Value(), &p) != nil {
				continue
			}
			if initial {
				snap = append(snap, p)
				continue
			}
			if !send(PendingEvent{Added: &p}) {
				return nil
			}
		}
	}
}

// DecisionEvent is a final decision or a notify-tier call seen on the bus.
type DecisionEvent struct {
	Decision airlock.Decision
	Agent    string
	Tool     string
	// Record is set for notify-tier calls (the whole call and decision).
	Record *airlock.DecisionRecord
}

// WatchDecisions streams every final decision and notify-tier call.
func (c *Client) WatchDecisions(ctx context.Context) (<-chan DecisionEvent, error) {
	out := make(chan DecisionEvent, 256)
	msgs := make(chan *nats.Msg, 1024)
	s1, err := c.nc.ChanSubscribe(c.subject("decision", "*"), msgs)
	if err != nil {
		return nil, err
	}
	s2, err := c.nc.ChanSubscribe(c.subject("notify", "*"), msgs)
	if err != nil {
		_ = s1.Unsubscribe()
		return nil, err
	}
	go func() {
		defer close(out)
		defer s1.Unsubscribe()
		defer s2.Unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				var ev DecisionEvent
				if strings.HasPrefix(m.Subject, c.subject("notify")) {
					var r airlock.DecisionRecord
					if json.Unmarshal(m.Data, &r) != nil {
						continue
					}
					ev = DecisionEvent{Decision: r.Decision, Agent: r.Call.Agent, Tool: r.Call.Tool, Record: &r}
				} else {
					if json.Unmarshal(m.Data, &ev.Decision) != nil {
						continue
					}
					if m.Header != nil {
						ev.Agent = m.Header.Get("Airlock-Agent")
						ev.Tool = m.Header.Get("Airlock-Tool")
					}
				}
				select {
				case out <- ev:
				default: // a slow reader loses feed items, never blocks the bus
				}
			}
		}
	}()
	return out, nil
}

// Recent returns up to n recent decisions of a session, newest first.
func (c *Client) Recent(ctx context.Context, session string, n int) ([]airlock.DecisionRecord, error) {
	body, _ := json.Marshal(map[string]any{"session": session, "n": n})
	msg, err := c.nc.RequestWithContext(ctx, c.subject("admin", "recent"), body)
	if err != nil {
		return nil, fmt.Errorf("client: recent: %w", err)
	}
	var rep struct {
		Records []airlock.DecisionRecord `json:"records"`
		Error   string                   `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, errors.New("client: recent: " + rep.Error)
	}
	return rep.Records, nil
}

// ReviewSettings asks the broker for the review settings of the policy in
// force (batching, dwell, rate guard, typed confirmation).
func (c *Client) ReviewSettings(ctx context.Context) (policy.Review, error) {
	msg, err := c.nc.RequestWithContext(ctx, c.subject("admin", "config"), nil)
	if err != nil {
		return policy.Review{}, fmt.Errorf("client: review settings: %w", err)
	}
	var rep struct {
		Review policy.Review `json:"review"`
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return policy.Review{}, err
	}
	return rep.Review, nil
}

// Decision returns the recorded final decision of a call, or nil while it
// has none.
func (c *Client) Decision(ctx context.Context, id string) (*airlock.Decision, error) {
	kv, err := c.js.KeyValue(ctx, "airlock_calls")
	if err != nil {
		return nil, fmt.Errorf("client: call records: %w", err)
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec struct {
		Decision *airlock.Decision `json:"decision"`
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, err
	}
	return rec.Decision, nil
}

// Package auditstream is the fleet's audit log: every broker appends audit
// events to one JetStream stream (durable, replicated, once acknowledged),
// and a single elected writer applies the stream to the SQLite audit log in
// stream order, computing the hash chain. If the writer dies, another broker
// takes the lease over and continues from the last applied sequence: no gap,
// no duplicate, and the SQLite seq of every event equals its stream
// sequence.
package auditstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/internal/jsutil"
)

// Names of the stream, its subjects and the lease. Decision events go to
// DecisionPrefix plus a digest of their call id, so that the last decision
// audited for a call can be read back from the stream (LastDecision); every
// other event goes to Subject.
const (
	StreamName     = "AIRLOCK_AUDIT"
	Subject        = "airlock.audit.events"
	DecisionPrefix = "airlock.audit.decision."
	LeaseBucket    = "airlock_leases"
	LeaseKey       = "audit-writer"
)

// DecisionSubject is where a call's decision events go: call ids may hold
// characters a subject token may not, so the token is a digest of the id.
func DecisionSubject(callID string) string {
	sum := sha256.Sum256([]byte(callID))
	return DecisionPrefix + hex.EncodeToString(sum[:16])
}

// Header names on audit messages.
const (
	hdrKind   = "Airlock-Kind"
	hdrCallID = "Airlock-Call"
	hdrTS     = "Airlock-Ts"
)

// Publisher is an airlock.Auditor that appends to the audit stream.
type Publisher struct {
	js jetstream.JetStream

	mu     sync.Mutex
	stream jetstream.Stream // bound on first LastDecision
}

// Setup creates (or updates) the audit stream and the lease bucket.
func Setup(ctx context.Context, js jetstream.JetStream, replicas int, leaseTTL time.Duration) error {
	if replicas <= 0 {
		replicas = 1
	}
	scfg := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "airlock audit events, applied to SQLite by one writer",
		Subjects:    []string{Subject, DecisionPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // never drop history: refuse (fail closed) instead
	}
	if err := jsutil.Retry(ctx, func() error { _, err := js.CreateOrUpdateStream(ctx, scfg); return err }); err != nil {
		return fmt.Errorf("auditstream: stream: %w", err)
	}
	kcfg := jetstream.KeyValueConfig{
		Bucket: LeaseBucket, Description: "airlock leases (the audit writer)", History: 1,
		TTL: leaseTTL, Storage: jetstream.FileStorage, Replicas: replicas,
	}
	if _, err := jsutil.CreateOrUpdateKV(ctx, js, kcfg); err != nil {
		return fmt.Errorf("auditstream: lease bucket: %w", err)
	}
	return nil
}

// NewPublisher returns an Auditor over the audit stream.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Append publishes the event and returns once JetStream stored it. The
// receipt's Seq is the stream sequence, which becomes the event's seq in
// SQLite; Hash is empty (the writer computes the chain).
func (p *Publisher) Append(ctx context.Context, ev airlock.Event) (airlock.Receipt, error) {
	payload, err := airlock.CanonicalJSON(ev.Payload)
	if err != nil {
		return airlock.Receipt{}, fmt.Errorf("auditstream: encode: %w", err)
	}
	ts := ev.TS
	if ts.IsZero() {
		ts = time.Now()
	}
	subject := Subject
	first := false // the call's one decision: refused when one is stored
	if ev.Kind == airlock.EventDecision && ev.CallID != "" && !rejectedDecision(ev.Payload) {
		subject, first = DecisionSubject(ev.CallID), true
	}
	m := nats.NewMsg(subject)
	m.Data = payload
	m.Header.Set(hdrKind, ev.Kind)
	m.Header.Set(hdrCallID, ev.CallID)
	m.Header.Set(hdrTS, ts.UTC().Format(time.RFC3339Nano))
	// A message id makes a retried publish (nats.go retries when a leader
	// election answers "no responders", and the first attempt may have been
	// stored) land once: the stream drops duplicates within its window. An
	// event with a Key keeps it as its id, so that the caller's own retry
	// (a new Append) lands once too.
	id := ev.Key
	if id == "" {
		id = ulid.Make().String()
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
	if first {
		// At most one decision per call, enforced by the stream: the
		// subject must hold no message yet. Two brokers that both believe
		// they own a call (one presumed dead, but alive) cannot both audit.
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(0))
	}
	ack, err := p.js.PublishMsg(ctx, m, opts...)
	if first && isWrongLastSequence(err) {
		// Either our own earlier attempt landed (a single server checks
		// the expectation before the duplicate window), or another
		// broker's decision is stored.
		if st, serr := p.boundStream(ctx); serr == nil {
			if prev, gerr := st.GetLastMsgForSubject(ctx, subject); gerr == nil && prev.Header.Get(jetstream.MsgIDHeader) == id {
				return airlock.Receipt{Seq: int64(prev.Sequence)}, nil
			}
		}
		return airlock.Receipt{}, fmt.Errorf("auditstream: call %s: %w", ev.CallID, airlock.ErrDecisionExists)
	}
	if err != nil {
		return airlock.Receipt{}, fmt.Errorf("%w: audit stream: %w", audit.ErrUnavailable, err)
	}
	return airlock.Receipt{Seq: int64(ack.Sequence)}, nil
}

// rejectedDecision reports a decision event for a malformed or conflicting
// submission: audited under the call id it named, but not the call's
// decision (a call decided already may also be sent malformed later).
func rejectedDecision(payload any) bool {
	switch r := payload.(type) {
	case airlock.DecisionRecord:
		return r.Decision.Verdict == airlock.VerdictRejected
	case *airlock.DecisionRecord:
		return r != nil && r.Decision.Verdict == airlock.VerdictRejected
	}
	return false
}

// isWrongLastSequence recognises the stream refusing a publish whose
// expected last subject sequence does not hold.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// LastDecision returns the last decision event the stream holds for a
// call, or nil. A broker taking over a call whose previous owner died
// between auditing its decision and recording it uses this to keep that
// decision instead of deciding again. It reads from the stream's leader,
// so an event acknowledged to the dead broker is seen.
func (p *Publisher) LastDecision(ctx context.Context, callID string) (*airlock.Decision, error) {
	st, err := p.boundStream(ctx)
	if err != nil {
		return nil, err
	}
	msg, err := st.GetLastMsgForSubject(ctx, DecisionSubject(callID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: audit stream: last decision of %s: %w", audit.ErrUnavailable, callID, err)
	}
	var rec airlock.DecisionRecord
	if err := json.Unmarshal(msg.Data, &rec); err != nil {
		return nil, fmt.Errorf("auditstream: last decision of %s: %w", callID, err)
	}
	rec.Decision.AuditSeq = int64(msg.Sequence)
	return &rec.Decision, nil
}

func (p *Publisher) boundStream(ctx context.Context) (jetstream.Stream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil {
		return p.stream, nil
	}
	st, err := p.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("%w: audit stream: %w", audit.ErrUnavailable, err)
	}
	p.stream = st
	return st, nil
}

// Writer applies the audit stream to a SQLite audit log while it holds the
// writer lease.
//
// Every JetStream request the writer makes is bounded by its own short
// deadline (apiTimeout, or a fraction of the lease TTL for the lease), never
// by the long-lived context given to Run: a request sent into a cluster
// while a node dies can go unanswered (a consumer placed on the dead peer,
// a reply lost with its route), and nats.go applies its default timeout
// only to a context without any deadline. The writer manages its own pull
// consumer instead of an ordered one, whose internal re-creation retries
// the same consumer name without a deadline and ignores the caller's
// context.
type Writer struct {
	js     jetstream.JetStream
	path   string
	name   string
	ttl    time.Duration
	log    *slog.Logger
	opts   []audit.Option
	Events chan string // optional: "leader", "follower" transitions, for tests
}

// Timeouts of the writer's JetStream requests and pulls.
const (
	apiTimeout = 5 * time.Second // one API request (consumer create, bucket lookup, lease create)
	pullExpiry = 5 * time.Second // one pull request
	// pullHeartbeat is the idle heartbeat of the writer's pulls: a consumer
	// lost with its node is noticed within two of them.
	pullHeartbeat = time.Second
	// firstWait bounds the wait for the first event of a batch; it
	// outlasts two heartbeats, since nats.go checks them within one Next.
	firstWait = 2500 * time.Millisecond
	batchMax  = 500
)

// NewWriter prepares a writer for the audit database at path.
func NewWriter(js jetstream.JetStream, path, name string, leaseTTL time.Duration, logger *slog.Logger, opts ...audit.Option) *Writer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Writer{js: js, path: path, name: name, ttl: leaseTTL, log: logger, opts: opts}
}

func (w *Writer) note(s string) {
	if w.Events != nil {
		select {
		case w.Events <- s:
		default:
		}
	}
}

// pause waits d or until ctx ends; it reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errLeaseLost ends a lead when the lease could not be renewed in time.
var errLeaseLost = errors.New("auditstream: lease lost")

// Run campaigns for the lease and, while holding it, applies the stream.
// It returns nil when ctx ends, or an error if the lease bucket does not
// exist (Setup was not run); transient failures are logged and retried.
func (w *Writer) Run(ctx context.Context) error {
	var kv jetstream.KeyValue
	for kv == nil {
		rctx, cancel := context.WithTimeout(ctx, apiTimeout)
		b, err := w.js.KeyValue(rctx, LeaseBucket)
		cancel()
		switch {
		case err == nil:
			kv = b
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrBucketNotFound):
			return fmt.Errorf("auditstream: lease bucket: %w", err)
		default:
			w.log.Warn("audit writer: lease bucket unavailable, retrying", "writer", w.name, "err", err)
			pause(ctx, w.ttl/3)
		}
	}
	for ctx.Err() == nil {
		sent := time.Now() // the lease lasts at least ttl from here
		cctx, cancel := context.WithTimeout(ctx, min(apiTimeout, w.ttl))
		rev, err := kv.Create(cctx, LeaseKey, []byte(w.name))
		cancel()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
				w.log.Debug("audit writer: lease campaign failed", "writer", w.name, "err", err)
			}
			// Someone holds it; try again shortly (the lease expires by TTL).
			pause(ctx, w.ttl/3)
			continue
		}
		w.log.Info("audit writer: lease acquired", "writer", w.name)
		w.note("leader")
		err = w.lead(ctx, kv, rev, sent)
		w.note("follower")
		if err != nil && ctx.Err() == nil {
			w.log.Error("audit writer: stepping down", "writer", w.name, "err", err)
		}
	}
	return nil
}

// renew keeps the lease: every ttl/3 it updates the key at the revision it
// holds, each attempt bounded. A failed attempt is retried until two
// thirds of the TTL have passed since the last renewal was sent; then the
// lease counts as lost (ending lctx) while a third of the TTL is left
// before another writer can take the key. A revision mismatch (the key
// expired or was taken) ends it at once.
func (w *Writer) renew(lctx context.Context, lose context.CancelCauseFunc, kv jetstream.KeyValue, held *atomic.Uint64, sent time.Time) {
	every, retry := w.ttl/3, max(w.ttl/10, 10*time.Millisecond)
	next := sent.Add(every)
	for {
		if !pause(lctx, time.Until(next)) {
			return
		}
		deadline := sent.Add(2 * w.ttl / 3)
		attempt := time.Now()
		if !attempt.Before(deadline) {
			lose(fmt.Errorf("%w: not renewed within %v", errLeaseLost, 2*w.ttl/3))
			return
		}
		rctx, cancel := context.WithDeadline(lctx, deadline)
		nrev, err := kv.Update(rctx, LeaseKey, []byte(w.name), held.Load())
		cancel()
		switch {
		case lctx.Err() != nil:
			return
		case err == nil:
			held.Store(nrev)
			sent, next = attempt, attempt.Add(every)
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound):
			lose(fmt.Errorf("%w: %w", errLeaseLost, err))
			return
		default:
			w.log.Warn("audit writer: lease renewal failed, retrying", "writer", w.name, "err", err)
			next = time.Now().Add(retry)
		}
	}
}

// lead holds the lease (renewing it) and applies events until the lease is
// lost or ctx ends. sent is when the request that took the lease was sent.
func (w *Writer) lead(ctx context.Context, kv jetstream.KeyValue, rev uint64, sent time.Time) error {
	lctx, lose := context.WithCancelCause(ctx)
	var held atomic.Uint64 // the lease's revision, renewed by renew
	held.Store(rev)
	renewed := make(chan struct{})
	go func() { defer close(renewed); w.renew(lctx, lose, kv, &held, sent) }()
	defer func() {
		lose(nil)
		<-renewed
		// Give the lease up at once on a clean exit.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.ttl/3)
		_ = kv.Delete(dctx, LeaseKey, jetstream.LastRevision(held.Load()))
		cancel()
	}()
	// stopped reports why the lead ends (nil when ctx ended).
	stopped := func() error {
		if ctx.Err() != nil {
			return nil
		}
		return context.Cause(lctx)
	}

	lg, err := audit.Open(w.path, w.opts...)
	if err != nil {
		return err
	}
	defer lg.Close(context.WithoutCancel(ctx))

	var c *reader
	defer func() { c.close() }()
	for lctx.Err() == nil {
		if c == nil {
			head, _ := lg.Head()
			if c, err = w.open(lctx, uint64(head)+1); err != nil {
				if lctx.Err() != nil {
					break
				}
				w.log.Warn("audit writer: cannot create the stream consumer, retrying", "writer", w.name, "from", head+1, "err", err)
				pause(lctx, w.ttl/3)
				continue
			}
		}
		evs, seqs, err := c.batch(lctx)
		if err != nil {
			if lctx.Err() != nil {
				break
			}
			// The consumer is gone (its node died, the connection
			// reconnected elsewhere, it was deleted): start a new one
			// after the last applied event.
			w.log.Warn("audit writer: stream consumer lost, re-creating it", "writer", w.name, "err", err)
			c.close()
			c = nil
		}
		if len(evs) == 0 {
			continue
		}
		// Skip what is already applied; apply only a contiguous run.
		head, _ := lg.Head()
		start := 0
		for start < len(seqs) && int64(seqs[start]) <= head {
			start++
		}
		evs, seqs = evs[start:], seqs[start:]
		if len(evs) == 0 {
			continue
		}
		if int64(seqs[0]) != head+1 {
			if c != nil && c.fresh(head) {
				// A consumer created at head+1 began further on: the
				// stream itself lacks the events in between.
				return fmt.Errorf("auditstream: gap: the log ends at %d but the stream continues at %d", head, seqs[0])
			}
			// A delivery was lost on the way: read again from the head.
			w.log.Warn("audit writer: out-of-order delivery, re-reading", "writer", w.name, "head", head, "got", seqs[0])
			c.close()
			c = nil
			continue
		}
		n := 1
		for n < len(seqs) && seqs[n] == seqs[n-1]+1 {
			n++
		}
		if n < len(seqs) {
			w.log.Warn("audit writer: out-of-order delivery, re-reading", "writer", w.name, "after", seqs[n-1], "got", seqs[n])
			c.close()
			c = nil
		}
		if err := lctx.Err(); err != nil {
			break // the lease lapsed while these were read: leave them to the next writer
		}
		rcpts, err := lg.AppendOrdered(lctx, evs[:n])
		if err != nil {
			if lctx.Err() != nil {
				break
			}
			return fmt.Errorf("auditstream: apply: %w", err)
		}
		for i, r := range rcpts {
			if r.Seq != int64(seqs[i]) {
				return fmt.Errorf("auditstream: stream sequence %d landed as seq %d", seqs[i], r.Seq)
			}
		}
		if c != nil {
			c.applied = true
		}
	}
	return stopped()
}

// reader is one pull consumer of the audit stream, from a start sequence.
type reader struct {
	w       *Writer
	name    string
	start   uint64
	it      jetstream.MessagesContext
	applied bool // some of its events were applied
}

// open creates an in-memory, single-replica pull consumer delivering the
// stream from seq on, under a fresh name (so a retry after a create that
// went unanswered is a new placement, not the same stuck one). Unused
// consumers are removed by the server after InactiveThreshold.
func (w *Writer) open(ctx context.Context, seq uint64) (*reader, error) {
	name := "airlock_audit_" + ulid.Make().String()
	cctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	cons, err := w.js.CreateConsumer(cctx, StreamName, jetstream.ConsumerConfig{
		Name:              name,
		Description:       "airlock audit writer " + w.name,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       seq,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		if ctx.Err() == nil {
			w.remove(name) // it may exist although the reply was lost
		}
		return nil, fmt.Errorf("auditstream: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(batchMax), jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		w.remove(name)
		return nil, fmt.Errorf("auditstream: consumer: %w", err)
	}
	return &reader{w: w, name: name, start: seq, it: it}, nil
}

// remove deletes a consumer in the background, best effort, bounded.
func (w *Writer) remove(name string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		_ = w.js.DeleteConsumer(ctx, StreamName, name)
	}()
}

func (r *reader) close() {
	if r == nil {
		return
	}
	r.it.Stop()
	r.w.remove(r.name)
}

// fresh reports whether the consumer was created right after head and
// nothing it delivered was applied yet: its first event is the stream's
// next one after head.
func (r *reader) fresh(head int64) bool { return !r.applied && r.start == uint64(head)+1 }

// batch waits up to firstWait for an event, then takes what is already
// there (up to batchMax). It returns the events read so far with an error
// when the consumer failed (a missing heartbeat, a deleted consumer).
func (r *reader) batch(ctx context.Context) ([]airlock.Event, []uint64, error) {
	var evs []airlock.Event
	var seqs []uint64
	wait := firstWait
	for len(evs) < batchMax {
		nctx, cancel := context.WithTimeout(ctx, wait)
		m, err := r.it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
				return evs, seqs, nil
			}
			return evs, seqs, err
		}
		meta, err := m.Metadata()
		if err != nil {
			return evs, seqs, err
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(hdrTS))
		evs = append(evs, airlock.Event{Kind: m.Headers().Get(hdrKind), CallID: m.Headers().Get(hdrCallID), TS: ts,
			Payload: json.RawMessage(m.Data())})
		seqs = append(seqs, meta.Sequence.Stream)
		wait = 2 * time.Millisecond
	}
	return evs, seqs, nil
}

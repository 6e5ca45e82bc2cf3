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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
)

// Names of the stream, its subject and the lease.
const (
	StreamName  = "AIRLOCK_AUDIT"
	Subject     = "airlock.audit.events"
	LeaseBucket = "airlock_leases"
	LeaseKey    = "audit-writer"
)

// Header names on audit messages.
const (
	hdrKind   = "Airlock-Kind"
	hdrCallID = "Airlock-Call"
	hdrTS     = "Airlock-Ts"
)

// Publisher is an airlock.Auditor that appends to the audit stream.
type Publisher struct {
	js jetstream.JetStream
}

// Setup creates (or updates) the audit stream and the lease bucket.
func Setup(ctx context.Context, js jetstream.JetStream, replicas int, leaseTTL time.Duration) error {
	if replicas <= 0 {
		replicas = 1
	}
	scfg := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "airlock audit events, applied to SQLite by one writer",
		Subjects:    []string{Subject},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // never drop history: refuse (fail closed) instead
	}
	if err := retry(ctx, func() error { _, err := js.CreateOrUpdateStream(ctx, scfg); return err }); err != nil {
		return fmt.Errorf("auditstream: stream: %w", err)
	}
	kcfg := jetstream.KeyValueConfig{
		Bucket: LeaseBucket, Description: "airlock leases (the audit writer)", History: 1,
		TTL: leaseTTL, Storage: jetstream.FileStorage, Replicas: replicas,
	}
	if err := retry(ctx, func() error { _, err := js.CreateOrUpdateKeyValue(ctx, kcfg); return err }); err != nil {
		return fmt.Errorf("auditstream: lease bucket: %w", err)
	}
	return nil
}

// retry runs an idempotent JetStream request again while it times out or
// finds no responder (placing a replicated asset on a busy or freshly
// started cluster can outlast one request's timeout).
func retry(ctx context.Context, f func() error) error {
	err := f()
	for attempt := 1; attempt < 6 && ctx.Err() == nil; attempt++ {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return err
		}
		err = f()
	}
	return err
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
	m := nats.NewMsg(Subject)
	m.Data = payload
	m.Header.Set(hdrKind, ev.Kind)
	m.Header.Set(hdrCallID, ev.CallID)
	m.Header.Set(hdrTS, ts.UTC().Format(time.RFC3339Nano))
	// A message id makes a retried publish (nats.go retries when a leader
	// election answers "no responders", and the first attempt may have been
	// stored) land once: the stream drops duplicates within its window.
	ack, err := p.js.PublishMsg(ctx, m, jetstream.WithMsgID(ulid.Make().String()))
	if err != nil {
		return airlock.Receipt{}, fmt.Errorf("%w: audit stream: %w", audit.ErrUnavailable, err)
	}
	return airlock.Receipt{Seq: int64(ack.Sequence)}, nil
}

// Writer applies the audit stream to a SQLite audit log while it holds the
// writer lease.
type Writer struct {
	js     jetstream.JetStream
	path   string
	name   string
	ttl    time.Duration
	log    *slog.Logger
	opts   []audit.Option
	Events chan string // optional: "leader", "follower" transitions, for tests
}

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

// Run campaigns for the lease and, while holding it, applies the stream.
// It returns when ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	kv, err := w.js.KeyValue(ctx, LeaseBucket)
	if err != nil {
		return fmt.Errorf("auditstream: lease bucket: %w", err)
	}
	for ctx.Err() == nil {
		rev, err := kv.Create(ctx, LeaseKey, []byte(w.name))
		if err != nil {
			// Someone holds it; try again shortly (the lease expires by TTL).
			select {
			case <-ctx.Done():
			case <-time.After(w.ttl / 3):
			}
			continue
		}
		w.log.Info("audit writer: lease acquired", "writer", w.name)
		w.note("leader")
		err = w.lead(ctx, kv, rev)
		w.note("follower")
		if err != nil && ctx.Err() == nil {
			w.log.Error("audit writer: stepping down", "err", err)
		}
	}
	return nil
}

// lead holds the lease (renewing it) and applies events until the lease is
// lost or ctx ends.
func (w *Writer) lead(ctx context.Context, kv jetstream.KeyValue, rev uint64) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 1)
	var held atomic.Uint64 // the lease's revision, renewed below
	held.Store(rev)
	go func() {
		t := time.NewTicker(w.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
				nrev, err := kv.Update(lctx, LeaseKey, []byte(w.name), rev)
				if err != nil {
					w.log.Info("DBG renew failed", "writer", w.name, "err", err)
					if lctx.Err() == nil {
						lost <- fmt.Errorf("lease lost: %w", err)
						cancel()
					}
					return
				}
				rev = nrev
				held.Store(nrev)
			}
		}
	}()
	defer func() {
		// Give the lease up at once on a clean exit.
		_ = kv.Delete(context.WithoutCancel(ctx), LeaseKey, jetstream.LastRevision(held.Load()))
	}()

	lg, err := audit.Open(w.path, w.opts...)
	if err != nil {
		return err
	}
	defer lg.Close(context.WithoutCancel(ctx))
	head, _ := lg.Head()
	stream, err := w.js.Stream(lctx, StreamName)
	if err != nil {
		return err
	}
	cons, err := stream.OrderedConsumer(lctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: uint64(head) + 1,
	})
	if err != nil {
		return err
	}
	// One ordered consumer for the whole lease: it resets itself when its
	// node fails. (FetchNoWait on an ordered consumer would re-create it on
	// every poll, a consumer assignment through the meta leader each time,
	// which on a cluster fails with "no responders" and livelocks.)
	// Short pulls with frequent heartbeats: when the node serving the
	// consumer dies, the missing heartbeats reset it within seconds.
	it, err := cons.Messages(jetstream.PullMaxMessages(500), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return err
	}
	defer it.Stop()
	for {
		select {
		case err := <-lost:
			return err
		default:
		}
		if lctx.Err() != nil {
			return nil
		}
		var evs []airlock.Event
		var seqs []uint64
		// Wait for the first event, then take what is already there. The
		// first wait outlasts two heartbeats: nats.go notices a consumer
		// that died with its node (and re-creates it) only within one Next.
		wait := 2500 * time.Millisecond
		for len(evs) < 500 {
			nctx, ncancel := context.WithTimeout(lctx, wait)
			t0 := time.Now()
			m, err := it.Next(jetstream.NextContext(nctx))
			ncancel()
			if err != nil && len(evs) == 0 {
				w.log.Info("DBG next", "writer", w.name, "err", err, "took", time.Since(t0))
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if err != nil {
				if lctx.Err() != nil {
					return nil
				}
				return err
			}
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			ts, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(hdrTS))
			evs = append(evs, airlock.Event{Kind: m.Headers().Get(hdrKind), CallID: m.Headers().Get(hdrCallID), TS: ts,
				Payload: json.RawMessage(m.Data())})
			seqs = append(seqs, meta.Sequence.Stream)
			wait = 2 * time.Millisecond
		}
		if len(evs) == 0 {
			continue
		}
		// Skip what is already applied; refuse a gap.
		head, _ = lg.Head()
		start := 0
		for start < len(seqs) && int64(seqs[start]) <= head {
			start++
		}
		evs, seqs = evs[start:], seqs[start:]
		if len(evs) == 0 {
			continue
		}
		if int64(seqs[0]) != head+1 {
			return fmt.Errorf("auditstream: gap: the log ends at %d but the stream continues at %d", head, seqs[0])
		}
		rcpts, err := lg.AppendOrdered(lctx, evs)
		if err != nil {
			return fmt.Errorf("auditstream: apply: %w", err)
		}
		for i, r := range rcpts {
			if r.Seq != int64(seqs[i]) {
				return fmt.Errorf("auditstream: stream sequence %d landed as seq %d", seqs[i], r.Seq)
			}
		}
	}
}

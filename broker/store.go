package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/internal/jsutil"
)

// Bucket names. Everything several brokers must share lives in JetStream.
const (
	BucketCalls   = "airlock_calls"   // call id → callRecord (idempotency, state, decision)
	BucketPending = "airlock_pending" // call id → airlock.Pending, the reviewers' queue
	BucketGrants  = "airlock_grants"  // grant id → grant
	BucketState   = "airlock_state"   // checkpoints, nonces and other small shared state
)

// Call states.
const (
	statePending   = "pending"   // waiting for a reviewer
	stateDeciding  = "deciding"  // a broker claimed it and is writing the decision
	stateExecuting = "executing" // approved; the sandbox run began
	stateDecided   = "decided"   // final
)

// callRecord is what the calls bucket holds for one call id.
type callRecord struct {
	State       string            `json:"state"`
	Fingerprint string            `json:"fingerprint"`
	Call        airlock.ToolCall  `json:"call"`
	Decision    *airlock.Decision `json:"decision,omitempty"`
	// ClaimedBy names who holds a deciding/executing claim.
	ClaimedBy string    `json:"claimed_by,omitempty"`
	ClaimedAt time.Time `json:"claimed_at,omitempty"`
	// Reviewers who approved so far (two-person rule).
	Approvals []string  `json:"approvals,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// Broker names the broker working on a deciding claim (ClaimedBy then
	// names the reviewer or the expiry), so that the claim is returned to
	// the queue as soon as that broker is presumed dead.
	Broker string `json:"broker,omitempty"`
	// callJSON, when set, is json.Marshal(Call), encoded once for the
	// record's writes (see encode).
	callJSON []byte
}

// callRecordHead and callRecordTail are callRecord's fields before and
// after the call, with the same names, order and options: encode writes
// head, the call's JSON, tail, which is what json.Marshal writes.
type callRecordHead struct {
	State       string `json:"state"`
	Fingerprint string `json:"fingerprint"`
}

type callRecordTail struct {
	Decision  *airlock.Decision `json:"decision,omitempty"`
	ClaimedBy string            `json:"claimed_by,omitempty"`
	ClaimedAt time.Time         `json:"claimed_at,omitempty"`
	Approvals []string          `json:"approvals,omitempty"`
	UpdatedAt time.Time         `json:"updated_at"`
	Broker    string            `json:"broker,omitempty"`
}

// encode is json.Marshal(r), reusing r.callJSON when set (the call is most
// of a record; encoding/json would also re-scan it as a json.RawMessage).
func (r *callRecord) encode() ([]byte, error) {
	if r.callJSON == nil {
		return json.Marshal(r)
	}
	head, err := json.Marshal(callRecordHead{State: r.State, Fingerprint: r.Fingerprint})
	if err != nil {
		return nil, err
	}
	tail, err := json.Marshal(callRecordTail{Decision: r.Decision, ClaimedBy: r.ClaimedBy, ClaimedAt: r.ClaimedAt, Approvals: r.Approvals, UpdatedAt: r.UpdatedAt, Broker: r.Broker})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+len(r.callJSON)+len(tail)+8)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"call":`...)
	out = append(out, r.callJSON...)
	out = append(out, ',')
	return append(out, tail[1:]...), nil
}

// execIndexPrefix indexes sandbox runs under way in the state bucket.
const execIndexPrefix = "exec."

// execIndex is one run under way.
type execIndex struct {
	Broker   string    `json:"broker"`
	Started  time.Time `json:"started"`
	Deadline time.Time `json:"deadline"`
}

// store wraps the JetStream KV buckets.
type store struct {
	calls   jetstream.KeyValue
	pending jetstream.KeyValue
	grants  jetstream.KeyValue
	state   jetstream.KeyValue
	// nc, when set, writes call records through plain requests first
	// (see putCall); nil: through the KV API only.
	nc *nats.Conn
}

// openStore creates or binds the buckets with the given replica count.
func openStore(ctx context.Context, js jetstream.JetStream, replicas int) (*store, error) {
	if replicas <= 0 {
		replicas = 1
	}
	mk := func(name, desc string, history uint8) (jetstream.KeyValue, error) {
		cfg := jetstream.KeyValueConfig{
			Bucket:      name,
			Description: desc,
			History:     history,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		}
		kv, err := jsutil.CreateOrUpdateKV(ctx, js, cfg)
		if err != nil {
			return nil, fmt.Errorf("broker: key-value bucket %s: %w", name, err)
		}
		return kv, nil
	}
	var s store
	var err error
	if s.calls, err = mk(BucketCalls, "airlock call records: idempotency, state, decisions", 1); err != nil {
		return nil, err
	}
	if s.pending, err = mk(BucketPending, "airlock calls waiting for a reviewer", 1); err != nil {
		return nil, err
	}
	if s.grants, err = mk(BucketGrants, "airlock scoped, expiring grants", 1); err != nil {
		return nil, err
	}
	if s.state, err = mk(BucketState, "airlock shared state", 1); err != nil {
		return nil, err
	}
	return &s, nil
}

// IsTransient reports a JetStream error worth retrying (jsutil.IsTransient).
func IsTransient(err error) bool { return jsutil.IsTransient(err) }

// transientBudget is how long a state operation rides through transient
// JetStream errors (a stream's leader being elected after a node died
// answers "no responders" or nothing for a second or two) before the
// caller fails closed.
const transientBudget = 6 * time.Second

// retryTransient runs op until it succeeds, fails for good, or transient
// errors outlast transientBudget. op must be safe to run again: the ops
// below check, after a retry, whether an earlier attempt landed.
func retryTransient(ctx context.Context, op func() error) error {
	return retryWhile(ctx, transientBudget, IsTransient, op)
}

// retryWhile runs op again, backing off from 50 ms to 800 ms, while its
// error is retryable and budget lasts.
func retryWhile(ctx context.Context, budget time.Duration, retryable func(error) bool, op func() error) error {
	deadline := time.Now().Add(budget)
	wait := 50 * time.Millisecond
	for {
		err := op()
		if err == nil || !retryable(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait = min(2*wait, 800*time.Millisecond)
	}
}

// get returns the record and its revision; found is false when absent.
func (s *store) get(ctx context.Context, id string) (rec callRecord, rev uint64, found bool, err error) {
	var e jetstream.KeyValueEntry
	err = retryTransient(ctx, func() (err error) { e, err = s.calls.Get(ctx, id); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return rec, 0, false, nil
	}
	if err != nil {
		return rec, 0, false, fmt.Errorf("broker: read call %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, false, fmt.Errorf("broker: call record %s is corrupt: %w", id, err)
	}
	return rec, e.Revision(), true, nil
}

// landed reports whether the call record now holds exactly b, written by an
// earlier attempt whose answer was lost (the write landed, the reply did
// not), and at which revision.
func (s *store) landed(ctx context.Context, id string, b []byte) (uint64, bool) {
	e, err := s.calls.Get(ctx, id)
	if err != nil || !bytes.Equal(e.Value(), b) {
		return 0, false
	}
	return e.Revision(), true
}

// create stores a new record; created is false when the id already exists.
func (s *store) create(ctx context.Context, id string, rec callRecord) (rev uint64, created bool, err error) {
	b, err := rec.encode()
	if err != nil {
		return 0, false, err
	}
	r, quick := s.putCall(ctx, id, b, 0)
	if quick == putLanded {
		return r, true, nil
	}
	// After a quick write whose answer was lost or unclear, what follows
	// is a retry of a write that may have landed.
	retried := quick == putUnknown
	err = retryTransient(ctx, func() (err error) {
		rev, err = s.calls.Create(ctx, id, b)
		if retried && isRevisionMismatch(err) {
			if r, ok := s.landed(ctx, id, b); ok {
				rev, err = r, nil // our own earlier attempt created it
			}
		}
		retried = true
		return err
	})
	// Someone else created it first: ErrKeyExists, or on a replicated
	// bucket while that write is still in flight, API error 10164.
	if isRevisionMismatch(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("broker: record call %s: %w", id, err)
	}
	return rev, true, nil
}

// putCall writes a call record at the key's revision rev (0: the key must
// not exist) the way the KV API does (a publish to the bucket's subject
// that expects the subject's last sequence to be rev), as a plain request
// whose acknowledgement is read without a JSON decoder. Only a clean
// acknowledgement is putLanded; the caller writes through the KV API after
// anything else: after putRefused (the stream answered with an error: not
// stored) as a first attempt, after putUnknown (no answer, or one it
// cannot read; possibly stored) as a retry.
func (s *store) putCall(ctx context.Context, key string, value []byte, rev uint64) (uint64, putResult) {
	if s.nc == nil || ctx.Err() != nil {
		return 0, putSkipped
	}
	m := &nats.Msg{Subject: "$KV." + BucketCalls + "." + key, Data: value, Header: nats.Header{}}
	m.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(rev, 10)}
	resp, err := s.nc.RequestMsg(m, putCallTimeout)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, putRefused // nobody received it
		}
		return 0, putUnknown
	}
	if seq, ok := parsePubAck(resp.Data); ok {
		return seq, putLanded
	}
	if bytes.HasPrefix(resp.Data, []byte(`{"error":{`)) {
		return 0, putRefused
	}
	return 0, putUnknown
}

// putResult is how a quick call-record write ended.
type putResult int

const (
	putSkipped putResult = iota // not tried
	putLanded                   // stored, acknowledged
	putRefused                  // not stored
	putUnknown                  // perhaps stored
)

// putCallTimeout is how long putCall waits for the acknowledgement: a
// healthy stream answers in milliseconds; past this, the KV API's own
// retries (transientBudget) take over, so a stuck quick write adds at most
// this much to them.
const putCallTimeout = 2 * time.Second

// parsePubAck reads the sequence from a JetStream publish acknowledgement
// for the calls bucket, of the form {"stream":"KV_airlock_calls","seq":N…};
// anything else (an error, a duplicate, another stream, not JSON at all) is
// not ok, and the caller falls back to the KV API (FuzzParsePubAck holds it
// to what encoding/json reads).
func parsePubAck(b []byte) (uint64, bool) {
	const head = `{"stream":"KV_` + BucketCalls + `",`
	if !bytes.HasPrefix(b, []byte(head)) || bytes.Contains(b, []byte(`"error"`)) || bytes.Contains(b, []byte(`"duplicate"`)) ||
		bytes.Count(b, []byte(`"seq"`)) != 1 {
		return 0, false
	}
	rest := b[len(head):]
	// A server in a JetStream domain names it before the sequence.
	if d, ok := bytes.CutPrefix(rest, []byte(`"domain":"`)); ok {
		i := bytes.IndexByte(d, '"')
		if i < 0 || bytes.IndexByte(d[:i], '\\') >= 0 || !bytes.HasPrefix(d[i+1:], []byte(",")) {
			return 0, false
		}
		rest = d[i+2:]
	}
	rest, ok := bytes.CutPrefix(rest, []byte(`"seq":`))
	if !ok {
		return 0, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 19 || n == len(rest) || (rest[n] != ',' && rest[n] != '}') || (n > 1 && rest[0] == '0') {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil || seq == 0 || !json.Valid(b) {
		return 0, false
	}
	return seq, true
}

// errLostRace is a compare-and-set that another writer won.
var errLostRace = errors.New("broker: another broker or reviewer changed the call first")

// update writes rec if the record is still at rev.
func (s *store) update(ctx context.Context, id string, rec callRecord, rev uint64) (uint64, error) {
	b, err := rec.encode()
	if err != nil {
		return 0, err
	}
	r, quick := s.putCall(ctx, id, b, rev)
	if quick == putLanded {
		return r, nil
	}
	var nrev uint64
	retried := quick == putUnknown
	err = retryTransient(ctx, func() (err error) {
		nrev, err = s.calls.Update(ctx, id, b, rev)
		if retried && isRevisionMismatch(err) {
			if r, ok := s.landed(ctx, id, b); ok {
				nrev, err = r, nil
			}
		}
		retried = true
		return err
	})
	if isRevisionMismatch(err) {
		return 0, errLostRace
	}
	if err != nil {
		return 0, fmt.Errorf("broker: update call %s: %w", id, err)
	}
	return nrev, nil
}

// remove forgets a record (used when a decision could not be audited, so
// that a retry is evaluated afresh).
func (s *store) remove(ctx context.Context, id string, rev uint64) error {
	retried := false
	err := retryTransient(ctx, func() error {
		err := s.calls.Purge(ctx, id, jetstream.LastRevision(rev))
		if retried && isRevisionMismatch(err) {
			// Purged by the lost attempt: the record is gone.
			if _, gerr := s.calls.Get(ctx, id); errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
				return nil
			}
		}
		retried = true
		return err
	})
	if isRevisionMismatch(err) {
		return errLostRace
	}
	return err
}

// isRevisionMismatch recognises a lost compare-and-set: nats.go reports it as
// ErrKeyRevisionMismatch; a replicated bucket answers with API error code
// 10164 (and older servers with 10071, wrong last sequence).
func isRevisionMismatch(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == 10164 || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
	}
	return false
}

func (s *store) putPending(ctx context.Context, p *airlock.Pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := retryTransient(ctx, func() error { _, err := s.pending.Put(ctx, p.Call.ID, b); return err }); err != nil {
		return fmt.Errorf("broker: queue call %s for review: %w", p.Call.ID, err)
	}
	return nil
}

func (s *store) getPending(ctx context.Context, id string) (*airlock.Pending, error) {
	e, err := s.pending.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var p airlock.Pending
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, fmt.Errorf("broker: pending record %s is corrupt: %w", id, err)
	}
	return &p, nil
}

func (s *store) deletePending(ctx context.Context, id string) error {
	err := retryTransient(ctx, func() error { return s.pending.Delete(ctx, id) })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// listPending returns every pending call.
func (s *store) listPending(ctx context.Context) ([]*airlock.Pending, error) {
	lister, err := s.pending.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer lister.Stop()
	var out []*airlock.Pending
	for key := range lister.Keys() {
		p, err := s.getPending(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

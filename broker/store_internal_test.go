package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
)

// lossyKV writes for real but, when told to, loses the answer to the next
// write (the server stored it; the reply never came), as a leader election
// or a dying node does.
type lossyKV struct {
	jetstream.KeyValue
	lose atomic.Bool
}

func (l *lossyKV) lost(err error) error {
	if err == nil && l.lose.CompareAndSwap(true, false) {
		return nats.ErrTimeout
	}
	return err
}

func (l *lossyKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	rev, err := l.KeyValue.Create(ctx, key, value, opts...)
	return rev, l.lost(err)
}

func (l *lossyKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	nrev, err := l.KeyValue.Update(ctx, key, value, rev)
	return nrev, l.lost(err)
}

func (l *lossyKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return l.lost(l.KeyValue.Purge(ctx, key, opts...))
}

// startStore opens the broker's buckets on an embedded JetStream server.
func startStore(t *testing.T) (*nats.Conn, *store) {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := openStore(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return nc, st
}

// TestStoreRidesThroughLostAnswers: a state write whose answer is lost is
// retried, and the retry recognises that the first attempt landed instead
// of reporting a lost race (which would fail the call closed or, for a
// create, make the broker wait on its own claim); a real lost race is
// still reported as one.
func TestStoreRidesThroughLostAnswers(t *testing.T) {
	_, st := startStore(t)
	ctx := t.Context()
	kv := &lossyKV{KeyValue: st.calls}
	st.calls = kv
	rec := callRecord{State: stateEvaluating, Call: airlock.ToolCall{ID: "c1", Agent: "a", Tool: "t"}, ClaimedBy: "me"}

	kv.lose.Store(true)
	rev, created, err := st.create(ctx, "c1", rec)
	if err != nil || !created || rev == 0 {
		t.Fatalf("create with a lost answer: rev %d created %v err %v; want created", rev, created, err)
	}
	if _, created, err := st.create(ctx, "c1", rec); err != nil || created {
		t.Fatalf("create of an existing id: created %v err %v; want not created", created, err)
	}

	rec.State = statePending
	kv.lose.Store(true)
	nrev, err := st.update(ctx, "c1", rec, rev)
	if err != nil || nrev <= rev {
		t.Fatalf("update with a lost answer: rev %d err %v; want a newer revision", nrev, err)
	}
	got, grev, _, _ := st.get(ctx, "c1")
	if got.State != statePending || grev != nrev {
		t.Fatalf("record %s at %d, want pending at %d", got.State, grev, nrev)
	}

	// A real race: someone else moved the record on.
	other := rec
	other.ClaimedBy = "someone else"
	if _, err := st.update(ctx, "c1", other, nrev); err != nil {
		t.Fatal(err)
	}
	rec.State = stateDecided
	if _, err := st.update(ctx, "c1", rec, nrev); !errors.Is(err, errLostRace) {
		t.Fatalf("update at a stale revision: %v, want errLostRace", err)
	}

	_, cur, _, _ := st.get(ctx, "c1")
	kv.lose.Store(true)
	if err := st.remove(ctx, "c1", cur); err != nil {
		t.Fatalf("remove with a lost answer: %v", err)
	}
	if _, _, found, err := st.get(ctx, "c1"); err != nil || found {
		t.Fatalf("after remove: found %v err %v", found, err)
	}
}

// TestRecordEncodeReusesCallJSON: a record encoded with its call's JSON
// computed beforehand is byte for byte the record json.Marshal writes.
func TestRecordEncodeReusesCallJSON(t *testing.T) {
	now := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)
	call := airlock.ToolCall{ID: "c-1", Agent: "a1", User: "u<1>", Org: "acme", Session: "s&1", Tool: "search_web",
		Arguments: map[string]any{"query": "<script>&\u2028 é 日本", "n": 1.5e300, "list": []any{nil, true, "x"}, "obj": map[string]any{"b": 1.0, "a": "z"}},
		CostUSD:   0.25, Context: map[string]any{"reason": "because"}}
	d := airlock.Decision{CallID: "c-1", Verdict: airlock.VerdictApproved, DecidedBy: "policy", Tier: airlock.TierAuto,
		Risk: airlock.Risk{Score: 3, Band: airlock.BandLow, Factors: []airlock.Factor{{Name: "x", Points: 3, Detail: "<d>"}}}, AuditSeq: 9, DecidedAt: now}
	tests := []struct {
		name string
		rec  callRecord
	}{
		{"evaluating", callRecord{State: stateEvaluating, Fingerprint: "fp", Call: call, ClaimedBy: "b1", UpdatedAt: now}},
		{"decided", callRecord{State: stateDecided, Fingerprint: "fp", Call: call, Decision: &d, ClaimedBy: "b1", ClaimedAt: now, UpdatedAt: now}},
		{"approvals-zero-times", callRecord{State: statePending, Call: call, Approvals: []string{"r1", "r2"}}},
		{"deciding-with-broker", callRecord{State: stateDeciding, Call: call, ClaimedBy: "reviewer:bob", Broker: "b2", UpdatedAt: now}},
		{"empty-call", callRecord{State: stateDecided, Call: airlock.ToolCall{ID: "e"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(&tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			rec := tt.rec
			if rec.callJSON, err = json.Marshal(&rec.Call); err != nil {
				t.Fatal(err)
			}
			got, err := rec.encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
}

// countingKV counts the writes that went through the KV API.
type countingKV struct {
	jetstream.KeyValue
	writes atomic.Int64
}

func (c *countingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	c.writes.Add(1)
	return c.KeyValue.Create(ctx, key, value, opts...)
}

func (c *countingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	c.writes.Add(1)
	return c.KeyValue.Update(ctx, key, value, rev)
}

// TestStoreQuickWrites: call records written through plain requests keep
// the KV API's rules (create only once, update only at the current
// revision, create again after a purge), fall back to the KV API for
// everything but a clean acknowledgement, and read back as written.
func TestStoreQuickWrites(t *testing.T) {
	nc, st := startStore(t)
	ctx := t.Context()
	kv := &countingKV{KeyValue: st.calls}
	st.calls, st.nc = kv, nc
	rec := callRecord{State: stateEvaluating, Call: airlock.ToolCall{ID: "q1", Agent: "a", Tool: "t"}, ClaimedBy: "me"}

	rev, created, err := st.create(ctx, "q1", rec)
	if err != nil || !created || rev == 0 {
		t.Fatalf("create: rev %d created %v err %v; want created", rev, created, err)
	}
	if n := kv.writes.Load(); n != 0 {
		t.Fatalf("a clean create went through the KV API %d times, want 0", n)
	}
	if _, created, err := st.create(ctx, "q1", rec); err != nil || created {
		t.Fatalf("create of an existing id: created %v err %v; want not created", created, err)
	}
	if kv.writes.Load() == 0 {
		t.Fatalf("a refused quick create did not fall back to the KV API")
	}
	rec.State = stateDecided
	nrev, err := st.update(ctx, "q1", rec, rev)
	if err != nil || nrev <= rev {
		t.Fatalf("update: rev %d err %v; want a newer revision", nrev, err)
	}
	got, grev, found, err := st.get(ctx, "q1")
	if err != nil || !found || got.State != stateDecided || grev != nrev {
		t.Fatalf("record %+v at %d (found %v, err %v), want decided at %d", got, grev, found, err, nrev)
	}
	if _, err := st.update(ctx, "q1", rec, rev); !errors.Is(err, errLostRace) {
		t.Fatalf("update at a stale revision: %v, want errLostRace", err)
	}
	if err := st.remove(ctx, "q1", nrev); err != nil {
		t.Fatal(err)
	}
	if _, created, err := st.create(ctx, "q1", rec); err != nil || !created {
		t.Fatalf("create after a purge: created %v err %v; want created", created, err)
	}
}

func TestParsePubAck(t *testing.T) {
	tests := []struct {
		in     string
		want   uint64
		wantOK bool
	}{
		{`{"stream":"KV_airlock_calls","seq":42}`, 42, true},
		// The server writes seq right after stream, or after the domain;
		// any other shape falls back to the KV API (slower, never wrong).
		{`{"stream":"KV_airlock_calls","domain":"hub","seq":7}`, 7, true},
		{`{"stream":"KV_airlock_calls","domain":"h\"ub","seq":7}`, 0, false},
		{`{"stream":"KV_airlock_calls","val":"x","seq":7}`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":7,"domain":"hub"}`, 7, true},
		{`{"stream":"KV_other","seq":7}`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":1,"seq":2}`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":1,`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":9,"val":"x"}`, 9, true},
		{`{"stream":"KV_airlock_calls","seq":0}`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":5,"duplicate":true}`, 0, false},
		{`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"KV_airlock_calls","seq":0}`, 0, false},
		{`{"stream":"KV_airlock_calls","error":{"code":503},"seq":4}`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":12345678901234567890}`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":`, 0, false},
		{`{"stream":"KV_airlock_calls","seq":1x}`, 0, false},
		{``, 0, false},
		{`{"type":"io.nats.jetstream.api.v1.pub_ack"}`, 0, false},
	}
	for _, tt := range tests {
		got, ok := parsePubAck([]byte(tt.in))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parsePubAck(%s): got %d %v, want %d %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzParsePubAck: the hand-written acknowledgement reader never accepts
// what encoding/json would read differently: whenever it reports a stored
// sequence, the same bytes decode as a clean JetStream acknowledgement with
// that sequence (no error, not a duplicate).
func FuzzParsePubAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"KV_airlock_calls","seq":42}`,
		`{"stream":"KV_airlock_calls","seq":7,"domain":"hub"}`,
		`{"stream":"KV_airlock_calls","seq":7,"duplicate":true}`,
		`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"KV_airlock_calls","seq":0}`,
		`{"stream":"KV_airlock_calls","seq":18446744073709551615}`,
		`{"stream":"a\",\"seq\":9","seq":1}`,
		`{"stream":"KV_airlock_calls","seq":1,"seq":2}`,
		`{"stream":"KV_other","seq":5}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, ok := parsePubAck(b)
		if !ok {
			return
		}
		var ack struct {
			Stream    string          `json:"stream"`
			Sequence  uint64          `json:"seq"`
			Duplicate bool            `json:"duplicate"`
			Error     json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(b, &ack); err != nil {
			t.Fatalf("parsePubAck(%q) = %d, ok, but it is not JSON: %v", b, seq, err)
		}
		if ack.Sequence != seq || seq == 0 || ack.Duplicate || len(ack.Error) > 0 {
			t.Fatalf("parsePubAck(%q) = %d, ok; encoding/json reads %+v", b, seq, ack)
		}
	})
}

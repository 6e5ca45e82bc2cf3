package broker

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

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

// TestStoreRidesThroughLostAnswers: a state write whose answer is lost is
// retried, and the retry recognises that the first attempt landed instead
// of reporting a lost race (which would fail the call closed or, for a
// create, make the broker wait on its own claim); a real lost race is
// still reported as one.
func TestStoreRidesThroughLostAnswers(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	st, err := openStore(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
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

package fleettest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock/internal/fleettest"
)

// isRevisionMismatch mirrors broker/store.go's check (unexported there):
// the test below proves that what a replicated bucket really returns to the
// loser of a compare-and-set satisfies it.
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

// TestCompareAndSetRace races two Updates with the same revision (and two
// Creates of the same key) on a three-node cluster, each writer connected
// to a different node: exactly one wins every round, and the loser gets
// the error a replicated bucket returns, which the broker's check
// recognises as a lost race.
func TestCompareAndSetRace(t *testing.T) {
	c := fleettest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		replicas int
		codes    []jetstream.ErrorCode // what a loser may be told
		mustSee  jetstream.ErrorCode   // a code the test must meet at least once
	}{
		// A replicated bucket answers 10164 when the winner's proposal is
		// still in flight, 10071 once it was applied.
		{"replicas-3", 3, []jetstream.ErrorCode{jetstream.JSErrCodeStreamWrongLastSequenceConstant, jetstream.JSErrCodeStreamWrongLastSequence},
			jetstream.JSErrCodeStreamWrongLastSequenceConstant},
		{"replicas-1", 1, []jetstream.ErrorCode{jetstream.JSErrCodeStreamWrongLastSequence}, jetstream.JSErrCodeStreamWrongLastSequence},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Six writers, two on each node.
			var kvs [6]jetstream.KeyValue
			for i := range kvs {
				js, err := jetstream.New(c.ConnectTo(t, c.Nodes[i%3].URL))
				if err != nil {
					t.Fatal(err)
				}
				kvs[i], err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
					Bucket: "race_" + tc.name, History: 1, Storage: jetstream.FileStorage, Replicas: tc.replicas})
				if err != nil {
					t.Fatal(err)
				}
			}
			rev, err := kvs[0].Put(ctx, "call", []byte("pending"))
			if err != nil {
				t.Fatal(err)
			}
			const rounds = 30
			seen := map[jetstream.ErrorCode]int{}
			round := 0
			for ; round < rounds || (seen[tc.mustSee] == 0 && round < 10*rounds); round++ {
				var wg sync.WaitGroup
				var errs [len(kvs)]error
				var revs [len(kvs)]uint64
				start := make(chan struct{})
				for i := range kvs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						revs[i], errs[i] = kvs[i].Update(ctx, "call", []byte(fmt.Sprintf("deciding by %d in round %d", i, round)), rev)
					}()
				}
				close(start)
				wg.Wait()
				won := 0
				for i, err := range errs {
					if err == nil {
						won++
						rev = revs[i]
						continue
					}
					seen[checkLoser(t, err, tc.codes)]++
				}
				if won != 1 {
					t.Fatalf("round %d: %d winners (errors %v), want exactly 1", round, won, errs)
				}
			}
			t.Logf("losers' API error codes over %d rounds: %v", round, seen)
			if seen[tc.mustSee] == 0 {
				t.Fatalf("no loser was told %d in %d rounds: %v", tc.mustSee, round, seen)
			}
			// Create: the first submission of an id wins.
			for round := range rounds {
				key := fmt.Sprintf("id%d", round)
				var wg sync.WaitGroup
				var errs [len(kvs)]error
				for i := range kvs {
					wg.Add(1)
					go func() { defer wg.Done(); _, errs[i] = kvs[i].Create(ctx, key, []byte("evaluating")) }()
				}
				wg.Wait()
				won := 0
				for _, err := range errs {
					if err == nil {
						won++
					} else {
						if !errors.Is(err, jetstream.ErrKeyExists) || !isRevisionMismatch(err) {
							t.Fatalf("create loser: %v (%T), want ErrKeyExists, recognised as a lost race", err, err)
						}
					}
				}
				if won != 1 {
					t.Fatalf("create round %d: %d winners (errors %v), want exactly 1", round, won, errs)
				}
			}
		})
	}
}

func checkLoser(t *testing.T, err error, codes []jetstream.ErrorCode) jetstream.ErrorCode {
	t.Helper()
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("loser: %v (%T), want jetstream.ErrKeyRevisionMismatch", err, err)
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("loser: %v carries no *jetstream.APIError", err)
	}
	if !slices.Contains(codes, apiErr.ErrorCode) {
		t.Fatalf("loser's API error code: got %d, want one of %v (%v)", apiErr.ErrorCode, codes, err)
	}
	if !isRevisionMismatch(err) {
		t.Fatalf("the broker's check does not recognise %v as a lost race", err)
	}
	return apiErr.ErrorCode
}

// TestKillRestart kills a node with SIGKILL while an R3 bucket is in use:
// the other two keep serving writes, and the node comes back with its store
// and catches up.
func TestKillRestart(t *testing.T) {
	c := fleettest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "survive", Storage: jetstream.FileStorage, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.Kill(0)
	if c.Running(0) {
		t.Fatal("n0 still running after Kill")
	}
	// Writes go on with two of three (retrying while a new leader is elected).
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kv.Put(pctx, "during", []byte("2"))
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write with one node of three down: %v\n%s", err, c.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Restart(0)
	js0, err := jetstream.New(c.ConnectTo(t, c.Nodes[0].URL))
	if err != nil {
		t.Fatal(err)
	}
	kv0, err := js0.KeyValue(ctx, "survive")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "during"} {
		if _, err := kv0.Get(ctx, k); err != nil {
			t.Fatalf("after the restart, %s through n0: %v", k, err)
		}
	}
}

package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/testenv"

	"github.com/airlock/airlock"
	_ "github.com/mattn/go-sqlite3"
)

func openLog(t testing.TB, path string, opts ...Option) *Log {
	t.Helper()
	l, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func ev(i int) airlock.Event {
	return airlock.Event{Kind: airlock.EventDecision, CallID: fmt.Sprintf("c%d", i), Payload: airlock.DecisionRecord{
		Call:     airlock.ToolCall{ID: fmt.Sprintf("c%d", i), Agent: "a", Tool: "search_web", Arguments: map[string]any{"q": i}},
		Decision: airlock.Decision{CallID: fmt.Sprintf("c%d", i), Verdict: airlock.VerdictApproved, DecidedBy: "policy"}}}
}

func TestAppendChainsRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	clock := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	l := openLog(t, path, WithClock(func() time.Time { return clock }))
	var rcpts []airlock.Receipt
	for i := 1; i <= 3; i++ {
		rc, err := l.Append(t.Context(), ev(i))
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, rc)
	}
	if seq, hash := l.Head(); seq != 3 || hash != rcpts[2].Hash {
		t.Fatalf("Head() = %d %s, want 3 %s", seq, hash, rcpts[2].Hash)
	}
	r := openRO(t, path)
	rows, err := r.EventsAfter(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	prev := GenesisHash
	for i, row := range rows {
		if row.Seq != int64(i+1) {
			t.Errorf("row %d: seq %d, want %d", i, row.Seq, i+1)
		}
		if row.PrevHash != prev {
			t.Errorf("seq %d: prev_hash %s, want %s", row.Seq, row.PrevHash, prev)
		}
		if got := HashRow(&row); got != row.Hash || got != rcpts[i].Hash {
			t.Errorf("seq %d: HashRow %s, stored %s, receipt %s", row.Seq, got, row.Hash, rcpts[i].Hash)
		}
		if row.TS != "2026-12-04T10:00:00.000000000Z" {
			t.Errorf("seq %d: ts %q, want the clock in TimeLayout", row.Seq, row.TS)
		}
		want, _ := airlock.CanonicalJSON(ev(i + 1).Payload)
		if row.Payload != string(want) {
			t.Errorf("seq %d: payload %s, want the canonical bytes %s", row.Seq, row.Payload, want)
		}
		prev = row.Hash
	}
}

func TestHashRowEncoding(t *testing.T) {
	// The documented encoding, spelled out by hand: docs/audit.md.
	r := Row{Seq: 12, TS: "2026-12-04T10:00:00.000000000Z", Kind: "decision", CallID: "c1", Payload: `{"a":1}`, PrevHash: GenesisHash}
	enc := "airlock-audit-v1\n" + "2:12\n" + "30:2026-12-04T10:00:00.000000000Z\n" + "8:decision\n" + "2:c1\n" + "7:{\"a\":1}\n" + "64:" + GenesisHash + "\n"
	out, err := exec.Command("sh", "-c", "printf '%s' \"$0\" | sha256sum", enc).Output()
	if err != nil {
		testenv.Missing(t, "sha256sum: %v", err)
	}
	want := strings.Fields(string(out))[0]
	if got := HashRow(&r); got != want {
		t.Fatalf("HashRow = %s, want %s", got, want)
	}
}

func TestTriggersRefuseUpdateAndDelete(t *testing.T) {
	path := newFixture(t, fixtureBase)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"UPDATE event_log SET payload = '{}' WHERE seq = 3",
		"DELETE FROM event_log WHERE seq = 3",
		"DELETE FROM event_log",
	} {
		_, err := db.Exec(q)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only trigger to refuse", q, err)
		}
	}
	if rep := verifyPath(t, path); !rep.OK() {
		t.Fatalf("verify after refused writes: %s", rep.Problem.Message)
	}
}

func TestGroupCommitConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := openLog(t, path)
	const workers, each = 8, 150
	var wg sync.WaitGroup
	seqs := make(chan int64, workers*each)
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rc, err := l.Append(context.Background(), ev(w*each+i))
				if err != nil {
					failed.Add(1)
					continue
				}
				seqs <- rc.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d appends failed", n)
	}
	seen := map[int64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		seen[s] = true
	}
	for s := int64(1); s <= workers*each; s++ {
		if !seen[s] {
			t.Fatalf("seq %d never handed out", s)
		}
	}
	if c := l.commits.Load(); c >= workers*each {
		t.Errorf("%d commits for %d appends: want group commit to batch", c, workers*each)
	}
	t.Logf("%d appends in %d commits", workers*each, l.commits.Load())
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rep := verifyPath(t, path); !rep.OK() || rep.Events != workers*each {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestAppendWithEndedContext(t *testing.T) {
	l := openLog(t, filepath.Join(t.TempDir(), FileName))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, ev(1)); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	if seq, _ := l.Head(); seq != 0 {
		t.Fatalf("head %d after a refused append, want 0", seq)
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openLog(t, filepath.Join(t.TempDir(), FileName))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), ev(1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append after Close: %v, want ErrUnavailable", err)
	}
}

// failThenHeal appends once, breaks the database, checks that an append
// fails with ErrUnavailable without moving the head, heals it, and checks that
// the next append continues the chain and the log verifies.
func failThenHeal(t *testing.T, l *Log, breakIt, heal func()) {
	t.Helper()
	ctx := t.Context()
	if _, err := l.Append(ctx, ev(1)); err != nil {
		t.Fatalf("first append: %v", err)
	}
	seq, hash := l.Head()
	breakIt()
	_, err := l.Append(ctx, ev(2))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append while broken: %v, want ErrUnavailable", err)
	}
	if s, h := l.Head(); s != seq || h != hash {
		t.Fatalf("head moved on a failed commit: %d %s, want %d %s", s, h, seq, hash)
	}
	heal()
	rc, err := l.Append(ctx, ev(3))
	if err != nil {
		t.Fatalf("append after healing: %v", err)
	}
	if rc.Seq != seq+1 {
		t.Fatalf("seq after healing %d, want %d", rc.Seq, seq+1)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := verifyPath(t, l.Path()); !rep.OK() || rep.Events != seq+1 {
		t.Fatalf("verify after a failed write: %+v", rep)
	}
}

func TestFailClosed(t *testing.T) {
	t.Run("commit-fails", func(t *testing.T) {
		var broken atomic.Bool
		hook := func(c *config) {
			c.beforeCommit = func() error {
				if broken.Load() {
					return errors.New("injected: disk I/O error")
				}
				return nil
			}
		}
		l := openLog(t, filepath.Join(t.TempDir(), FileName), hook)
		failThenHeal(t, l, func() { broken.Store(true) }, func() { broken.Store(false) })
	})
	t.Run("locked-by-another-connection", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), FileName)
		l := openLog(t, path, WithBusyTimeout(50*time.Millisecond))
		other, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=50")
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		conn, err := other.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		failThenHeal(t, l, func() {
			if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("disk-full", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
			testenv.Missing(t, "cannot mount a tmpfs (needs root): %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
		path := filepath.Join(dir, FileName)
		l := openLog(t, path)
		big := strings.Repeat("x", 32<<10)
		var full error
		var last int64
		for i := range 200 {
			rc, err := l.Append(t.Context(), airlock.Event{Kind: "filler", Payload: map[string]any{"i": i, "pad": big}})
			if err != nil {
				full = err
				break
			}
			last = rc.Seq
		}
		if !errors.Is(full, ErrUnavailable) {
			t.Fatalf("filling a 1 MiB disk: %v, want ErrUnavailable", full)
		}
		if s, _ := l.Head(); s != last {
			t.Fatalf("head %d after the failed append, want %d", s, last)
		}
		if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
			t.Fatalf("grow tmpfs: %v %s", err, out)
		}
		rc, err := l.Append(t.Context(), ev(1))
		if err != nil {
			t.Fatalf("append after space came back: %v", err)
		}
		if rc.Seq != last+1 {
			t.Fatalf("seq %d, want %d", rc.Seq, last+1)
		}
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if rep := verifyPath(t, path); !rep.OK() {
			t.Fatal(rep.Problem.Message)
		}
	})
}

func TestCheckpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	var mu sync.Mutex
	var sunk []Checkpoint
	l := openLog(t, path, WithCheckpointEvery(5, time.Hour), WithCheckpointSink(func(seq int64, hash string) error {
		mu.Lock()
		sunk = append(sunk, Checkpoint{Seq: seq, Hash: hash})
		mu.Unlock()
		return nil
	}))
	for i := range 12 {
		if _, err := l.Append(t.Context(), ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every 5 events: a checkpoint at seq >= 5 appears without Close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cps, err := ReadCheckpoints(CheckpointPath(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) > 0 && cps[0].Seq >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after 12 events with every=5: %+v", cps)
		}
		time.Sleep(10 * time.Millisecond)
	}
	seq, hash := l.Head()
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	cps, err := ReadCheckpoints(CheckpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	lastCP := cps[len(cps)-1]
	if lastCP.Seq != seq || lastCP.Hash != hash {
		t.Fatalf("last checkpoint %+v, want the head at Close %d %s", lastCP, seq, hash)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sunk) != len(cps) || sunk[len(sunk)-1].Seq != seq {
		t.Fatalf("sink got %+v, file has %+v", sunk, cps)
	}
	rep := verifyPath(t, path)
	if !rep.OK() || rep.Matched != len(cps) {
		t.Fatalf("verify: %+v, want %d checkpoints matched", rep, len(cps))
	}
}

func TestCheckpointsInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := openLog(t, path, WithCheckpointEvery(1000000, 20*time.Millisecond))
	if _, err := l.Append(t.Context(), ev(1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cps, _ := ReadCheckpoints(CheckpointPath(path))
		if len(cps) == 1 && cps[0].Seq == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no timed checkpoint: %+v", cps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadOnlyBesideLiveWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := openLog(t, path)
	for i := range 10 {
		if _, err := l.Append(t.Context(), ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	r := openRO(t, path)
	// Hold a read transaction open (an unfinished query) while appending.
	rows, err := r.DB().QueryContext(t.Context(), "SELECT seq FROM event_log ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no rows")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := l.Append(ctx, ev(11)); err != nil {
		t.Fatalf("append while a reader holds a snapshot: %v", err)
	}
	rows.Close()
	if _, err := r.DB().Exec("CREATE TABLE x(y)"); err == nil {
		t.Fatal("read-only handle could write")
	}
	rep, err := Verify(t.Context(), r, nil)
	if err != nil || !rep.OK() || rep.Events != 11 {
		t.Fatalf("verify beside writer: %+v %v", rep, err)
	}
}

func TestReadOnlyOnCopyWithoutWAL(t *testing.T) {
	path := newFixture(t, fixtureBase)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cp + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("copy has a -wal file: %v", err)
	}
	r := openRO(t, cp)
	rep, err := Verify(t.Context(), r, nil)
	if err != nil || !rep.OK() || rep.Events == 0 {
		t.Fatalf("verify copy: %+v %v", rep, err)
	}
	ds, err := r.Decisions(t.Context(), Filter{Tool: "execute_sql"})
	if err != nil || len(ds) == 0 {
		t.Fatalf("query copy: %d rows, %v", len(ds), err)
	}
}

func TestOpenReadOnlyErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDB, []byte("hello"), 0o600)
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope.db"), "no audit log"},
		{"directory", dir, "is a directory"},
		{"not-sqlite", notDB, "read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenReadOnly(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestVerifyLiveLog verifies over and over while a writer appends and writes
// checkpoints: reading the checkpoints before the chain means no false
// "truncated" on a live log.
func TestVerifyLiveLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := openLog(t, path, WithCheckpointEvery(3, time.Millisecond))
	if _, err := l.Append(t.Context(), ev(0)); err != nil {
		t.Fatal(err)
	}
	r := openRO(t, path)
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= 300; i++ {
			if _, err := l.Append(context.Background(), ev(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	runs := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if runs == 0 {
				t.Fatal("no verify ran while appending")
			}
			return
		default:
		}
		cps, err := ReadCheckpoints(CheckpointPath(path))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(t.Context(), r, cps)
		if err != nil || !rep.OK() {
			t.Fatalf("verify run %d on a live log: %+v %v %v", runs, rep, err, rep.Problem)
		}
		runs++
	}
}

// TestLastDecisionBesideTheWriter: LastDecision answers while the writer
// holds its connection and keeps appending (a broker taking over a call
// asks it with appends in flight; it once waited for the writer's only
// connection forever).
func TestLastDecisionBesideTheWriter(t *testing.T) {
	l := openLog(t, filepath.Join(t.TempDir(), FileName))
	if _, err := l.Append(t.Context(), ev(1)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 2; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.Append(context.Background(), ev(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		d, err := l.LastDecision(ctx, "c1")
		cancel()
		if err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
		if d == nil || d.CallID != "c1" || d.AuditSeq != 1 || d.Verdict != airlock.VerdictApproved {
			t.Fatalf("lookup %d: got %+v, want c1's approval at seq 1", i, d)
		}
		ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
		d, err = l.LastDecision(ctx, "never-seen")
		cancel()
		if err != nil || d != nil {
			t.Fatalf("lookup %d of an unknown call: %+v, %v; want nothing", i, d, err)
		}
	}
}

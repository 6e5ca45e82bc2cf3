package audit

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit/audittest"
)

var benchBase = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// BenchmarkAppend measures durable appends through the chain writer with
// many concurrent callers (group commit), beside plain batched inserts of
// the same rows into the same schema without the chain, in the same run.
func BenchmarkAppend(b *testing.B) {
	evs := make([]airlock.Event, 4096)
	for i := range evs {
		evs[i] = audittest.Synthetic(i, benchBase)
	}
	for _, par := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("chain/appenders=%d", par), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), FileName)
			l, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close(context.Background())
			b.ReportAllocs()
			b.SetParallelism(par) // par × GOMAXPROCS goroutines; about par of them share each commit
			var next atomic.Int64
			start := l.commits.Load()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					if _, err := l.Append(context.Background(), evs[int(i)%len(evs)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if c := l.commits.Load() - start; c > 0 {
				b.ReportMetric(float64(b.N)/float64(c), "events/commit")
			}
		})
	}
	// The same events, encoded the same way, inserted into the same schema
	// (indexes, triggers, FTS when compiled in) in transactions of the batch
	// sizes group commit reaches with 1, 8, 32 and 128 appenders (events/commit).
	for _, batch := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("raw-insert/batch=%d", batch), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), FileName)
			l, err := Open(path) // same schema, indexes, triggers, FTS
			if err != nil {
				b.Fatal(err)
			}
			l.Close(context.Background())
			db := rawDB(b, path)
			ins, err := db.Prepare("INSERT INTO event_log(seq, ts, kind, call_id, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)")
			if err != nil {
				b.Fatal(err)
			}
			fts := fts5Compiled(context.Background(), db)
			b.ReportAllocs()
			seq := int64(0)
			var tx *sql.Tx
			var stmt *sql.Stmt
			n := 0
			for b.Loop() {
				if tx == nil {
					if tx, err = db.Begin(); err != nil {
						b.Fatal(err)
					}
					stmt = tx.Stmt(ins)
				}
				seq++
				ev := &evs[int(seq)%len(evs)]
				p, err := airlock.CanonicalJSON(ev.Payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := stmt.Exec(seq, ev.TS.UTC().Format(TimeLayout), ev.Kind, ev.CallID, string(p), GenesisHash, GenesisHash); err != nil {
					b.Fatal(err)
				}
				n++
				if n == batch {
					commitRaw(b, tx, fts)
					tx, n = nil, 0
				}
			}
			if tx != nil {
				commitRaw(b, tx, fts)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func commitRaw(b *testing.B, tx *sql.Tx, fts bool) {
	if fts {
		if _, err := indexFTS(context.Background(), tx); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func rawDB(b testing.TB, path string) *sql.DB {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	registerDriver()
	db, err := sql.Open(driverName, dsn(path, q))
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	return db
}

var (
	bigOnce sync.Once
	bigPath string
	bigErr  error
)

const bigN = 1_000_000

// bigLog builds (once per process) a chained log of a million synthetic
// decisions, written directly in large transactions to keep setup short.
func bigLog(b *testing.B) string {
	bigOnce.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-audit-bench-")
		if err != nil {
			bigErr = err
			return
		}
		bigPath = filepath.Join(dir, FileName)
		l, err := Open(bigPath)
		if err != nil {
			bigErr = err
			return
		}
		l.Close(context.Background())
		db := rawDB(b, bigPath)
		start := time.Now()
		var h hasher
		h.init()
		prev := GenesisHash
		for lo := 0; lo < bigN && bigErr == nil; lo += 50000 {
			tx, err := db.Begin()
			if err != nil {
				bigErr = err
				return
			}
			ins, _ := tx.Prepare("INSERT INTO event_log(seq, ts, kind, call_id, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)")
			for i := lo; i < min(lo+50000, bigN); i++ {
				ev := audittest.Synthetic(i, benchBase)
				p, _ := airlock.CanonicalJSON(ev.Payload)
				r := Row{Seq: int64(i + 1), TS: ev.TS.UTC().Format(TimeLayout), Kind: ev.Kind, CallID: ev.CallID, Payload: string(p), PrevHash: prev}
				r.Hash = h.sum(&r)
				if _, err := ins.Exec(r.Seq, r.TS, r.Kind, r.CallID, r.Payload, r.PrevHash, r.Hash); err != nil {
					bigErr = err
				}
				prev = r.Hash
			}
			if fts5Compiled(context.Background(), db) {
				if _, err := indexFTS(context.Background(), tx); err != nil {
					bigErr = err
				}
			}
			if err := tx.Commit(); err != nil {
				bigErr = err
			}
		}
		db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		st, _ := os.Stat(bigPath)
		fmt.Fprintf(os.Stderr, "bench: generated %d events (%d MB) in %s\n", bigN, st.Size()>>20, time.Since(start).Round(time.Second))
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigPath
}

// BenchmarkVerify recomputes the whole chain of a million events.
func BenchmarkVerify(b *testing.B) {
	path := bigLog(b)
	r, err := OpenReadOnly(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Verify(context.Background(), r, nil)
		if err != nil || !rep.OK() || rep.Events != bigN {
			b.Fatalf("%+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(bigN)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkQuery runs typical `airlock audit query` filters on a million events.
func BenchmarkQuery(b *testing.B) {
	path := bigLog(b)
	r, err := OpenReadOnly(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	last := benchBase.Add(bigN * time.Millisecond)
	cases := []struct {
		name string
		f    Filter
	}{
		{"latest-100", Filter{Desc: true, Limit: 100}},
		{"tool-limit-1000", Filter{Tool: "execute_sql", Limit: 1000}},
		{"agent-verdict-limit-100", Filter{Agent: "agent-7", Verdict: "denied", Limit: 100}},
		{"last-minute-all", Filter{Since: last.Add(-time.Minute)}},
		{"reviewer-min-risk-last-minute", Filter{Reviewer: "bob", MinRisk: 90, Since: last.Add(-time.Minute)}},
		{"page-after-seq", Filter{AfterSeq: 900000, Tool: "send_email", Limit: 100}},
		{"search-limit-100", Filter{Search: "t17", Limit: 100}},
		{"search-rare-all", Filter{Search: "999999"}},
	}
	for _, mode := range []string{"fts", "like"} {
		for _, tc := range cases {
			if mode == "like" && tc.f.Search == "" {
				continue
			}
			b.Run(mode+"/"+tc.name, func(b *testing.B) {
				saved := r.fts
				if mode == "like" {
					r.fts = false
				}
				defer func() { r.fts = saved }()
				b.ReportAllocs()
				n := 0
				for b.Loop() {
					ds, err := r.Decisions(context.Background(), tc.f)
					if err != nil {
						b.Fatal(err)
					}
					n = len(ds)
				}
				b.ReportMetric(float64(n), "rows")
			})
		}
	}
}

// Package audit is airlock's audit log: an append-only, hash-chained table of
// events in a SQLite file (DIR/audit.db), the views auditors query, and the
// tools that read it: query, one call's story, verify, export, tail and
// report.
//
// One writer goroutine owns the chain; concurrent Append calls are
// group-committed into one transaction and each returns only once its event
// is durable. docs/audit.md documents the schema, the views, the canonical
// encoding each hash covers and how to verify a log without airlock.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock/airlock"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrUnavailable is wrapped by every error that means the log could not be
// written (disk full, read-only file, locked, closed). Nothing may be approved
// on such an error.
var ErrUnavailable = errors.New("audit: unavailable")

// ErrClosed is returned by Append after Close; it wraps ErrUnavailable.
var ErrClosed = fmt.Errorf("%w: log closed", ErrUnavailable)

// TimeLayout is how event timestamps are stored: RFC 3339 in UTC with a
// fixed nine-digit fraction, so that text order is time order.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// FileName is the audit database's name inside a data directory.
const FileName = "audit.db"

// PathIn returns the audit database path inside a data directory.
func PathIn(dir string) string { return filepath.Join(dir, FileName) }

const driverName = "airlock_audit_sqlite3"

var registerOnce sync.Once

func registerDriver() {
	registerOnce.Do(func() {
		sql.Register(driverName, &sqlite3.SQLiteDriver{
			ConnectHook: func(c *sqlite3.SQLiteConn) error {
				// Keep the WAL from growing without bound once checkpointed;
				// read the database through mmap (fewer copies for verify).
				_, err := c.Exec("PRAGMA journal_size_limit = 67108864; PRAGMA mmap_size = 1073741824", nil)
				return err
			},
		})
	})
}

// dsn builds a go-sqlite3 URI for path with the given query parameters.
func dsn(path string, params url.Values) string {
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: params.Encode()}
	return u.String()
}

// Option configures a Log.
type Option func(*config)

type config struct {
	log          *slog.Logger
	now          func() time.Time
	busy         time.Duration
	maxBatch     int
	cpEvery      int64
	cpInterval   time.Duration
	sink         func(seq int64, hash string) error
	beforeCommit func() error
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithClock sets the clock used for events without a timestamp.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithBusyTimeout sets how long a write waits for a lock held by another
// connection before Append fails with ErrUnavailable (default 5s).
func WithBusyTimeout(d time.Duration) Option { return func(c *config) { c.busy = d } }

// WithMaxBatch caps how many queued events one transaction commits (default 1024).
func WithMaxBatch(n int) Option { return func(c *config) { c.maxBatch = n } }

// WithCheckpointEvery records the chain head every n events or every d,
// whichever comes first, and at Close (defaults 100000 and 10s, so the
// sidecar grows by at most about 9,000 lines a day plus one per 100,000 events).
func WithCheckpointEvery(n int64, d time.Duration) Option {
	return func(c *config) { c.cpEvery, c.cpInterval = n, d }
}

// WithCheckpointSink also hands every checkpoint to fn, e.g. to store it in
// JetStream KV outside the database. Errors are logged, not fatal.
func WithCheckpointSink(fn func(seq int64, hash string) error) Option {
	return func(c *config) { c.sink = fn }
}

// request is one Append waiting for the writer.
type request struct {
	ts, kind, callID, payload string
	done                      chan result
}

type result struct {
	rcpt airlock.Receipt
	err  error
}

// Log is the writable audit log. It implements airlock.Auditor.
type Log struct {
	path string
	cfg  config
	db   *sql.DB
	// rdb serves reads (LastDecision) on their own read-only connections:
	// db has exactly one connection, which the writer holds while it runs,
	// so a read through db would wait for the writer to let go of it.
	rdb *sql.DB
	fts bool

	queue chan *request
	stop  chan struct{}
	done  chan struct{}

	closeMu sync.RWMutex
	closed  bool

	headMu sync.Mutex
	head   airlock.Receipt

	cp *checkpointer

	commits atomic.Int64 // transactions committed (group commit makes it < appends)

	// owned by the writer goroutine
	lastIndex time.Time
	conn      *sql.Conn
	ins       *sql.Stmt
}

var _ airlock.Auditor = (*Log)(nil)

// Open opens or creates the audit database at path (WAL, synchronous=FULL,
// immediate transactions), creates the schema and views, and starts the
// writer.
func Open(path string, opts ...Option) (*Log, error) {
	cfg := config{
		log:        slog.New(slog.DiscardHandler),
		now:        time.Now,
		busy:       5 * time.Second,
		maxBatch:   1024,
		cpEvery:    100000,
		cpInterval: 10 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxBatch < 1 {
		cfg.maxBatch = 1
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	registerDriver()
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	q.Set("_busy_timeout", strconv.FormatInt(cfg.busy.Milliseconds(), 10))
	db, err := sql.Open(driverName, dsn(path, q))
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	l := &Log{
		path:  path,
		cfg:   cfg,
		db:    db,
		queue: make(chan *request, 4*cfg.maxBatch),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	ctx := context.Background()
	if err := l.initSchema(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := l.loadHead(ctx); err != nil {
		db.Close()
		return nil, err
	}
	rq := url.Values{}
	rq.Set("mode", "ro")
	rq.Set("_query_only", "1")
	rq.Set("_busy_timeout", strconv.FormatInt(cfg.busy.Milliseconds(), 10))
	rdb, err := sql.Open(driverName, dsn(path, rq))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open %s for reading: %w", path, err)
	}
	rdb.SetMaxOpenConns(4)
	l.rdb = rdb
	l.cp = newCheckpointer(CheckpointPath(path), cfg)
	l.checkAgainstCheckpoints()
	l.cp.start(l.head)
	go l.writer()
	return l, nil
}

func (l *Log) initSchema(ctx context.Context) error {
	if _, err := l.db.ExecContext(ctx, schemaTables); err != nil {
		return fmt.Errorf("audit: create schema in %s: %w", l.path, err)
	}
	var v int
	if err := l.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("audit: read schema version: %w", err)
	}
	if v < schemaVersion {
		if _, err := l.db.ExecContext(ctx, schemaViews+"PRAGMA user_version = "+strconv.Itoa(schemaVersion)); err != nil {
			return fmt.Errorf("audit: create views: %w", err)
		}
	}
	l.fts = fts5Compiled(ctx, l.db)
	if !l.fts {
		l.cfg.log.Info("audit: FTS5 not compiled in (build with -tags sqlite_fts5); search falls back to LIKE")
		return nil
	}
	if _, err := l.db.ExecContext(ctx, schemaFTS); err != nil {
		return fmt.Errorf("audit: create full-text index: %w", err)
	}
	return l.catchUpFTS(ctx)
}

// fts5Compiled reports whether the linked SQLite has FTS5.
func fts5Compiled(ctx context.Context, db *sql.DB) bool {
	var on int
	err := db.QueryRowContext(ctx, "SELECT sqlite_compileoption_used('ENABLE_FTS5')").Scan(&on)
	return err == nil && on == 1
}

// catchUpFTS indexes decision events appended by a writer without FTS5.
func (l *Log) catchUpFTS(ctx context.Context) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audit: index: %w", err)
	}
	defer tx.Rollback()
	n, err := indexFTS(ctx, tx)
	if err != nil {
		return fmt.Errorf("audit: index: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: index: %w", err)
	}
	if n > 0 {
		l.cfg.log.Info("audit: indexed decisions for full-text search", "events", n)
	}
	return nil
}

type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// indexFTS indexes every decision after meta.fts_through and advances it to
// the head, inside the caller's transaction.
func indexFTS(ctx context.Context, tx execQuerier) (int64, error) {
	var through, head int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key='fts_through'),0), coalesce((SELECT max(seq) FROM event_log),0)`).Scan(&through, &head); err != nil {
		return 0, err
	}
	if head <= through {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO search(rowid, text) SELECT seq, `+ftsText+` FROM event_log WHERE seq > ? AND kind = 'decision'`, through)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES('fts_through', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, strconv.FormatInt(head, 10)); err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (l *Log) loadHead(ctx context.Context) error {
	h := airlock.Receipt{Hash: GenesisHash}
	err := l.db.QueryRowContext(ctx, "SELECT seq, hash FROM event_log ORDER BY seq DESC LIMIT 1").Scan(&h.Seq, &h.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit: read chain head: %w", err)
	}
	l.head = h
	return nil
}

// checkAgainstCheckpoints logs loudly when the database is behind or off the
// checkpoints recorded outside it (a truncated or replaced log).
func (l *Log) checkAgainstCheckpoints() {
	cps, err := ReadCheckpoints(l.cp.path)
	if err != nil {
		l.cfg.log.Error("audit: cannot read checkpoints", "err", err)
		return
	}
	if len(cps) == 0 {
		return
	}
	last := cps[len(cps)-1]
	if last.Seq > l.head.Seq {
		l.cfg.log.Error("audit: log is shorter than its last checkpoint: the tail may have been truncated; run airlock audit verify",
			"head_seq", l.head.Seq, "checkpoint_seq", last.Seq)
	}
}

// Path returns the database file's path.
func (l *Log) Path() string { return l.path }

// FullText reports whether search uses the FTS5 index.
func (l *Log) FullText() bool { return l.fts }

// Head returns the chain head: the last committed seq and hash (0 and
// GenesisHash for an empty log).
func (l *Log) Head() (int64, string) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head.Seq, l.head.Hash
}

// Append adds ev to the chain and returns once it is committed to disk. An
// error that wraps ErrUnavailable means it was not written; nothing may be
// approved then. ctx bounds only the wait for a place in the queue: an event
// that was queued is committed or refused before Append returns, so its
// answer is always the truth.
func (l *Log) Append(ctx context.Context, ev airlock.Event) (airlock.Receipt, error) {
	if ev.Kind == "" {
		return airlock.Receipt{}, errors.New("audit: event without kind")
	}
	payload, err := canonicalPayload(ev.Payload)
	if err != nil {
		return airlock.Receipt{}, fmt.Errorf("audit: encode %s payload: %w", ev.Kind, err)
	}
	ts := ev.TS
	if ts.IsZero() {
		ts = l.cfg.now()
	}
	req := &request{
		ts:      ts.UTC().Format(TimeLayout),
		kind:    ev.Kind,
		callID:  ev.CallID,
		payload: payload,
		done:    make(chan result, 1),
	}
	if err := ctx.Err(); err != nil {
		return airlock.Receipt{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return airlock.Receipt{}, ErrClosed
	}
	select {
	case l.queue <- req:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return airlock.Receipt{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	l.closeMu.RUnlock()
	// Once queued, wait for the writer's answer even if ctx ends: giving up
	// here could report a failure for an event that then commits, and the
	// log would show a decision nobody was told. The writer always answers,
	// within the busy timeout plus one commit.
	res := <-req.done
	return res.rcpt, res.err
}

// writer owns the chain: it batches queued requests into one transaction.
func (l *Log) writer() {
	defer close(l.done)
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	batch := make([]*request, 0, l.cfg.maxBatch)
	for {
		var first *request
		select {
		case first = <-l.queue:
		case <-tick.C:
			l.indexFTSNow()
			l.walCheckpoint("PASSIVE")
			continue
		case <-l.stop:
			// Close holds no more senders; commit what is queued and leave.
			for {
				batch = batch[:0]
				l.drain(&batch)
				if len(batch) == 0 {
					l.indexFTSNow()
					return
				}
				l.commitBatch(batch)
			}
		}
		batch = append(batch[:0], first)
		l.drain(&batch)
		l.gather(&batch)
		l.commitBatch(batch)
		// Full-text indexing is kept off the commit path: it runs when the
		// queue is idle, and at least every ftsEvery under sustained load.
		// Searches cover the not-yet-indexed tail with LIKE meanwhile.
		if since := time.Since(l.lastIndex); since > ftsEvery || (len(l.queue) == 0 && since > ftsIdle) {
			l.indexFTSNow()
		}
	}
}

// ftsEvery bounds how far full-text indexing may lag under load; ftsIdle
// is the least time between two indexing runs when the queue drains.
const (
	ftsEvery = 2 * time.Second
	ftsIdle  = 200 * time.Millisecond
)

// indexFTSNow indexes what committed since the last indexing, in its own
// transaction. A failure is logged and retried next time: the events are
// safe, only search falls back to LIKE for them.
func (l *Log) indexFTSNow() {
	l.lastIndex = time.Now()
	if !l.fts {
		return
	}
	ctx := context.Background()
	if err := l.ensureConn(ctx); err != nil {
		return
	}
	if _, err := l.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		l.cfg.log.Warn("audit: full-text index", "err", err)
		return
	}
	if _, err := indexFTS(ctx, l.conn); err != nil {
		_, _ = l.conn.ExecContext(ctx, "ROLLBACK")
		l.cfg.log.Warn("audit: full-text index", "err", err)
		return
	}
	if _, err := l.conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = l.conn.ExecContext(ctx, "ROLLBACK")
		l.cfg.log.Warn("audit: full-text index", "err", err)
	}
}

// gatherYields bounds how often the writer steps aside for appenders
// before a commit.
const gatherYields = 3

// gather lets goroutines that are ready to run (appenders about to queue
// an event) run before the batch is committed, while that keeps adding
// events: under load each commit (and its fsync) then carries more events,
// which costs less CPU per event. When nothing else is ready to run, as
// with a lone appender, it returns at once: no event waits for a timer.
func (l *Log) gather(batch *[]*request) {
	for range gatherYields {
		if len(*batch) >= l.cfg.maxBatch {
			return
		}
		runtime.Gosched()
		n := len(*batch)
		l.drain(batch)
		if len(*batch) == n {
			return
		}
	}
}

func (l *Log) drain(batch *[]*request) {
	for len(*batch) < l.cfg.maxBatch {
		select {
		case r := <-l.queue:
			*batch = append(*batch, r)
		default:
			return
		}
	}
}

func (l *Log) commitBatch(batch []*request) {
	rcpts, err := l.commit(batch)
	for i, r := range batch {
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		r.done <- result{rcpt: rcpts[i]}
	}
	clear(batch)
}

// commit writes batch in one immediate transaction. The head is read inside
// the transaction, so another process appending to the same file cannot fork
// the chain; the in-memory head only moves after COMMIT succeeded.
func (l *Log) commit(batch []*request) (rcpts []airlock.Receipt, err error) {
	ctx := context.Background()
	if err := l.ensureConn(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	fail := func(step string, e error) error {
		// Leave no transaction open behind a failed statement or COMMIT.
		_, _ = l.conn.ExecContext(ctx, "ROLLBACK")
		l.dropConn()
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, step, e)
	}
	if _, err := l.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return nil, fail("begin", err)
	}
	head := airlock.Receipt{Hash: GenesisHash}
	err = l.conn.QueryRowContext(ctx, "SELECT seq, hash FROM event_log ORDER BY seq DESC LIMIT 1").Scan(&head.Seq, &head.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fail("read head", err)
	}
	if mem, _ := l.Head(); mem != head.Seq {
		l.cfg.log.Warn("audit: another writer appended to the log", "memory_seq", mem, "file_seq", head.Seq)
	}
	var h hasher
	h.init()
	rcpts = make([]airlock.Receipt, len(batch))
	row := Row{PrevHash: head.Hash}
	for i, r := range batch {
		row = Row{Seq: head.Seq + int64(i) + 1, TS: r.ts, Kind: r.kind, CallID: r.callID, Payload: r.payload, PrevHash: row.PrevHash}
		row.Hash = h.sum(&row)
		if _, err := l.ins.ExecContext(ctx, row.Seq, row.TS, row.Kind, row.CallID, row.Payload, row.PrevHash, row.Hash); err != nil {
			return nil, fail("insert", err)
		}
		rcpts[i] = airlock.Receipt{Seq: row.Seq, Hash: row.Hash}
		row.PrevHash = row.Hash
	}
	if l.cfg.beforeCommit != nil {
		if err := l.cfg.beforeCommit(); err != nil {
			return nil, fail("commit", err)
		}
	}
	if _, err := l.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, fail("commit", err)
	}
	last := rcpts[len(rcpts)-1]
	l.headMu.Lock()
	l.head = last
	l.headMu.Unlock()
	l.cp.advance(last)
	l.commits.Add(1)
	return rcpts, nil
}

func (l *Log) ensureConn(ctx context.Context) error {
	if l.conn != nil {
		return nil
	}
	c, err := l.db.Conn(ctx)
	if err != nil {
		return err
	}
	ins, err := c.PrepareContext(ctx, "INSERT INTO event_log(seq, ts, kind, call_id, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)")
	if err != nil {
		c.Close()
		return err
	}
	l.conn, l.ins = c, ins
	return nil
}

func (l *Log) dropConn() {
	if l.conn == nil {
		return
	}
	l.ins.Close()
	l.conn.Close()
	l.conn, l.ins = nil, nil
}

func (l *Log) walCheckpoint(mode string) {
	ctx := context.Background()
	if err := l.ensureConn(ctx); err != nil {
		return
	}
	if _, err := l.conn.ExecContext(ctx, "PRAGMA wal_checkpoint("+mode+")"); err != nil {
		l.cfg.log.Warn("audit: wal checkpoint", "err", err)
	}
}

// Close commits what is queued, records a final checkpoint and closes the
// database. Appends after Close fail with ErrClosed.
func (l *Log) Close(ctx context.Context) error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	l.closeMu.Unlock()
	close(l.stop)
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
	l.walCheckpoint("TRUNCATE")
	l.dropConn()
	cpErr := l.cp.close(ctx)
	_ = l.rdb.Close()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return cpErr
}

// LastDecision returns the most recent decision event recorded for a call,
// if any. A broker that takes over a call whose previous owner died between
// auditing its decision and recording it uses this to return that decision
// instead of deciding a second time.
func (l *Log) LastDecision(ctx context.Context, callID string) (*airlock.Decision, error) {
	var payload string
	var seq int64
	err := l.rdb.QueryRowContext(ctx, `SELECT seq, payload FROM event_log WHERE kind = 'decision' AND call_id = ? ORDER BY seq DESC LIMIT 1`, callID).Scan(&seq, &payload)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: last decision of %s: %w", callID, err)
	}
	var rec airlock.DecisionRecord
	if err := json.Unmarshal([]byte(payload), &rec); err != nil {
		return nil, fmt.Errorf("audit: last decision of %s: %w", callID, err)
	}
	rec.Decision.AuditSeq = seq
	return &rec.Decision, nil
}

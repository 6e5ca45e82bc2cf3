package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Reader reads an audit database without ever writing to it. It is safe
// beside a live broker (WAL readers never block the writer) and on a plain
// copy of the file.
type Reader struct {
	path string
	db   *sql.DB
	fts  bool // the search table exists and this SQLite has FTS5
}

// OpenReadOnly opens the database at path read-only (mode=ro). When the file
// cannot be opened that way (a copy in a read-only directory without its
// -shm file), it falls back to immutable=1, which is right for a copy that
// nothing writes.
func OpenReadOnly(path string) (*Reader, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("audit: no audit log at %s", path)
		}
		return nil, fmt.Errorf("audit: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("audit: %s is a directory, not an audit database", path)
	}
	registerDriver()
	var firstErr error
	for _, immutable := range []bool{false, true} {
		q := url.Values{}
		q.Set("mode", "ro")
		q.Set("_query_only", "1")
		q.Set("_busy_timeout", "5000")
		if immutable {
			q.Set("immutable", "1")
		}
		db, err := sql.Open(driverName, dsn(path, q))
		if err == nil {
			err = probe(db)
		}
		if err == nil {
			r := &Reader{path: path, db: db}
			r.fts = hasSearchTable(db) && fts5Compiled(context.Background(), db)
			return r, nil
		}
		if db != nil {
			db.Close()
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("audit: open %s read-only: %w", path, firstErr)
}

func probe(db *sql.DB) error {
	var n int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'event_log'").Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("not an airlock audit database (no event_log table)")
	}
	return nil
}

func hasSearchTable(db *sql.DB) bool {
	var n int
	err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'search' AND sql LIKE '%fts5%'").Scan(&n)
	return err == nil && n == 1
}

// Path returns the database file's path.
func (r *Reader) Path() string { return r.path }

// FullText reports whether Search uses the FTS5 index (else LIKE).
func (r *Reader) FullText() bool { return r.fts }

// DB returns the read-only handle, for callers that run their own SQL on the views.
func (r *Reader) DB() *sql.DB { return r.db }

// Close closes the database.
func (r *Reader) Close() error { return r.db.Close() }

// Head returns the last seq and hash in the database (0 and GenesisHash when empty).
func (r *Reader) Head(ctx context.Context) (int64, string, error) {
	seq, hash := int64(0), GenesisHash
	err := r.db.QueryRowContext(ctx, "SELECT seq, hash FROM event_log ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("audit: read head: %w", err)
	}
	return seq, hash, nil
}

const rowColumns = "seq, ts, kind, call_id, payload, prev_hash, hash"

func scanRows(rows *sql.Rows) ([]Row, error) {
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.Seq, &r.TS, &r.Kind, &r.CallID, &r.Payload, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("audit: read event: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read events: %w", err)
	}
	return out, nil
}

// CallEvents returns every event of one call in chain order.
func (r *Reader) CallEvents(ctx context.Context, callID string) ([]Row, error) {
	rows, err := r.db.QueryContext(ctx, "SELECT "+rowColumns+" FROM event_log WHERE call_id = ? ORDER BY seq", callID)
	if err != nil {
		return nil, fmt.Errorf("audit: read call %s: %w", callID, err)
	}
	return scanRows(rows)
}

// EventsAfter returns up to limit events with seq > after, in chain order.
func (r *Reader) EventsAfter(ctx context.Context, after int64, limit int) ([]Row, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := r.db.QueryContext(ctx, "SELECT "+rowColumns+" FROM event_log WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: read events: %w", err)
	}
	return scanRows(rows)
}

// Each calls fn for every event with seq > after in chain order, streaming.
// The Row's strings stay valid after fn returns.
func (r *Reader) Each(ctx context.Context, after int64, fn func(*Row) error) error {
	rows, err := r.db.QueryContext(ctx, "SELECT "+rowColumns+" FROM event_log WHERE seq > ? ORDER BY seq", after)
	if err != nil {
		return fmt.Errorf("audit: read events: %w", err)
	}
	defer rows.Close()
	var row Row
	for rows.Next() {
		if err := rows.Scan(&row.Seq, &row.TS, &row.Kind, &row.CallID, &row.Payload, &row.PrevHash, &row.Hash); err != nil {
			return fmt.Errorf("audit: read event: %w", err)
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read events: %w", err)
	}
	return nil
}

// likePattern escapes s for LIKE ... ESCAPE '\'.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

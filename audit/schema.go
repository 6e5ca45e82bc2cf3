package audit

// schemaVersion is stored in PRAGMA user_version; views are recreated when it
// changes. Tables and triggers are only ever added.
const schemaVersion = 1

// schemaTables creates the chain table, its indexes and triggers. The chain
// table is the only table with hash columns; everything else is derived.
const schemaTables = `
CREATE TABLE IF NOT EXISTS event_log (
  seq       INTEGER PRIMARY KEY,
  ts        TEXT NOT NULL,
  kind      TEXT NOT NULL,
  call_id   TEXT NOT NULL DEFAULT '',
  payload   TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_log_call_id ON event_log(call_id);
CREATE INDEX IF NOT EXISTS event_log_kind_ts ON event_log(kind, ts);
CREATE TRIGGER IF NOT EXISTS event_log_no_update BEFORE UPDATE ON event_log
BEGIN SELECT RAISE(ABORT, 'audit: event_log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_log_no_delete BEFORE DELETE ON event_log
BEGIN SELECT RAISE(ABORT, 'audit: event_log is append-only: DELETE refused'); END;
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`

// schemaFTS is the full-text index over decision arguments and reasons: a
// contentless FTS5 table whose rowid is the decision event's seq. It exists
// only when the SQLite linked in was built with FTS5 (go build -tags
// sqlite_fts5); meta.fts_through says up to which seq it is complete.
const schemaFTS = `CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2')`

// ftsText is the SQL expression for the indexed text of a decision event.
// The LIKE fallback searches the same expression.
const ftsText = `coalesce(json_extract(payload,'$.call.arguments'),'') || ' ' ||
  coalesce(json_extract(payload,'$.decision.updated_arguments'),'') || ' ' ||
  coalesce(json_extract(payload,'$.decision.reason'),'') || ' ' ||
  coalesce(json_extract(payload,'$.review.reason'),'') || ' ' ||
  coalesce(json_extract(payload,'$.call.context.reason'),'')`

// schemaViews are the auditor's contract (DESIGN.md "Audit views"), documented
// column by column in docs/audit.md. The contract columns come first, in the
// documented order; extra columns follow.
const schemaViews = `
DROP VIEW IF EXISTS events;
CREATE VIEW events AS
SELECT seq, ts, kind, call_id, payload, prev_hash, hash FROM event_log;

DROP VIEW IF EXISTS decisions;
CREATE VIEW decisions AS
SELECT
  call_id,
  seq,
  strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(nullif(json_extract(payload,'$.decision.decided_at'),'0001-01-01T00:00:00Z'), ts)) AS decided_at,
  json_extract(payload,'$.call.agent')          AS agent,
  json_extract(payload,'$.call.user')           AS user,
  json_extract(payload,'$.call.org')            AS org,
  json_extract(payload,'$.call.session')        AS session,
  json_extract(payload,'$.call.tool')           AS tool,
  json_extract(payload,'$.call.arguments')      AS arguments,
  json_extract(payload,'$.decision.verdict')    AS verdict,
  json_extract(payload,'$.decision.decided_by') AS decided_by,
  json_extract(payload,'$.decision.tier')       AS tier,
  coalesce(json_extract(payload,'$.decision.risk.score'),0) AS risk_score,
  json_extract(payload,'$.decision.reason')     AS reason,
  ts,
  json_extract(payload,'$.rule')                AS rule,
  coalesce(json_extract(payload,'$.waited_ms'),0) AS waited_ms,
  json_extract(payload,'$.review.reviewer')     AS reviewer,
  json_extract(payload,'$.review.shown_ms')     AS shown_ms,
  json_extract(payload,'$.grant')               AS grant_id,
  coalesce(json_extract(payload,'$.edited'),0)  AS edited,
  json_extract(payload,'$.decision.updated_arguments') AS updated_arguments,
  json_extract(payload,'$.decision.risk.band')  AS risk_band,
  json_extract(payload,'$.policy_version')      AS policy_version,
  payload
FROM event_log WHERE kind = 'decision';

DROP VIEW IF EXISTS executions;
CREATE VIEW executions AS
SELECT
  call_id,
  json_extract(payload,'$.execution.backend')     AS backend,
  json_extract(payload,'$.execution.exit_code')   AS exit_code,
  json_extract(payload,'$.execution.duration_ms') AS duration_ms,
  json_extract(payload,'$.execution.limit_hit')   AS limit_hit,
  json_extract(payload,'$.execution.stdout')      AS stdout,
  json_extract(payload,'$.execution.stderr')      AS stderr,
  seq,
  ts,
  json_extract(payload,'$.execution.signal')      AS signal,
  coalesce(json_extract(payload,'$.execution.truncated'),0) AS truncated,
  json_extract(payload,'$.execution.error')       AS error
FROM event_log WHERE kind = 'execution';

DROP VIEW IF EXISTS reviews;
CREATE VIEW reviews AS
SELECT
  call_id,
  seq,
  ts,
  json_extract(payload,'$.review.reviewer') AS reviewer,
  json_extract(payload,'$.review.action')   AS action,
  coalesce(json_extract(payload,'$.accepted'),0) AS accepted,
  json_extract(payload,'$.error')           AS error,
  json_extract(payload,'$.review.reason')   AS reason,
  json_extract(payload,'$.review.shown_ms') AS shown_ms,
  json_extract(payload,'$.review.updated_arguments') AS updated_arguments
FROM event_log WHERE kind = 'review';

DROP VIEW IF EXISTS pending;
CREATE VIEW pending AS
SELECT
  p.call_id,
  p.seq,
  p.ts AS held_at,
  json_extract(p.payload,'$.pending.call.agent') AS agent,
  json_extract(p.payload,'$.pending.call.user')  AS user,
  json_extract(p.payload,'$.pending.call.tool')  AS tool,
  json_extract(p.payload,'$.pending.tier')       AS tier,
  coalesce(json_extract(p.payload,'$.pending.risk.score'),0) AS risk_score,
  json_extract(p.payload,'$.pending.reason')     AS reason,
  json_extract(p.payload,'$.pending.rule')       AS rule,
  json_extract(p.payload,'$.pending.expires_at') AS expires_at,
  d.verdict,
  d.decided_by,
  d.decided_at
FROM event_log p LEFT JOIN decisions d ON d.call_id = p.call_id
WHERE p.kind = 'pending';
`

package audit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
)

// Problem is the first thing wrong with a chain.
type Problem struct {
	// Seq is the first bad row (for truncation: the last seq present).
	Seq int64
	// Kind is one of edited, deleted, reordered, truncated, rewritten.
	Kind string
	// Message is one line naming the row and why.
	Message string
}

// Problem kinds.
const (
	ProblemEdited    = "edited"
	ProblemDeleted   = "deleted"
	ProblemReordered = "reordered"
	ProblemTruncated = "truncated"
	ProblemRewritten = "rewritten"
)

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Events   int64  // rows checked
	HeadSeq  int64  // last seq present
	HeadHash string // its hash
	// Checkpoints is how many checkpoints were compared; Matched how many
	// agreed with the log.
	Checkpoints, Matched int
	Problem              *Problem // nil when the chain is intact
}

// OK reports whether the chain verified.
func (v *VerifyReport) OK() bool { return v.Problem == nil }

// verifyChunk is one range of seqs checked by one worker on its own connection.
type verifyChunk struct {
	lo, hi    int64 // the seqs this chunk covers
	rows      int64
	firstSeq  int64
	firstPrev string // prev_hash of the first row, linked by the combiner
	lastSeq   int64
	lastHash  string
	matched   int
	problem   *Problem // first problem inside the chunk (the first row's link is not checked here)
	err       error
}

// verifyChunkSize is how many seqs one worker checks per range query (a
// variable so tests can exercise the links between chunks).
var verifyChunkSize int64 = 65536

// Verify recomputes the chain of r in seq order and compares it with the
// checkpoints (typically ReadCheckpoints of the sidecar file plus any kept in
// JetStream). Load the checkpoints before calling Verify: a checkpoint is
// only ever written after its events committed, so on a live log a
// checkpoint read first never runs ahead of what Verify reads.
//
// The seq range is split into chunks that workers (one per CPU, each on its
// own read-only connection) scan and hash in parallel; the links between
// chunks are checked in order afterwards, so the first problem reported is
// the first in the chain. Rows appended while Verify runs are ignored. The
// error is only for I/O failures.
func Verify(ctx context.Context, r *Reader, checkpoints []Checkpoint) (VerifyReport, error) {
	rep := VerifyReport{HeadHash: GenesisHash, Checkpoints: len(checkpoints)}
	bySeq := make(map[int64][]Checkpoint, len(checkpoints))
	for _, cp := range checkpoints {
		bySeq[cp.Seq] = append(bySeq[cp.Seq], cp)
	}
	var maxSeq int64
	if err := r.db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM event_log").Scan(&maxSeq); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	var chunks []*verifyChunk
	for lo := int64(1); lo <= maxSeq; lo += verifyChunkSize {
		chunks = append(chunks, &verifyChunk{lo: lo, hi: min(lo+verifyChunkSize-1, maxSeq)})
	}
	next := make(chan *verifyChunk, len(chunks))
	for _, c := range chunks {
		next <- c
	}
	close(next)
	var wg sync.WaitGroup
	for range min(max(1, runtime.GOMAXPROCS(0)), max(1, len(chunks))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h hasher
			h.init()
			for c := range next {
				c.err = verifyRange(ctx, r, c, &h, bySeq)
			}
		}()
	}
	wg.Wait()

	prev := GenesisHash
	for _, c := range chunks {
		if c.err != nil {
			return rep, c.err
		}
		var p *Problem
		if c.firstSeq == c.lo && c.firstPrev != prev { // firstSeq is 0 when the chunk had no rows
			p = &Problem{Seq: c.lo, Kind: ProblemReordered, Message: fmt.Sprintf(
				"seq %d: prev_hash does not match the hash of seq %d (rows reordered, replaced or deleted before it)", c.lo, c.lo-1)}
		}
		if p == nil {
			p = c.problem
		}
		if p != nil {
			rep.Problem = p
			rep.Events = max(p.Seq-1, 0)
			return rep, nil
		}
		rep.Events += c.rows
		rep.Matched += c.matched
		rep.HeadSeq, rep.HeadHash, prev = c.lastSeq, c.lastHash, c.lastHash
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	// Checkpoints beyond the end: the tail was cut off.
	var worst *Checkpoint
	for i := range checkpoints {
		cp := &checkpoints[i]
		if cp.Seq > rep.HeadSeq && (worst == nil || cp.Seq > worst.Seq) {
			worst = cp
		}
	}
	if worst != nil {
		rep.Problem = &Problem{Seq: rep.HeadSeq, Kind: ProblemTruncated, Message: fmt.Sprintf(
			"log ends at seq %d but checkpoint %s records seq %d: the last %d events were cut off (truncated)",
			rep.HeadSeq, cpName(worst), worst.Seq, worst.Seq-rep.HeadSeq)}
	}
	return rep, nil
}

// verifyRange scans seqs c.lo..c.hi, recomputing each hash and checking the
// links inside the range.
func verifyRange(ctx context.Context, r *Reader, c *verifyChunk, h *hasher, bySeq map[int64][]Checkpoint) error {
	rows, err := r.db.QueryContext(ctx, "SELECT "+rowColumns+" FROM event_log WHERE seq BETWEEN ? AND ? ORDER BY seq", c.lo, c.hi)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	expect, prev := c.lo, ""
	var row Row
	for rows.Next() {
		if err := rows.Scan(&row.Seq, &row.TS, &row.Kind, &row.CallID, &row.Payload, &row.PrevHash, &row.Hash); err != nil {
			return fmt.Errorf("audit: verify: read row: %w", err)
		}
		if c.rows == 0 {
			c.firstSeq, c.firstPrev = row.Seq, row.PrevHash
		}
		bad := string(h.sumBytes(&row)) != row.Hash
		if p := checkRow(&row, expect, prev, bad, bySeq, &c.matched); p != nil {
			c.problem = p
			return nil
		}
		c.rows++
		c.lastSeq, c.lastHash = row.Seq, row.Hash
		expect, prev = row.Seq+1, row.Hash
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	if expect <= c.hi {
		c.problem = &Problem{Seq: expect, Kind: ProblemDeleted, Message: fmt.Sprintf(
			"seq %d: missing (%s gone: deleted)", expect, span(expect, c.hi))}
	}
	return nil
}

// span names a run of seqs: "seq 5 is" or "seq 5..9 are".
func span(from, to int64) string {
	if from == to {
		return fmt.Sprintf("seq %d is", from)
	}
	return fmt.Sprintf("seq %d..%d are", from, to)
}

func cpName(cp *Checkpoint) string {
	s := cp.Source
	if s == "" {
		s = "checkpoint"
	}
	if cp.TS != "" {
		s += " (" + cp.TS + ")"
	}
	return s
}

// checkRow checks one row against the expected seq and the previous row's
// hash (prev is empty for the first row of a chunk: linked later).
func checkRow(row *Row, expect int64, prev string, bad bool, bySeq map[int64][]Checkpoint, matched *int) *Problem {
	switch {
	case row.Seq > expect && expect == 1:
		return &Problem{Seq: row.Seq, Kind: ProblemDeleted, Message: fmt.Sprintf(
			"seq %d: the log starts here; %s missing (deleted)", row.Seq, span(1, row.Seq-1))}
	case row.Seq > expect:
		return &Problem{Seq: expect, Kind: ProblemDeleted, Message: fmt.Sprintf(
			"seq %d: missing, the log jumps from seq %d to %d (%s gone: deleted)", expect, expect-1, row.Seq, span(expect, row.Seq-1))}
	case row.Seq < expect:
		return &Problem{Seq: row.Seq, Kind: ProblemReordered, Message: fmt.Sprintf(
			"seq %d: out of order after seq %d (reordered)", row.Seq, expect-1)}
	case prev != "" && row.PrevHash != prev:
		return &Problem{Seq: row.Seq, Kind: ProblemReordered, Message: fmt.Sprintf(
			"seq %d: prev_hash does not match the hash of seq %d (rows reordered, replaced or deleted before it)", row.Seq, row.Seq-1)}
	case bad:
		return &Problem{Seq: row.Seq, Kind: ProblemEdited, Message: fmt.Sprintf(
			"seq %d: hash does not match the row's contents (%s event of call %q was edited)", row.Seq, row.Kind, row.CallID)}
	}
	for i := range bySeq[row.Seq] {
		cp := &bySeq[row.Seq][i]
		if cp.Hash != row.Hash {
			return &Problem{Seq: row.Seq, Kind: ProblemRewritten, Message: fmt.Sprintf(
				"seq %d: hash %.12s… differs from checkpoint %s which recorded %.12s…: the chain was rewritten at or before this row",
				row.Seq, row.Hash, cpName(cp), cp.Hash)}
		}
		*matched++
	}
	return nil
}

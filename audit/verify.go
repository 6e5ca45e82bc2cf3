package audit

import (
	"context"
	"errors"
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

// verifyBatch is a run of rows hashed by a worker and checked in order.
type verifyBatch struct {
	rows []Row
	bad  []bool // recomputed hash differs from stored
	done chan struct{}
}

const verifyBatchSize = 2048

// Verify recomputes the chain of r in seq order and compares it with the
// checkpoints (typically ReadCheckpoints of the sidecar file plus any kept in
// JetStream). Load the checkpoints before calling Verify: a checkpoint is
// only ever written after its events committed, so on a live log a
// checkpoint read first never runs ahead of the snapshot Verify reads.
//
// Each row's hash is recomputed in parallel; the links (seq without gaps,
// prev_hash equal to the previous row's hash) are checked in order. The
// first problem found is reported; the error is only for I/O failures.
func Verify(ctx context.Context, r *Reader, checkpoints []Checkpoint) (VerifyReport, error) {
	rep := VerifyReport{HeadHash: GenesisHash, Checkpoints: len(checkpoints)}
	bySeq := make(map[int64][]Checkpoint, len(checkpoints))
	for _, cp := range checkpoints {
		bySeq[cp.Seq] = append(bySeq[cp.Seq], cp)
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *verifyBatch, 8)
	ordered := make(chan *verifyBatch, 8)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h hasher
			h.init()
			for b := range work {
				for i := range b.rows {
					sum := h.sumBytes(&b.rows[i])
					b.bad[i] = string(sum) != b.rows[i].Hash
				}
				close(b.done)
			}
		}()
	}
	scanErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(work)
		scanErr <- scanBatches(ctx, r, work, ordered)
	}()

	expect := int64(1)
	prev := GenesisHash
	for b := range ordered {
		<-b.done
		if rep.Problem != nil {
			continue // drain
		}
		for i := range b.rows {
			row := &b.rows[i]
			if p := checkRow(row, expect, prev, b.bad[i], bySeq, &rep); p != nil {
				rep.Problem = p
				cancel()
				break
			}
			rep.Events++
			rep.HeadSeq, rep.HeadHash = row.Seq, row.Hash
			expect, prev = row.Seq+1, row.Hash
		}
	}
	wg.Wait()
	if err := <-scanErr; err != nil && rep.Problem == nil {
		return rep, err
	}
	if rep.Problem == nil && parent.Err() != nil {
		return rep, fmt.Errorf("audit: verify: %w", parent.Err())
	}
	if rep.Problem != nil {
		return rep, nil
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

// span names a run of seqs: "seq 5" or "seq 5..9".
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

func checkRow(row *Row, expect int64, prev string, bad bool, bySeq map[int64][]Checkpoint, rep *VerifyReport) *Problem {
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
	case row.PrevHash != prev:
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
		rep.Matched++
	}
	return nil
}

// scanBatches streams the chain table in seq order into batches.
func scanBatches(ctx context.Context, r *Reader, work, ordered chan<- *verifyBatch) error {
	rows, err := r.db.QueryContext(ctx, "SELECT "+rowColumns+" FROM event_log ORDER BY seq")
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	newBatch := func() *verifyBatch {
		return &verifyBatch{rows: make([]Row, 0, verifyBatchSize), done: make(chan struct{})}
	}
	send := func(b *verifyBatch) bool {
		b.bad = make([]bool, len(b.rows))
		select {
		case ordered <- b:
		case <-ctx.Done():
			return false
		}
		work <- b
		return true
	}
	b := newBatch()
	for rows.Next() {
		b.rows = append(b.rows, Row{})
		row := &b.rows[len(b.rows)-1]
		if err := rows.Scan(&row.Seq, &row.TS, &row.Kind, &row.CallID, &row.Payload, &row.PrevHash, &row.Hash); err != nil {
			return fmt.Errorf("audit: verify: read row: %w", err)
		}
		if len(b.rows) == verifyBatchSize {
			if !send(b) {
				return nil
			}
			b = newBatch()
		}
	}
	if err := rows.Err(); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("audit: verify: %w", err)
	}
	if len(b.rows) > 0 {
		send(b)
	}
	return nil
}

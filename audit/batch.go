package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlock/airlock"
)

// AppendOrdered appends events in exactly the given order and returns once
// all of them are committed (group commit applies to them as one stream).
// The fleet's audit writer uses it to apply the audit stream to SQLite in
// stream order without waiting for a commit per event. On error, a prefix
// of the events may have been committed: Head says how far.
func (l *Log) AppendOrdered(ctx context.Context, evs []airlock.Event) ([]airlock.Receipt, error) {
	reqs := make([]*request, len(evs))
	for i, ev := range evs {
		if ev.Kind == "" {
			return nil, errors.New("audit: event without kind")
		}
		payload, err := canonicalPayload(ev.Payload)
		if err != nil {
			return nil, fmt.Errorf("audit: encode %s payload: %w", ev.Kind, err)
		}
		ts := ev.TS
		if ts.IsZero() {
			ts = l.cfg.now()
		}
		reqs[i] = &request{ts: ts.UTC().Format(TimeLayout), kind: ev.Kind, callID: ev.CallID, payload: payload, done: make(chan result, 1)}
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return nil, ErrClosed
	}
	// One goroutine enqueues, so the queue holds them in order.
	for i, req := range reqs {
		select {
		case l.queue <- req:
		case <-ctx.Done():
			l.closeMu.RUnlock()
			// Those already queued will still be committed; wait for them
			// so Head is exact when we return.
			for _, r := range reqs[:i] {
				<-r.done
			}
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	l.closeMu.RUnlock()
	out := make([]airlock.Receipt, len(reqs))
	var firstErr error
	for i, req := range reqs {
		res := <-req.done
		out[i] = res.rcpt
		if res.err != nil && firstErr == nil {
			firstErr = res.err
		}
	}
	return out, firstErr
}

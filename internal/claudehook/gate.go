package claudehook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/airlock/airlock"
)

// ErrUnreachable means no airlock broker could be reached: the NATS server
// is down, or nobody answers on the submit subject.
var ErrUnreachable = errors.New("claudehook: no airlock broker is reachable")

// Submitter submits a call and waits for its final decision.
type Submitter interface {
	Submit(ctx context.Context, call *airlock.ToolCall) (airlock.Decision, error)
}

// NATSSubmitter submits calls on <prefix>.submit.<agent>. Like the Go
// client it retries with the same call id until ctx ends (so a broker
// restart never yields a second decision), but it gives up with
// ErrUnreachable once nobody has answered on the subject for NoBrokerAfter:
// a hook must answer its caller quickly when airlock is down.
type NATSSubmitter struct {
	Conn   *nats.Conn
	Prefix string // default "airlock"
	// NoBrokerAfter is how long "no responders" may last before giving up
	// (default 3s).
	NoBrokerAfter time.Duration
	// Attempt is how long one request waits before it is repeated with the
	// same id (default 30s).
	Attempt time.Duration
}

// Submit implements Submitter.
func (s *NATSSubmitter) Submit(ctx context.Context, call *airlock.ToolCall) (airlock.Decision, error) {
	if call.ID == "" {
		call.ID = ulid.Make().String()
	}
	if call.Arguments == nil {
		call.Arguments = map[string]any{}
	}
	body, err := json.Marshal(call)
	if err != nil {
		return airlock.Decision{}, fmt.Errorf("claudehook: encode call: %w", err)
	}
	prefix, quiet, attempt := s.Prefix, s.NoBrokerAfter, s.Attempt
	if prefix == "" {
		prefix = "airlock"
	}
	if quiet <= 0 {
		quiet = 3 * time.Second
	}
	if attempt <= 0 {
		attempt = 30 * time.Second
	}
	subj := prefix + ".submit." + call.Agent
	var silentSince time.Time
	backoff := 50 * time.Millisecond
	for {
		// While the connection is down a request only sits in the reconnect
		// buffer: ask in short attempts, and cut an attempt short when the
		// connection drops, so an outage is noticed quickly.
		connected := s.Conn.IsConnected()
		wait := attempt
		if !connected {
			wait = min(attempt, quiet)
		}
		actx, cancel := context.WithTimeout(ctx, wait)
		var lost atomic.Bool
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-actx.Done():
					return
				case <-t.C:
					if !s.Conn.IsConnected() {
						lost.Store(true)
						cancel()
						return
					}
				}
			}
		}()
		msg, err := s.Conn.RequestWithContext(actx, subj, body)
		cancel()
		if lost.Load() {
			connected = false
		}
		if err == nil {
			var d airlock.Decision
			if err := json.Unmarshal(msg.Data, &d); err != nil {
				return d, fmt.Errorf("claudehook: broker sent an unreadable decision: %w", err)
			}
			return d, nil
		}
		switch {
		case ctx.Err() != nil:
			return airlock.Decision{}, fmt.Errorf("claudehook: no decision for call %s: %w", call.ID, ctx.Err())
		case errors.Is(err, nats.ErrNoResponders):
			if silentSince.IsZero() {
				silentSince = time.Now()
			}
			if time.Since(silentSince) >= quiet {
				return airlock.Decision{}, fmt.Errorf("%w (nobody answers on %s)", ErrUnreachable, subj)
			}
		case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubscription):
			return airlock.Decision{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
		case !connected:
			if silentSince.IsZero() {
				silentSince = time.Now()
			}
			if time.Since(silentSince) >= quiet {
				return airlock.Decision{}, fmt.Errorf("%w (the connection to NATS is down: %v)", ErrUnreachable, err)
			}
		default:
			// A timeout: a broker holds the call (a reviewer is deciding);
			// ask again with the same id.
			silentSince = time.Time{}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return airlock.Decision{}, fmt.Errorf("claudehook: no decision for call %s: %w", call.ID, ctx.Err())
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

// Fallbacks say what to answer when airlock cannot decide.
type Fallbacks struct {
	OnTimeout     Behavior // no decision before the deadline (default deny)
	OnUnreachable Behavior // no broker (default deny)
}

// Decide submits call and maps the result to an outcome. It never returns
// allow unless a broker approved the call. A deadline on ctx is the hook's
// timeout.
func Decide(ctx context.Context, s Submitter, call *airlock.ToolCall, fb Fallbacks) Outcome {
	if s == nil {
		return Unreachable(fb, errors.New("no connection"))
	}
	d, err := s.Submit(ctx, call)
	if err == nil {
		return FromDecision(d)
	}
	switch {
	case errors.Is(err, ErrUnreachable):
		return Unreachable(fb, err)
	case errors.Is(err, context.DeadlineExceeded):
		b := fallback(fb.OnTimeout)
		return Outcome{Behavior: b, Reason: fmt.Sprintf("airlock: no decision for call %s before the hook's timeout (%s)", call.ID, verb(b))}
	case errors.Is(err, context.Canceled):
		return Outcome{Behavior: Deny, Reason: fmt.Sprintf("airlock: interrupted before call %s was decided (denied)", call.ID)}
	}
	return Unreachable(fb, err)
}

// Unreachable is the outcome when no broker can be asked.
func Unreachable(fb Fallbacks, err error) Outcome {
	b := fallback(fb.OnUnreachable)
	return Outcome{Behavior: b, Reason: fmt.Sprintf("airlock: the broker is unreachable (%v); %s", err, verb(b))}
}

func fallback(b Behavior) Behavior {
	if b == Ask {
		return Ask
	}
	return Deny
}

func verb(b Behavior) string {
	if b == Ask {
		return "asking you instead"
	}
	return "denied (fail closed)"
}

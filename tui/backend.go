package tui

import (
	"context"

	"github.com/airlock/airlock"
)

// Backend is what the console needs from the broker.
type Backend interface {
	// Events streams console events until ctx is done. The first events after (re)connecting are a full
	// snapshot: EventSnapshot with every pending call. The channel is closed when ctx ends.
	Events(ctx context.Context) <-chan Event
	// Decide sends a reviewer's verdict and returns the broker's reply (accepted, or why not: "already decided by reviewer:bob").
	Decide(ctx context.Context, r airlock.Review) (airlock.ReviewReply, error)
	// Recent returns up to n recent decisions in a session (for the detail pane), newest first.
	Recent(ctx context.Context, session string, n int) ([]airlock.DecisionRecord, error)
}

// EventKind says what an Event carries.
type EventKind int

const (
	EventSnapshot   EventKind = iota // Pendings holds the whole pending set
	EventAdded                       // Pending: a call started waiting
	EventRemoved                     // CallID left the queue; Decision says how (may be nil if unknown)
	EventFeed                        // Decision (+ Call): a notify-tier call or any final decision, for the Feed
	EventConnection                  // Connected + Err: connection state changed
)

// Event is one thing the broker tells the console. It is also the bubbletea
// message that carries it: Run sends every Event to the program as is.
type Event struct {
	Kind      EventKind
	Pendings  []airlock.Pending
	Pending   *airlock.Pending
	CallID    string
	Call      *airlock.ToolCall
	Decision  *airlock.Decision
	Connected bool
	Err       string
}

// AdminBackend is what the Grants view and rule suggestions need besides
// Backend. It is optional: a Backend that does not implement it gets a
// console where grants can still be created with an approval (that is part
// of the Review), but not listed, revoked or replayed.
type AdminBackend interface {
	// Grants lists the live grants.
	Grants(ctx context.Context) ([]airlock.Grant, error)
	// RevokeGrant ends a grant at once, in the reviewer's name.
	RevokeGrant(ctx context.Context, id, reviewer string) error
	// Replay runs a proposed CEL constraint over an agent's past calls of a
	// tool in the audit log and counts what it would have decided.
	Replay(ctx context.Context, agent, tool, when string) (ReplaySummary, error)
}

// ReplaySummary is how a proposed rule would have decided past calls.
type ReplaySummary struct {
	Replayed        int      // past calls looked at
	Matched         int      // the rule would have decided them
	MatchedApproved int      // of those, reviewers or policy approved
	MatchedDenied   int      // of those, were denied: the rule is too wide
	Examples        []string // ids of denied calls it would have let through
}

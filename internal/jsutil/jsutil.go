// Package jsutil holds what every JetStream user in airlock needs to agree
// on about JetStream's errors.
package jsutil

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// IsTransient reports a JetStream error worth retrying: a request that
// timed out or found nobody to answer, as while a stream's leader is being
// elected after a node died. Whether a retry is safe is the caller's
// business (a write whose answer was lost may have landed).
func IsTransient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

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

// Retry runs an idempotent JetStream request again, up to five more times,
// while it fails with a transient error (creating a replicated asset on a
// busy or freshly started cluster can outlast one request's timeout).
func Retry(ctx context.Context, f func() error) error {
	err := f()
	for attempt := 1; attempt < 6 && IsTransient(err) && ctx.Err() == nil; attempt++ {
		err = f()
	}
	return err
}

// CreateOrUpdateKV creates or updates a bucket, with Retry.
func CreateOrUpdateKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := Retry(ctx, func() (err error) { kv, err = js.CreateOrUpdateKeyValue(ctx, cfg); return err })
	return kv, err
}

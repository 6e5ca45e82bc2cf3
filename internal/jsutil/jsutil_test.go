package jsutil

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestIsTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no-responders", nats.ErrNoResponders, true},
		{"timeout", nats.ErrTimeout, true},
		{"no-stream-response-wrapped-twice", fmt.Errorf("audit: %w: %w", errors.New("unavailable"), jetstream.ErrNoStreamResponse), true},
		{"revision-mismatch", jetstream.ErrKeyRevisionMismatch, false},
		{"key-not-found", jetstream.ErrKeyNotFound, false},
		{"other", errors.New("disk full"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

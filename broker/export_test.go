package broker

import "github.com/airlock/airlock"

// Fingerprint exposes the idempotency fingerprint to the external tests
// that stage a dead broker's call record.
func Fingerprint(c *airlock.ToolCall) string { return fingerprint(c) }

package audit

import (
	"bytes"
	"encoding/json"
	"sync"
)

// encBufs are the buffers canonicalPayload encodes into, reused: an event's
// payload is encoded once per append, and a fresh buffer grows several
// times for every event.
var encBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// canonicalPayload is string(airlock.CanonicalJSON(v)), the same encoding
// (encoding/json, map keys sorted, no HTML escaping, no trailing newline),
// encoded into a reused buffer.
func canonicalPayload(v any) (string, error) {
	buf := encBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			encBufs.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

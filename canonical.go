package airlock

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// marshalCanonical encodes v as JSON with sorted object keys (encoding/json
// sorts map keys already), without HTML escaping and without a trailing
// newline. Numbers keep Go's shortest float formatting, which round-trips.
func marshalCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ArgsHash returns the hex SHA-256 of the canonical encoding of args.
func ArgsHash(args map[string]any) string {
	if args == nil {
		args = map[string]any{}
	}
	b, err := marshalCanonical(args)
	if err != nil {
		// Arguments come from decoded JSON and always encode; an error here
		// means a programming mistake, and an unmatchable hash fails closed.
		return "unencodable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

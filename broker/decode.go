package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/airlock/airlock"
)

// Input limits applied before a call is decoded.
const (
	DefaultMaxBytes = 1 << 20 // 1 MiB
	DefaultMaxDepth = 64
)

// idPattern is what a call id may look like: it becomes a NATS subject token
// (airlock.review.<id>) and a JetStream KV key, so dots, spaces and wildcards
// are refused rather than escaped.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// namePattern is what agent, user, org, session and tool names may look like.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$`)

// validID and validName match exactly what idPattern and namePattern match
// (TestValidatorsMatchPatterns), without a regular expression: every call
// checks up to six of them.
func validID(s string) bool { return validToken(s, "_-") }

func validName(s string) bool { return validToken(s, "_.:@+-") }

func validToken(s, extra string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// DecodeError is a malformed ToolCall; Reason says what is wrong in one line.
type DecodeError struct {
	Reason string
	// ID is the call id when it could still be read from the body.
	ID string
}

func (e *DecodeError) Error() string { return "broker: " + e.Reason }

// DecodeCall decodes a ToolCall strictly: valid UTF-8, at most maxBytes,
// nested at most maxDepth, one JSON object with no unknown fields and the
// right types, and the fields every call needs. The agent must match the
// subject's agent token (empty subjectAgent skips the check).
func DecodeCall(body []byte, subjectAgent string, maxBytes, maxDepth int) (*airlock.ToolCall, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if len(body) > maxBytes {
		return nil, &DecodeError{Reason: fmt.Sprintf("call is %d bytes, more than the %d allowed", len(body), maxBytes)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &DecodeError{Reason: "empty body: send one ToolCall JSON object"}
	}
	if !utf8.Valid(body) {
		return nil, &DecodeError{Reason: "call is not valid UTF-8", ID: sniffID(body)}
	}
	if d := jsonDepth(body); d > maxDepth {
		return nil, &DecodeError{Reason: fmt.Sprintf("call nests %d levels deep, more than the %d allowed", d, maxDepth), ID: sniffID(body)}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var c airlock.ToolCall
	if err := dec.Decode(&c); err != nil {
		return nil, &DecodeError{Reason: describeJSONError(err), ID: sniffID(body)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &DecodeError{Reason: "trailing data after the call object", ID: sniffID(body)}
	}
	if err := validateCall(&c, subjectAgent); err != nil {
		id := c.ID
		if !validID(id) {
			id = "" // a malformed id is not carried into the audit log
		}
		return nil, &DecodeError{Reason: err.Error(), ID: id}
	}
	return &c, nil
}

func validateCall(c *airlock.ToolCall, subjectAgent string) error {
	if c.ID != "" && !validID(c.ID) {
		return fmt.Errorf("id %q: must be 1-128 letters, digits, '_' or '-' and start with a letter or digit", clip(c.ID))
	}
	if c.Agent == "" {
		if subjectAgent == "" {
			return errors.New("agent: missing")
		}
		c.Agent = subjectAgent
	}
	if subjectAgent != "" && c.Agent != subjectAgent {
		return fmt.Errorf("agent %q does not match the subject's agent %q", clip(c.Agent), clip(subjectAgent))
	}
	for _, f := range []struct{ name, v string }{{"agent", c.Agent}, {"user", c.User}, {"org", c.Org}, {"session", c.Session}, {"tool", c.Tool}} {
		if f.v == "" {
			if f.name == "tool" {
				return errors.New("tool: missing")
			}
			continue
		}
		if !validName(f.v) {
			return fmt.Errorf("%s %q: must be 1-128 letters, digits or _ . : @ + -", f.name, clip(f.v))
		}
	}
	if c.Arguments == nil {
		c.Arguments = map[string]any{}
	}
	if c.InputTokens < 0 || c.OutputTokens < 0 {
		return errors.New("input_tokens and output_tokens must not be negative")
	}
	if c.CostUSD < 0 {
		return errors.New("cost_usd must not be negative")
	}
	return nil
}

// describeJSONError turns encoding/json's errors into one line that names the problem.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return fmt.Sprintf("the call must be a JSON object, not %s", typ.Value)
		}
		return fmt.Sprintf("field %q: want %s, got JSON %s", field, typeName(typ.Type.String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: unexpected end of input"
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return "malformed JSON: " + strings.TrimPrefix(msg, "json: ")
}

func typeName(t string) string {
	switch t {
	case "map[string]interface {}":
		return "an object"
	case "int64", "float64":
		return "a number"
	}
	return t
}

// jsonDepth returns the deepest nesting of objects and arrays in b, scanning
// bytes (strings skipped) without building anything.
func jsonDepth(b []byte) int {
	depth, max := 0, 0
	inStr, esc := false, false
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > max {
				max = depth
			}
		case '}', ']':
			depth--
		}
	}
	return max
}

// sniffID finds the call id in a body that did not decode, so that the
// rejection can name it. It returns "" unless the id is well formed.
func sniffID(b []byte) string {
	i := bytes.Index(b, []byte(`"id"`))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(b[i+4:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return ""
	}
	id := string(rest[1 : 1+end])
	if !validID(id) {
		return ""
	}
	return id
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// fingerprint identifies a call's content, to tell a retry from a conflict.
func fingerprint(c *airlock.ToolCall) string {
	cp := *c
	cp.ID = ""
	b, err := airlock.CanonicalJSON(&cp)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

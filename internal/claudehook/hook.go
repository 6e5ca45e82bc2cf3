// Package claudehook turns Claude Code's (and Codex's Claude-compatible)
// permission hooks into airlock tool calls: it reads the hook's JSON input,
// builds the ToolCall an airlock broker decides, and writes the decision back
// in the hookSpecificOutput shape the calling tool documents.
//
// Two hook events are understood:
//
//   - PreToolUse: answered with permissionDecision allow, deny or ask, a
//     permissionDecisionReason, and updatedInput when a reviewer approved
//     edited arguments.
//   - PermissionRequest: answered with decision.behavior allow or deny
//     (with updatedInput on an edited approval, or a message on a denial);
//     "ask" is expressed by giving no decision, so the tool shows its own
//     permission dialog.
//
// Codex speaks the same input format but does not honour every answer: its
// PreToolUse hook only enforces deny, and neither event accepts rewritten
// input. For Codex the package therefore answers fail-closed: ask and edited
// approvals become denials whose reason says what happened.
package claudehook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/airlock/airlock"
)

// Hook event names.
const (
	EventPreToolUse        = "PreToolUse"
	EventPermissionRequest = "PermissionRequest"
)

// MaxInput is the largest hook input read from stdin.
const MaxInput = 16 << 20

// Input is the JSON a hook receives on stdin. Fields this package does not
// use are tolerated: the format belongs to Claude Code and Codex.
type Input struct {
	SessionID      string         `json:"session_id"`
	TranscriptPath string         `json:"transcript_path"`
	Cwd            string         `json:"cwd"`
	PermissionMode string         `json:"permission_mode"`
	HookEventName  string         `json:"hook_event_name"`
	ToolName       string         `json:"tool_name"`
	ToolInput      map[string]any `json:"tool_input"`
	ToolUseID      string         `json:"tool_use_id"`
	// AgentID and AgentType are set when a subagent makes the call (Claude Code).
	AgentID   string `json:"agent_id"`
	AgentType string `json:"agent_type"`
	// TurnID and Model are sent by Codex only; TurnID marks a Codex payload.
	TurnID string `json:"turn_id"`
	Model  string `json:"model"`
}

// Decode reads one hook input. It tolerates unknown fields, and rejects what
// no hook sends: an unsupported event, a missing tool name, tool_input that
// is not an object, more than MaxInput bytes.
func Decode(r io.Reader) (*Input, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("claudehook: read input: %w", err)
	}
	if len(data) > MaxInput {
		return nil, fmt.Errorf("claudehook: input is larger than %d bytes", MaxInput)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("claudehook: no hook input on stdin (expected the hook's JSON object)")
	}
	var in Input
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("claudehook: hook input is not a JSON object of the expected shape: %w", err)
	}
	if dec.More() {
		return nil, errors.New("claudehook: trailing data after the hook input")
	}
	switch in.HookEventName {
	case EventPreToolUse, EventPermissionRequest:
	case "":
		return nil, errors.New("claudehook: hook_event_name is missing")
	default:
		return nil, fmt.Errorf("claudehook: hook_event_name %q is not handled (use PreToolUse or PermissionRequest)", clip(in.HookEventName, 40))
	}
	if in.ToolName == "" {
		return nil, errors.New("claudehook: tool_name is missing")
	}
	if in.ToolInput == nil {
		in.ToolInput = map[string]any{}
	}
	normalizeNumbers(in.ToolInput)
	return &in, nil
}

// normalizeNumbers turns json.Number values back into float64 or int64 so
// the arguments re-encode exactly as they arrived.
func normalizeNumbers(m map[string]any) {
	for k, v := range m {
		m[k] = normalize(v)
	}
}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		normalizeNumbers(x)
		return x
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	}
	return v
}

// Client says whose hook format the answer must follow.
type Client string

const (
	ClientAuto   Client = ""       // detect from the input (Codex sends turn_id)
	ClientClaude Client = "claude" // Claude Code
	ClientCodex  Client = "codex"  // Codex's Claude-compatible hooks
)

// ParseClient parses a --client flag value.
func ParseClient(s string) (Client, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return ClientAuto, nil
	case "claude", "claude-code":
		return ClientClaude, nil
	case "codex":
		return ClientCodex, nil
	}
	return "", fmt.Errorf("claudehook: client must be auto, claude or codex, not %q", s)
}

// Resolve returns the client the input came from.
func (c Client) Resolve(in *Input) Client {
	if c != ClientAuto {
		return c
	}
	if in != nil && in.TurnID != "" {
		return ClientCodex
	}
	return ClientClaude
}

// Identity is who the call is made for.
type Identity struct {
	Agent string
	User  string
	Org   string
}

// Call builds the ToolCall for a hook input. The call id comes from
// tool_use_id (sanitised), so a hook that is run again for the same tool use
// gets the recorded decision instead of a second review; without a
// tool_use_id the id is left empty and the broker assigns one.
func Call(in *Input, id Identity) *airlock.ToolCall {
	c := &airlock.ToolCall{
		ID:        SanitizeID(in.ToolUseID),
		Agent:     id.Agent,
		User:      SanitizeName(id.User),
		Org:       SanitizeName(id.Org),
		Session:   SanitizeName(in.SessionID),
		Tool:      in.ToolName,
		Arguments: in.ToolInput,
	}
	ctx := map[string]any{"hook_event": in.HookEventName}
	if in.Cwd != "" {
		ctx["cwd"] = in.Cwd
	}
	if in.PermissionMode != "" {
		ctx["permission_mode"] = in.PermissionMode
	}
	if in.ToolUseID != "" {
		ctx["tool_use_id"] = in.ToolUseID
	}
	if in.AgentType != "" {
		ctx["subagent"] = in.AgentType
	}
	if in.Model != "" {
		ctx["model"] = in.Model
	}
	// Bash and similar tools carry the model's own one-line description.
	if d, ok := in.ToolInput["description"].(string); ok && d != "" {
		ctx["reason"] = clip(d, 500)
	}
	c.Context = ctx
	return c
}

// SanitizeID maps s onto the call-id alphabet [A-Za-z0-9_-] (1-128
// characters, starting with a letter or digit). Other characters become '_'.
// An empty s stays empty.
func SanitizeID(s string) string {
	return sanitize(s, func(r rune) bool { return r == '_' || r == '-' })
}

// SanitizeName maps s onto the alphabet of agent, user, org and session
// names ([A-Za-z0-9_.:@+-], 1-128, starting with a letter or digit).
func SanitizeName(s string) string {
	return sanitize(s, func(r rune) bool { return strings.ContainsRune("_.:@+-", r) })
}

func sanitize(s string, extra func(rune) bool) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 128 {
			break
		}
		alnum := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		switch {
		case alnum:
			b.WriteRune(r)
		case b.Len() == 0:
			b.WriteByte('x') // must start with a letter or digit
			if extra(r) {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		case extra(r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 128 {
		out = out[:128]
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

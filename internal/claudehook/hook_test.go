package claudehook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock/airlock"
)

func load(t *testing.T, name string) *Input {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return in
}

func TestDecodeRecordedPayloads(t *testing.T) {
	tests := []struct {
		file       string
		event      string
		tool       string
		id         string
		session    string
		client     Client
		wantReason string
	}{
		{"pretooluse-read.json", EventPreToolUse, "Read", "toolu_01ABCreadme", "abc123-sess", ClientClaude, ""},
		{"pretooluse-bash.json", EventPreToolUse, "Bash", "toolu_01BASHrebuild", "abc123-sess", ClientClaude, "Clean and rebuild"},
		{"pretooluse-webfetch.json", EventPreToolUse, "WebFetch", "toolu_01WEBfetch", "abc123-sess", ClientClaude, ""},
		{"permissionrequest-bash.json", EventPermissionRequest, "Bash", "", "abc123-sess", ClientClaude, "Publish the package"},
		{"codex-pretooluse.json", EventPreToolUse, "Bash", "call_Xk2f9", "019a-codex-sess", ClientCodex, ""},
		{"codex-permissionrequest.json", EventPermissionRequest, "Bash", "", "019a-codex-sess", ClientCodex, "network-access example.com"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".json"), func(t *testing.T) {
			in := load(t, tt.file)
			if in.HookEventName != tt.event || in.ToolName != tt.tool {
				t.Fatalf("got event %q tool %q, want %q %q", in.HookEventName, in.ToolName, tt.event, tt.tool)
			}
			if got := ClientAuto.Resolve(in); got != tt.client {
				t.Errorf("got client %q, want %q", got, tt.client)
			}
			c := Call(in, Identity{Agent: "claude-code", User: "alice"})
			if c.ID != tt.id || c.Session != tt.session || c.Tool != tt.tool || c.Agent != "claude-code" || c.User != "alice" {
				t.Errorf("got call id=%q session=%q tool=%q agent=%q user=%q", c.ID, c.Session, c.Tool, c.Agent, c.User)
			}
			if !reflect.DeepEqual(c.Arguments, in.ToolInput) || len(c.Arguments) == 0 {
				t.Errorf("got arguments %v, want the tool input %v", c.Arguments, in.ToolInput)
			}
			if got := c.Reason(); got != tt.wantReason {
				t.Errorf("got reason %q, want %q", got, tt.wantReason)
			}
			if c.Context["hook_event"] != tt.event || c.Context["cwd"] == nil {
				t.Errorf("got context %v, want hook_event and cwd", c.Context)
			}
		})
	}
}

func TestDecodeKeepsIntegers(t *testing.T) {
	in := load(t, "pretooluse-bash.json")
	b, err := json.Marshal(in.ToolInput)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"timeout":120000`) {
		t.Errorf("got %s, want the timeout re-encoded as the integer 120000", b)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "  ", "no hook input"},
		{"not-json", "hello", "not a JSON object"},
		{"array", "[1]", "not a JSON object"},
		{"no-event", `{"tool_name":"Read","tool_input":{}}`, "hook_event_name is missing"},
		{"other-event", `{"hook_event_name":"PostToolUse","tool_name":"Read","tool_input":{}}`, "not handled"},
		{"no-tool", `{"hook_event_name":"PreToolUse","tool_input":{}}`, "tool_name is missing"},
		{"input-not-object", `{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":"x"}`, "not a JSON object"},
		{"trailing", `{"hook_event_name":"PreToolUse","tool_name":"Read"} {}`, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ name, in, id, nameOut string }{
		{"claude", "toolu_01ABC", "toolu_01ABC", "toolu_01ABC"},
		{"dots-and-spaces", "a.b c", "a_b_c", "a.b_c"},
		{"leading-dash", "-x", "x-x", "x-x"},
		{"unicode", "é1", "x_1", "x_1"},
		{"empty", "", "", ""},
		{"long", strings.Repeat("a", 300), strings.Repeat("a", 128), strings.Repeat("a", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SanitizeID(tt.in); got != tt.id {
				t.Errorf("SanitizeID(%q) = %q, want %q", tt.in, got, tt.id)
			}
			if got := SanitizeName(tt.in); got != tt.nameOut {
				t.Errorf("SanitizeName(%q) = %q, want %q", tt.in, got, tt.nameOut)
			}
		})
	}
}

func decodeOut(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("output is not JSON: %q", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEncode(t *testing.T) {
	edited := map[string]any{"command": "ls"}
	tests := []struct {
		name   string
		event  string
		client Client
		o      Outcome
		want   string
	}{
		{"pre-allow", EventPreToolUse, ClientClaude, Outcome{Behavior: Allow, Reason: "ok"},
			`{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"allow","permissionDecisionReason":"ok"}}`},
		{"pre-deny", EventPreToolUse, ClientClaude, Outcome{Behavior: Deny, Reason: "no"},
			`{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":"no"}}`},
		{"pre-ask", EventPreToolUse, ClientClaude, Outcome{Behavior: Ask, Reason: "down"},
			`{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"ask","permissionDecisionReason":"down"}}`},
		{"pre-edit", EventPreToolUse, ClientClaude, Outcome{Behavior: Allow, Reason: "ok", UpdatedInput: edited},
			`{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"allow","permissionDecisionReason":"ok","updatedInput":{"command":"ls"}}}`},
		{"perm-allow", EventPermissionRequest, ClientClaude, Outcome{Behavior: Allow, Reason: "ok"},
			`{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}`},
		{"perm-edit", EventPermissionRequest, ClientClaude, Outcome{Behavior: Allow, Reason: "ok", UpdatedInput: edited},
			`{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow","updatedInput":{"command":"ls"}}}}`},
		{"perm-deny", EventPermissionRequest, ClientClaude, Outcome{Behavior: Deny, Reason: "no"},
			`{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"no"}}}`},
		{"perm-ask", EventPermissionRequest, ClientClaude, Outcome{Behavior: Ask, Reason: "down"},
			`{"hookSpecificOutput":{"hookEventName":"PermissionRequest"},"systemMessage":"down"}`},
		{"codex-pre-allow", EventPreToolUse, ClientCodex, Outcome{Behavior: Allow, Reason: "ok"}, `{}`},
		{"codex-pre-ask", EventPreToolUse, ClientCodex, Outcome{Behavior: Ask, Reason: "down"},
			`{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":"down (Codex hooks cannot ask; denied instead)"}}`},
		{"codex-perm-ask", EventPermissionRequest, ClientCodex, Outcome{Behavior: Ask, Reason: "down"},
			`{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"down (Codex hooks cannot ask; denied instead)"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(Encode(tt.event, tt.client, tt.o))
			if got != tt.want+"\n" {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEncodeCodexEditDenies(t *testing.T) {
	for _, ev := range []string{EventPreToolUse, EventPermissionRequest} {
		t.Run(ev, func(t *testing.T) {
			b := Encode(ev, ClientCodex, Outcome{Behavior: Allow, Reason: "ok", UpdatedInput: map[string]any{"command": "ls -la"}})
			s := string(b)
			decodeOut(t, b)
			if strings.Contains(s, `"allow"`) || strings.Contains(s, "updatedInput") || !strings.Contains(s, `ls -la`) {
				t.Errorf("got %s, want a denial that names the edited arguments and no updatedInput", s)
			}
		})
	}
}

func TestFromDecision(t *testing.T) {
	tests := []struct {
		name   string
		d      airlock.Decision
		want   Behavior
		edited bool
		reason string
	}{
		{"approved-policy", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictApproved, DecidedBy: "policy", Tier: airlock.TierAuto}, Allow, false, "approved by policy"},
		{"approved-edited", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictApproved, DecidedBy: "reviewer:bob", UpdatedArguments: map[string]any{"a": 1}}, Allow, true, "edited"},
		{"sandboxed", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictApproved, DecidedBy: "policy", Execution: &airlock.Execution{Backend: "native", Stdout: "hi"}}, Deny, false, "do not run it again"},
		{"denied", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictDenied, DecidedBy: "policy", Reason: "WebFetch is not in the policy"}, Deny, false, "not in the policy"},
		{"expired", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictExpired}, Deny, false, "no reviewer decided"},
		{"rate-limited", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictRateLimited, Reason: "rate limited: user alice"}, Deny, false, "rate limited"},
		{"rejected", airlock.Decision{CallID: "c1", Verdict: airlock.VerdictRejected, Reason: "bad"}, Deny, false, "malformed"},
		{"unknown-verdict", airlock.Decision{CallID: "c1", Verdict: "maybe"}, Deny, false, "denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := FromDecision(tt.d)
			if o.Behavior != tt.want || (o.UpdatedInput != nil) != tt.edited || !strings.Contains(o.Reason, tt.reason) {
				t.Errorf("got %+v, want %s edited=%v reason containing %q", o, tt.want, tt.edited, tt.reason)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"hook_event_name":"PreToolUse","tool_name":"x","tool_input":{"a":[1,2.5,1e400]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Decode(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		c := Call(in, Identity{Agent: "a"})
		if c.ID != "" && SanitizeID(c.ID) != c.ID {
			t.Fatalf("call id %q is not sanitised", c.ID)
		}
		if c.Session != "" && SanitizeName(c.Session) != c.Session {
			t.Fatalf("session %q is not sanitised", c.Session)
		}
		for _, o := range []Outcome{{Behavior: Allow, UpdatedInput: in.ToolInput}, {Behavior: Deny, Reason: in.ToolName}} {
			for _, cl := range []Client{ClientClaude, ClientCodex} {
				if out := Encode(in.HookEventName, cl, o); !json.Valid(out) {
					t.Fatalf("invalid output %q", out)
				}
			}
		}
	})
}

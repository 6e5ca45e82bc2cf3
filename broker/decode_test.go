package broker

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeCall(t *testing.T) {
	tests := []struct {
		name, body, agent, wantErr string
	}{
		{"minimal", `{"agent":"a","tool":"t"}`, "a", ""},
		{"agent-from-subject", `{"tool":"t","arguments":{"x":1}}`, "a", ""},
		{"null-arguments", `{"agent":"a","tool":"t","arguments":null}`, "a", ""},
		{"negative-tokens", `{"agent":"a","tool":"t","input_tokens":-1}`, "a", "negative"},
		{"negative-cost", `{"agent":"a","tool":"t","cost_usd":-0.5}`, "a", "negative"},
		{"name-with-space", `{"agent":"a","tool":"t","user":"bob smith"}`, "a", "user"},
		{"control-in-tool", "{\"agent\":\"a\",\"tool\":\"t\\u001b\"}", "a", "tool"},
		{"id-with-dot", `{"id":"a.b","agent":"a","tool":"t"}`, "a", "id"},
		{"id-wildcard", `{"id":"*","agent":"a","tool":"t"}`, "a", "id"},
		{"long-id", `{"id":"` + strings.Repeat("x", 129) + `","agent":"a","tool":"t"}`, "a", "id"},
		{"empty", ``, "a", "empty"},
		{"string", `"hello"`, "a", "object"},
		{"duplicate-is-last-wins", `{"agent":"a","tool":"t","tool":"u"}`, "a", ""},
		{"deep-string-is-not-deep", `{"agent":"a","tool":"t","arguments":{"s":"` + strings.Repeat("[{", 100) + `"}}`, "a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeCall([]byte(tt.body), tt.agent, 0, 0)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if c.Agent != tt.agent || c.Arguments == nil {
					t.Fatalf("got %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestJSONDepth(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`{}`, 1}, {`{"a":[1,{"b":2}]}`, 3}, {`{"a":"{[{["}`, 1}, {`{"a":"\"{"}`, 1}, {`[[[]]]`, 3},
	}
	for _, tt := range tests {
		if got := jsonDepth([]byte(tt.in)); got != tt.want {
			t.Errorf("jsonDepth(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzDecodeCall: the decoder never panics, never accepts what violates its
// own rules, and an accepted call re-encodes to a body it accepts again.
func FuzzDecodeCall(f *testing.F) {
	for _, s := range []string{
		`{"id":"c1","agent":"a","user":"u","org":"o","session":"s","tool":"search_web","arguments":{"q":"x"},"input_tokens":3,"cost_usd":0.1,"context":{"reason":"r"}}`,
		`{"agent":"a","tool":"t","arguments":{"to":["x@y.z"],"n":[1,2,{"k":null}]}}`,
		`{"id":"c2","agent":"a","tool":`,
		`{"agent":"a","tool":"t","evil":1}`,
		"{\"agent\":\"a\",\"tool\":\"t\",\"arguments\":{\"s\":\"\xff\"}}",
		`[{"agent":"a"}]`,
		`{"agent":"a","tool":"t"} {}`,
		strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeCall(body, "a", 1<<16, 16)
		if err != nil {
			if de, ok := err.(*DecodeError); ok && de.ID != "" && !idPattern.MatchString(de.ID) {
				t.Fatalf("rejection names a malformed id %q", de.ID)
			}
			return
		}
		if !utf8.Valid(body) || len(body) > 1<<16 || jsonDepth(body) > 16 {
			t.Fatalf("accepted a body that breaks the limits: %q", body)
		}
		if c.Agent != "a" || c.Tool == "" || c.Arguments == nil {
			t.Fatalf("accepted an incomplete call %+v", c)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeCall(again, "a", 1<<20, 64); err != nil {
			t.Fatalf("re-encoded call rejected: %v (%s)", err, again)
		}
	})
}

func TestValidatorsMatchPatterns(t *testing.T) {
	inputs := []string{"", "a", "A9", "9", "_a", "-a", "a_b-c", "a.b", "a:b@c+d-e_f.g", ".a", "a b", "a*", "a>", "é", "aé", "a\n", "a\x00",
		strings.Repeat("a", 127), strings.Repeat("a", 128), strings.Repeat("a", 129), "0" + strings.Repeat("-", 127), "a/b", "a,b", "a$", "ab\u212a"}
	for c := 0; c < 256; c++ {
		inputs = append(inputs, string(rune(c)), "a"+string(rune(c)), "a"+string([]byte{byte(c)}), string([]byte{byte(c)})+"a")
	}
	for _, in := range inputs {
		if got, want := validID(in), idPattern.MatchString(in); got != want {
			t.Errorf("validID(%q): got %v, want %v", in, got, want)
		}
		if got, want := validName(in), namePattern.MatchString(in); got != want {
			t.Errorf("validName(%q): got %v, want %v", in, got, want)
		}
	}
}

func FuzzValidators(f *testing.F) {
	for _, s := range []string{"a", "a.b:c@d+e-f_g", "-a", "é", strings.Repeat("z", 128)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validID(s), idPattern.MatchString(s); got != want {
			t.Errorf("validID(%q): got %v, want %v", s, got, want)
		}
		if got, want := validName(s), namePattern.MatchString(s); got != want {
			t.Errorf("validName(%q): got %v, want %v", s, got, want)
		}
	})
}

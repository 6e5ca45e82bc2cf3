package mcpproxy

import (
	"encoding/json"
	"testing"
)

func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		err      bool
	}{
		{"empty", ``, `{}`, false},
		{"null", `null`, `{}`, false},
		{"object", `{"n":1,"f":1.5,"big":12345678901234567890,"a":[1,{"b":2}]}`, `{"a":[1,{"b":2}],"big":12345678901234567000,"f":1.5,"n":1}`, false},
		{"array", `[1]`, ``, true},
		{"string", `"x"`, ``, true},
		{"broken", `{"a":`, ``, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeArgs(json.RawMessage(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("got error %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			b, _ := json.Marshal(got)
			if string(b) != tt.want {
				t.Errorf("got %s, want %s", b, tt.want)
			}
		})
	}
}

func FuzzDecodeArgs(f *testing.F) {
	for _, s := range []string{`{}`, `{"text":"hi"}`, `{"n":-1e308,"a":[[[]]]}`, `[]`, `null`, `{"x":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeArgs(data)
		if err != nil {
			return
		}
		if m == nil {
			t.Fatal("nil arguments without an error")
		}
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("decoded arguments do not re-encode: %v", err)
		}
	})
}

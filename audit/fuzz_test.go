package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRender feeds arbitrary payloads of every kind to the story renderer
// and the tail summariser: they must not fail on bad JSON, and whatever the
// payload holds, no escape, C1, bidi or invisible character reaches the
// terminal raw.
func FuzzRender(f *testing.F) {
	f.Add("decision", `{"call":{"id":"c1","agent":"a","tool":"t","arguments":{"q":"\u001b[2J"}},"decision":{"verdict":"denied","reason":"\u202eevil"}}`)
	f.Add("pending", `{"pending":{"call":{"id":"c1"},"reason":"x\u0007y","risk":{"score":5,"factors":[{"name":"\u200b","points":1}]}}}`)
	f.Add("execution", `{"call_id":"c1","execution":{"stdout":"\u001b]52;c;aGk=\u0007","stderr":"\u009b31m"}}`)
	f.Add("review", `{"review":{"reviewer":"bob\u2066","action":"approve"},"accepted":false,"error":"late"}`)
	f.Add("canary", `{"reviewer":"bob","caught":true}`)
	f.Add("decision", `not json`)
	f.Fuzz(func(t *testing.T, kind, payload string) {
		st := &Story{CallID: "c\x1b1", Events: []Row{{Seq: 1, TS: "2026-12-04T10:00:00.000000000Z", Kind: kind, CallID: "c1", Payload: payload, PrevHash: GenesisHash, Hash: GenesisHash}}}
		var b strings.Builder
		if err := st.Render(&b); err != nil {
			t.Fatal(err)
		}
		line := Summarize(&st.Events[0])
		for name, out := range map[string]string{"story": b.String(), "summary": line} {
			for _, r := range out {
				if r == '\n' && name == "story" {
					continue
				}
				if r < 0x20 || (r >= 0x7f && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200b || r == 0x200e || r == 0x200f {
					t.Fatalf("%s carries raw %U:\n%q", name, r, out)
				}
			}
			if !utf8.ValidString(out) {
				t.Fatalf("%s is not valid UTF-8: %q", name, out)
			}
		}
	})
}

// FuzzReadCheckpoints parses arbitrary checkpoint files: an error or
// well-formed checkpoints, never a panic.
func FuzzReadCheckpoints(f *testing.F) {
	f.Add("{\"seq\":3,\"hash\":\"" + GenesisHash + "\",\"ts\":\"2026-12-04T10:00:00Z\"}\n")
	f.Add("\n\n{\"seq\":-1,\"hash\":\"\"}\n")
	f.Add("{\"seq\":1e99}")
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "cp")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		cps, err := ReadCheckpoints(path)
		if err != nil {
			return
		}
		for _, cp := range cps {
			if cp.Seq < 0 || len(cp.Hash) != 64 {
				t.Fatalf("accepted %+v", cp)
			}
		}
	})
}

package auth

import (
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/conf"
)

// FuzzConfQuote: every string q quotes reads back from nats-server's own
// configuration parser unchanged (tokens and names land in the generated
// configuration).
func FuzzConfQuote(f *testing.F) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "tab\tnew\nline", "_INBOX.agent.a1.>", "$JS.API.>", "\x00\x7f", "ünï", "$VAR", "${x}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // the config language holds only UTF-8; nothing to check
		}
		m, err := conf.Parse("v: " + q(s) + "\n")
		if err != nil {
			t.Fatalf("q(%q) = %s does not parse: %v", s, q(s), err)
		}
		if got, _ := m["v"].(string); got != s {
			t.Fatalf("q(%q) = %s reads back as %q", s, q(s), got)
		}
	})
}

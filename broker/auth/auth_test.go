package auth_test

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
)

func key(t testing.TB) (string, *client.Key) {
	t.Helper()
	kp, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	data, err := auth.KeyFile(kp, "reviewer", "bob")
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.ParseKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public, k
}

func TestSignVerify(t *testing.T) {
	pub, k := key(t)
	other, _ := key(t)
	base := airlock.Review{CallID: "c1", Action: airlock.ActionApprove, Reviewer: "bob", ArgsHash: "ab12", PolicyVersion: "v1",
		Timestamp: time.Date(2026, 12, 4, 10, 0, 0, 123, time.FixedZone("X", 3600)), Nonce: "n1"}
	signed := base
	if err := auth.SignReview(k.KeyPair(), &signed); err != nil {
		t.Fatal(err)
	}
	if signed.PublicKey != pub || signed.Signature == "" || strings.ContainsAny(signed.Signature, "+/=") {
		t.Fatalf("signed review %+v: want the public key and a base64url signature", signed)
	}
	if err := auth.VerifyReview(signed, pub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	mut := func(f func(*airlock.Review)) airlock.Review { r := signed; f(&r); return r }
	tests := []struct {
		name string
		r    airlock.Review
		pub  string
		want error
	}{
		{"unsigned", base, pub, auth.ErrUnsigned},
		{"other-key", signed, other, auth.ErrWrongKey},
		{"call-id", mut(func(r *airlock.Review) { r.CallID = "c2" }), pub, auth.ErrBadSignature},
		{"action", mut(func(r *airlock.Review) { r.Action = airlock.ActionDeny }), pub, auth.ErrBadSignature},
		{"reviewer", mut(func(r *airlock.Review) { r.Reviewer = "carol" }), pub, auth.ErrBadSignature},
		{"args-hash", mut(func(r *airlock.Review) { r.ArgsHash = "cd34" }), pub, auth.ErrBadSignature},
		{"policy-version", mut(func(r *airlock.Review) { r.PolicyVersion = "v2" }), pub, auth.ErrBadSignature},
		{"timestamp", mut(func(r *airlock.Review) { r.Timestamp = r.Timestamp.Add(time.Nanosecond) }), pub, auth.ErrBadSignature},
		{"nonce", mut(func(r *airlock.Review) { r.Nonce = "n2" }), pub, auth.ErrBadSignature},
		{"grant-added", mut(func(r *airlock.Review) { r.Grant = &airlock.GrantRequest{For: "24h"} }), pub, auth.ErrBadSignature},
		{"garbage-signature", mut(func(r *airlock.Review) { r.Signature = "!!" }), pub, auth.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := auth.VerifyReview(tt.r, tt.pub); err == nil || !strings.Contains(err.Error(), tt.want.Error()) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("same-instant-other-zone", func(t *testing.T) {
		r := signed
		r.Timestamp = r.Timestamp.UTC()
		if err := auth.VerifyReview(r, pub); err != nil {
			t.Fatalf("the same instant in UTC: %v", err)
		}
	})
	t.Run("edited-arguments-hashed", func(t *testing.T) {
		r := base
		r.UpdatedArguments = map[string]any{"q": "x"}
		r.ArgsHash = "stale"
		if err := auth.SignReview(k.KeyPair(), &r); err != nil {
			t.Fatal(err)
		}
		if r.ArgsHash != airlock.ArgsHash(r.UpdatedArguments) {
			t.Fatalf("args hash %s, want the edited arguments' hash", r.ArgsHash)
		}
	})
}

const authPolicy = `version: 1
tools:
  x: {tier: auto}
auth:
  agents:
    a1: {nkey: %A%}
    tok: {token: "0123456789abcdef\"q"}
  reviewers:
    bob: {nkey: %B%}
`

func parse(t testing.TB) *policy.Policy {
	t.Helper()
	a, _ := key(t)
	b, _ := key(t)
	text := strings.NewReplacer("%A%", a, "%B%", b).Replace(authPolicy)
	p, err := policy.Parse("p.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigure(t *testing.T) {
	p := parse(t)
	self, _ := key(t)
	var o server.Options
	if err := auth.Configure(&o, p, "airlock", self); err != nil {
		t.Fatal(err)
	}
	if len(o.Nkeys) != 3 || len(o.Users) != 1 {
		t.Fatalf("nkeys %d users %d, want 3 (a1, bob, the broker) and 1 (tok)", len(o.Nkeys), len(o.Users))
	}
	perms := map[string]*server.Permissions{}
	for _, u := range o.Nkeys {
		perms[u.Nkey] = u.Permissions
	}
	if perms[self] != nil {
		t.Fatalf("the broker is limited: %+v", perms[self])
	}
	a1 := perms[p.Auth.Agents["a1"].NKey]
	if got := a1.Publish.Allow; len(got) != 1 || got[0] != "airlock.submit.a1" {
		t.Fatalf("agent publish %v, want only airlock.submit.a1", got)
	}
	if got := a1.Subscribe.Allow; len(got) != 1 || got[0] != "_INBOX.agent.a1.>" {
		t.Fatalf("agent subscribe %v, want only its inbox", got)
	}
	if u := o.Users[0]; u.Username != "tok" || u.Password != "0123456789abcdef\"q" || u.Permissions.Publish.Allow[0] != "airlock.submit.tok" {
		t.Fatalf("token user %+v", u)
	}
	t.Run("shared-key-refused", func(t *testing.T) {
		var o server.Options
		if err := auth.Configure(&o, p, "airlock", p.Auth.Agents["a1"].NKey); err == nil || !strings.Contains(err.Error(), "share one nkey") {
			t.Fatalf("got %v, want a shared-key error", err)
		}
	})
}

func TestServerConfig(t *testing.T) {
	p := parse(t)
	conf := auth.ServerConfig(p)
	for _, want := range []string{
		"authorization {", `{nkey: "` + p.Auth.Agents["a1"].NKey + `", permissions: {publish: {allow: ["airlock.submit.a1"]}, subscribe: {allow: ["_INBOX.agent.a1.>"]}}}`,
		`{user: "tok", password: "0123456789abcdef\"q"`, `"airlock.review.*"`, `"$JS.API.DIRECT.GET.KV_airlock_pending.>"`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %s:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, `\u`) {
		t.Errorf("config uses \\u escapes, which nats-server refuses:\n%s", conf)
	}
}

// FuzzVerifyReview: any review and key verify without panicking, and only
// the genuine signature verifies.
func FuzzVerifyReview(f *testing.F) {
	f.Add("c1", "approve", "bob", "ab", "v1", "n", "sig", "reason")
	f.Add("", "", "", "", "", "", "", "")
	f.Add("c1", "deny", "bob\x00", "\xff", "v", "n", "AAAA", "\u2028")
	pub, k := key(f)
	f.Fuzz(func(t *testing.T, id, action, reviewer, hash, version, nonce, sig, reason string) {
		r := airlock.Review{CallID: id, Action: airlock.ReviewAction(action), Reviewer: reviewer, ArgsHash: hash,
			PolicyVersion: version, Nonce: nonce, Reason: reason, Timestamp: time.Unix(1, 0)}
		forged := r
		forged.Signature, forged.PublicKey = sig, pub
		if auth.VerifyReview(forged, pub) == nil {
			t.Fatalf("a made-up signature %q verified", sig)
		}
		if err := auth.SignReview(k.KeyPair(), &r); err != nil {
			t.Fatal(err)
		}
		if err := auth.VerifyReview(r, pub); err != nil {
			t.Fatalf("a genuine signature failed: %v", err)
		}
	})
}

// FuzzParseKey: key files never panic the parser.
func FuzzParseKey(f *testing.F) {
	_, k := key(f)
	seed, _ := k.KeyPair().Seed()
	f.Add([]byte("# role: agent\n# name: a1\n" + string(seed) + "\n"))
	f.Add([]byte("SUxyz\n"))
	f.Add([]byte("-----BEGIN USER NKEY SEED-----\nSU\n------END USER NKEY SEED------\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := client.ParseKey(data); err == nil && !strings.HasPrefix(k.Public, "U") {
			t.Fatalf("parsed a non-user key %q", k.Public)
		}
	})
}

// BenchmarkSignVerify measures what a signed verdict costs the reviewer's
// tool (sign) and the broker (verify).
func BenchmarkSignVerify(b *testing.B) {
	pub, k := key(b)
	r := airlock.Review{CallID: "01JEXAMPLE", Action: airlock.ActionApprove, Reviewer: "bob",
		ArgsHash: strings.Repeat("ab", 32), PolicyVersion: strings.Repeat("cd", 32), Timestamp: time.Unix(1e9, 0), Nonce: "n"}
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rr := r
			if err := auth.SignReview(k.KeyPair(), &rr); err != nil {
				b.Fatal(err)
			}
		}
	})
	signed := r
	if err := auth.SignReview(k.KeyPair(), &signed); err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := auth.VerifyReview(signed, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Baseline: bare ed25519 over the same payload.
	payload, _ := auth.ReviewPayload(&r)
	_, priv, _ := ed25519.GenerateKey(nil)
	sig := ed25519.Sign(priv, payload)
	b.Run("baseline-ed25519-sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ed25519.Sign(priv, payload)
		}
	})
	b.Run("baseline-ed25519-verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !ed25519.Verify(priv.Public().(ed25519.PublicKey), payload, sig) {
				b.Fatal("bad")
			}
		}
	})
}

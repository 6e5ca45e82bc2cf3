package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/policy"
)

// agentSigner returns what the console over SSH gets from a reviewer's
// forwarded ssh-agent: the public key and a signing function that never
// sees the private key.
func agentSigner(t *testing.T, priv any) (authorized string, sign func([]byte) ([]byte, error)) {
	t.Helper()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.List()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keyring: %v %v", keys, err)
	}
	pub := keys[0]
	return string(gossh.MarshalAuthorizedKey(pub)), func(b []byte) ([]byte, error) {
		sig, err := keyring.Sign(pub, b)
		if err != nil {
			return nil, err
		}
		return sig.Blob, nil
	}
}

// TestSSHAgentSignedVerdicts: a reviewer whose policy identity has an
// ed25519 ssh_key can sign verdicts through ssh-agent; they verify against
// the reviewer's verdict keys, not against anyone else's, and tampering or
// an RSA key is refused.
func TestSSHAgentSignedVerdicts(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	authorized, sign := agentSigner(t, edPriv)
	pub, err := auth.SSHVerdictKey(authorized)
	if err != nil || !strings.HasPrefix(pub, "U") {
		t.Fatalf("SSHVerdictKey: %q %v, want a user nkey", pub, err)
	}
	bobNKey, _ := key(t)
	bob := policy.Identity{NKey: bobNKey, SSHKey: strings.TrimSpace(authorized)}
	if keys := auth.VerdictKeys(bob); len(keys) != 2 || keys[0] != bobNKey || keys[1] != pub {
		t.Fatalf("VerdictKeys = %v, want the nkey and the ssh key", keys)
	}

	r := airlock.Review{CallID: "c1", Action: airlock.ActionApprove, Reviewer: "bob", Reason: "ok",
		ArgsHash: airlock.ArgsHash(map[string]any{"q": 1}), PolicyVersion: "v1", Timestamp: time.Now()}
	if err := auth.SignReviewWith(pub, sign, &r); err != nil {
		t.Fatal(err)
	}
	if err := auth.VerifyReviewAny(r, auth.VerdictKeys(bob)); err != nil {
		t.Fatalf("agent-signed verdict: %v", err)
	}
	carolNKey, _ := key(t)
	if err := auth.VerifyReviewAny(r, auth.VerdictKeys(policy.Identity{NKey: carolNKey})); !errors.Is(err, auth.ErrWrongKey) {
		t.Fatalf("against carol's keys: %v, want ErrWrongKey", err)
	}
	tampered := r
	tampered.Action = airlock.ActionDeny
	if err := auth.VerifyReviewAny(tampered, auth.VerdictKeys(bob)); !errors.Is(err, auth.ErrBadSignature) {
		t.Fatalf("tampered verdict: %v, want ErrBadSignature", err)
	}

	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaAuthorized, _ := agentSigner(t, rsaPriv)
	if _, err := auth.SSHVerdictKey(rsaAuthorized); err == nil {
		t.Fatal("an RSA ssh key was accepted as a verdict key")
	}
	if keys := auth.VerdictKeys(policy.Identity{SSHKey: strings.TrimSpace(rsaAuthorized)}); len(keys) != 0 {
		t.Fatalf("VerdictKeys of an RSA-only reviewer = %v, want none", keys)
	}
}

package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/airlock/airlock"
)

// signedReview is what a reviewer's signature covers: the call, the
// verdict, the exact arguments (by hash; the edited ones when edited), the
// policy version, the time, a single-use nonce, and the reason and grant
// that travel with the verdict.
type signedReview struct {
	Domain        string                `json:"domain"`
	CallID        string                `json:"call_id"`
	Action        airlock.ReviewAction  `json:"action"`
	Reviewer      string                `json:"reviewer"`
	ArgsHash      string                `json:"args_hash"`
	PolicyVersion string                `json:"policy_version"`
	TS            string                `json:"ts"`
	Nonce         string                `json:"nonce"`
	Reason        string                `json:"reason"`
	Grant         *airlock.GrantRequest `json:"grant"`
}

// signDomain separates airlock verdict signatures from anything else the
// same key might sign (the NATS server's login nonce).
const signDomain = "airlock.review.v1"

// ReviewPayload returns the canonical bytes a verdict's signature covers.
func ReviewPayload(r *airlock.Review) ([]byte, error) {
	return airlock.CanonicalJSON(signedReview{
		Domain: signDomain, CallID: r.CallID, Action: r.Action, Reviewer: r.Reviewer, ArgsHash: r.ArgsHash,
		PolicyVersion: r.PolicyVersion, TS: r.Timestamp.UTC().Format(time.RFC3339Nano), Nonce: r.Nonce,
		Reason: r.Reason, Grant: r.Grant,
	})
}

// SignReview signs r with the reviewer's key: it fills in a missing
// timestamp, nonce and args hash (of the edited arguments when edited), then
// sets Signature (base64url, unpadded) and PublicKey.
func SignReview(kp nkeys.KeyPair, r *airlock.Review) error {
	if kp == nil || r == nil {
		return errors.New("auth: sign: no key or no review")
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("auth: sign: %w", err)
	}
	return SignReviewWith(pub, kp.Sign, r)
}

// SignReviewWith is SignReview for a key held elsewhere: pub is its public
// key in nkey form and sign returns the ed25519 signature of the payload (a
// reviewer's ssh-agent reached through agent forwarding, for instance).
func SignReviewWith(pub string, sign func(payload []byte) ([]byte, error), r *airlock.Review) error {
	if pub == "" || sign == nil || r == nil {
		return errors.New("auth: sign: no key or no review")
	}
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now().UTC()
	}
	if r.Nonce == "" {
		r.Nonce = newNonce()
	}
	if r.UpdatedArguments != nil {
		r.ArgsHash = airlock.ArgsHash(r.UpdatedArguments)
	}
	payload, err := ReviewPayload(r)
	if err != nil {
		return fmt.Errorf("auth: sign: %w", err)
	}
	sig, err := sign(payload)
	if err != nil {
		return fmt.Errorf("auth: sign: %w", err)
	}
	r.PublicKey = pub
	r.Signature = base64.RawURLEncoding.EncodeToString(sig)
	return nil
}

// Verification errors.
var (
	ErrUnsigned     = errors.New("auth: the verdict is not signed")
	ErrWrongKey     = errors.New("auth: the verdict is signed with a key that is not the reviewer's")
	ErrBadSignature = errors.New("auth: the verdict's signature does not verify")
)

// VerifyReviewAny checks that r is signed, over its contents, by the key
// it names, and that this key is one of keys (the reviewer's verdict keys).
func VerifyReviewAny(r airlock.Review, keys []string) error {
	if r.Signature == "" {
		return ErrUnsigned
	}
	for _, k := range keys {
		if k != "" && k == r.PublicKey {
			return VerifyReview(r, k)
		}
	}
	return ErrWrongKey
}

// VerifyReview checks that r is signed by wantPub over its contents.
func VerifyReview(r airlock.Review, wantPub string) error {
	if r.Signature == "" {
		return ErrUnsigned
	}
	if wantPub == "" || r.PublicKey != wantPub {
		return ErrWrongKey
	}
	sig, err := base64.RawURLEncoding.DecodeString(r.Signature)
	if err != nil {
		return fmt.Errorf("%w (not base64url)", ErrBadSignature)
	}
	pk, err := nkeys.FromPublicKey(wantPub)
	if err != nil {
		return fmt.Errorf("auth: reviewer key %q: %w", wantPub, err)
	}
	payload, err := ReviewPayload(&r)
	if err != nil {
		return fmt.Errorf("auth: verify: %w", err)
	}
	if err := pk.Verify(payload, sig); err != nil {
		return ErrBadSignature
	}
	return nil
}

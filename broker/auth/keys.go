package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/airlock/airlock/broker/client"
)

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewKey creates a fresh user nkey.
func NewKey() (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("auth: create nkey: %w", err)
	}
	return kp, nil
}

// KeyFile returns the text of a key file for an identity: a comment header
// naming the role, the name and the public key, then the seed on its own
// line (client.LoadKey reads it; so does `nats --nkey FILE`).
func KeyFile(kp nkeys.KeyPair, role, name string) ([]byte, error) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# airlock %s key: keep this file secret, it is the identity on the bus\n", role)
	fmt.Fprintf(&b, "# role: %s\n# name: %s\n# public: %s\n", role, name, pub)
	b.Write(seed)
	b.WriteString("\n")
	return []byte(b.String()), nil
}

// ValidRole reports whether role is agent, reviewer or broker.
func ValidRole(role string) bool {
	return role == client.RoleAgent || role == client.RoleReviewer || role == client.RoleBroker
}

// WriteKeyFile creates DIR/NAME.nk (mode 0600, never overwriting) with a new
// key for the identity and returns its public key and path.
func WriteKeyFile(dir, role, name string) (pub, path string, err error) {
	if !ValidRole(role) {
		return "", "", fmt.Errorf("auth: role must be agent, reviewer or broker, not %q", role)
	}
	if name == "" || strings.ContainsAny(name, " \t\r\n.*>/\\") || name[0] == '-' {
		return "", "", fmt.Errorf("auth: name %q must be one NATS subject token (no spaces, '.', '*', '>' or '/')", name)
	}
	kp, err := NewKey()
	if err != nil {
		return "", "", err
	}
	data, err := KeyFile(kp, role, name)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("auth: key directory: %w", err)
	}
	path = filepath.Join(dir, name+".nk")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return "", "", fmt.Errorf("auth: %s exists; not overwriting a key", path)
	}
	if err != nil {
		return "", "", fmt.Errorf("auth: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", "", fmt.Errorf("auth: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("auth: write %s: %w", path, err)
	}
	pub, _ = kp.PublicKey()
	return pub, path, nil
}

package client

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// Identity roles on the bus (broker/auth grants each its subjects).
const (
	RoleAgent    = "agent"
	RoleReviewer = "reviewer"
	RoleBroker   = "broker"
)

// InboxPrefix is the reply-inbox prefix of an identity: _INBOX.<role>.<name>.
// When the broker enforces auth, an identity may read only its own inboxes.
func InboxPrefix(role, name string) string { return "_INBOX." + role + "." + name }

// Key is an identity's nkey, as written by `airlock keys new`: a seed file
// whose comment header names the role and the name. The file is also a
// plain nkey seed file, so `nats --nkey FILE` accepts it.
type Key struct {
	Role   string
	Name   string
	Public string // U…
	kp     nkeys.KeyPair
}

// KeyPair returns the key pair (for signing reviewers' verdicts).
func (k *Key) KeyPair() nkeys.KeyPair { return k.kp }

// Sign signs b with the key (the NATS server's nonce, a verdict).
func (k *Key) Sign(b []byte) ([]byte, error) { return k.kp.Sign(b) }

// LoadKey reads a key file. It refuses a file that others may read, as ssh
// does, and a seed that is not a user nkey.
func LoadKey(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("client: key file %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	defer func() {
		for i := range data {
			data[i] = 0
		}
	}()
	return ParseKey(data)
}

// ParseKey parses a key file's contents.
func ParseKey(data []byte) (*Key, error) {
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		return nil, fmt.Errorf("client: key: no user nkey seed (SU…) found: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	k := &Key{Public: pub, kp: kp}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			continue
		}
		field, value, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(field) {
		case "role":
			k.Role = strings.TrimSpace(value)
		case "name":
			k.Name = strings.TrimSpace(value)
		}
	}
	return k, nil
}

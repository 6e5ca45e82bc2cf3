// Package auth decides who may say what on airlock's bus and proves who
// approved what.
//
// From a policy's auth: section it builds the NATS users an embedded server
// enforces (Configure) or the equivalent nats-server configuration
// (ServerConfig): an agent may publish only on airlock.submit.<itself> and
// read only its own reply inbox; a reviewer may publish verdicts and admin
// requests and read the pending queue, decisions and notifications; a broker
// may do everything. SignReview and VerifyReview bind a reviewer's verdict
// to the exact call, arguments and policy with an ed25519 nkey signature.
package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	gossh "golang.org/x/crypto/ssh"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
)

// PendingStream is the JetStream stream behind the pending queue bucket.
const PendingStream = "KV_airlock_pending"

// Permissions returns the subjects an identity of role may publish and
// subscribe to. prefix is the subject prefix (default "airlock"). A broker
// gets nil: everything.
func Permissions(prefix, role, name string) *server.Permissions {
	if prefix == "" {
		prefix = "airlock"
	}
	inbox := client.InboxPrefix(role, name) + ".>"
	switch role {
	case client.RoleAgent:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{prefix + ".submit." + name}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case client.RoleReviewer:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				prefix + ".review.*",
				prefix + ".admin.*",
				// Reading (never writing) the pending queue bucket. Found by
				// testing (security_test.go): bind (stream info), get
				// (direct get), watch (an ordered consumer: create with a
				// filter, delete when stopped), plus the consumer info and
				// flow-control replies an ordered consumer sends when it
				// resets or falls behind.
				"$JS.API.STREAM.INFO." + PendingStream,
				"$JS.API.DIRECT.GET." + PendingStream + ".>",
				"$JS.API.CONSUMER.CREATE." + PendingStream + ".>",
				"$JS.API.CONSUMER.DELETE." + PendingStream + ".*",
				"$JS.API.CONSUMER.INFO." + PendingStream + ".*",
				"$JS.FC." + PendingStream + ".>",
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{
				prefix + ".decision.*",
				prefix + ".notify.*",
				inbox,
			}},
		}
	}
	return nil // broker
}

// User is one identity as the server sees it.
type User struct {
	Role  string
	Name  string
	NKey  string
	Token string
	Perms *server.Permissions
}

// Users lists the policy's identities, agents, then reviewers, then
// brokers, each sorted by name.
func Users(pol *policy.Policy, prefix string) []User {
	if pol == nil || pol.Auth == nil {
		return nil
	}
	var out []User
	add := func(role string, ids map[string]policy.Identity) {
		names := make([]string, 0, len(ids))
		for n := range ids {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			id := ids[n]
			out = append(out, User{Role: role, Name: n, NKey: id.NKey, Token: id.Token, Perms: Permissions(prefix, role, n)})
		}
	}
	add(client.RoleAgent, pol.Auth.Agents)
	add(client.RoleReviewer, pol.Auth.Reviewers)
	add(client.RoleBroker, pol.Auth.Brokers)
	return out
}

// Enabled reports whether the policy declares identities.
func Enabled(pol *policy.Policy) bool { return pol != nil && pol.Auth != nil }

// SignaturesRequired reports whether verdicts must be signed: the policy
// names reviewers under auth:.
func SignaturesRequired(pol *policy.Policy) bool {
	return Enabled(pol) && len(pol.Auth.Reviewers) > 0
}

// Configure sets the embedded server's users from the policy: one nkey user
// per identity with an nkey, one user/password (name/token) per identity
// with a token. extraBrokers are public keys of broker identities that are
// not in the policy (the serving process's own, generated at start).
func Configure(opts *server.Options, pol *policy.Policy, prefix string, extraBrokers ...string) error {
	users := Users(pol, prefix)
	for _, pub := range extraBrokers {
		users = append(users, User{Role: client.RoleBroker, Name: "self", NKey: pub})
	}
	if len(users) == 0 {
		return fmt.Errorf("auth: the policy's auth: section declares no identities")
	}
	seenKey := map[string]string{}
	seenName := map[string]string{}
	opts.Nkeys, opts.Users = nil, nil
	for _, u := range users {
		who := u.Role + " " + u.Name
		if u.NKey != "" {
			if !nkeys.IsValidPublicUserKey(u.NKey) {
				return fmt.Errorf("auth: %s: %q is not an nkey user public key", who, u.NKey)
			}
			if prev, dup := seenKey[u.NKey]; dup {
				return fmt.Errorf("auth: %s and %s share one nkey; give each identity its own (airlock keys new)", prev, who)
			}
			seenKey[u.NKey] = who
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: u.Perms})
		}
		if u.Token != "" {
			if prev, dup := seenName[u.Name]; dup {
				return fmt.Errorf("auth: %s and %s both log in with a token as %q; token identities need distinct names", prev, who, u.Name)
			}
			seenName[u.Name] = who
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Token, Permissions: u.Perms})
		}
	}
	return nil
}

// ServerConfig returns the authorization block of a nats-server
// configuration file equivalent to Configure, for deployments that run
// their own nats-server (airlock serve --nats URL). Include it from the
// server's configuration; brokers need an identity under auth.brokers.
func ServerConfig(pol *policy.Policy) string {
	return ServerConfigPrefix(pol, "airlock")
}

// ServerConfigPrefix is ServerConfig for a subject prefix other than airlock.
func ServerConfigPrefix(pol *policy.Policy, prefix string) string {
	var b strings.Builder
	digest := ""
	if pol != nil {
		digest = pol.Digest
	}
	fmt.Fprintf(&b, "# airlock: who may say what on the bus (generated from policy %s)\n", short(digest))
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range Users(pol, prefix) {
		perms := confPerms(u.Perms)
		if u.NKey != "" {
			fmt.Fprintf(&b, "    # %s %s\n    {nkey: %s%s}\n", u.Role, u.Name, q(u.NKey), perms)
		}
		if u.Token != "" {
			fmt.Fprintf(&b, "    # %s %s (token)\n    {user: %s, password: %s%s}\n", u.Role, u.Name, q(u.Name), q(u.Token), perms)
		}
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func confPerms(p *server.Permissions) string {
	if p == nil {
		return ""
	}
	list := func(s *server.SubjectPermission) string {
		var parts []string
		for _, a := range s.Allow {
			parts = append(parts, q(a))
		}
		return "{allow: [" + strings.Join(parts, ", ") + "]}"
	}
	return ", permissions: {publish: " + list(p.Publish) + ", subscribe: " + list(p.Subscribe) + "}"
}

// q quotes a string for the nats-server configuration language, whose
// escapes are \xXX, \t, \n, \r, \" and \\ only.
func q(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// ReviewerKeys maps each reviewer's name to its nkey public key (reviewers
// with a token only are left out: they cannot sign).
func ReviewerKeys(pol *policy.Policy) map[string][]string {
	out := map[string][]string{}
	if !Enabled(pol) {
		return out
	}
	for n, id := range pol.Auth.Reviewers {
		if keys := VerdictKeys(id); len(keys) > 0 {
			out[n] = keys
		}
	}
	return out
}

// VerdictKeys returns the public keys (nkey form) a reviewer's verdicts may
// be signed with: the reviewer's nkey, and the reviewer's SSH key when it is
// an ed25519 key (the console over SSH has the reviewer's own ssh-agent
// sign through agent forwarding, so the server holds no reviewer's key; an
// ed25519 signature is the same whoever computes it).
func VerdictKeys(id policy.Identity) []string {
	var keys []string
	if id.NKey != "" {
		keys = append(keys, id.NKey)
	}
	if k, err := SSHVerdictKey(id.SSHKey); err == nil {
		keys = append(keys, k)
	}
	return keys
}

// SSHVerdictKey returns the nkey form of an ssh-ed25519 authorized key (the
// form verdicts name their key in), or an error for any other key type.
func SSHVerdictKey(authorizedKey string) (string, error) {
	if strings.TrimSpace(authorizedKey) == "" {
		return "", errors.New("auth: no ssh key")
	}
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return "", fmt.Errorf("auth: ssh key: %w", err)
	}
	cpk, ok := pk.(gossh.CryptoPublicKey)
	if !ok {
		return "", fmt.Errorf("auth: ssh key type %s cannot sign verdicts (ed25519 only)", pk.Type())
	}
	edk, ok := cpk.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return "", fmt.Errorf("auth: ssh key type %s cannot sign verdicts (ed25519 only)", pk.Type())
	}
	enc, err := nkeys.Encode(nkeys.PrefixByteUser, edk)
	if err != nil {
		return "", fmt.Errorf("auth: ssh key: %w", err)
	}
	return string(enc), nil
}

// AgentKey returns the agent's nkey public key, if it has one.
func AgentKey(pol *policy.Policy, agent string) string {
	if !Enabled(pol) {
		return ""
	}
	return pol.Auth.Agents[agent].NKey
}

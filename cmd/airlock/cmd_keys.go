package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
)

func init() {
	register(command{Name: "keys", Summary: "create identities for the bus (agent, reviewer, broker nkeys)", Run: runKeys})
}

func runKeys(ctx context.Context, e env) error {
	fs := newFlags(e, "keys", "new agent|reviewer|broker NAME [--dir DIR]\n       airlock keys nats-config --policy FILE [--prefix P]")
	dir := fs.String("dir", "airlock-keys", "directory for the key file (NAME.nk, mode 0600)")
	policyFile := fs.String("policy", "", "nats-config: the policy whose auth: section to turn into a nats-server authorization block")
	prefix := fs.String("prefix", "airlock", "nats-config: the subject prefix the brokers use")
	args, err := parseInterspersed(fs, e.Args)
	if err != nil {
		return err
	}
	if len(args) == 1 && args[0] == "nats-config" {
		return natsConfig(e, *policyFile, *prefix)
	}
	if len(args) != 3 || args[0] != "new" {
		return usageErr("keys: want `airlock keys new agent|reviewer|broker NAME [--dir DIR]` or `airlock keys nats-config --policy FILE`")
	}
	role, name := args[1], args[2]
	if !auth.ValidRole(role) {
		return usageErr("keys: role must be agent, reviewer or broker, not %q", role)
	}
	pub, path, err := auth.WriteKeyFile(*dir, role, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %s (keep it secret; mode 0600)\npublic key: %s\n\n", path, pub)
	fmt.Fprintf(e.Stdout, "add to the policy's auth: section:\n\nauth:\n  %ss:\n    %s: {nkey: %s}\n\n", role, name, pub)
	switch role {
	case client.RoleAgent:
		fmt.Fprintf(e.Stdout, "then: airlock submit --agent %s --key %s …  (or AIRLOCK_KEY=%s)\n", name, path, path)
	case client.RoleReviewer:
		fmt.Fprintf(e.Stdout, "then: airlock console --reviewer %s --key %s  (verdicts are signed with it)\n", name, path)
	case client.RoleBroker:
		fmt.Fprintf(e.Stdout, "then: airlock serve --nats URL --key %s …\n", path)
	}
	return nil
}

// natsConfig prints the authorization block a nats-server needs for the
// policy's identities (for `serve --nats URL` deployments: include it from
// every node's configuration, and reload the nodes when identities change).
func natsConfig(e env, policyFile, prefix string) error {
	if policyFile == "" {
		return usageErr("keys nats-config: --policy FILE is required")
	}
	pol, err := policy.Load(policyFile)
	if err != nil {
		return err
	}
	if pol.Auth == nil {
		return fmt.Errorf("keys nats-config: %s has no auth: section, so there are no identities to configure (see docs/security.md)", policyFile)
	}
	if len(pol.Auth.Brokers) == 0 {
		fmt.Fprintln(e.Stderr, "airlock: warning: the policy names no brokers under auth.brokers: no broker will be able to log in (airlock keys new broker NAME)")
	}
	_, err = io.WriteString(e.Stdout, auth.ServerConfigPrefix(pol, prefix))
	return err
}

// connFlags are the identity and TLS flags of every command that talks to
// a broker: --key FILE (an nkey from `airlock keys new`; default
// $AIRLOCK_KEY) and --tls-ca/--tls-cert/--tls-key.
type connFlags struct {
	key, tlsCA, tlsCert, tlsKey string
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.key, "key", os.Getenv("AIRLOCK_KEY"), "nkey file of your identity (airlock keys new …); reviewers' verdicts are signed with it")
	fs.StringVar(&c.tlsCA, "tls-ca", os.Getenv("AIRLOCK_TLS_CA"), "CA file to verify the NATS server's certificate")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate, when the server requires one")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client certificate's private key")
	return c
}

// options returns the client options for an identity of role named name
// (the flag's name, e.g. --agent or --reviewer; it may be empty when the key
// file names it). It returns the name in force.
func (c *connFlags) options(role, name string) ([]client.Option, string, *client.Key, error) {
	var opts []client.Option
	var key *client.Key
	if c.key != "" {
		k, err := client.LoadKey(c.key)
		if err != nil {
			return nil, "", nil, usageErr("%v", err)
		}
		if k.Role != "" && k.Role != role {
			return nil, "", nil, usageErr("key %s is a %s's key, not a %s's", c.key, k.Role, role)
		}
		if name == "" {
			name = k.Name
		}
		if k.Name != "" && name != "" && k.Name != name {
			return nil, "", nil, usageErr("key %s belongs to %s %s, not %s", c.key, role, k.Name, name)
		}
		if k.Role == "" || k.Name == "" {
			k.Role, k.Name = role, name
		}
		key = k
		opts = append(opts, client.WithKey(k))
	} else if name != "" {
		// Token logins (nats://NAME:TOKEN@host) still read their own inbox.
		opts = append(opts, client.WithInbox(role, name))
	}
	if c.tlsCert != "" || c.tlsKey != "" {
		if c.tlsCert == "" || c.tlsKey == "" {
			return nil, "", nil, usageErr("--tls-cert and --tls-key go together")
		}
	}
	if c.tlsCA != "" || c.tlsCert != "" {
		opts = append(opts, client.WithTLS(c.tlsCA, c.tlsCert, c.tlsKey))
	}
	if key != nil && role == client.RoleReviewer {
		kp := key.KeyPair()
		opts = append(opts, client.WithReviewSigner(func(r *airlock.Review) error {
			// Signed as sent: the broker allows ±2 minutes.
			r.Timestamp = time.Now().UTC()
			return auth.SignReview(kp, r)
		}))
	}
	return opts, name, key, nil
}

// natsOptions is options for code that dials with nats options only.
func (c *connFlags) natsOptions(role, name string) ([]nats.Option, error) {
	var out []nats.Option
	if c.key != "" {
		k, err := client.LoadKey(c.key)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		if name == "" {
			name = k.Name
		}
		out = append(out, nats.Nkey(k.Public, k.Sign))
	}
	if name != "" {
		out = append(out, nats.CustomInboxPrefix(client.InboxPrefix(role, name)))
	}
	if c.tlsCA != "" {
		out = append(out, nats.RootCAs(c.tlsCA))
	}
	if c.tlsCert != "" {
		out = append(out, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	return out, nil
}

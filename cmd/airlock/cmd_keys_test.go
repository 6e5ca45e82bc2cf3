package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
)

// secCLI runs `airlock ARGS…` in-process and returns stdout, stderr and the exit code.
func secCLI(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := exitCode(run(context.Background(), args, strings.NewReader(""), &out, &errb), &errb)
	return out.String(), errb.String(), code
}

// newKey runs `airlock keys new` and returns the key file and its public key.
func newKey(t testing.TB, dir, role, name string) (string, string) {
	t.Helper()
	out, errOut, code := secCLI(t, "keys", "new", role, name, "--dir", dir)
	if code != 0 {
		t.Fatalf("keys new %s %s: exit %d: %s", role, name, code, errOut)
	}
	path := filepath.Join(dir, name+".nk")
	k, err := client.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, k.Public) || !strings.Contains(out, name+": {nkey: "+k.Public+"}") {
		t.Fatalf("keys new output does not give the policy line with %s:\n%s", k.Public, out)
	}
	return path, k.Public
}

func TestKeysNew(t *testing.T) {
	dir := t.TempDir()
	path, pub := newKey(t, dir, "reviewer", "bob")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k, err := client.LoadKey(path)
	if err != nil || k.Role != "reviewer" || k.Name != "bob" || k.Public != pub {
		t.Fatalf("LoadKey: %+v %v", k, err)
	}
	// The printed lines are a valid policy auth: section.
	out, _, _ := secCLI(t, "keys", "new", "agent", "billing-bot", "--dir", dir)
	i := strings.Index(out, "\nauth:")
	j := strings.Index(out, "\n\nthen:")
	if i < 0 || j < i {
		t.Fatalf("no auth: block in\n%s", out)
	}
	pol, err := policy.Parse("p.yaml", []byte("version: 1\ntools:\n  x: {tier: auto}\n"+out[i:j]+"\n"))
	if err != nil {
		t.Fatalf("the printed auth: block does not parse: %v\n%s", err, out[i:j])
	}
	if pol.Auth == nil || pol.Auth.Agents["billing-bot"].NKey == "" {
		t.Fatalf("parsed auth %+v", pol.Auth)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad-role", []string{"keys", "new", "admin", "x", "--dir", dir}, 2, "role"},
		{"no-overwrite", []string{"keys", "new", "reviewer", "bob", "--dir", dir}, 1, "not overwriting"},
		{"bad-name", []string{"keys", "new", "agent", "a.b", "--dir", dir}, 1, "subject token"},
		{"missing-name", []string{"keys", "new", "agent"}, 2, "want"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := secCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("got exit %d %q, want %d mentioning %q", code, errOut, tt.code, tt.want)
			}
		})
	}
	t.Run("readable-key-refused", func(t *testing.T) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		if _, err := client.LoadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("LoadKey of a world-readable key: %v", err)
		}
	})
}

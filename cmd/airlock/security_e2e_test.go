package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/testenv"
)

const secE2EPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  search_web:  {tier: auto}
  execute_sql: {tier: approve}
  delete_record: {tier: deny}
auth:
  agents:
    a1: {nkey: %s}
  reviewers:
    bob: {nkey: %s}
`

// secKeys makes keys for agent a1 and reviewer bob (and broker b1) with
// `airlock keys new` and writes the policy naming them.
type secKeys struct {
	dir, agent, reviewer, broker, policy string
	brokerPub                            string
}

func makeSecKeys(t testing.TB, withBroker bool) secKeys {
	t.Helper()
	dir := t.TempDir()
	k := secKeys{dir: dir}
	var agentPub, revPub string
	k.agent, agentPub = newKey(t, filepath.Join(dir, "keys"), "agent", "a1")
	k.reviewer, revPub = newKey(t, filepath.Join(dir, "keys"), "reviewer", "bob")
	text := fmt.Sprintf(secE2EPolicy, agentPub, revPub)
	if withBroker {
		k.broker, k.brokerPub = newKey(t, filepath.Join(dir, "keys"), "broker", "b1")
		text += "  brokers:\n    b1: {nkey: " + k.brokerPub + "}\n"
	}
	k.policy = writePolicy(t, dir, text)
	return k
}

func decodeDecision(t testing.TB, out string) airlock.Decision {
	t.Helper()
	var d airlock.Decision
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("decision %q: %v", out, err)
	}
	return d
}

// TestServeExposure: serve refuses to listen beyond loopback without
// identities, and without TLS unless told --plaintext.
func TestServeExposure(t *testing.T) {
	k := makeSecKeys(t, false)
	open := writePolicy(t, t.TempDir(), e2ePolicy)
	tests := []struct {
		name   string
		policy string
		extra  []string
		want   string
	}{
		{"no-auth-beyond-loopback", open, nil, "not a loopback address and the policy has no auth"},
		{"auth-without-tls", k.policy, nil, "--tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--data", t.TempDir(), "--policy", tt.policy, "--listen", fmt.Sprintf("0.0.0.0:%d", freePort(t))}, tt.extra...)
			_, errOut, code := secCLI(t, args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("got exit %d %q, want 2 mentioning %q", code, errOut, tt.want)
			}
		})
	}
	if !isLoopback("127.0.0.1:4222") || !isLoopback("[::1]:4222") || !isLoopback("localhost:1") || isLoopback("0.0.0.0:4222") || isLoopback(":4222") {
		t.Fatal("isLoopback misjudges an address")
	}
}

// startAuthServe runs `airlock serve` with the auth policy and returns its URL.
func startAuthServe(t testing.TB, k secKeys, extra ...string) string {
	t.Helper()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(k.dir, "serve.log")
	args := append([]string{"serve", "--data", filepath.Join(k.dir, "data"), "--policy", k.policy, "--listen", addr}, extra...)
	startProcess(t, logPath, args...)
	waitListening(t, addr, logPath)
	return "nats://" + addr
}

// TestServeWithAuthCLI drives a broker that enforces identities with the
// CLI as agents and reviewers use it: keys, signed verdicts, refusals.
func TestServeWithAuthCLI(t *testing.T) {
	k := makeSecKeys(t, false)
	url := startAuthServe(t, k)
	authFlow(t, url, k, filepath.Join(k.dir, "data"), nil)
}

// authFlow is the CLI walk-through shared by the embedded and the
// nats-server deployments; tlsArgs are added to every client command.
func authFlow(t *testing.T, url string, k secKeys, data string, tlsArgs []string) {
	t.Helper()
	cli := func(args ...string) (string, string, int) {
		return secCLI(t, append(append(args, "--nats", url), tlsArgs...)...)
	}
	// Without a key, nobody gets on the bus.
	if _, errOut, code := cli("submit", "--agent", "a1", "--tool", "search_web", "--args", `{"q":"x"}`); code != 2 || !strings.Contains(strings.ToLower(errOut), "authorization") {
		t.Fatalf("submit without a key: exit %d %q, want 2 and an authorization error", code, errOut)
	}
	out, errOut, code := cli("submit", "--agent", "a1", "--key", k.agent, "--tool", "search_web", "--args", `{"q":"x"}`)
	if code != 0 || decodeDecision(t, out).Verdict != airlock.VerdictApproved {
		t.Fatalf("submit with the agent's key: exit %d %s %s", code, out, errOut)
	}
	if _, errOut, code := cli("submit", "--agent", "a2", "--key", k.agent, "--tool", "search_web", "--args", `{}`); code != 2 || !strings.Contains(errOut, "belongs to agent a1") {
		t.Fatalf("submit as another agent: exit %d %q", code, errOut)
	}
	// A call that waits for bob.
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		out, _, code := cli("submit", "--agent", "a1", "--key", k.agent, "--id", "held1", "--tool", "execute_sql",
			"--args", `{"query":"UPDATE accounts SET plan = 'pro' WHERE id = 7"}`, "--timeout", "60s")
		done <- result{out, code}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := cli("pending", "--key", k.reviewer, "--json")
		if code == 0 && strings.Contains(out, "held1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("held1 never listed by airlock pending: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, errOut, code := cli("review", "approve", "held1", "--key", k.agent); code != 2 || !strings.Contains(errOut, "agent's key, not a reviewer's") {
		t.Fatalf("review with an agent's key: exit %d %q", code, errOut)
	}
	if _, errOut, code := cli("review", "approve", "held1", "--reviewer", "bob"); code != 2 || !strings.Contains(strings.ToLower(errOut), "authorization") {
		t.Fatalf("review without a key: exit %d %q", code, errOut)
	}
	if out, errOut, code := cli("review", "approve", "held1", "--key", k.reviewer, "--reason", "plan change ok"); code != 0 {
		t.Fatalf("signed review: exit %d %s %s", code, out, errOut)
	}
	r := <-done
	if d := decodeDecision(t, r.out); r.code != 0 || d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:bob" {
		t.Fatalf("held call: exit %d %+v", r.code, d)
	}
	// The audit log proves bob approved exactly this.
	db, err := sql.Open("sqlite3", "file:"+audit.PathIn(data)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pol, err := policy.Load(k.policy)
	if err != nil {
		t.Fatal(err)
	}
	// (With --nats the audit log may be written by the fleet's elected
	// writer a moment later: poll.)
	for until := time.Now().Add(20 * time.Second); ; {
		n, err := auth.VerifyAuditedReviews(db, auth.ReviewerKeys(pol))
		if err != nil {
			t.Fatalf("verify signatures: %v", err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(until) {
			t.Fatalf("signed verdicts in the audit log: %d; want 1", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// On the bus, the agent's identity cannot speak for a reviewer.
	ak, err := client.LoadKey(k.agent)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	opts := []nats.Option{nats.Nkey(ak.Public, ak.Sign), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })}
	if len(tlsArgs) > 0 {
		opts = append(opts, nats.RootCAs(tlsArgs[1]))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.Publish("airlock.review.held1", []byte(`{"action":"approve","reviewer":"bob"}`))
	_, _ = nc.SubscribeSync("airlock.decision.>")
	_ = nc.Flush()
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case err := <-errs:
			got = append(got, err.Error())
		case <-timeout:
			t.Fatalf("server errors %v, want a publish and a subscription violation", got)
		}
	}
	all := strings.ToLower(strings.Join(got, " | "))
	if !strings.Contains(all, "violation for publish") || !strings.Contains(all, "violation for subscription") {
		t.Fatalf("server errors %q", all)
	}
}

// TestNATSServerWithGeneratedConfig runs a stock nats-server with the
// authorization block `airlock keys nats-config` generates from the policy
// (included from the server's file, as docs/deploy.md says), a broker that
// logs in with its own key (serve --nats --key), and the same walk-through.
func TestNATSServerWithGeneratedConfig(t *testing.T) {
	natsServer := testenv.Tool(t, "nats-server")
	k := makeSecKeys(t, true)
	pol, err := policy.Load(k.policy)
	if err != nil {
		t.Fatal(err)
	}
	var block, errb strings.Builder
	if err := run(context.Background(), []string{"keys", "nats-config", "--policy", k.policy}, nil, &block, &errb); err != nil {
		t.Fatalf("keys nats-config: %v\n%s", err, errb.String())
	}
	if block.String() != auth.ServerConfig(pol) {
		t.Fatalf("keys nats-config printed\n%s\nwant auth.ServerConfig's block", block.String())
	}
	if err := os.WriteFile(filepath.Join(k.dir, "airlock-auth.conf"), []byte(block.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf("listen: %q\njetstream {store_dir: %q}\ninclude airlock-auth.conf\n", addr, filepath.Join(k.dir, "js"))
	confPath := filepath.Join(k.dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srvLog, err := os.Create(filepath.Join(k.dir, "nats-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(natsServer, "-c", confPath)
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait(); srvLog.Close() })
	waitListening(t, addr, srvLog.Name())
	url := "nats://" + addr
	data := filepath.Join(k.dir, "data")
	logPath := filepath.Join(k.dir, "serve.log")
	startProcess(t, logPath, "serve", "--data", data, "--policy", k.policy, "--nats", url, "--key", k.broker)
	ak, _ := client.LoadKey(k.agent)
	c, err := client.Connect(url, nil, client.WithKey(ak), client.WithAttemptTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("agent connect: %v (config:\n%s)", err, conf)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d, err := c.Submit(ctx, &airlock.ToolCall{Agent: "a1", Tool: "search_web", Arguments: map[string]any{"q": "warmup"}}); err != nil || d.Verdict != airlock.VerdictApproved {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("broker on nats-server: %+v %v\n%s", d, err, b)
	}
	authFlow(t, url, k, data, nil)
}

// certs holds PEM files made for a test: a CA, a server certificate for
// 127.0.0.1 and a client certificate, all ECDSA P-256.
type certs struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func makeCerts(t testing.TB, dir string) certs {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "airlock test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sDER, sKey := leaf(2, "airlock server", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cDER, cKey := leaf(3, "airlock client", x509.ExtKeyUsageClientAuth, nil)
	return certs{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  write("server-key.pem", "EC PRIVATE KEY", keyDER(sKey)),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  write("client-key.pem", "EC PRIVATE KEY", keyDER(cKey)),
	}
}

// TestServeTLS: with --tls-cert/--tls-key/--tls-ca the embedded server
// speaks only TLS and requires client certificates signed by the CA.
func TestServeTLS(t *testing.T) {
	k := makeSecKeys(t, false)
	c := makeCerts(t, t.TempDir())
	url := startAuthServe(t, k, "--tls-cert", c.serverCert, "--tls-key", c.serverKey, "--tls-ca", c.ca)
	submit := func(extra ...string) (string, string, int) {
		args := append([]string{"submit", "--nats", url, "--agent", "a1", "--key", k.agent, "--tool", "search_web", "--args", `{"q":"tls"}`, "--timeout", "10s"}, extra...)
		return secCLI(t, args...)
	}
	tests := []struct {
		name  string
		extra []string
		code  int
		want  string
	}{
		{"ca-and-client-certificate", []string{"--tls-ca", c.ca, "--tls-cert", c.clientCert, "--tls-key", c.clientKey}, 0, ""},
		{"no-client-certificate", []string{"--tls-ca", c.ca}, 2, ""},
		{"unknown-server-ca", []string{"--tls-cert", c.clientCert, "--tls-key", c.clientKey}, 2, "certificate"},
		{"plaintext", nil, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := submit(tt.extra...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("got exit %d %q %q, want %d mentioning %q", code, out, errOut, tt.code, tt.want)
			}
			if tt.code == 0 && decodeDecision(t, out).Verdict != airlock.VerdictApproved {
				t.Fatalf("decision %s", out)
			}
		})
	}
	t.Run("walk-through-over-tls", func(t *testing.T) {
		// Client certificates for every command: reuse the flow with them.
		authFlowTLS(t, url, k, c)
	})
}

// authFlowTLS runs a signed review over TLS with client certificates.
func authFlowTLS(t *testing.T, url string, k secKeys, c certs) {
	t.Helper()
	tlsArgs := []string{"--tls-ca", c.ca, "--tls-cert", c.clientCert, "--tls-key", c.clientKey}
	done := make(chan string, 1)
	go func() {
		out, _, _ := secCLI(t, append([]string{"submit", "--nats", url, "--agent", "a1", "--key", k.agent, "--id", "tls-held", "--tool", "execute_sql",
			"--args", `{"query":"SELECT 1"}`, "--timeout", "30s"}, tlsArgs...)...)
		done <- out
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := secCLI(t, append([]string{"review", "approve", "tls-held", "--nats", url, "--key", k.reviewer}, tlsArgs...)...)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("review over TLS never succeeded: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := decodeDecision(t, <-done); d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:bob" {
		t.Fatalf("over TLS: %+v", d)
	}
}

// TestConsoleBackendSigns: the console's backend, given --key, signs the
// verdicts the TUI sends (which carry no signature), and the broker takes
// them; without the key the same verdict is refused as unsigned.
func TestConsoleBackendSigns(t *testing.T) {
	k := makeSecKeys(t, false)
	url := startAuthServe(t, k)
	ak, _ := client.LoadKey(k.agent)
	agent, err := client.Connect(url, nil, client.WithKey(ak), client.WithAttemptTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan airlock.Decision, 1)
	go func() {
		d, _ := agent.Submit(ctx, &airlock.ToolCall{ID: "con1", Agent: "a1", Tool: "execute_sql", Arguments: map[string]any{"query": "SELECT 2"}})
		done <- d
	}()
	cf := &connFlags{key: k.reviewer}
	opts, name, _, err := cf.options(client.RoleReviewer, "")
	if err != nil || name != "bob" {
		t.Fatalf("options: %q %v", name, err)
	}
	c, err := client.Connect(url, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var p *airlock.Pending
	for p == nil {
		if p, err = c.GetPending(ctx, "con1"); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("never pending: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// What tui.Model.send builds: no signature, no policy version.
	r := airlock.Review{CallID: "con1", Action: airlock.ActionApprove, Reviewer: "bob", ArgsHash: p.ArgsHash,
		Timestamp: time.Now(), Nonce: "tui-nonce-1"}
	unsigned, err := client.New(c.Conn()) // same connection, no signer
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := newConsoleBackend(unsigned, nil).Decide(ctx, r); err != nil || rep.Accepted || !strings.Contains(rep.Error, "unsigned") {
		t.Fatalf("unsigned console verdict: %+v %v", rep, err)
	}
	r.Nonce = "tui-nonce-2"
	if rep, err := newConsoleBackend(c, nil).Decide(ctx, r); err != nil || !rep.Accepted {
		t.Fatalf("signed console verdict: %+v %v", rep, err)
	}
	if d := <-done; d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:bob" {
		t.Fatalf("agent got %+v", d)
	}
}

// TestServeReloadsIdentities: on SIGHUP the embedded server takes the
// reloaded policy's identities: a new agent gets in, a removed one is out.
func TestServeReloadsIdentities(t *testing.T) {
	k := makeSecKeys(t, false)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(k.dir, "serve.log")
	cmd := startProcess(t, logPath, "serve", "--data", filepath.Join(k.dir, "data"), "--policy", k.policy, "--listen", addr)
	waitListening(t, addr, logPath)
	url := "nats://" + addr
	newAgent, newPub := newKey(t, filepath.Join(k.dir, "keys"), "agent", "a3")
	submit := func(agent, key string) int {
		_, _, code := secCLI(t, "submit", "--nats", url, "--agent", agent, "--key", key, "--tool", "search_web", "--args", `{"q":"x"}`, "--timeout", "5s")
		return code
	}
	if code := submit("a3", newAgent); code != 2 {
		t.Fatalf("an agent not yet in the policy: exit %d, want 2", code)
	}
	text, err := os.ReadFile(k.policy)
	if err != nil {
		t.Fatal(err)
	}
	ak, _ := client.LoadKey(k.agent)
	updated := strings.Replace(string(text), "    a1: {nkey: "+ak.Public+"}\n", "    a3: {nkey: "+newPub+"}\n", 1)
	if updated == string(text) {
		t.Fatal("policy not rewritten")
	}
	if err := os.WriteFile(k.policy, []byte(updated), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := time.Now().Add(20 * time.Second)
	for b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "auth on"); b, _ = os.ReadFile(logPath) {
		if time.Now().After(ready) {
			t.Fatalf("serve never said it started: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for submit("a3", newAgent) != 0 {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("the new agent never got in after SIGHUP:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := submit("a1", k.agent); code != 2 {
		t.Fatalf("the removed agent: exit %d, want 2", code)
	}
}

package sshconsole_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock/airlock/internal/brokertest"

	"github.com/charmbracelet/x/ansi"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/sshconsole"
	"github.com/airlock/airlock/tui"
)

const sshPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 2m}
tools:
  Bash: {tier: approve}
`

// clientBackend is the console's Backend over the Go client, as
// `airlock console` wires it.
type clientBackend struct{ c *client.Client }

func (b clientBackend) Events(ctx context.Context) <-chan tui.Event {
	out := make(chan tui.Event, 64)
	go func() {
		defer close(out)
		for ev := range b.c.WatchPending(ctx) {
			var te tui.Event
			switch {
			case ev.Snapshot != nil || (ev.Connection != nil && *ev.Connection):
				te = tui.Event{Kind: tui.EventSnapshot, Pendings: append([]airlock.Pending{}, ev.Snapshot...)}
			case ev.Connection != nil:
				te = tui.Event{Kind: tui.EventConnection, Err: ev.Err}
			case ev.Added != nil:
				te = tui.Event{Kind: tui.EventAdded, Pending: ev.Added}
			case ev.Removed != "":
				te = tui.Event{Kind: tui.EventRemoved, CallID: ev.Removed}
			default:
				continue
			}
			select {
			case out <- te:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (b clientBackend) Decide(ctx context.Context, r airlock.Review) (airlock.ReviewReply, error) {
	return b.c.Review(ctx, r)
}

func (b clientBackend) Recent(ctx context.Context, session string, n int) ([]airlock.DecisionRecord, error) {
	return b.c.Recent(ctx, session, n)
}

func newKey(t *testing.T) (gossh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey()))) + " bob@laptop"
}

// screen collects a session's output.
type screen struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansi.Strip(s.buf.String())
}

func startConsole(t *testing.T, h *brokertest.Broker, reviewers map[string]string) (string, <-chan string) {
	t.Helper()
	sessions := make(chan string, 4)
	srv, err := sshconsole.New(sshconsole.Config{
		HostKeyPath: filepath.Join(t.TempDir(), "host_ed25519"),
		Reviewers:   reviewers,
		NewReviewerBackend: func(reviewer string, signer *sshconsole.VerdictSigner) tui.Backend {
			sessions <- reviewer
			if signer == nil {
				return clientBackend{h.Client}
			}
			// As airlock console --ssh wires it: verdicts signed by the
			// reviewer's forwarded agent.
			c, err := client.New(h.NC, client.WithReviewSigner(signer.SignReview))
			if err != nil {
				t.Error(err)
				return nil
			}
			return clientBackend{c}
		},
		Options: tui.Options{Review: policy.Review{GraceMS: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), sessions
}

// openConsole opens a console session on c (a terminal, a shell; with
// forward, the client's agent forwarded) and returns its input and screen.
func openConsole(t *testing.T, c *gossh.Client, forward bool) (io.Writer, *screen) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	if forward {
		if err := agent.RequestAgentForwarding(sess); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.RequestPty("xterm-256color", 40, 120, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	scr := &screen{}
	sess.Stdout = scr
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	return stdin, scr
}

func dial(addr string, signer gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            "bob",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
}

func TestApproveOverSSH(t *testing.T) {
	h := brokertest.Start(t, sshPolicy)
	signer, authorized := newKey(t)
	addr, sessions := startConsole(t, h, map[string]string{authorized: "bob"})

	decided := make(chan airlock.Decision, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d, err := h.Client.Submit(ctx, &airlock.ToolCall{ID: "ssh-call-1", Agent: "builder", User: "alice", Tool: "Bash",
			Arguments: map[string]any{"command": "make deploy-staging"}})
		if err != nil {
			d.Reason = err.Error()
		}
		decided <- d
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p, err := h.Client.GetPending(context.Background(), "ssh-call-1"); err == nil && p != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call never became pending")
		}
		time.Sleep(20 * time.Millisecond)
	}

	c, err := dial(addr, signer)
	if err != nil {
		t.Fatalf("ssh with the reviewer's key: %v", err)
	}
	defer c.Close()
	stdin, scr := openConsole(t, c, false)
	if got := <-sessions; got != "bob" {
		t.Fatalf("the backend was made for %q, want bob", got)
	}
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(scr.text(), "make deploy-staging") || !strings.Contains(scr.text(), "Bash") {
		if time.Now().After(deadline) {
			t.Fatalf("the queue never showed the call; screen:\n%s", scr.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(scr.text(), "bob") {
		t.Errorf("the status bar does not name the reviewer bob; screen:\n%s", scr.text())
	}
	if _, err := io.WriteString(stdin, "a"); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-decided:
		if d.Verdict != airlock.VerdictApproved || d.DecidedBy != "reviewer:bob" {
			t.Fatalf("got %+v, want approved by reviewer:bob", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no decision after pressing a; screen:\n%s", scr.text())
	}
	_, _ = io.WriteString(stdin, "q")
}

// TestSignedVerdictThroughForwardedAgent: with a policy that requires
// signed verdicts and bob's ed25519 SSH key as his only key, bob approves
// over SSH with his agent forwarded (ssh -A): the agent signs, the broker
// accepts the verdict, and the audit log proves bob's key approved, while
// the server never held a key of bob's. Without the agent, the same
// keystroke is refused as unsigned.
func TestSignedVerdictThroughForwardedAgent(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	authorized := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	pol := sshPolicy + "auth:\n  reviewers:\n    bob: {ssh_key: \"" + authorized + "\"}\n"
	h := brokertest.Start(t, pol)
	addr, _ := startConsole(t, h, map[string]string{authorized: "bob"})

	for _, tt := range []struct {
		name    string
		forward bool
		want    airlock.Verdict
	}{
		{"agent-signed-accepted", true, airlock.VerdictApproved},
		{"without-agent-refused", false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := "ssh-signed-" + tt.name
			decided := make(chan airlock.Decision, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				defer cancel()
				d, _ := h.Client.Submit(ctx, &airlock.ToolCall{ID: id, Agent: "builder", User: "alice", Tool: "Bash",
					Arguments: map[string]any{"command": "make " + tt.name}})
				decided <- d
			}()
			h.WaitPendingID(t, id)

			c, err := dial(addr, signer)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.forward {
				keyring := agent.NewKeyring()
				if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
					t.Fatal(err)
				}
				if err := agent.ForwardToAgent(c, keyring); err != nil {
					t.Fatal(err)
				}
			}
			stdin, scr := openConsole(t, c, tt.forward)
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(scr.text(), "make "+tt.name) {
				if time.Now().After(deadline) {
					t.Fatalf("the queue never showed the call; screen:\n%s", scr.text())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := io.WriteString(stdin, "a"); err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				deadline = time.Now().Add(20 * time.Second)
				for !strings.Contains(scr.text(), "unsigned") {
					if time.Now().After(deadline) {
						t.Fatalf("an unsigned approval was not refused on screen:\n%s", scr.text())
					}
					time.Sleep(20 * time.Millisecond)
				}
				if p, err := h.Client.GetPending(context.Background(), id); err != nil || p == nil {
					t.Fatalf("the call no longer waits after a refused verdict: %v", err)
				}
				_, _ = io.WriteString(stdin, "q")
				return
			}
			select {
			case d := <-decided:
				if d.Verdict != tt.want || d.DecidedBy != "reviewer:bob" {
					t.Fatalf("got %+v, want approved by reviewer:bob", d)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no decision after pressing a; screen:\n%s", scr.text())
			}
			n, err := auth.VerifyAuditedReviews(dbOf(t, h), auth.ReviewerKeys(h.B.Policy()))
			if err != nil || n != 1 {
				t.Fatalf("audit verify --signatures: %d checked, %v; want bob's one verdict", n, err)
			}
			_, _ = io.WriteString(stdin, "q")
		})
	}
}

// dbOf opens the broker's audit log read-only.
func dbOf(t *testing.T, h *brokertest.Broker) *sql.DB {
	t.Helper()
	r, err := audit.OpenReadOnly(audit.PathIn(h.Dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r.DB()
}

func TestUnknownKeyRefused(t *testing.T) {
	h := brokertest.Start(t, sshPolicy)
	_, authorized := newKey(t)
	addr, sessions := startConsole(t, h, map[string]string{authorized: "bob"})
	stranger, _ := newKey(t)
	c, err := dial(addr, stranger)
	if err == nil {
		c.Close()
		t.Fatal("an unknown key was let in")
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("got %v, want an authentication failure", err)
	}
	select {
	case r := <-sessions:
		t.Fatalf("a console session started for %q", r)
	default:
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	nb := func() tui.Backend { return nil }
	tests := []struct {
		name string
		cfg  sshconsole.Config
		want string
	}{
		{"no-reviewers", sshconsole.Config{HostKeyPath: "k", NewBackend: nb}, "no reviewer keys"},
		{"bad-key", sshconsole.Config{HostKeyPath: "k", NewBackend: nb, Reviewers: map[string]string{"ssh-ed25519 nonsense": "bob"}}, "reviewer bob"},
		{"no-backend", sshconsole.Config{HostKeyPath: "k", Reviewers: map[string]string{"x": "bob"}}, "backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sshconsole.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestReviewersFromPolicy(t *testing.T) {
	_, k := newKey(t)
	got := sshconsole.ReviewersFromPolicy(&policy.Auth{Reviewers: map[string]policy.Identity{
		"bob": {SSHKey: k}, "carol": {NKey: "UABC"},
	}})
	if len(got) != 1 || got[k] != "bob" {
		t.Fatalf("got %v, want bob's key only", got)
	}
}

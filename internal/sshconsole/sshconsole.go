// Package sshconsole serves the reviewer console over SSH (charm's wish), so
// a reviewer can decide waiting calls from any device with an SSH client.
//
// Reviewers are identified by their SSH public keys: each authorized key maps
// to a reviewer name (the policy's auth.reviewers.<name>.ssh_key), and every
// verdict sent from a session carries that name. Only public-key
// authentication is offered; an unknown key is refused before a session
// starts. Each session runs its own console on its own backend.
package sshconsole

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	bm "charm.land/wish/v2/bubbletea"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/tui"
)

// Config configures a console server.
type Config struct {
	// Addr is HOST:PORT to listen on (ListenAndServe).
	Addr string
	// HostKeyPath is the server's private host key; an ed25519 key is
	// generated there when the file does not exist.
	HostKeyPath string
	// Reviewers maps an authorized key (authorized_keys format: "ssh-ed25519
	// AAAA… comment") to the reviewer name it authenticates.
	Reviewers map[string]string
	// NewBackend returns the backend for one session. One of NewBackend and
	// NewReviewerBackend is required.
	NewBackend func() tui.Backend
	// NewReviewerBackend, when set, is used instead of NewBackend and gets
	// the session's reviewer name and, when the reviewer's SSH client
	// forwards its agent (ssh -A) and logged in with an ed25519 key, a
	// signer that has that agent sign verdicts with the reviewer's own key
	// (nil otherwise): policies with an auth: section require signed
	// verdicts, and the server then holds no reviewer's key.
	NewReviewerBackend func(reviewer string, signer *VerdictSigner) tui.Backend
	// Options are the console options; Reviewer is set per session from
	// the key, and EditExternal is cleared (an editor would open on the
	// server, not the reviewer's screen).
	Options tui.Options
	// IdleTimeout closes sessions without input or output for this long
	// (default 30m).
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// Server is a console SSH server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	keys map[string]string // marshalled public key → reviewer
	srv  *ssh.Server
}

type ctxKey struct{}

// New prepares a server; it parses every reviewer key and fails on a bad one.
func New(cfg Config) (*Server, error) {
	if cfg.NewBackend == nil && cfg.NewReviewerBackend == nil {
		return nil, errors.New("sshconsole: a backend constructor is required")
	}
	if cfg.HostKeyPath == "" {
		return nil, errors.New("sshconsole: a host key path is required")
	}
	if len(cfg.Reviewers) == 0 {
		return nil, errors.New("sshconsole: no reviewer keys: nobody could log in (set auth.reviewers.<name>.ssh_key in the policy)")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("subsystem", "sshconsole"), keys: map[string]string{}}
	for k, name := range cfg.Reviewers {
		pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("sshconsole: reviewer %s: ssh key %q: %w", name, clip(k), err)
		}
		if name == "" {
			return nil, fmt.Errorf("sshconsole: ssh key %q has no reviewer name", clip(k))
		}
		s.keys[string(pk.Marshal())] = name
	}
	srv, err := wish.NewServer(
		wish.WithAddress(cfg.Addr),
		wish.WithHostKeyPath(cfg.HostKeyPath),
		wish.WithPublicKeyAuth(s.authorize),
		wish.WithIdleTimeout(cfg.IdleTimeout),
		wish.WithMiddleware(bm.MiddlewareWithProgramHandler(s.program)),
	)
	if err != nil {
		return nil, fmt.Errorf("sshconsole: %w", err)
	}
	s.srv = srv
	return s, nil
}

// Reviewer returns the reviewer a public key authenticates, if any.
func (s *Server) Reviewer(key gossh.PublicKey) (string, bool) {
	name, ok := s.keys[string(key.Marshal())]
	return name, ok
}

func (s *Server) authorize(ctx ssh.Context, key ssh.PublicKey) bool {
	name, ok := s.Reviewer(key)
	if !ok {
		s.log.Warn("refused unknown key", "remote", ctx.RemoteAddr(), "user", ctx.User(), "key", gossh.FingerprintSHA256(key))
		return false
	}
	ctx.SetValue(ctxKey{}, name)
	return true
}

// program builds one session's console. The bubbletea middleware wires the
// session's terminal and window changes; this pumps broker events in.
func (s *Server) program(sess ssh.Session) *tea.Program {
	name, _ := sess.Context().Value(ctxKey{}).(string)
	if name == "" {
		wish.Fatalln(sess, "airlock: unknown reviewer")
		return nil
	}
	if _, _, ok := sess.Pty(); !ok {
		wish.Fatalln(sess, "airlock: the console needs a terminal (ssh -t)")
		return nil
	}
	opts := s.cfg.Options
	opts.Reviewer = name
	opts.EditExternal = nil
	var b tui.Backend
	if s.cfg.NewReviewerBackend != nil {
		signer := agentSigner(sess)
		if signer != nil {
			s.log.Info("verdicts signed by the reviewer's forwarded ssh-agent", "reviewer", name, "key", signer.PublicKey)
		}
		b = s.cfg.NewReviewerBackend(name, signer)
	} else {
		b = s.cfg.NewBackend()
	}
	if b == nil {
		wish.Fatalln(sess, "airlock: no console backend for reviewer "+name)
		return nil
	}
	ctx := sess.Context()
	p := tea.NewProgram(tui.New(b, opts), append(bm.MakeOptions(sess), tea.WithContext(ctx))...)
	go func() {
		for ev := range b.Events(ctx) {
			p.Send(ev)
		}
	}()
	s.log.Info("reviewer connected", "reviewer", name, "remote", sess.RemoteAddr())
	return p
}

// VerdictSigner signs verdicts with a key the server does not hold: the
// reviewer's ssh-agent, reached through the session's agent forwarding.
type VerdictSigner struct {
	// PublicKey is the key in nkey form (auth.SSHVerdictKey), the form a
	// verdict names its key in.
	PublicKey string
	key       gossh.PublicKey
	conn      gossh.Conn
}

// Sign has the reviewer's agent sign payload; it returns the raw ed25519
// signature. Each call opens its own agent channel to the client.
func (v *VerdictSigner) Sign(payload []byte) ([]byte, error) {
	ch, reqs, err := v.conn.OpenChannel(agentChannel, nil)
	if err != nil {
		return nil, fmt.Errorf("sshconsole: reach the reviewer's ssh-agent: %w", err)
	}
	go gossh.DiscardRequests(reqs)
	defer ch.Close()
	sig, err := agent.NewClient(ch).Sign(v.key, payload)
	if err != nil {
		return nil, fmt.Errorf("sshconsole: the reviewer's ssh-agent did not sign: %w", err)
	}
	if sig.Format != gossh.KeyAlgoED25519 {
		return nil, fmt.Errorf("sshconsole: the reviewer's ssh-agent signed with %s, want %s", sig.Format, gossh.KeyAlgoED25519)
	}
	return sig.Blob, nil
}

// SignReview signs a verdict with the reviewer's key through their agent
// (for client.WithReviewSigner).
func (v *VerdictSigner) SignReview(r *airlock.Review) error {
	return auth.SignReviewWith(v.PublicKey, v.Sign, r)
}

// agentChannel is the channel type OpenSSH opens to a forwarded agent.
const agentChannel = "auth-agent@openssh.com"

// agentSigner returns a signer over the session's forwarded agent for the
// ed25519 key the reviewer logged in with, or nil when the client forwards
// no agent or logged in with another key type.
func agentSigner(sess ssh.Session) *VerdictSigner {
	if !ssh.AgentRequested(sess) {
		return nil
	}
	key := sess.PublicKey()
	conn, ok := sess.Context().Value(ssh.ContextKeyConn).(gossh.Conn)
	if key == nil || !ok || key.Type() != gossh.KeyAlgoED25519 {
		return nil
	}
	pub, err := auth.SSHVerdictKey(string(gossh.MarshalAuthorizedKey(key)))
	if err != nil {
		return nil
	}
	return &VerdictSigner{PublicKey: pub, key: key, conn: conn}
}

// Serve accepts SSH connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, ssh.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("sshconsole: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(sctx); err != nil {
			_ = s.srv.Close()
		}
		return nil
	}
}

// ListenAndServe listens on Config.Addr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sshconsole: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves the console over SSH on addr until ctx ends: the one-call
// form of New and ListenAndServe.
func Serve(ctx context.Context, addr, hostKeyPath string, reviewers map[string]string, newBackend func() tui.Backend, opts tui.Options) error {
	s, err := New(Config{Addr: addr, HostKeyPath: hostKeyPath, Reviewers: reviewers, NewBackend: newBackend, Options: opts, Logger: opts.Logger})
	if err != nil {
		return err
	}
	return s.ListenAndServe(ctx)
}

// ReviewersFromPolicy returns the authorized-key → reviewer map declared in
// the policy's auth section (auth.reviewers.<name>.ssh_key).
func ReviewersFromPolicy(a *policy.Auth) map[string]string {
	out := map[string]string{}
	if a == nil {
		return out
	}
	for name, id := range a.Reviewers {
		if k := strings.TrimSpace(id.SSHKey); k != "" {
			out[k] = name
		}
	}
	return out
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

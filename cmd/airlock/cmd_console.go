package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/sshconsole"
	"github.com/airlock/airlock/tui"
)

func init() {
	register(command{Name: "console", Summary: "the reviewer console (terminal UI)", Run: runConsole})
}

func runConsole(ctx context.Context, e env) error {
	fs := newFlags(e, "console", "[--nats URL] --reviewer NAME [--key FILE] [--policy FILE]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL of the broker")
	reviewer := fs.String("reviewer", reviewerDefault(), "your reviewer name")
	policyFile := fs.String("policy", os.Getenv("AIRLOCK_POLICY"), "policy file, for the review settings (dwell, batching, rate guard)")
	logFile := fs.String("log", filepath.Join(os.TempDir(), "airlock-console.log"), "log file (the console never logs to the screen)")
	sshAddr := fs.String("ssh", "", "serve the console over SSH on HOST:PORT instead (reviewers are named by their SSH keys in the policy's auth: section; needs --policy)")
	hostKey := fs.String("host-key", "", "with --ssh: the server's host key file (created when missing; default DATA/ssh_host_ed25519)")
	keysDir := fs.String("keys-dir", "", "with --ssh: directory of reviewers' nkey files NAME.nk, to sign each reviewer's verdicts")
	cf := addConnFlags(fs)
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	if *sshAddr != "" {
		return runConsoleSSH(ctx, e, sshConsoleConfig{addr: *sshAddr, hostKey: *hostKey, keysDir: *keysDir,
			natsURL: *natsURL, policyFile: *policyFile, logFile: *logFile, conn: cf})
	}
	copts, name, _, err := cf.options(client.RoleReviewer, *reviewer)
	if err != nil {
		return err
	}
	*reviewer = name
	if *reviewer == "" {
		return usageErr("console: --reviewer NAME is required")
	}
	var review policy.Review
	if *policyFile != "" {
		p, err := policy.Load(*policyFile)
		if err != nil {
			return err
		}
		review = p.Review
	}
	logger, closeLog, err := openLogger(*logFile, e.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	c, err := client.Connect(*natsURL, nil, copts...)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	defer c.Close()
	if *policyFile == "" {
		// Follow the review settings of the policy the broker enforces.
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if r, err := c.ReviewSettings(sctx); err == nil {
			review = r
		} else {
			logger.Warn("review settings from the broker", "err", err)
		}
		cancel()
	}
	opts := consoleOptions(*reviewer, review)
	opts.Logger = logger.With("subsystem", "console")
	return tui.Run(ctx, newConsoleBackend(c, logger), opts)
}

func reviewerDefault() string {
	if r := os.Getenv("AIRLOCK_REVIEWER"); r != "" {
		return r
	}
	return ""
}

func consoleOptions(reviewer string, review policy.Review) tui.Options {
	return tui.Options{
		Reviewer:     reviewer,
		Review:       review,
		EditExternal: editExternal,
	}
}

// editExternal opens the arguments in $EDITOR (or vi) and returns the edited text.
func editExternal(ctx context.Context, doc []byte) ([]byte, error) {
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	f, err := os.CreateTemp("", "airlock-edit-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(doc); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	cmd := exec.CommandContext(ctx, "sh", "-c", editor+` "$1"`, "editor", f.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("console: editor %s: %w", editor, err)
	}
	b, err := os.ReadFile(f.Name())
	return bytes.TrimSpace(b), err
}

// consoleBackend adapts the NATS client to the console's Backend.
type consoleBackend struct {
	c   *client.Client
	log *slog.Logger
}

func newConsoleBackend(c *client.Client, log *slog.Logger) *consoleBackend {
	return &consoleBackend{c: c, log: log}
}

func (b *consoleBackend) Events(ctx context.Context) <-chan tui.Event {
	out := make(chan tui.Event, 256)
	pend := b.c.WatchPending(ctx)
	dec, err := b.c.WatchDecisions(ctx)
	if err != nil {
		b.log.Error("watch decisions", "err", err)
	}
	go func() {
		defer close(out)
		send := func(ev tui.Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-pend:
				if !ok {
					return
				}
				switch {
				case ev.Snapshot != nil || (ev.Connection != nil && *ev.Connection):
					if ev.Connection != nil && !send(tui.Event{Kind: tui.EventConnection, Connected: true}) {
						return
					}
					if !send(tui.Event{Kind: tui.EventSnapshot, Pendings: nonNil(ev.Snapshot)}) {
						return
					}
				case ev.Connection != nil:
					if !send(tui.Event{Kind: tui.EventConnection, Connected: false, Err: ev.Err}) {
						return
					}
				case ev.Added != nil:
					if !send(tui.Event{Kind: tui.EventAdded, Pending: ev.Added}) {
						return
					}
				case ev.Removed != "":
					// Say who decided, so a reviewer looking at the call learns it.
					dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
					d, _ := b.c.Decision(dctx, ev.Removed)
					cancel()
					if !send(tui.Event{Kind: tui.EventRemoved, CallID: ev.Removed, Decision: d}) {
						return
					}
				}
			case d, ok := <-dec:
				if !ok {
					dec = nil
					continue
				}
				if d.Record == nil && d.Decision.Tier == airlock.TierNotify && d.Decision.Verdict == airlock.VerdictApproved {
					continue // the notify message with the whole call follows
				}
				ev := tui.Event{Kind: tui.EventFeed, CallID: d.Decision.CallID, Decision: &d.Decision}
				if d.Record != nil {
					c := d.Record.Call
					ev.Call = &c
				} else {
					ev.Call = &airlock.ToolCall{ID: d.Decision.CallID, Agent: d.Agent, Tool: d.Tool}
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return out
}

func nonNil(ps []airlock.Pending) []airlock.Pending {
	if ps == nil {
		return []airlock.Pending{}
	}
	return ps
}

func (b *consoleBackend) Decide(ctx context.Context, r airlock.Review) (airlock.ReviewReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return b.c.Review(ctx, r)
}

func (b *consoleBackend) Recent(ctx context.Context, session string, n int) ([]airlock.DecisionRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return b.c.Recent(ctx, session, n)
}

type sshConsoleConfig struct {
	addr, hostKey, keysDir, natsURL, policyFile, logFile string
	conn                                                 *connFlags
}

// runConsoleSSH serves the console over SSH: each reviewer connects with
// the SSH key the policy maps to their name. When the policy requires
// signed verdicts, a reviewer who forwards their agent (ssh -A) with an
// ed25519 key signs with it, and the server holds no key of theirs;
// otherwise their nkey from --keys-dir signs.
func runConsoleSSH(ctx context.Context, e env, c sshConsoleConfig) error {
	if c.policyFile == "" {
		return usageErr("console --ssh: --policy FILE is required (reviewers' SSH keys come from its auth: section)")
	}
	pol, err := policy.Load(c.policyFile)
	if err != nil {
		return err
	}
	reviewers := sshconsole.ReviewersFromPolicy(pol.Auth)
	if len(reviewers) == 0 {
		return usageErr("console --ssh: no reviewer in the policy's auth: section has an ssh_key")
	}
	if c.hostKey == "" {
		c.hostKey = filepath.Join(dataDefault(), "ssh_host_ed25519")
	}
	if err := os.MkdirAll(filepath.Dir(c.hostKey), 0o700); err != nil {
		return err
	}
	logger, closeLog, err := openLogger(c.logFile, e.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	sharedOpts, _, _, err := c.conn.options(client.RoleReviewer, "")
	if err != nil {
		return err
	}
	shared, err := client.Connect(c.natsURL, nil, sharedOpts...)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	defer shared.Close()
	newBackend := func(name string, signer *sshconsole.VerdictSigner) tui.Backend {
		if signer != nil {
			// The reviewer's own key signs, through their forwarded agent.
			rc, err := client.New(shared.Conn(), client.WithReviewSigner(signer.SignReview))
			if err == nil {
				return newConsoleBackend(rc, logger)
			}
			logger.Error("ssh console: agent-signing client", "reviewer", name, "err", err)
		}
		if c.keysDir != "" {
			kf := filepath.Join(c.keysDir, name+".nk")
			if _, err := os.Stat(kf); err == nil {
				cf := *c.conn
				cf.key = kf
				if opts, _, _, err := cf.options(client.RoleReviewer, name); err == nil {
					if rc, err := client.Connect(c.natsURL, nil, opts...); err == nil {
						go func() { <-ctx.Done(); rc.Close() }()
						return newConsoleBackend(rc, logger)
					} else {
						logger.Error("ssh console: reviewer connection", "reviewer", name, "err", err)
					}
				}
			}
		}
		return newConsoleBackend(shared, logger)
	}
	opts := consoleOptions("", pol.Review)
	opts.Logger = logger.With("subsystem", "console")
	srv, err := sshconsole.New(sshconsole.Config{Addr: c.addr, HostKeyPath: c.hostKey, Reviewers: reviewers,
		NewReviewerBackend: newBackend, Options: opts, Logger: logger.With("subsystem", "ssh")})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "airlock console: serving over SSH on %s for %d reviewer key(s)\n", c.addr, len(reviewers))
	return srv.ListenAndServe(ctx)
}

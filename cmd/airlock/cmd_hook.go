package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/claudehook"
)

func init() {
	register(command{Name: "hook", Summary: "Claude Code / Codex permission hook (PreToolUse, PermissionRequest)", Run: runHook})
}

const hookUsage = `claude-code|codex [--nats URL] [--agent NAME] [--user U] [--org O] [--timeout D] [--on-timeout deny|ask] [--on-unreachable deny|ask]

Reads the hook's JSON on stdin, submits the tool call to airlock, waits for
the decision and prints the hookSpecificOutput JSON on stdout (exit 0).
A timeout or an unreachable broker answers deny (or ask, if configured).
Malformed input exits 2, which Claude Code and Codex treat as a block.`

// hookConfig is `airlock hook`'s configuration.
type hookConfig struct {
	Kind          string
	NATS          string
	Prefix        string
	Agent         string
	User          string
	Org           string
	Client        claudehook.Client
	Timeout       time.Duration
	Connect       time.Duration
	Fallbacks     claudehook.Fallbacks
	onTimeout     string
	onUnreachable string
	client        string
}

func (c *hookConfig) Validate() error {
	switch c.Kind {
	case "claude-code", "claude":
	case "codex":
		if c.client == "" || c.client == "auto" {
			c.client = "codex"
		}
	default:
		return usageErr("hook: unknown hook %q (use claude-code or codex)", c.Kind)
	}
	var err error
	if c.Client, err = claudehook.ParseClient(c.client); err != nil {
		return usageErr("hook: --client: %v", err)
	}
	if c.Fallbacks.OnTimeout, err = claudehook.ParseBehavior(c.onTimeout); err != nil {
		return usageErr("hook: --on-timeout: %v", err)
	}
	if c.Fallbacks.OnUnreachable, err = claudehook.ParseBehavior(c.onUnreachable); err != nil {
		return usageErr("hook: --on-unreachable: %v", err)
	}
	if c.Timeout <= 0 {
		return usageErr("hook: --timeout must be positive")
	}
	if c.Agent != "" && claudehook.SanitizeName(c.Agent) != c.Agent {
		return usageErr("hook: --agent %q: use letters, digits and _ . : @ + -", c.Agent)
	}
	return nil
}

func runHook(ctx context.Context, e env) error {
	var c hookConfig
	fs := newFlags(e, "hook", hookUsage)
	fs.StringVar(&c.NATS, "nats", natsURLDefault(), "NATS URL of the broker")
	fs.StringVar(&c.Prefix, "prefix", "airlock", "subject prefix")
	fs.StringVar(&c.Agent, "agent", os.Getenv("AIRLOCK_AGENT"), "agent name (default $AIRLOCK_AGENT, else claude-code or codex)")
	fs.StringVar(&c.User, "user", os.Getenv("USER"), "user on whose behalf the agent acts")
	fs.StringVar(&c.Org, "org", os.Getenv("AIRLOCK_ORG"), "organisation")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "how long to wait for a decision (keep it below the hook timeout in settings.json)")
	fs.DurationVar(&c.Connect, "connect-timeout", 3*time.Second, "how long an unreachable broker may stay silent before the fallback applies")
	fs.StringVar(&c.onTimeout, "on-timeout", "deny", "answer when no decision comes in time: deny or ask")
	fs.StringVar(&c.onUnreachable, "on-unreachable", "deny", "answer when the broker cannot be reached: deny or ask")
	fs.StringVar(&c.client, "client", "auto", "answer format: auto (Codex sends turn_id), claude or codex")
	conn := addConnFlags(fs)
	if len(e.Args) > 0 && !strings.HasPrefix(e.Args[0], "-") {
		c.Kind, e.Args = e.Args[0], e.Args[1:]
	}
	pos, err := parseInterspersed(fs, e.Args)
	if err != nil {
		return err
	}
	if c.Kind == "" && len(pos) > 0 {
		c.Kind, pos = pos[0], pos[1:]
	}
	if c.Kind == "" {
		return usageErr("hook: which hook? usage: airlock hook %s", strings.SplitN(hookUsage, "\n", 2)[0])
	}
	if len(pos) > 0 {
		return usageErr("hook: unexpected argument %q", pos[0])
	}
	if err := c.Validate(); err != nil {
		return err
	}
	in, err := claudehook.Decode(e.Stdin)
	if err != nil {
		return usageErr("hook: %v", err)
	}
	flavor := c.Client.Resolve(in)
	if c.Agent == "" {
		c.Agent = "claude-code"
		if flavor == claudehook.ClientCodex {
			c.Agent = "codex"
		}
	}
	copts, agent, _, err := conn.options(client.RoleAgent, c.Agent)
	if err != nil {
		return err
	}
	c.Agent = agent
	call := claudehook.Call(in, claudehook.Identity{Agent: c.Agent, User: c.User, Org: c.Org})
	var out claudehook.Outcome
	cl, err := client.Connect(c.NATS, []nats.Option{nats.Timeout(c.Connect), nats.Name("airlock hook " + c.Kind)}, copts...)
	if err != nil {
		out = claudehook.Unreachable(c.Fallbacks, err)
	} else {
		defer cl.Close()
		dctx, cancel := context.WithTimeout(ctx, c.Timeout)
		defer cancel()
		sub := &claudehook.NATSSubmitter{Conn: cl.Conn(), Prefix: c.Prefix, NoBrokerAfter: c.Connect}
		out = claudehook.Decide(dctx, sub, call, c.Fallbacks)
	}
	if out.Behavior != claudehook.Allow {
		fmt.Fprintln(e.Stderr, out.Reason)
	}
	_, err = e.Stdout.Write(claudehook.Encode(in.HookEventName, flavor, out))
	return err
}

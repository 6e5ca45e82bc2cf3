package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
)

func init() {
	register(command{Name: "submit", Summary: "submit a tool call as an agent and print the decision", Run: runSubmit})
}

func runSubmit(ctx context.Context, e env) error {
	fs := newFlags(e, "submit", "--agent A --tool T --args JSON [--user U --org O --session S] [--wait] [--key FILE]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL of the broker")
	id := fs.String("id", "", "call id (idempotency key; default: a new ULID)")
	agent := fs.String("agent", os.Getenv("AIRLOCK_AGENT"), "agent name")
	tool := fs.String("tool", "", "tool name")
	args := fs.String("args", "{}", "arguments as a JSON object ('-' reads stdin)")
	user := fs.String("user", os.Getenv("USER"), "user on whose behalf the agent acts")
	org := fs.String("org", "", "organisation")
	session := fs.String("session", "", "session id")
	reason := fs.String("reason", "", "why the agent makes the call (context.reason)")
	inTok := fs.Int64("input-tokens", 0, "input tokens of the model call behind this tool call")
	outTok := fs.Int64("output-tokens", 0, "output tokens")
	cost := fs.Float64("cost", 0, "cost in USD")
	wait := fs.Bool("wait", false, "wait as long as it takes for a reviewer (default: give up after --timeout)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for a decision without --wait")
	cf := addConnFlags(fs)
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	copts, name, _, err := cf.options(client.RoleAgent, *agent)
	if err != nil {
		return err
	}
	*agent = name
	if *agent == "" || *tool == "" {
		return usageErr("submit: --agent and --tool are required")
	}
	raw := []byte(*args)
	if *args == "-" {
		b, err := io.ReadAll(io.LimitReader(e.Stdin, 16<<20))
		if err != nil {
			return usageErr("submit: read arguments from stdin: %v", err)
		}
		raw = b
	}
	var argv map[string]any
	if err := json.Unmarshal(raw, &argv); err != nil || argv == nil {
		return usageErr("submit: --args must be a JSON object: %v", errOr(err, "got null"))
	}
	call := &airlock.ToolCall{ID: *id, Agent: *agent, User: *user, Org: *org, Session: *session, Tool: *tool,
		Arguments: argv, InputTokens: *inTok, OutputTokens: *outTok, CostUSD: *cost}
	if *reason != "" {
		call.Context = map[string]any{"reason": *reason}
	}
	c, err := client.Connect(*natsURL, nil, append(copts, client.WithAttemptTimeout(15*time.Second))...)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	defer c.Close()
	wctx := ctx
	if !*wait {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	d, err := c.Submit(wctx, call)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return &exitError{Code: 1, Err: fmt.Errorf("submit: call %s has no decision after %s (still waiting for a reviewer? resubmit with --id %s --wait)", call.ID, *timeout, call.ID)}
		}
		return &exitError{Code: 2, Err: err}
	}
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return err
	}
	if d.Verdict != airlock.VerdictApproved {
		return silentExit(1)
	}
	return nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

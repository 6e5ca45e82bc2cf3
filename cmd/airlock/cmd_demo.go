package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/demo"
	"github.com/airlock/airlock/tui"
)

func init() {
	register(command{Name: "demo", Summary: "everything embedded, simulated agents, and the console", Run: runDemo})
}

func runDemo(ctx context.Context, e env) error {
	fs := newFlags(e, "demo", "[--data DIR]")
	data := fs.String("data", "", "data directory (default: a new temporary directory)")
	reviewer := fs.String("reviewer", "you", "your reviewer name in the audit log")
	rate := fs.Float64("rate", 1.5, "simulated calls per second")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed for the simulated agents")
	listen := fs.String("listen", "127.0.0.1:-1", "embedded NATS address (port -1: any free port)")
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	if *data == "" {
		d, err := os.MkdirTemp("", "airlock-demo-")
		if err != nil {
			return err
		}
		*data = d
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("demo: data directory: %w", err)
	}
	policyPath := filepath.Join(*data, "policy.yaml")
	if err := os.WriteFile(policyPath, demo.Policy, 0o600); err != nil {
		return fmt.Errorf("demo: write policy: %w", err)
	}
	logger, closeLog, err := openLogger(filepath.Join(*data, "airlock.log"), e.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	srv, err := startServe(ctx, serveConfig{Data: *data, Policy: policyPath, Listen: *listen, Prefix: "airlock",
		Limits: "kv", Replicas: 1, MaxBytes: 1 << 20}, logger)
	if err != nil {
		return err
	}
	dbPath := audit.PathIn(*data)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close(sctx)
		fmt.Fprintf(e.Stdout, "\nairlock demo: the audit log is %s\n  look at it:  sqlite3 %s \"select seq, verdict, decided_by, tool, risk_score from decisions order by seq desc limit 20\"\n  verify it:   airlock audit verify --data %s\n",
			dbPath, dbPath, *data)
	}()
	agents, err := client.Connect(srv.URL, nil, client.WithAttemptTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer agents.Close()
	rev, err := client.Connect(srv.URL, nil)
	if err != nil {
		return err
	}
	defer rev.Close()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go demo.Run(dctx, agents, *seed, *rate)
	pol, _ := policy.Load(policyPath)
	var review policy.Review
	if pol != nil {
		review = pol.Review
	}
	opts := consoleOptions(*reviewer, review)
	opts.Logger = logger.With("subsystem", "console")
	return tui.Run(dctx, newConsoleBackend(rev, logger), opts)
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/testenv"
)

// TestVerifyAgainstJetStreamCheckpoint: an attacker with file access cuts
// the log's tail and the sidecar checkpoints alike; the chain head the
// broker recorded in JetStream still exposes it (`audit verify --nats`).
func TestVerifyAgainstJetStreamCheckpoint(t *testing.T) {
	python := testenv.Tool(t, "python3")
	tamper := filepath.Join("..", "..", "..", "shared", "checks", "lib", "tamper.py")
	if _, err := os.Stat(tamper); err != nil {
		testenv.Missing(t, "shared/checks/lib/tamper.py not present: %v", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := serveConfig{Data: dir, Policy: writePolicy(t, dir, e2ePolicy), Listen: listen, Prefix: "airlock", Limits: "memory", Replicas: 1, MaxBytes: 1 << 20}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := startServe(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 6; i++ {
		if _, err := c.Submit(ctx, &airlock.ToolCall{ID: fmt.Sprintf("cp%d", i), Agent: "a", Tool: "search_web", Arguments: map[string]any{"q": i}}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if err := srv.Close(ctx); err != nil { // writes the final checkpoint to the sidecar and to JetStream
		t.Fatal(err)
	}
	db := audit.PathIn(dir)
	if out, err := exec.Command(python, tamper, db, "truncate", "2").CombinedOutput(); err != nil {
		t.Fatalf("tamper: %v %s", err, out)
	}
	// The attacker rewrites the sidecar to end where the log now ends.
	if err := os.WriteFile(audit.CheckpointPath(db), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"audit", "verify", "--data", dir}, nil, &out, &errb); err != nil {
		t.Fatalf("without the JetStream checkpoint the cut is invisible, yet verify failed: %v %s", err, errb.String())
	}
	// Bring NATS back (the broker's store holds the checkpoint) and verify against it.
	srv, err = startServe(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	out.Reset()
	errb.Reset()
	err = run(ctx, []string{"audit", "verify", "--data", dir, "--nats", srv.URL}, nil, &out, &errb)
	if err == nil {
		t.Fatalf("verify --nats passed a log whose tail was cut: %s", out.String())
	}
	if msg := err.Error(); !strings.Contains(msg, "checkpoint") && !strings.Contains(msg, "trunc") {
		t.Fatalf("verify --nats failed without naming the checkpoint: %v", err)
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
)

// TestServeMetrics scrapes `serve --metrics` and checks the counters move.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	srv, err := startServe(ctx, serveConfig{Data: dir, Policy: writePolicy(t, dir, e2ePolicy), Listen: "127.0.0.1:-1",
		Prefix: "airlock", Limits: "memory", Replicas: 1, MaxBytes: 1 << 20, Metrics: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	c, err := client.Connect(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	scrape := func() string {
		resp, err := http.Get(srv.MetricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, tool := range []string{"search_web", "search_web", "delete_record"} {
		if _, err := c.Submit(sctx, &airlock.ToolCall{Agent: "m", Tool: tool, Arguments: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}
	out := scrape()
	for _, want := range []string{
		`airlock_calls_total{decided_by="policy",tier="auto",verdict="approved"} 2`,
		`airlock_calls_total{decided_by="policy",tier="deny",verdict="denied"} 1`,
		`airlock_audit_write_seconds_count`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(out, "airlock_"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

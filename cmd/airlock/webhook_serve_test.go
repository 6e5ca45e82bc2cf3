package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/client"
)

// TestServeWebhook: `serve --webhook` posts a notice for a high-risk call
// waiting for a reviewer, with its id and no arguments.
func TestServeWebhook(t *testing.T) {
	got := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer hook.Close()
	dir := t.TempDir()
	srv, err := startServe(context.Background(), serveConfig{Data: dir, Policy: writePolicy(t, dir, e2ePolicy), Listen: "127.0.0.1:-1",
		Prefix: "airlock", Limits: "memory", Replicas: 1, MaxBytes: 1 << 20, Webhook: hook.URL, WebhookAfter: time.Hour, WebhookBand: "high"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	c, err := client.Connect(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.Submit(ctx, &airlock.ToolCall{ID: "wh1", Agent: "billing", User: "u", Tool: "execute_sql",
			Arguments: map[string]any{"query": "DELETE FROM customers"}})
	}()
	select {
	case body := <-got:
		if !strings.Contains(body, "wh1") || strings.Contains(body, "DELETE FROM customers") {
			t.Fatalf("webhook body %s: want the call id and no arguments", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no webhook notice for a high-risk waiting call")
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/ratelimit"
)

// limitsServer starts an embedded NATS server; when l is set, it answers
// ratelimit.Subject with l.Handle as the broker does.
func limitsServer(t *testing.T, l *ratelimit.Limiter) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if l != nil {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if _, err := nc.Subscribe(ratelimit.Subject, func(m *nats.Msg) { _ = m.Respond(l.Handle(m.Data)) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return s.ClientURL()
}

func TestLimitsCommand(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 30, 0, time.UTC)
	l := ratelimit.New([]policy.Limit{
		{Scope: "user", RequestsPerMinute: 20, TokensPerMinute: 40000, CostPerHourUSD: 10, Concurrent: 4, SessionMessages: 50},
		{Scope: "org", RequestsPerMinute: 200},
	}, ratelimit.NewMemoryStore(), ratelimit.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	for i, c := range []airlock.ToolCall{
		{Agent: "bot", User: "alice", Org: "acme", Session: "s1", InputTokens: 80, OutputTokens: 20, CostUSD: 0.25},
		{Agent: "bot", User: "alice", Org: "acme", Session: "s1", InputTokens: 80, OutputTokens: 20, CostUSD: 0.25},
		{Agent: "bot", User: "alice", Org: "acme", Session: "s1", InputTokens: 80, OutputTokens: 20, CostUSD: 0.25},
		{Agent: "bot", User: "bob", Org: "acme", Session: "s9"},
	} {
		r, rl, err := l.Reserve(ctx, &c)
		if err != nil || rl != nil {
			t.Fatalf("call %d: %v %+v", i, err, rl)
		}
		if i > 0 {
			r.Release(ctx) // the first stays in flight
		}
	}
	url := limitsServer(t, l)
	silent := limitsServer(t, nil)

	tests := []struct {
		name     string
		args     []string
		want     string // exact stdout, when set
		contains []string
		code     int // expected exit code; 0 for success
	}{
		{name: "user", args: []string{"--user", "alice"}, want: "" +
			"SCOPE    KEY       DIMENSION         WINDOW  USED/LIMIT  PRESSURE\n" +
			"user     alice     requests          1m      3/20        0%\n" +
			"user     alice     tokens            1m      300/40000   0%\n" +
			"user     alice     cost_usd          1h      0.75/10     0%\n" +
			"user     alice     concurrent        -       1/4         -\n" +
			"session  alice/s1  session_messages  -       3/50        -\n"},
		{name: "org", args: []string{"--org", "acme"}, want: "" +
			"SCOPE  KEY   DIMENSION  WINDOW  USED/LIMIT  PRESSURE\n" +
			"org    acme  requests   1m      4/200       0%\n"},
		{name: "all", args: nil, contains: []string{"org      acme      requests          1m      4/200", "user     bob ", "session  bob/s9"}},
		{name: "nobody", args: []string{"--agent", "nobody"}, want: "no rate-limit usage\n"},
		{name: "two-filters", args: []string{"--user", "a", "--org", "b"}, code: 2},
		{name: "no-broker", args: []string{"--nats", silent, "--user", "alice"}, code: 2},
		{name: "unreachable", args: []string{"--nats", "nats://127.0.0.1:1", "--timeout", "500ms"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"limits"}, tt.args...)
			if !strings.Contains(strings.Join(tt.args, " "), "--nats") {
				args = append(args, "--nats", url)
			}
			var out, errb bytes.Buffer
			err := run(ctx, args, nil, &out, &errb)
			if code := exitCode(err, &errb); code != tt.code {
				t.Fatalf("got exit %d (%v, stderr %q), want %d", code, err, errb.String(), tt.code)
			}
			if tt.code != 0 {
				if msg := errb.String(); strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "airlock") {
					t.Fatalf("got stderr %q, want one line", msg)
				}
				return
			}
			if tt.want != "" && out.String() != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", out.String(), tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(out.String(), c) {
					t.Fatalf("got\n%s\nwant it to contain %q", out.String(), c)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(ctx, []string{"limits", "--nats", url, "--json", "--user", "alice"}, nil, &out, &errb); err != nil {
			t.Fatalf("got %v (%s)", err, errb.String())
		}
		var reply ratelimit.Reply
		if err := json.Unmarshal(out.Bytes(), &reply); err != nil {
			t.Fatal(err)
		}
		if len(reply.Usage) != 5 || reply.Usage[2].Dimension != "cost_usd" || reply.Usage[2].Window != time.Hour || reply.Usage[2].Used != 0.75 {
			t.Fatalf("got %+v, want 5 rows with cost_usd 0.75 per 1h third", reply.Usage)
		}
		if !strings.Contains(out.String(), `"window": "1h"`) {
			t.Fatalf("got %s, want windows written as in the policy file", out.String())
		}
	})
	t.Run("help", func(t *testing.T) {
		var out, errb bytes.Buffer
		err := run(ctx, []string{"limits", "--help"}, nil, &out, &errb)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "--user") {
			t.Fatalf("got %v, %q; want help", err, errb.String())
		}
	})
}

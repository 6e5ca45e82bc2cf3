package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker/metrics"
)

func scrape(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got status %d, want 200", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCountersMove(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()

	before := scrape(t, srv)
	if strings.Contains(before, "airlock_calls_total{") {
		t.Fatalf("calls counted before any call:\n%s", before)
	}

	m.Decision("auto", "approved", "policy", 0)
	m.Decision("approve", "approved", "reviewer:bob", 90*time.Second)
	m.Decision("approve", "approved", "reviewer:carol", 3*time.Second)
	m.Decision("approve", "approved", "grant:01JABC", time.Millisecond)
	m.Decision("", "rate_limited", "ratelimit", 0)
	m.Decision("weird-tier", "maybe", "someone", 0)
	m.Pending(7)
	m.RateLimited("tokens")
	m.RateLimited("tokens")
	m.RateLimited("made-up-dimension")
	m.SandboxRun("native", "", 30*time.Millisecond)
	m.SandboxRun("native", "timeout", 10*time.Second)
	m.AuditWrite(2*time.Millisecond, nil)
	m.AuditWrite(5*time.Millisecond, errors.New("disk full"))

	got := scrape(t, srv)
	want := []string{
		`airlock_calls_total{decided_by="policy",tier="auto",verdict="approved"} 1`,
		`airlock_calls_total{decided_by="reviewer",tier="approve",verdict="approved"} 2`,
		`airlock_calls_total{decided_by="grant",tier="approve",verdict="approved"} 1`,
		`airlock_calls_total{decided_by="ratelimit",tier="none",verdict="rate_limited"} 1`,
		`airlock_calls_total{decided_by="other",tier="none",verdict="other"} 1`,
		`airlock_pending_calls 7`,
		`airlock_decision_wait_seconds_count{decided_by="reviewer"} 2`,
		`airlock_decision_wait_seconds_sum{decided_by="reviewer"} 93`,
		`airlock_decision_wait_seconds_bucket{decided_by="reviewer",le="60"} 1`,
		`airlock_ratelimit_refusals_total{dimension="tokens"} 2`,
		`airlock_ratelimit_refusals_total{dimension="other"} 1`,
		`airlock_sandbox_runs_total{backend="native",limit_hit="none"} 1`,
		`airlock_sandbox_runs_total{backend="native",limit_hit="timeout"} 1`,
		`airlock_sandbox_run_seconds_count{backend="native"} 2`,
		`airlock_audit_write_seconds_count 2`,
		`airlock_audit_errors_total 1`,
		`go_goroutines`,
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("scrape lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", got)
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Decision("auto", "approved", "policy", time.Second)
	m.Pending(1)
	m.RateLimited("requests")
	m.SandboxRun("native", "memory", time.Second)
	m.AuditWrite(time.Second, errors.New("x"))
}

func TestUnregistered(t *testing.T) {
	m := metrics.New(nil)
	m.Decision("auto", "approved", "policy", 0) // must not panic
}

func TestDecidedByClass(t *testing.T) {
	tests := []struct{ in, want string }{
		{"policy", "policy"}, {"", "policy"}, {"reviewer:bob", "reviewer"}, {"grant:01J", "grant"},
		{"ratelimit", "ratelimit"}, {"anything-else", "other"},
	}
	for _, tt := range tests {
		if got := metrics.DecidedByClass(tt.in); got != tt.want {
			t.Errorf("DecidedByClass(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkDecision(b *testing.B) {
	m := metrics.New(nil)
	b.ReportAllocs()
	for b.Loop() {
		m.Decision("approve", "approved", "reviewer:bob", time.Second)
	}
}

func TestAuditorWrapper(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	dir := t.TempDir()
	log, err := audit.Open(audit.PathIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := m.Auditor(log)
	for i := range 3 {
		if _, err := a.Append(ctx, airlock.Event{Kind: airlock.EventPolicy, TS: time.Now(), Payload: map[string]int{"n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, airlock.Event{Kind: airlock.EventPolicy, TS: time.Now(), Payload: map[string]int{"n": 9}}); err == nil {
		t.Fatal("append to a closed log succeeded")
	}
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	got := scrape(t, srv)
	for _, w := range []string{"airlock_audit_write_seconds_count 4", "airlock_audit_errors_total 1"} {
		if !strings.Contains(got, w) {
			t.Errorf("scrape lacks %q", w)
		}
	}
	var nilM *metrics.Metrics
	if nilM.Auditor(log) != airlock.Auditor(log) {
		t.Error("a nil *Metrics must return the auditor unchanged")
	}
}

func TestServe(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	m.Pending(3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- metrics.Serve(ctx, ln, reg) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "airlock_pending_calls 3") {
		t.Errorf("got %s, want the pending gauge", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// Package metrics exposes airlock's Prometheus metrics: calls by tier,
// verdict and who decided, the pending queue's depth, how long calls wait
// for a decision, rate-limit refusals, sandbox runs and the limits they hit,
// and the audit log's write latency and errors.
//
// Every method is safe on a nil *Metrics (it does nothing), so the broker can
// call them unconditionally. Label values are reduced to small fixed sets to
// keep the number of series bounded whatever agents send.
package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlock/airlock"
)

// Metrics holds airlock's collectors.
type Metrics struct {
	calls       *prometheus.CounterVec
	pending     prometheus.Gauge
	wait        *prometheus.HistogramVec
	rateLimited *prometheus.CounterVec
	sandboxRuns *prometheus.CounterVec
	sandboxTime *prometheus.HistogramVec
	auditWrite  prometheus.Histogram
	auditErrors prometheus.Counter
}

// New creates the collectors and registers them with reg (nil: not
// registered, which tests and embedders may want).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_calls_total",
			Help: "Tool calls decided, by tier, verdict and who decided (policy, reviewer, grant, ratelimit).",
		}, []string{"tier", "verdict", "decided_by"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "airlock_pending_calls",
			Help: "Tool calls waiting for a reviewer.",
		}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_decision_wait_seconds",
			Help:    "Time from a call's arrival to its final decision, by who decided.",
			Buckets: []float64{.005, .025, .1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"decided_by"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_ratelimit_refusals_total",
			Help: "Calls refused by a rate limit, by the dimension that was exceeded.",
		}, []string{"dimension"}),
		sandboxRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_sandbox_runs_total",
			Help: "Sandboxed runs, by backend and the limit that stopped them (none when none did).",
		}, []string{"backend", "limit_hit"}),
		sandboxTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_sandbox_run_seconds",
			Help:    "Duration of sandboxed runs, by backend.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"backend"}),
		auditWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "airlock_audit_write_seconds",
			Help:    "Time to append an event durably to the audit log.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_audit_errors_total",
			Help: "Audit log appends that failed (each one fails a call closed).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.pending, m.wait, m.rateLimited, m.sandboxRuns, m.sandboxTime, m.auditWrite, m.auditErrors)
	}
	return m
}

// NewRegistry returns a registry with the Go runtime and process collectors,
// ready for New and Handler.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Decision counts a final decision. decidedBy is the decision's decided_by
// ("policy", "reviewer:bob", "grant:01J…", "ratelimit"); waited is the time
// from the call's arrival to the decision.
func (m *Metrics) Decision(tier, verdict, decidedBy string, waited time.Duration) {
	if m == nil {
		return
	}
	by := DecidedByClass(decidedBy)
	m.calls.WithLabelValues(oneOf(tier, "none", "auto", "notify", "approve", "deny"),
		oneOf(verdict, "other", "approved", "denied", "expired", "rate_limited", "rejected"), by).Inc()
	if waited < 0 {
		waited = 0
	}
	m.wait.WithLabelValues(by).Observe(waited.Seconds())
}

// Pending sets the number of calls waiting for a reviewer.
func (m *Metrics) Pending(n int) {
	if m == nil {
		return
	}
	m.pending.Set(float64(n))
}

// RateLimited counts a refusal by a rate limit on dimension (requests,
// tokens, input_tokens, output_tokens, concurrent, cost_usd, session_messages).
func (m *Metrics) RateLimited(dimension string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(oneOf(dimension, "other", "requests", "tokens", "input_tokens",
		"output_tokens", "concurrent", "cost_usd", "session_messages")).Inc()
}

// SandboxRun counts a sandboxed run on backend that took d; limitHit names
// the limit that stopped it (timeout, memory, pids, output, cpu,
// interrupted) or is empty.
func (m *Metrics) SandboxRun(backend, limitHit string, d time.Duration) {
	if m == nil {
		return
	}
	b := label(backend, "unknown")
	m.sandboxRuns.WithLabelValues(b, oneOf(limitHit, "other", "", "timeout", "memory", "pids", "output", "cpu", "interrupted", "disk")).Inc()
	m.sandboxTime.WithLabelValues(b).Observe(d.Seconds())
}

// AuditWrite records one audit append that took d and failed with err (nil
// when it succeeded).
func (m *Metrics) AuditWrite(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.auditWrite.Observe(d.Seconds())
	if err != nil {
		m.auditErrors.Inc()
	}
}

// Handler serves the metrics gathered from g in the Prometheus text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// DecidedByClass reduces a decided_by value to policy, reviewer, grant or
// ratelimit (other for anything else).
func DecidedByClass(s string) string {
	switch {
	case s == "policy", s == "":
		return "policy"
	case s == "ratelimit":
		return "ratelimit"
	case strings.HasPrefix(s, "reviewer:"), s == "reviewer":
		return "reviewer"
	case strings.HasPrefix(s, "grant:"), s == "grant":
		return "grant"
	}
	return "other"
}

// oneOf returns s when it is one of allowed, else fallback. An empty s maps
// to "none" unless "" is allowed.
func oneOf(s, fallback string, allowed ...string) string {
	for _, a := range allowed {
		if s == a {
			if s == "" {
				return "none"
			}
			return s
		}
	}
	if s == "" {
		return "none"
	}
	return fallback
}

// label bounds a free-form label value (a backend named by the policy).
func label(s, empty string) string {
	if s == "" {
		return empty
	}
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 32 {
			break
		}
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Auditor wraps an audit log so that every Append is timed and its errors
// counted (airlock_audit_write_seconds, airlock_audit_errors_total). A nil
// *Metrics returns a unchanged.
func (m *Metrics) Auditor(a airlock.Auditor) airlock.Auditor {
	if m == nil || a == nil {
		return a
	}
	return &timedAuditor{a: a, m: m}
}

type timedAuditor struct {
	a airlock.Auditor
	m *Metrics
}

func (t *timedAuditor) Append(ctx context.Context, ev airlock.Event) (airlock.Receipt, error) {
	start := time.Now()
	r, err := t.a.Append(ctx, ev)
	t.m.AuditWrite(time.Since(start), err)
	return r, err
}

// ListenAndServe serves Handler(g) at /metrics on addr until ctx ends
// (`airlock serve --metrics HOST:PORT`).
func ListenAndServe(ctx context.Context, addr string, g prometheus.Gatherer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen: %w", err)
	}
	return Serve(ctx, ln, g)
}

// Serve serves Handler(g) at /metrics on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(g))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// Package broker is airlock's service: it receives ToolCalls on NATS,
// validates them, applies rate limits, policy and the risk score, queues the
// calls that need a human, takes reviewers' verdicts, runs approved code in
// the sandbox, writes every decision to the audit log before anyone hears of
// it, and answers the agent.
//
// Everything several brokers must share (call records for idempotency, the
// pending queue, grants) lives in JetStream key-value buckets, so any broker
// on the same NATS system can serve any call.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/oklog/ulid/v2"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/metrics"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/ratelimit"
	"github.com/airlock/airlock/sandbox"
)

// Version is the broker's service version, shown by `nats micro ls`.
const Version = "0.1.0"

// Scorer scores calls and learns from their outcomes (broker/risk implements it).
type Scorer interface {
	Score(call *airlock.ToolCall, extra ...airlock.Factor) airlock.Risk
	Observe(call *airlock.ToolCall, verdict airlock.Verdict)
}

// RunnerFunc opens the sandbox backend a tool's profile names.
type RunnerFunc func(backend string) (sandbox.Runner, error)

// Config wires a broker. Policy and Audit are required.
type Config struct {
	Prefix   string // subject prefix, default "airlock"
	Name     string // this broker's name in audit rows, default host-pid
	Policy   *policy.Policy
	Audit    airlock.Auditor
	Limiter  *ratelimit.Limiter // nil: no rate limits
	Scorer   Scorer             // nil: every call scores 0 plus policy points
	Sandbox  RunnerFunc         // nil: sandboxed tools are denied (fail closed)
	MaxBytes int                // largest call accepted, default 1 MiB
	MaxDepth int                // deepest nesting accepted, default 64
	Replicas int                // JetStream replicas for the buckets, default 1
	// MaxInFlight bounds concurrently handled requests (default 8192).
	MaxInFlight int
	// Exclusive says this broker is the only one on its NATS system (the
	// embedded deployment): at start, every run left "executing" is orphaned.
	Exclusive bool
	// History, when set, lets reviewers replay a proposed rule against the
	// audit log's past decisions (airlock.admin.replay).
	History HistoryFunc
	// Metrics, when set, counts calls, waits, refusals, runs and audit writes.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Clock   func() time.Time
}

// Broker is a running broker.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store
	pol    atomic.Pointer[policy.Policy]
	sc     atomic.Pointer[scorerBox]
	svc    micro.Service
	sem    chan struct{}
	work   chan func() // hands a request to an idle worker (see spawn)
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	recent *recentLog
	res    sync.Map // call id → *ratelimit.Reservation, released on decision
	// handling holds the ids of calls a Submit in this process is working
	// on (claiming, evaluating or waiting), one handler per id.
	handling sync.Map
	// brokers is the fleet's liveness bucket (nil for the embedded broker).
	brokers jetstream.KeyValue
	// deciding holds, by call pointer, what Submit computes once per call
	// and uses more than once (*callWork), until Submit returns.
	deciding sync.Map
	subs     []*nats.Subscription
}

// New prepares a broker on an existing connection. Call Start to serve.
func New(nc *nats.Conn, cfg Config) (*Broker, error) {
	if cfg.Policy == nil {
		return nil, errors.New("broker: a policy is required")
	}
	if cfg.Audit == nil {
		return nil, errors.New("broker: an audit log is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "airlock"
	}
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: jetstream: %w", err)
	}
	b := &Broker{
		cfg:    cfg,
		log:    cfg.Logger.With("subsystem", "broker"),
		now:    cfg.Clock,
		nc:     nc,
		js:     js,
		sem:    make(chan struct{}, cfg.MaxInFlight),
		work:   make(chan func()),
		recent: newRecentLog(10000, 20),
	}
	if cfg.Metrics != nil {
		b.cfg.Audit = timedAuditor{next: cfg.Audit, m: cfg.Metrics}
	}
	b.pol.Store(cfg.Policy)
	if cfg.Scorer != nil {
		b.SetScorer(cfg.Scorer)
	}
	return b, nil
}

// Policy returns the policy in force.
func (b *Broker) Policy() *policy.Policy { return b.pol.Load() }

// scorerBox holds the scorer in force (swapped on policy reload).
type scorerBox struct{ s Scorer }

func (b *Broker) scorer() Scorer {
	if box := b.sc.Load(); box != nil {
		return box.s
	}
	return nil
}

// SetScorer replaces the risk scorer (on policy reload, a scorer carrying
// the old one's history).
func (b *Broker) SetScorer(s Scorer) { b.sc.Store(&scorerBox{s: s}) }

// SetPolicy replaces the policy in force (reload on SIGHUP); calls already
// waiting keep the decision context they were queued with.
func (b *Broker) SetPolicy(p *policy.Policy) {
	if p != nil {
		b.pol.Store(p)
	}
}

func (b *Broker) subject(parts ...string) string {
	return b.cfg.Prefix + "." + strings.Join(parts, ".")
}

// Start creates the buckets, recovers interrupted work, and starts serving.
func (b *Broker) Start(ctx context.Context) error {
	st, err := openStore(ctx, b.js, b.cfg.Replicas)
	if err != nil {
		return err
	}
	st.nc = b.nc
	b.st = st
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if !b.cfg.Exclusive {
		// A fleet: heartbeats let the others take this broker's leftover
		// claims over as soon as it stops.
		kv, err := openBrokers(ctx, b.js, b.cfg.Replicas)
		if err != nil {
			return fmt.Errorf("broker: key-value bucket %s: %w", BucketBrokers, err)
		}
		b.brokers = kv
		b.wg.Add(1)
		go b.heartbeat(kv)
	}
	b.recover(ctx, true)
	svc, err := micro.AddService(b.nc, micro.Config{
		Name:        "airlock",
		Version:     Version,
		Description: "airlock broker: policy, risk, review and audit for AI agents' tool calls",
		Metadata:    map[string]string{"broker": b.cfg.Name},
	})
	if err != nil {
		return fmt.Errorf("broker: service: %w", err)
	}
	b.svc = svc
	add := func(name, subject string, h func(micro.Request)) error {
		if err := svc.AddEndpoint(name, micro.HandlerFunc(h), micro.WithEndpointSubject(subject),
			micro.WithEndpointPendingLimits(-1, -1)); err != nil {
			return fmt.Errorf("broker: endpoint %s: %w", name, err)
		}
		return nil
	}
	if err := add("submit", b.subject("submit", "*"), b.handleSubmit); err != nil {
		return err
	}
	if err := add("review", b.subject("review", "*"), b.handleReview); err != nil {
		return err
	}
	if err := add("limits", b.subject("admin", "limits"), b.handleLimits); err != nil {
		return err
	}
	if err := add("recent", b.subject("admin", "recent"), b.handleRecent); err != nil {
		return err
	}
	if err := add("grants", b.subject("admin", "grants"), b.handleGrants); err != nil {
		return err
	}
	if err := add("replay", b.subject("admin", "replay"), b.handleReplay); err != nil {
		return err
	}
	if err := add("dryrun", b.subject("admin", "dryrun"), b.handleDryRun); err != nil {
		return err
	}
	if err := add("config", b.subject("admin", "config"), b.handleConfig); err != nil {
		return err
	}
	b.wg.Add(1)
	go b.expireLoop()
	b.log.Info("broker started", "name", b.cfg.Name, "prefix", b.cfg.Prefix)
	return nil
}

// Close stops taking requests and waits (until ctx ends) for the ones in
// flight to finish, so that nothing is left half-written.
func (b *Broker) Close(ctx context.Context) error {
	if b.svc != nil {
		_ = b.svc.Stop()
	}
	for _, s := range b.subs {
		_ = s.Unsubscribe()
	}
	if b.cancel != nil {
		b.cancel()
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker: close: %w", ctx.Err())
	}
}

// spawn runs f for one request, bounded by MaxInFlight, on a worker
// goroutine: an idle worker takes it, or a new worker starts. A worker stays
// for workerIdle after its last request, so the stack it grew (decoding,
// policy, risk analysis and JSON run deep) serves the next request instead of
// every request growing a fresh goroutine's stack again.
func (b *Broker) spawn(f func()) {
	b.sem <- struct{}{}
	b.wg.Add(1)
	task := func() {
		defer func() { <-b.sem; b.wg.Done() }()
		f()
	}
	select {
	case b.work <- task:
	default:
		go b.worker(task)
	}
}

// workerIdle is how long a request worker waits for another request.
const workerIdle = 5 * time.Second

func (b *Broker) worker(task func()) {
	task()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case task = <-b.work:
			task()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-b.ctx.Done():
			return
		}
	}
}

func lastToken(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return subject
}

func newID() string { return ulid.Make().String() }

func respondJSON(req micro.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"verdict":"rejected","reason":"internal error encoding the reply"}`)
	}
	_ = req.Respond(b)
}

// timedAuditor measures every append for the metrics.
type timedAuditor struct {
	next airlock.Auditor
	m    *metrics.Metrics
}

func (a timedAuditor) Append(ctx context.Context, ev airlock.Event) (airlock.Receipt, error) {
	start := time.Now()
	r, err := a.next.Append(ctx, ev)
	a.m.AuditWrite(time.Since(start), err)
	return r, err
}

// handleLimits serves `airlock limits`.
func (b *Broker) handleLimits(req micro.Request) {
	if b.cfg.Limiter == nil {
		_ = req.Respond([]byte(`{"usage":[],"error":"no rate limits configured"}`))
		return
	}
	_ = req.Respond(b.cfg.Limiter.Handle(req.Data()))
}

// recentRequest asks for a session's recent decisions.
type recentRequest struct {
	Session string `json:"session"`
	N       int    `json:"n"`
}

func (b *Broker) handleRecent(req micro.Request) {
	var r recentRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil {
		respondJSON(req, map[string]string{"error": "bad request: " + err.Error()})
		return
	}
	respondJSON(req, map[string]any{"records": b.recent.get(r.Session, r.N)})
}

// ReviewConfig is what consoles learn from the broker: the policy's review
// settings (so batching, dwell and the rate guard follow the policy in
// force without a local copy of it) and its version.
type ReviewConfig struct {
	Review        policy.Review `json:"review"`
	PolicyVersion string        `json:"policy_version"`
}

func (b *Broker) handleConfig(req micro.Request) {
	p := b.pol.Load()
	respondJSON(req, ReviewConfig{Review: p.Review, PolicyVersion: p.Digest})
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/audit"
	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auditstream"
	"github.com/airlock/airlock/broker/auth"
	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/broker/metrics"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/ratelimit"
	"github.com/airlock/airlock/broker/risk"
	"github.com/airlock/airlock/internal/jsutil"
	"github.com/airlock/airlock/internal/webhook"
	"github.com/airlock/airlock/sandbox"
)

func init() {
	register(command{Name: "serve", Summary: "run the broker (embedded NATS + JetStream by default)", Run: runServe})
}

// serveConfig is `airlock serve`'s configuration.
type serveConfig struct {
	Data     string
	Policy   string
	Listen   string
	NATS     string
	Prefix   string
	LogFile  string
	Limits   string // kv or memory
	Replicas int
	MaxBytes int
	Metrics  string // HOST:PORT for Prometheus metrics, empty: off
	// Key is the broker's nkey seed file, for --nats deployments with auth.
	Key string
	// TLS: embedded, the server's certificate (and with TLSCA, client
	// certificates are required); with --nats, the CA to trust and this
	// broker's client certificate.
	TLSCert, TLSKey, TLSCA string
	// Plaintext accepts an unencrypted bus beyond loopback.
	Plaintext bool
	// AuditDB is the SQLite audit log (default DATA/audit.db). With --nats,
	// the elected audit writer applies the fleet's audit stream to it.
	AuditDB string
	// Name is this broker's name (audit rows, leases); default host-pid.
	Name string
	// Webhook posts Slack-compatible notices about calls that wait longer
	// than WebhookAfter or score at or above WebhookBand.
	Webhook      string
	WebhookAfter time.Duration
	WebhookBand  string
}

func (c *serveConfig) auditPath() string {
	if c.AuditDB != "" {
		return c.AuditDB
	}
	return audit.PathIn(c.Data)
}

func (c *serveConfig) Validate() error {
	if c.Policy == "" {
		return usageErr("serve: --policy FILE is required (see examples/policy.yaml)")
	}
	if c.Data == "" {
		return usageErr("serve: --data DIR is required")
	}
	if c.Limits != "kv" && c.Limits != "memory" {
		return usageErr("serve: --limits-store must be kv or memory, not %q", c.Limits)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usageErr("serve: --tls-cert and --tls-key go together")
	}
	if c.NATS == "" && c.TLSCA != "" && c.TLSCert == "" {
		return usageErr("serve: --tls-ca (require client certificates) needs --tls-cert and --tls-key")
	}
	return nil
}

// checkExposure refuses an embedded server beyond loopback without
// identities, and (unless --plaintext) without TLS.
func (c *serveConfig) checkExposure(pol *policy.Policy) error {
	if c.NATS != "" || isLoopback(c.Listen) {
		return nil
	}
	if !auth.Enabled(pol) {
		return usageErr("serve: --listen %s is not a loopback address and the policy has no auth: section, so anyone who can reach the port could submit calls and approve them; declare identities under auth: (airlock keys new …) or listen on 127.0.0.1", c.Listen)
	}
	if c.TLSCert == "" && !c.Plaintext {
		return usageErr("serve: --listen %s is beyond loopback: give --tls-cert and --tls-key (and --tls-ca to require client certificates), or --plaintext to accept an unencrypted bus", c.Listen)
	}
	return nil
}

// isLoopback reports whether a HOST:PORT listens on loopback only.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func dataDefault() string {
	if d := os.Getenv("AIRLOCK_DATA"); d != "" {
		return d
	}
	return "airlock-data"
}

func runServe(ctx context.Context, e env) error {
	var c serveConfig
	fs := newFlags(e, "serve", "--data DIR --policy FILE [--listen HOST:PORT] [--nats URL]")
	fs.StringVar(&c.Data, "data", dataDefault(), "data directory (audit.db, NATS store)")
	fs.StringVar(&c.Policy, "policy", os.Getenv("AIRLOCK_POLICY"), "policy file (YAML)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:4222", "embedded NATS listen address")
	fs.StringVar(&c.NATS, "nats", "", "use this NATS server (URL[,URL…]) instead of embedding one")
	fs.StringVar(&c.Prefix, "prefix", "airlock", "subject prefix")
	fs.StringVar(&c.LogFile, "log", "", "log file (default: stderr)")
	fs.StringVar(&c.Limits, "limits-store", "kv", "where rate-limit usage lives: kv (JetStream, survives restarts, shared) or memory")
	fs.IntVar(&c.Replicas, "replicas", 1, "JetStream replicas for airlock's buckets (3 on a cluster)")
	fs.IntVar(&c.MaxBytes, "max-bytes", broker.DefaultMaxBytes, "largest call accepted, in bytes")
	fs.StringVar(&c.Metrics, "metrics", "", "serve Prometheus metrics on HOST:PORT (/metrics)")
	fs.StringVar(&c.Key, "key", "", "with --nats: this broker's nkey file (airlock keys new broker NAME)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate: the embedded server's, or with --nats this broker's client certificate")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key for --tls-cert")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "CA file: embedded, require client certificates signed by it; with --nats, trust the server's certificate by it")
	fs.BoolVar(&c.Plaintext, "plaintext", false, "allow an unencrypted bus beyond loopback (not recommended)")
	fs.StringVar(&c.AuditDB, "audit-db", "", "audit database (default DATA/audit.db); with --nats, brokers may share one file: one elected writer applies the audit stream")
	fs.StringVar(&c.Name, "name", "", "this broker's name (default host-pid)")
	fs.StringVar(&c.Webhook, "webhook", "", "post Slack-compatible notices to this URL (call id and a one-line summary, never the arguments)")
	fs.DurationVar(&c.WebhookAfter, "webhook-after", 2*time.Minute, "with --webhook: notify about calls waiting longer than this")
	fs.StringVar(&c.WebhookBand, "webhook-band", "high", "with --webhook: notify at once about waiting calls in this risk band or above")
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	logger, closeLog, err := openLogger(c.LogFile, e.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	// Catch SIGHUP before anything listens: a reload signal sent while the
	// broker starts must not kill it (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	srv, err := startServe(ctx, c, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "airlock serve: broker %s on %s · data %s · policy %s (%d tools)\n",
		broker.Version, srv.URL, c.Data, c.Policy, len(srv.Broker.Policy().Tools))
	for _, w := range srv.Broker.Policy().Warnings {
		fmt.Fprintf(e.Stderr, "airlock serve: policy warning: %s\n", w)
	}
	if srv.Broker.Policy().Auth == nil && c.NATS == "" {
		fmt.Fprintln(e.Stderr, "airlock serve: no auth: section in the policy: any local process can submit and review; listening on loopback only")
	} else if auth.Enabled(srv.Broker.Policy()) {
		a := srv.Broker.Policy().Auth
		fmt.Fprintf(e.Stderr, "airlock serve: auth on: %d agents, %d reviewers, %d brokers; verdicts must be signed: %v; tls: %v\n",
			len(a.Agents), len(a.Reviewers), len(a.Brokers), auth.SignaturesRequired(srv.Broker.Policy()), c.TLSCert != "")
	}
	for {
		select {
		case <-hup:
			p, err := policy.Load(c.Policy)
			if err != nil {
				logger.Error("policy reload failed; keeping the old policy", "err", err)
				fmt.Fprintf(e.Stderr, "airlock serve: reload failed, keeping the old policy: %v\n", err)
				continue
			}
			for _, w := range p.Warnings {
				fmt.Fprintf(e.Stderr, "airlock serve: policy warning: %s\n", w)
			}
			if err := srv.reloadIdentities(p, c.Prefix); err != nil {
				logger.Error("policy reload failed; keeping the old policy", "err", err)
				fmt.Fprintf(e.Stderr, "airlock serve: reload failed, keeping the old policy: %v\n", err)
				continue
			}
			srv.Broker.SetPolicy(p)
			if sc, ok := srv.Scorer.(*risk.Scorer); ok {
				// Keep the novelty and chain history across the reload.
				ns := sc.WithPolicy(p)
				srv.Scorer = ns
				srv.Broker.SetScorer(ns)
			}
			logger.Info("policy reloaded", "digest", p.Digest)
			fmt.Fprintf(e.Stderr, "airlock serve: policy reloaded (%s)\n", short(p.Digest))
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return srv.Close(sctx)
		}
	}
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func openLogger(path string, stderr io.Writer) (*slog.Logger, func(), error) {
	if path == "" {
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})), func() { f.Close() }, nil
}

// service is a running broker with everything it owns.
type service struct {
	URL    string
	Broker *broker.Broker
	Scorer broker.Scorer
	Audit  *audit.Log
	nats   *server.Server
	nc     *nats.Conn
	http   *http.Server
	// MetricsURL is where /metrics is served, when enabled.
	MetricsURL  string
	stopWebhook func(context.Context)
	checkpoints *kvCheckpointSink
	// natsOpts are the embedded server's options as configured, and self
	// the broker's own key on it: for reloading identities on SIGHUP.
	natsOpts *server.Options
	self     nkeys.KeyPair
	// The fleet's audit writer, when this broker campaigns for it.
	stopWriter context.CancelFunc
	writerDone chan struct{}
}

// auditLease is how long the audit writer's lease lasts without renewal:
// the longest the fleet's SQLite log lags when its writer dies.
const auditLease = 5 * time.Second

// startServe wires policy, audit, limits, risk, sandbox and the broker.
func startServe(ctx context.Context, c serveConfig, logger *slog.Logger) (*service, error) {
	pol, err := policy.Load(c.Policy)
	if err != nil {
		return nil, err
	}
	if err := c.checkExposure(pol); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	s := &service{}
	ok := false
	defer func() {
		if !ok {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Close(sctx)
		}
	}()
	if c.NATS == "" {
		sink := &kvCheckpointSink{}
		s.checkpoints = sink
		s.Audit, err = audit.Open(c.auditPath(), audit.WithLogger(logger.With("subsystem", "audit")),
			audit.WithCheckpointSink(sink.put))
		if err != nil {
			return nil, err
		}
	}
	if c.NATS != "" {
		s.URL = c.NATS
		opts := []nats.Option{nats.Name("airlock broker"), nats.MaxReconnects(-1)}
		if c.Key != "" {
			k, err := client.LoadKey(c.Key)
			if err != nil {
				return nil, err
			}
			opts = append(opts, nats.Nkey(k.Public, k.Sign))
		}
		if c.TLSCA != "" {
			opts = append(opts, nats.RootCAs(c.TLSCA))
		}
		if c.TLSCert != "" {
			opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
		}
		s.nc, err = nats.Connect(c.NATS, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", c.NATS, err)
		}
	} else {
		// The broker's own identity on its embedded server: a key made
		// now, never written down, allowed everything.
		var self nkeys.KeyPair
		if auth.Enabled(pol) {
			if self, err = auth.NewKey(); err != nil {
				return nil, err
			}
		}
		s.nats, err = broker.StartEmbedded(broker.EmbeddedOptions{Listen: c.Listen, StoreDir: filepath.Join(c.Data, "nats"),
			Configure: func(o *server.Options) error {
				if err := configureEmbedded(o, c, pol, self); err != nil {
					return err
				}
				s.natsOpts, s.self = o.Clone(), self
				return nil
			}})
		if err != nil {
			return nil, err
		}
		s.URL = s.nats.ClientURL()
		opts := []nats.Option{nats.InProcessServer(s.nats), nats.Name("airlock broker")}
		if self != nil {
			pub, _ := self.PublicKey()
			opts = append(opts, nats.Nkey(pub, self.Sign))
		}
		s.nc, err = nats.Connect("", opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to embedded NATS: %w", err)
		}
	}
	// The audit log: the embedded broker writes SQLite itself; a fleet
	// broker publishes to the audit stream and campaigns to be its writer.
	var auditor airlock.Auditor = s.Audit
	if c.NATS != "" {
		if c.Name == "" {
			h, _ := os.Hostname()
			c.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
		}
		js, err := jetstream.New(s.nc)
		if err != nil {
			return nil, err
		}
		if err := auditstream.Setup(ctx, js, c.Replicas, auditLease); err != nil {
			return nil, err
		}
		auditor = auditstream.NewPublisher(js)
		w := auditstream.NewWriter(js, c.auditPath(), c.Name, auditLease, logger.With("subsystem", "audit-writer"),
			audit.WithLogger(logger.With("subsystem", "audit")))
		wctx, cancel := context.WithCancel(context.Background())
		s.stopWriter = cancel
		s.writerDone = make(chan struct{})
		go func() {
			defer close(s.writerDone)
			if err := w.Run(wctx); err != nil {
				logger.Error("audit writer stopped: this broker will not apply the audit stream", "err", err)
			}
		}()
	}
	if s.checkpoints != nil {
		js, err := jetstream.New(s.nc)
		if err != nil {
			return nil, err
		}
		s.checkpoints.mu.Lock()
		s.checkpoints.js = js
		s.checkpoints.mu.Unlock()
	}
	var lim *ratelimit.Limiter
	if len(pol.Limits) > 0 {
		store, err := limitStore(ctx, s.nc, c, pol)
		if err != nil {
			return nil, err
		}
		lim = ratelimit.New(pol.Limits, store, ratelimit.WithLogger(logger.With("subsystem", "ratelimit")))
	}
	var m *metrics.Metrics
	if c.Metrics != "" {
		reg := metrics.NewRegistry()
		m = metrics.New(reg)
		ln, err := net.Listen("tcp", c.Metrics)
		if err != nil {
			return nil, fmt.Errorf("--metrics %s: %w", c.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.MetricsURL = "http://" + ln.Addr().String() + "/metrics"
		go func() { _ = s.http.Serve(ln) }()
	}
	s.Scorer = risk.New(pol)
	b, err := broker.New(s.nc, broker.Config{
		Metrics:  m,
		Prefix:   c.Prefix,
		Policy:   pol,
		Audit:    auditor,
		Name:     c.Name,
		History:  auditHistory(c.auditPath()),
		Limiter:  lim,
		Scorer:   s.Scorer,
		Sandbox:  func(backend string) (sandbox.Runner, error) { return sandbox.Open(backend) },
		MaxBytes: c.MaxBytes,
		Replicas: c.Replicas,
		Logger:   logger,
		// Embedded NATS: this broker is alone on it.
		Exclusive: c.NATS == "",
	})
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	s.Broker = b
	if c.Webhook != "" {
		n, err := webhook.New(c.Webhook, webhook.WithWaitThreshold(c.WebhookAfter), webhook.WithMinBand(c.WebhookBand),
			webhook.WithLogger(logger.With("subsystem", "webhook")))
		if err != nil {
			return nil, err
		}
		n.Start()
		wc, err := client.New(s.nc, client.WithPrefix(c.Prefix))
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithCancel(context.Background())
		s.stopWebhook = func(ctx context.Context) { cancel(); _ = n.Close(ctx) }
		go n.Watch(wc.WatchPending(wctx))
	}
	ok = true
	return s, nil
}

// reloadIdentities gives the embedded server the identities of a reloaded
// policy. Turning auth on or off needs a restart (the broker's own
// connection and every client change); with --nats, reload nats-server with
// the regenerated auth.ServerConfig instead.
func (s *service) reloadIdentities(p *policy.Policy, prefix string) error {
	if s.nats == nil {
		return nil
	}
	switch {
	case s.self == nil && auth.Enabled(p):
		return errors.New("the new policy adds an auth: section: restart airlock serve to turn identities on")
	case s.self != nil && !auth.Enabled(p):
		return errors.New("the new policy drops its auth: section: restart airlock serve to turn identities off")
	case s.self == nil:
		return nil
	}
	pub, err := s.self.PublicKey()
	if err != nil {
		return err
	}
	n := s.natsOpts.Clone()
	if err := auth.Configure(n, p, prefix, pub); err != nil {
		return err
	}
	if err := s.nats.ReloadOptions(n.Clone()); err != nil {
		return fmt.Errorf("reload identities: %w", err)
	}
	s.natsOpts = n
	return nil
}

// configureEmbedded applies identities and TLS to the embedded server.
func configureEmbedded(o *server.Options, c serveConfig, pol *policy.Policy, self nkeys.KeyPair) error {
	if self != nil {
		pub, err := self.PublicKey()
		if err != nil {
			return err
		}
		if err := auth.Configure(o, pol, c.Prefix, pub); err != nil {
			return err
		}
	}
	if c.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: c.TLSCA != ""})
		if err != nil {
			return fmt.Errorf("serve: tls: %w", err)
		}
		o.TLSConfig = tc
		o.TLS = true
		o.TLSVerify = c.TLSCA != ""
		o.TLSTimeout = 2
	}
	return nil
}

func limitStore(ctx context.Context, nc *nats.Conn, c serveConfig, pol *policy.Policy) (ratelimit.Store, error) {
	if c.Limits == "memory" {
		return ratelimit.NewMemoryStore(), nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cfg := ratelimit.BucketConfig("airlock_limits", pol.Limits)
	cfg.Storage = jetstream.FileStorage
	cfg.Replicas = max(c.Replicas, 1)
	kv, err := jsutil.CreateOrUpdateKV(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("rate-limit bucket: %w", err)
	}
	return ratelimit.NewKVStore(kv), nil
}

// Close stops the broker, then the audit log, then NATS: nothing half-written.
func (s *service) Close(ctx context.Context) error {
	var errs []error
	if s.http != nil {
		_ = s.http.Shutdown(ctx)
	}
	if s.stopWebhook != nil {
		s.stopWebhook(ctx)
	}
	if s.Broker != nil {
		errs = append(errs, s.Broker.Close(ctx))
	}
	if s.stopWriter != nil {
		s.stopWriter()
		select {
		case <-s.writerDone:
		case <-ctx.Done():
		}
	}
	// The audit log closes while NATS is still up: its last checkpoint
	// goes to JetStream too.
	if s.Audit != nil {
		errs = append(errs, s.Audit.Close(ctx))
	}
	if s.nc != nil {
		_ = s.nc.Drain()
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// kvCheckpointSink records the audit chain's head in JetStream (beside the
// sidecar file), so that `audit verify --nats` catches a log whose tail was
// cut together with its sidecar.
type kvCheckpointSink struct {
	mu sync.Mutex
	js jetstream.JetStream
}

func (k *kvCheckpointSink) put(seq int64, hash string) error {
	k.mu.Lock()
	js := k.js
	k.mu.Unlock()
	if js == nil {
		return nil // NATS not up yet; the sidecar file has it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, broker.BucketState)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(audit.Checkpoint{Seq: seq, Hash: hash, TS: time.Now().UTC().Format(time.RFC3339Nano)})
	_, err = kv.Put(ctx, checkpointKey, b)
	return err
}

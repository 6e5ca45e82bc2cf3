package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/airlock/airlock/broker"
	"github.com/airlock/airlock/broker/auditstream"
	"github.com/airlock/airlock/broker/client"
)

func init() {
	register(command{Name: "status", Summary: "the brokers, the audit writer and the shared state, as NATS sees them", Run: runStatus})
}

// statusReport is what `airlock status` finds (its --json form).
type statusReport struct {
	URL     string         `json:"url"`
	Server  string         `json:"server"`
	Cluster string         `json:"cluster,omitempty"`
	Brokers []brokerStatus `json:"brokers"`
	Audit   auditStatus    `json:"audit"`
	Assets  []assetStatus  `json:"assets"`
	Pending int            `json:"pending"`
	// Problems lists what an operator must look at; empty when healthy.
	Problems []string `json:"problems"`
}

type brokerStatus struct {
	Name     string    `json:"name"`
	ID       string    `json:"id"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Requests int       `json:"submits"` // calls this broker took from the queue group
}

type auditStatus struct {
	// Mode is "stream" (the fleet's audit stream, applied by the lease
	// holder) or "direct" (the embedded broker writes its SQLite log).
	Mode      string `json:"mode"`
	Writer    string `json:"writer,omitempty"`
	LastSeq   uint64 `json:"last_seq,omitempty"`
	Delivered uint64 `json:"delivered_to_writer,omitempty"`
}

type assetStatus struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"` // kv or stream
	Messages uint64   `json:"messages"`
	Replicas int      `json:"replicas"`
	Leader   string   `json:"leader,omitempty"`
	Peers    []string `json:"peers,omitempty"` // "n1 current", "n2 lagging 12 ops, seen 3s ago"
}

func runStatus(ctx context.Context, e env) error {
	fs := newFlags(e, "status", "[--nats URL] [--key FILE] [--json]")
	natsURL := fs.String("nats", natsURLDefault(), "NATS URL (any node of the cluster)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for NATS and the brokers")
	cf := addConnFlags(fs)
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("status: unexpected argument %q", fs.Arg(0))
	}
	// Reading stream and consumer state takes a broker's identity when the
	// server enforces permissions (reviewers may read the queue only).
	copts, _, _, err := cf.options(client.RoleBroker, "")
	if err != nil {
		return err
	}
	c, err := client.Connect(*natsURL, []nats.Option{nats.Name("airlock status"), nats.Timeout(*timeout), nats.MaxReconnects(0)}, copts...)
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("status: %w", err)}
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 6*(*timeout))
	defer cancel()
	rep, err := gatherStatus(ctx, c.Conn(), *natsURL)
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("status: %w", err)}
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printStatus(e.Stdout, rep)
	}
	if len(rep.Problems) > 0 {
		return &exitError{Code: 1, Err: fmt.Errorf("status: %d problem(s): %s", len(rep.Problems), strings.Join(rep.Problems, "; "))}
	}
	return nil
}

// gatherStatus asks NATS: the brokers answering the micro service's
// STATS, the audit writer lease, and every airlock stream and bucket.
func gatherStatus(ctx context.Context, nc *nats.Conn, url string) (*statusReport, error) {
	rep := &statusReport{URL: url, Server: nc.ConnectedServerName(), Cluster: nc.ConnectedClusterName(), Brokers: []brokerStatus{}, Assets: []assetStatus{}, Problems: []string{}}
	var err error
	if rep.Brokers, err = brokerStats(ctx, nc); err != nil {
		return nil, err
	}
	if len(rep.Brokers) == 0 {
		rep.Problems = append(rep.Problems, "no broker answers (is airlock serve running?)")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	// Each JetStream request gets its own short deadline: with a node
	// gone, some are unanswered until an election ends, and the report
	// should still say what it could find.
	op := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	actx, cancel := op()
	_, err = js.AccountInfo(actx)
	cancel()
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("jetstream: %v (a meta leader election, or no quorum)", err))
	}
	streams := []struct{ name, kind string }{
		{"KV_" + broker.BucketCalls, "kv"}, {"KV_" + broker.BucketPending, "kv"}, {"KV_" + broker.BucketGrants, "kv"},
		{"KV_" + broker.BucketState, "kv"}, {"KV_airlock_limits", "kv"}, {"KV_" + auditstream.LeaseBucket, "kv"}, {"KV_" + broker.BucketBrokers, "kv"},
		{auditstream.StreamName, "stream"},
	}
	for _, s := range streams {
		sctx, cancel := op()
		st, err := js.Stream(sctx, s.name)
		cancel()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // not used by this deployment (memory limits, embedded audit)
		}
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", s.name, err))
			continue
		}
		info := st.CachedInfo()
		a := assetStatus{Name: strings.TrimPrefix(s.name, "KV_"), Kind: s.kind, Messages: info.State.Msgs, Replicas: info.Config.Replicas}
		if cl := info.Cluster; cl != nil {
			a.Leader = cl.Leader
			if a.Leader == "" && a.Replicas > 1 {
				rep.Problems = append(rep.Problems, a.Name+": no leader (an election is under way, or no quorum)")
			}
			for _, p := range cl.Replicas {
				state := "current"
				switch {
				case p.Offline || (!p.Current && p.Active > unreachableAfter):
					state = fmt.Sprintf("offline (last seen %s ago)", p.Active.Round(time.Second))
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: replica %s offline", a.Name, p.Name))
				case !p.Current && p.Active == 0:
					// The leader has not heard from it since it was elected.
					state = "offline (not seen by this leader)"
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: replica %s offline", a.Name, p.Name))
				case !p.Current:
					state = fmt.Sprintf("catching up (%d behind)", p.Lag)
				}
				a.Peers = append(a.Peers, p.Name+" "+state)
			}
		}
		rep.Assets = append(rep.Assets, a)
		if s.name == auditstream.StreamName {
			rep.Audit.Mode = "stream"
			rep.Audit.LastSeq = info.State.LastSeq
			cctx, cancel := op()
			rep.Audit.Delivered = writerDelivered(cctx, st)
			cancel()
		}
	}
	if rep.Audit.Mode == "" {
		rep.Audit.Mode = "direct"
	} else {
		lctx, cancel := op()
		if kv, err := js.KeyValue(lctx, auditstream.LeaseBucket); err == nil {
			if e, err := kv.Get(lctx, auditstream.LeaseKey); err == nil {
				rep.Audit.Writer = string(e.Value())
			}
		}
		cancel()
		if rep.Audit.Writer == "" {
			rep.Problems = append(rep.Problems, "no broker holds the audit writer lease: audit events wait in the stream, unapplied")
		}
	}
	pctx, cancel := op()
	defer cancel()
	if kv, err := js.KeyValue(pctx, broker.BucketPending); err == nil {
		if keys, err := kv.ListKeys(pctx); err == nil {
			for range keys.Keys() {
				rep.Pending++
			}
		}
	}
	return rep, nil
}

// unreachableAfter is how long a replica may go unseen by its leader
// before status calls it offline (Raft heartbeats come every second).
const unreachableAfter = 5 * time.Second

// brokerStats gathers the STATS of every airlock broker: one request, all
// the answers that arrive within a short window.
func brokerStats(ctx context.Context, nc *nats.Conn) ([]brokerStatus, error) {
	subject, err := micro.ControlSubject(micro.StatsVerb, "airlock", "")
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, err
	}
	out := []brokerStatus{}
	window := time.Now().Add(750 * time.Millisecond)
	if d, ok := ctx.Deadline(); ok && d.Before(window) {
		window = d
	}
	for {
		left := time.Until(window)
		if left <= 0 {
			break
		}
		m, err := sub.NextMsg(left)
		if err != nil {
			break // the window closed
		}
		var s micro.Stats
		if json.Unmarshal(m.Data, &s) != nil {
			continue
		}
		b := brokerStatus{Name: s.Metadata["broker"], ID: s.ID, Version: s.Version, Started: s.Started}
		for _, ep := range s.Endpoints {
			if ep.Name == "submit" {
				b.Requests = ep.NumRequests
			}
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// writerDelivered is how far the audit writer's consumer has read the
// audit stream (the writer applies what it reads, in order).
func writerDelivered(ctx context.Context, st jetstream.Stream) uint64 {
	var best uint64
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		if strings.HasPrefix(ci.Name, "airlock_audit_") && ci.Delivered.Stream > best {
			best = ci.Delivered.Stream
		}
	}
	return best
}

func printStatus(w io.Writer, r *statusReport) {
	where := r.Server
	if r.Cluster != "" {
		where += ", cluster " + r.Cluster
	}
	fmt.Fprintf(w, "airlock status · %s (server %s)\n\n", r.URL, where)
	fmt.Fprintf(w, "brokers: %d\n", len(r.Brokers))
	if len(r.Brokers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tID\tVERSION\tUP\tSUBMITS")
		for _, b := range r.Brokers {
			up := "-"
			if !b.Started.IsZero() {
				up = time.Since(b.Started).Round(time.Second).String()
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\n", b.Name, b.ID, b.Version, up, b.Requests)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	switch r.Audit.Mode {
	case "stream":
		writer := r.Audit.Writer
		if writer == "" {
			writer = "NOBODY"
		}
		lag := uint64(0)
		if r.Audit.LastSeq > r.Audit.Delivered {
			lag = r.Audit.LastSeq - r.Audit.Delivered
		}
		fmt.Fprintf(w, "audit: fleet stream %s, writer %s, %d events, read by the writer up to %d (lag %d)\n", auditstream.StreamName, writer, r.Audit.LastSeq, r.Audit.Delivered, lag)
	default:
		fmt.Fprintln(w, "audit: written directly to SQLite by the broker (embedded deployment)")
	}
	fmt.Fprintf(w, "pending review: %d\n\n", r.Pending)
	if len(r.Assets) > 0 {
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "  STATE\tKIND\tMESSAGES\tREPLICAS\tLEADER\tPEERS")
		for _, a := range r.Assets {
			peers := strings.Join(a.Peers, ", ")
			if peers == "" {
				peers = "-"
			}
			leader := a.Leader
			if leader == "" {
				leader = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\n", a.Name, a.Kind, a.Messages, a.Replicas, leader, peers)
		}
		tw.Flush()
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  - "+p)
		}
	}
}

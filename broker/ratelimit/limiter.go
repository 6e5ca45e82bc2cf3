// Package ratelimit enforces the `limits:` of a policy on tool calls: requests,
// tokens, cost per window, largest single input and output, concurrent calls
// in flight and messages per session, per user, org, agent, session and
// globally. Rates use GCRA (one timestamp per budget and key, O(1) time and
// memory per check); state lives in a Store: in process (MemoryStore) or in a
// JetStream key-value bucket shared by a fleet of brokers (KVStore).
//
// docs/ratelimits.md describes the semantics (bursts, window edges, what a
// cancelled reservation gives back, fleet tolerance, restarts).
package ratelimit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// Dimension names, as they appear in airlock.RateLimit and Usage.
const (
	DimRequests        = "requests"
	DimTokens          = "tokens"
	DimCost            = "cost_usd"
	DimInputTokens     = "input_tokens"
	DimOutputTokens    = "output_tokens"
	DimConcurrent      = "concurrent"
	DimSessionMessages = "session_messages"
	// DimKeys is reported when the in-process store is full of keys that
	// still hold usage and a new key cannot be admitted (see WithMaxKeys).
	DimKeys = "keys"
)

// FactorName is the name of the risk factor Pressure returns.
const FactorName = "rate_pressure"

// rate dimensions, indexes into amounts.units.
const (
	dimRequests = iota
	dimTokens
	dimCost
	numDims
)

var dimNames = [numDims]string{DimRequests, DimTokens, DimCost}

// kind is the kind of key a cell belongs to.
type kind uint8

const (
	kindUser        kind = iota // key: user
	kindOrg                     // key: org
	kindAgent                   // key: agent
	kindSession                 // key: (user, session)
	kindSessionUser             // key: user; session-scoped budgets summed over all the user's sessions
	kindGlobal                  // key: "*"
	numKinds
)

var kindScopes = [numKinds]string{"user", "org", "agent", "session", "session", "global"}

func scopeKind(s string) (kind, bool) {
	switch s {
	case "user":
		return kindUser, true
	case "org":
		return kindOrg, true
	case "agent":
		return kindAgent, true
	case "session":
		return kindSession, true
	case "global":
		return kindGlobal, true
	}
	return 0, false
}

// rateRule is one budget: at most amount units of dim per window, counted
// with a sliding-window counter (two window-aligned buckets).
type rateRule struct {
	dim    int
	window int64   // ns
	amount float64 // units per window
	eps    float64 // float slack: amount × 1e-9
	sig    string  // stable identity in the KV store: dim/window
}

// kindPlan is what applies to every key of one kind.
type kindPlan struct {
	kind       kind
	rates      []rateRule
	concurrent int64 // 0: off
	messages   int64 // session messages (kindSession only); 0: off
	pressure   bool  // track time at ≥ 90% (user, org)
}

type sizeRule struct {
	kind          kind
	maxIn, maxOut int64
}

// plan is the compiled form of a list of limits. It is immutable.
type plan struct {
	kinds [numKinds]*kindPlan
	sizes []sizeRule
}

const pressureLevel = 0.9

func compile(limits []policy.Limit, log *slog.Logger) *plan {
	p := &plan{}
	get := func(k kind) *kindPlan {
		if p.kinds[k] == nil {
			p.kinds[k] = &kindPlan{kind: k, pressure: k == kindUser || k == kindOrg}
		}
		return p.kinds[k]
	}
	addRate := func(kp *kindPlan, b budget) {
		for _, r := range kp.rates {
			if r.dim == b.dim && r.window == int64(b.window) && r.amount == b.amount {
				return // the same budget twice (a shorthand folded at load)
			}
		}
		kp.rates = append(kp.rates, rateRule{dim: b.dim, window: int64(b.window), amount: b.amount, eps: b.amount * 1e-9,
			sig: fmt.Sprintf("%s/%s", dimNames[b.dim], FormatWindow(b.window))})
	}
	minPos := func(cur, v int64) int64 {
		if v > 0 && (cur == 0 || v < cur) {
			return v
		}
		return cur
	}
	for _, l := range limits {
		k, ok := scopeKind(l.Scope)
		if !ok {
			log.Warn("ratelimit: limit with unknown scope ignored", "scope", l.Scope, "line", l.Line)
			continue
		}
		if l.MaxInputTokens > 0 || l.MaxOutputTokens > 0 {
			p.sizes = append(p.sizes, sizeRule{kind: k, maxIn: l.MaxInputTokens, maxOut: l.MaxOutputTokens})
		}
		bs := budgets(l)
		if len(bs) > 0 || l.Concurrent > 0 {
			kp := get(k)
			for _, b := range bs {
				addRate(kp, b)
			}
			kp.concurrent = minPos(kp.concurrent, l.Concurrent)
			if k == kindSession { // also per user across sessions
				su := get(kindSessionUser)
				for _, b := range bs {
					addRate(su, b)
				}
				su.concurrent = minPos(su.concurrent, l.Concurrent)
			}
		}
		if l.SessionMessages > 0 {
			kp := get(kindSession)
			kp.messages = minPos(kp.messages, l.SessionMessages)
		}
	}
	return p
}

// budget is a normalised per-window budget of a limit.
type budget struct {
	dim    int
	window time.Duration
	amount float64
}

// budgets reads a limit's per-window budgets (policy.Limit.Budgets: the
// windowed fields and the shorthands requests_per_minute, tokens_per_minute
// and cost_per_hour_usd, each exactly once).
func budgets(l policy.Limit) []budget {
	var out []budget
	for _, b := range l.Budgets() {
		dim := -1
		for i, n := range dimNames {
			if n == b.Dimension {
				dim = i
			}
		}
		if dim < 0 || b.Window <= 0 || !(b.Amount > 0) || math.IsInf(b.Amount, 0) {
			continue
		}
		out = append(out, budget{dim, b.Window, b.Amount})
	}
	return out
}

// Limiter checks tool calls against a policy's limits. It is safe for
// concurrent use. A nil *Limiter, or one built from no limits, allows
// everything.
type Limiter struct {
	p     *plan
	store Store
	cfg   config
}

type config struct {
	clock        func() time.Time
	log          *slog.Logger
	inflightTTL  time.Duration
	sessionTTL   time.Duration
	pressureWin  time.Duration
	pressureFrac float64
	pressurePts  int
}

// Option configures a Limiter.
type Option func(*config)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithInflightTTL bounds how long a concurrency slot is held when it is never
// released (a broker that died with calls in flight): once no slot of a key
// has been taken for d, the key's in-flight count resets. Default 30m; keep it
// above the policy's pending_ttl.
func WithInflightTTL(d time.Duration) Option { return func(c *config) { c.inflightTTL = d } }

// WithSessionTTL sets how long a session's message count is kept after its
// last message. Default 24h.
func WithSessionTTL(d time.Duration) Option { return func(c *config) { c.sessionTTL = d } }

// WithPressure tunes slow-and-steady detection: a user or org that ran at ≥ 90%
// of a budget for more than frac of the last window gets a factor worth
// points. Default 1h, 0.5, 20.
func WithPressure(window time.Duration, frac float64, points int) Option {
	return func(c *config) { c.pressureWin, c.pressureFrac, c.pressurePts = window, frac, points }
}

// New builds a Limiter for limits over store. A nil store means a new
// MemoryStore.
func New(limits []policy.Limit, store Store, opts ...Option) *Limiter {
	cfg := config{
		clock:        time.Now,
		inflightTTL:  30 * time.Minute,
		sessionTTL:   24 * time.Hour,
		pressureWin:  time.Hour,
		pressureFrac: 0.5,
		pressurePts:  20,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.log = cfg.log.With("subsystem", "ratelimit")
	if store == nil {
		store = NewMemoryStore()
	}
	l := &Limiter{p: compile(limits, cfg.log), store: store, cfg: cfg}
	store.bind(l)
	return l
}

func (l *Limiter) now() int64 { return l.cfg.clock().UnixNano() }

// ident is the identity of a call, copied from it.
type ident struct {
	user, org, agent, session string
}

func (id *ident) key(k kind) ckey {
	switch k {
	case kindUser, kindSessionUser:
		return ckey{k: k, a: id.user}
	case kindOrg:
		return ckey{k: k, a: id.org}
	case kindAgent:
		return ckey{k: k, a: id.agent}
	case kindSession:
		return ckey{k: k, a: id.user, b: id.session}
	}
	return ckey{k: k, a: "*"}
}

// ckey identifies a cell: a kind and its key (session cells have two parts).
type ckey struct {
	k    kind
	a, b string
}

func (c ckey) String() string {
	switch c.k {
	case kindSession:
		return c.a + "/" + c.b
	case kindSessionUser:
		return c.a + "/*"
	}
	return c.a
}

// amounts is what a call charges.
type amounts struct {
	units [numDims]float64
}

// Reservation is the usage one call took. Exactly one of Cancel or nothing
// follows; Release follows once the call is decided.
type Reservation struct {
	l    *Limiter
	id   ident
	am   amounts
	at   int64 // when it was taken (ns)
	mu   sync.Mutex
	slot bool // holds a concurrency slot
	done bool // cancelled
}

// Reserve checks every limit that applies to call. When all pass it takes
// the call's usage and returns a Reservation; when one fails it takes nothing
// and returns the first refusal. err reports a store failure only: the
// caller must then refuse the call (fail closed).
//
// The keys are the call's user, org, agent, (user, session), the user across
// all sessions for session-scoped limits, and the global key. An empty user,
// org or session is a key of its own, shared by every call that leaves it
// empty, so leaving a field out never escapes a limit.
func (l *Limiter) Reserve(ctx context.Context, call *airlock.ToolCall) (*Reservation, *airlock.RateLimit, error) {
	if l == nil || call == nil {
		return &Reservation{}, nil, nil
	}
	r := &Reservation{l: l, id: ident{user: call.User, org: call.Org, agent: call.Agent, session: call.Session}, at: l.now()}
	in, out := call.InputTokens, call.OutputTokens
	if in < 0 {
		in = 0
	}
	if out < 0 {
		out = 0
	}
	r.am.units[dimRequests] = 1
	r.am.units[dimTokens] = float64(in) + float64(out)
	switch cost := call.CostUSD; {
	case math.IsNaN(cost) || cost < 0:
		// Not a number a caller could mean; treat as free, the broker's
		// decoder refuses such calls anyway.
	default:
		r.am.units[dimCost] = cost
	}
	for _, s := range l.p.sizes {
		key := r.id.key(s.kind)
		if s.maxIn > 0 && in > s.maxIn {
			return nil, &airlock.RateLimit{Scope: kindScopes[s.kind], Key: key.String(), Dimension: DimInputTokens, Limit: float64(s.maxIn), Used: float64(in)}, nil
		}
		if s.maxOut > 0 && out > s.maxOut {
			return nil, &airlock.RateLimit{Scope: kindScopes[s.kind], Key: key.String(), Dimension: DimOutputTokens, Limit: float64(s.maxOut), Used: float64(out)}, nil
		}
	}
	rl, err := l.store.reserve(ctx, l.p, r)
	if err != nil {
		return nil, nil, fmt.Errorf("ratelimit: %w", err)
	}
	if rl != nil {
		return nil, rl, nil
	}
	return r, nil, nil
}

// Restore returns a Reservation for a call reserved by an earlier process
// (a broker restarted while the call waited for a reviewer), so that its
// concurrency slot can be released when the call is decided. Only Release
// is meaningful on it.
func (l *Limiter) Restore(call *airlock.ToolCall) *Reservation {
	if l == nil || call == nil {
		return &Reservation{}
	}
	return &Reservation{l: l, id: ident{user: call.User, org: call.Org, agent: call.Agent, session: call.Session}, at: l.now(), slot: true, done: true}
}

// Release frees the call's concurrency slot once it has a final decision (or
// expired waiting for a reviewer). Requests, tokens, cost and the session
// message stay consumed. Releasing twice is harmless.
func (r *Reservation) Release(ctx context.Context) {
	if r == nil || r.l == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.slot {
		return
	}
	r.slot = false
	if err := r.l.store.refund(ctx, r.l.p, r, refundSlot); err != nil {
		r.l.cfg.log.Error("ratelimit: release failed", "user", r.id.user, "err", err)
	}
}

// Cancel gives back what the reservation took, for a call that was then
// rejected or denied for another reason: its tokens and cost (the call never
// ran), its session message, and its concurrency slot if Release has not
// already freed it. The request itself stays counted, so a flood of calls
// that policy denies still spends the requests budget. Tokens and cost are
// taken out of the bucket they were counted in; once that bucket has left
// the sliding window (two windows later) there is nothing left to give back.
// Cancelling twice is harmless.
func (r *Reservation) Cancel(ctx context.Context) {
	if r == nil || r.l == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	what := refundUsage
	if r.slot {
		what |= refundSlot
		r.slot = false
	}
	if err := r.l.store.refund(ctx, r.l.p, r, what); err != nil {
		r.l.cfg.log.Error("ratelimit: cancel failed", "user", r.id.user, "err", err)
	}
}

type refundKind uint8

const (
	refundSlot  refundKind = 1 << iota // the concurrency slot
	refundUsage                        // tokens, cost, session message (not the request)
	refundAll                          // everything, requests too (rolling back a partial reservation)
)

// Usage is the current use of one budget of one key.
type Usage struct {
	Scope     string
	Key       string
	Dimension string
	// Window is the budget's window; 0 for concurrent and session messages.
	Window time.Duration
	Used   float64
	Limit  float64
	// Pressure is the fraction of the long window (WithPressure, 1h) the key
	// spent at ≥ 90% of this budget; user and org rate budgets only.
	Pressure float64
}

// Usage returns the current use of every budget of the keys of scope
// matching key ("" for all keys; scope "" for all scopes, the 50 most used).
// A store failure returns nil (and is logged); Handle reports it.
func (l *Limiter) Usage(ctx context.Context, scope, key string) []Usage {
	us, err := l.usage(ctx, scope, key)
	if err != nil {
		l.cfg.log.Error("ratelimit: usage failed", "err", err)
		return nil
	}
	return us
}

// maxUsageRows bounds an unfiltered Usage answer.
const maxUsageRows = 50

func (l *Limiter) usage(ctx context.Context, scope, key string) ([]Usage, error) {
	if l == nil {
		return nil, nil
	}
	if scope != "" {
		if _, ok := scopeKind(scope); !ok {
			return nil, fmt.Errorf("ratelimit: unknown scope %q (want user, org, agent, session or global)", scope)
		}
	}
	us, err := l.store.usage(ctx, l.p, l.now(), scope, key)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	if scope == "" && key == "" && len(us) > maxUsageRows {
		sortUsage(us, true)
		us = us[:maxUsageRows]
	}
	sortUsage(us, false)
	return us, nil
}

// Pressure returns a "rate_pressure" factor when the call's user or org has
// run at ≥ 90% of one of its budgets for more than the configured share of
// the long window (slow-and-steady traffic just under a limit), else nil.
func (l *Limiter) Pressure(call *airlock.ToolCall) *airlock.Factor {
	if l == nil || call == nil {
		return nil
	}
	id := ident{user: call.User, org: call.Org}
	now := l.now()
	best, bestFrac := -1, 0.0
	var bestKind kind
	for _, k := range [...]kind{kindUser, kindOrg} {
		kp := l.p.kinds[k]
		if kp == nil || len(kp.rates) == 0 {
			continue
		}
		if i, f := l.store.pressure(kp, id.key(k), now); i >= 0 && f > bestFrac {
			best, bestFrac, bestKind = i, f, k
		}
	}
	if best < 0 || bestFrac < l.cfg.pressureFrac {
		return nil
	}
	r := l.p.kinds[bestKind].rates[best]
	mins := int(math.Round(l.cfg.pressureWin.Minutes()))
	detail := fmt.Sprintf("%s %s ran at ≥90%% of %s/%s for %d of the last %d minutes",
		kindScopes[bestKind], id.key(bestKind).String(), dimNames[r.dim], FormatWindow(time.Duration(r.window)),
		int(math.Round(bestFrac*float64(mins))), mins)
	return &airlock.Factor{Name: FactorName, Points: l.cfg.pressurePts, Detail: detail}
}

// FormatWindow writes a window the way the policy file does: 1m, 1h, 24h, 7d.
func FormatWindow(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d <= 0:
		return ""
	case d%day == 0 && d > day:
		return fmt.Sprintf("%dd", d/day)
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

func retryAfter(rl *airlock.RateLimit, d int64) {
	ms := (d + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	if ms < 1 {
		ms = 1
	}
	rl.RetryAfterMS = ms
	rl.RetryAfter = (time.Duration(ms) * time.Millisecond).String()
}

func scopeMatches(scope string, k kind) bool { return scope == "" || kindScopes[k] == scope }

// keyMatches reports whether cell key c is selected by key (user scope also
// selects the user's sessions; session scope takes "user" or "user/session").
func keyMatches(c ckey, scope, key string) bool {
	if key == "" {
		return true
	}
	switch c.k {
	case kindSession, kindSessionUser:
		if scope == "user" || scope == "session" {
			if c.a == key {
				return true
			}
		}
		return c.String() == key
	}
	return c.a == key
}

func wantKind(scope string, k kind) bool {
	if scope == "user" && (k == kindSession || k == kindSessionUser) {
		return true
	}
	return scopeMatches(scope, k)
}

func durationOf(ns int64) time.Duration { return time.Duration(ns) }

var dimOrder = map[string]int{DimRequests: 0, DimTokens: 1, DimCost: 2, DimConcurrent: 3, DimSessionMessages: 4}

var scopeOrder = map[string]int{"global": 0, "org": 1, "agent": 2, "user": 3, "session": 4}

// sortUsage orders rows by scope, key, dimension and window; byLoad first
// puts the keys closest to a limit first.
func sortUsage(us []Usage, byLoad bool) {
	load := func(u Usage) float64 {
		if u.Limit <= 0 {
			return 0
		}
		return u.Used / u.Limit
	}
	sort.SliceStable(us, func(i, j int) bool {
		a, b := us[i], us[j]
		if byLoad {
			if la, lb := max(load(a), a.Pressure), max(load(b), b.Pressure); la != lb {
				return la > lb
			}
		}
		if a.Scope != b.Scope {
			return scopeOrder[a.Scope] < scopeOrder[b.Scope]
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.Dimension != b.Dimension {
			return dimOrder[a.Dimension] < dimOrder[b.Dimension]
		}
		return a.Window < b.Window
	})
}

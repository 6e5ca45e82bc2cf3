package ratelimit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/internal/jsutil"
)

// KVStore keeps the limiter's state in a JetStream key-value bucket, one
// entry per key (user, org, …), so that every broker sharing the bucket
// enforces the same limits and usage survives restarts. Each change is a
// compare-and-set on the entry's revision, retried on a lost race: no call
// is ever admitted on a count another broker has since changed.
type KVStore struct {
	kv      jetstream.KeyValue
	l       *Limiter
	retries int

	mu      sync.Mutex
	press   map[ckey]*cell     // last state seen of user and org keys, for Pressure
	entries map[string]kvEntry // last entry read or written per key, to skip a read

	conflicts atomic.Int64 // lost compare-and-set races, retried
	noCache   bool         // always read before writing (benchmarks)
}

// Conflicts returns how many compare-and-set races this store lost (and
// retried) so far.
func (s *KVStore) Conflicts() int64 { return s.conflicts.Load() }

// maxPressCache bounds the cells (and the entries) KVStore remembers.
const maxPressCache = 10000

// maxKVScan bounds the entries an unfiltered Usage reads.
const maxKVScan = 10000

// NewKVStore returns a store over kv. BucketConfig gives a suitable bucket
// configuration.
func NewKVStore(kv jetstream.KeyValue) *KVStore {
	return &KVStore{kv: kv, retries: 200, press: map[ckey]*cell{}, entries: map[string]kvEntry{}}
}

// BucketConfig is the configuration of a rate-limit bucket for limits:
// history 1, and entries untouched for longer than the state can matter
// (two of the longest window, the pressure window, the session TTL) age out.
func BucketConfig(bucket string, limits []policy.Limit) jetstream.KeyValueConfig {
	longest := 2 * time.Hour // two pressure windows
	for _, l := range limits {
		for _, b := range budgets(l) {
			longest = max(longest, 2*b.window)
		}
	}
	longest = max(longest, 24*time.Hour) // default session TTL
	return jetstream.KeyValueConfig{Bucket: bucket, History: 1, TTL: longest + time.Hour,
		Description: "airlock rate-limit state"}
}

func (s *KVStore) bind(l *Limiter) { s.l = l }

var kindPrefix = [numKinds]string{"u", "o", "a", "s", "su", "g"}

func enc(s string) string {
	if s == "" {
		return "_"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func dec(s string) (string, error) {
	if s == "_" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err
}

// kvKey is the bucket key of a cell: a kind prefix and the base64url of
// each part ("u.YWxpY2U", "s.YWxpY2U.czE", "g._").
func kvKey(k ckey) string {
	switch k.k {
	case kindSession:
		return kindPrefix[k.k] + "." + enc(k.a) + "." + enc(k.b)
	case kindGlobal:
		return kindPrefix[k.k] + "._"
	}
	return kindPrefix[k.k] + "." + enc(k.a)
}

func parseKVKey(s string) (ckey, bool) {
	parts := strings.Split(s, ".")
	for k := kind(0); k < numKinds; k++ {
		if parts[0] != kindPrefix[k] {
			continue
		}
		switch {
		case k == kindGlobal && len(parts) == 2:
			return ckey{k: k, a: "*"}, true
		case k == kindSession && len(parts) == 3:
			a, err1 := dec(parts[1])
			b, err2 := dec(parts[2])
			return ckey{k: k, a: a, b: b}, err1 == nil && err2 == nil
		case k != kindSession && k != kindGlobal && len(parts) == 2:
			a, err := dec(parts[1])
			return ckey{k: k, a: a}, err == nil
		}
	}
	return ckey{}, false
}

// kvState is the JSON of a cell in the bucket. Budgets are keyed by
// dimension and window, so a policy reload that changes an amount keeps the
// counts.
type kvState struct {
	V             int               `json:"v"`
	Rates         map[string]kvRate `json:"rates,omitempty"`
	HotStart      int64             `json:"hot_start,omitempty"`
	HotAt         int64             `json:"hot_at,omitempty"`
	Inflight      int64             `json:"inflight,omitempty"`
	InflightUntil int64             `json:"inflight_until,omitempty"`
	Messages      int64             `json:"messages,omitempty"`
	Seen          int64             `json:"seen,omitempty"`
}

type kvRate struct {
	Start   int64   `json:"start"`
	Cur     float64 `json:"cur"`
	Prev    float64 `json:"prev"`
	Last    float64 `json:"last,omitempty"`
	HotCur  int64   `json:"hot_cur,omitempty"`
	HotPrev int64   `json:"hot_prev,omitempty"`
}

func decodeCell(kp *kindPlan, b []byte) (*cell, error) {
	var st kvState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	c := newCell(kp)
	for i, ru := range kp.rates {
		if r, ok := st.Rates[ru.sig]; ok {
			c.rs()[i] = rate{start: r.Start, cur: r.Cur, prev: r.Prev, last: r.Last}
			if c.hs() != nil {
				c.hs()[i] = hot{cur: r.HotCur, prev: r.HotPrev}
			}
		}
	}
	c.hotStart, c.hotAt = st.HotStart, st.HotAt
	c.inflight, c.inflightUntil, c.messages, c.seen = st.Inflight, st.InflightUntil, st.Messages, st.Seen
	return c, nil
}

func encodeCell(kp *kindPlan, c *cell) []byte {
	st := kvState{V: 1, HotStart: c.hotStart, HotAt: c.hotAt, Inflight: c.inflight, InflightUntil: c.inflightUntil,
		Messages: c.messages, Seen: c.seen}
	if len(kp.rates) > 0 {
		st.Rates = make(map[string]kvRate, len(kp.rates))
	}
	for i, ru := range kp.rates {
		r := c.rs()[i]
		kr := kvRate{Start: r.start, Cur: r.cur, Prev: r.prev, Last: r.last}
		if c.hs() != nil {
			kr.HotCur, kr.HotPrev = c.hs()[i].cur, c.hs()[i].prev
		}
		st.Rates[ru.sig] = kr
	}
	b, _ := json.Marshal(st) // plain numbers and strings: cannot fail
	return b
}

// isConflict reports whether err is a lost compare-and-set race: Update
// reports it as ErrKeyRevisionMismatch (nats.go maps both the single-replica
// code 10071 and the replicated-stream code 10164 to it), Create as
// ErrKeyExists; the API codes are checked too in case a wrapper hides them.
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// transientBudget bounds how long a rate-limit update rides through
// transient JetStream errors before the broker fails closed.
const transientBudget = 6 * time.Second

// ErrContention is returned when a key's compare-and-set lost too many races
// in a row; the broker then refuses the call (fails closed).
var ErrContention = errors.New("ratelimit: too much contention on a rate-limit key")

// update applies fn to the cell of key with compare-and-set, retrying lost
// races. A missing key is created only when create is set. fn returns a
// refusal (nothing is written) or whether to write.
//
// The first attempt starts from the entry this store last wrote or read (no
// round trip for the read when it is still current); a stale one only costs
// a lost race. A refusal is only ever given on a fresh read.
func (s *KVStore) update(ctx context.Context, kp *kindPlan, key ckey, create bool, fn func(c *cell) (*airlock.RateLimit, bool)) (*airlock.RateLimit, error) {
	name := kvKey(key)
	useCache, backoff := !s.noCache, 0
	// Transient errors (a leader election in the bucket's stream) are
	// ridden through for a while; a write whose answer was lost is checked
	// for having landed, so that nothing is charged twice.
	transientUntil := time.Now().Add(transientBudget)
	transient := func(err error) bool {
		if !jsutil.IsTransient(err) || time.Now().After(transientUntil) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
			return true
		}
	}
	for attempt := 0; attempt < s.retries; attempt++ {
		if backoff > 0 {
			d := time.Duration(rand.Int64N(int64(min(backoff, 20))*int64(time.Millisecond) + 1))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		var rev uint64
		var c *cell
		fresh := false
		if useCache {
			useCache = false
			if e, ok := s.cached(name); ok {
				if cc, err := decodeCell(kp, e.val); err == nil {
					c, rev = cc, e.rev
				}
			}
		}
		if c == nil {
			fresh = true
			e, err := s.kv.Get(ctx, name)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				if !create {
					return nil, nil
				}
				c = newCell(kp)
			case err != nil:
				if transient(err) {
					attempt--
					continue
				}
				return nil, fmt.Errorf("get %s: %w", name, err)
			default:
				rev = e.Revision()
				if c, err = decodeCell(kp, e.Value()); err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				s.cache(name, rev, e.Value())
			}
		}
		rl, write := fn(c)
		if rl != nil && !fresh {
			continue // refuse only on what the bucket holds now
		}
		if rl != nil || !write {
			s.remember(key, kp, c)
			return rl, nil
		}
		val := encodeCell(kp, c)
		var err error
		if rev == 0 {
			rev, err = s.kv.Create(ctx, name, val)
		} else {
			rev, err = s.kv.Update(ctx, name, val, rev)
		}
		if err == nil {
			s.cache(name, rev, val)
			s.remember(key, kp, c)
			return nil, nil
		}
		if !isConflict(err) {
			s.uncache(name)
			if transient(err) {
				if e, gerr := s.kv.Get(ctx, name); gerr == nil && bytes.Equal(e.Value(), val) {
					s.cache(name, e.Revision(), val) // it landed; the answer was lost
					s.remember(key, kp, c)
					return nil, nil
				}
				attempt--
				continue
			}
			return nil, fmt.Errorf("update %s: %w", name, err)
		}
		s.conflicts.Add(1)
		s.uncache(name)
		if fresh {
			backoff++
		}
	}
	return nil, fmt.Errorf("%w %s (%d attempts)", ErrContention, name, s.retries)
}

type kvEntry struct {
	rev uint64
	val []byte
}

func (s *KVStore) cached(name string) (kvEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	return e, ok
}

func (s *KVStore) cache(name string, rev uint64, val []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= maxPressCache {
		clear(s.entries)
	}
	s.entries[name] = kvEntry{rev: rev, val: val}
}

func (s *KVStore) uncache(name string) {
	s.mu.Lock()
	delete(s.entries, name)
	s.mu.Unlock()
}

func (s *KVStore) remember(key ckey, kp *kindPlan, c *cell) {
	if !kp.pressure {
		return
	}
	s.mu.Lock()
	if len(s.press) >= maxPressCache {
		clear(s.press)
	}
	s.press[key] = c
	s.mu.Unlock()
}

func (s *KVStore) reserve(ctx context.Context, p *plan, r *Reservation) (*airlock.RateLimit, error) {
	cfg := &s.l.cfg
	var done [numKinds]kind
	nd := 0
	for k := kind(0); k < numKinds; k++ {
		kp := p.kinds[k]
		if kp == nil {
			continue
		}
		key := r.id.key(k)
		rl, err := s.update(ctx, kp, key, true, func(c *cell) (*airlock.RateLimit, bool) {
			if rl := c.check(kp, r.at, &r.am, cfg); rl != nil {
				rl.Key = key.String()
				return rl, false
			}
			c.charge(kp, r.at, &r.am, cfg)
			return nil, true
		})
		if err != nil || rl != nil {
			s.rollback(ctx, p, r, done[:nd])
			return rl, err
		}
		done[nd] = k
		nd++
		if kp.concurrent > 0 {
			r.slot = true
		}
	}
	return nil, nil
}

// rollback takes back a partial reservation from the keys already charged
// (another key refused the call, or the store failed).
func (s *KVStore) rollback(ctx context.Context, p *plan, r *Reservation, kinds []kind) {
	if len(kinds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, k := range kinds {
		if err := s.refundKind(ctx, p.kinds[k], r, refundAll|refundSlot); err != nil {
			s.l.cfg.log.Error("ratelimit: rollback failed", "key", kvKey(r.id.key(k)), "err", err)
		}
	}
}

func (s *KVStore) refundKind(ctx context.Context, kp *kindPlan, r *Reservation, what refundKind) error {
	if what == refundSlot && kp.concurrent == 0 {
		return nil
	}
	now := s.l.now()
	_, err := s.update(ctx, kp, r.id.key(kp.kind), false, func(c *cell) (*airlock.RateLimit, bool) {
		c.refund(kp, now, r.at, &r.am, what, &s.l.cfg)
		return nil, true
	})
	return err
}

func (s *KVStore) refund(ctx context.Context, p *plan, r *Reservation, what refundKind) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var errs []error
	for k := kind(0); k < numKinds; k++ {
		if kp := p.kinds[k]; kp != nil {
			if err := s.refundKind(ctx, kp, r, what); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// filters are the bucket subjects (key patterns) a Usage query reads.
func usageFilters(scope, key string) []string {
	if scope == "" && key == "" {
		return []string{">"}
	}
	var out []string
	add := func(k kind, pattern string) {
		if wantKind(scope, k) {
			out = append(out, kindPrefix[k]+"."+pattern)
		}
	}
	if key == "" {
		for k := kind(0); k < numKinds; k++ {
			add(k, ">")
		}
		return out
	}
	e := enc(key)
	add(kindUser, e)
	add(kindOrg, e)
	add(kindAgent, e)
	add(kindSessionUser, e)
	add(kindSession, e+".*")
	if a, b, ok := strings.Cut(key, "/"); ok && (scope == "session" || scope == "") {
		out = append(out, kindPrefix[kindSession]+"."+enc(a)+"."+enc(b))
		if b == "*" {
			out = append(out, kindPrefix[kindSessionUser]+"."+enc(a))
		}
	}
	if scope == "global" || (scope == "" && key == "*") {
		out = append(out, kindPrefix[kindGlobal]+"._")
	}
	return out
}

func (s *KVStore) usage(ctx context.Context, p *plan, now int64, scope, key string) ([]Usage, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.kv.WatchFiltered(ctx, usageFilters(scope, key), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	latest := map[string]jetstream.KeyValueEntry{}
	for n := 0; n < maxKVScan; n++ {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e == nil {
			break
		}
		latest[e.Key()] = e
	}
	var out []Usage
	cfg := &s.l.cfg
	for name, e := range latest {
		k, ok := parseKVKey(name)
		if !ok {
			continue
		}
		kp := p.kinds[k.k]
		if kp == nil || !wantKind(scope, k.k) || !keyMatches(k, scope, key) {
			continue
		}
		c, err := decodeCell(kp, e.Value())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if key == "" && c.idle(kp, now, cfg, true) {
			continue
		}
		out = c.usage(out, kp, k, now, cfg)
	}
	return out, nil
}

// pressure reads the last state of key this broker saw (Pressure has no
// context and must not wait on the network; the broker calls it right after
// Reserve, which has just read the key).
func (s *KVStore) pressure(kp *kindPlan, key ckey, now int64) (int, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.press[key]
	if !ok {
		return -1, 0
	}
	best, frac := -1, 0.0
	for i := range kp.rates {
		if f := c.hotFrac(kp, i, now, &s.l.cfg); f > frac {
			best, frac = i, f
		}
	}
	return best, frac
}

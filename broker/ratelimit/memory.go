package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/airlock/airlock"
)

// Store keeps the limiter's state. The two implementations are MemoryStore
// (one process) and KVStore (a fleet sharing a JetStream KV bucket).
type Store interface {
	bind(l *Limiter)
	reserve(ctx context.Context, p *plan, r *Reservation) (*airlock.RateLimit, error)
	refund(ctx context.Context, p *plan, r *Reservation, what refundKind) error
	usage(ctx context.Context, p *plan, now int64, scope, key string) ([]Usage, error)
	// pressure returns the budget of key with the largest share of time at
	// ≥ 90% and that share.
	pressure(kp *kindPlan, key ckey, now int64) (int, float64)
}

const (
	nShards         = 64
	defaultMaxKeys  = 1 << 18
	sweepEvery      = int64(time.Minute)
	sweepRetryEvery = int64(time.Second)
	maxFree         = 64
	evictSample     = 64
)

// MemoryStore keeps state in this process: fast (no allocation per check
// once a key exists), lost when the process exits. It serves one Limiter;
// New binds it (binding it again clears it).
type MemoryStore struct {
	seed     maphash.Seed
	seed2    maphash.Seed
	hGlobal  hkey // the hash of the global key, "*"
	perShard int
	l        *Limiter
	shards   [nShards]mshard
}

type mshard struct {
	mu        sync.Mutex
	m         index // by the key's 128-bit hash: no string compare
	free      [numKinds][]*cell
	lastSweep int64
	fullUntil int64    // after a failed eviction, new keys are refused at once until then
	cursor    int      // where the next limited sweep starts
	_         [64]byte // keep shards on separate cache lines
}

// StoreOption configures a MemoryStore.
type StoreOption func(*MemoryStore)

// WithMaxKeys caps the keys (cells) the store holds; default 262144. When
// the store is full, idle keys (those holding no usage) are evicted; when
// none is idle, a call needing a new key is refused with dimension "keys"
// rather than forgetting someone's usage.
func WithMaxKeys(n int) StoreOption {
	return func(s *MemoryStore) {
		if n > 0 {
			s.perShard = max(1, (n+nShards-1)/nShards)
		}
	}
}

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore(opts ...StoreOption) *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(), perShard: defaultMaxKeys / nShards}
	for _, o := range opts {
		o(s)
	}
	s.hGlobal = s.hashOf("*")
	return s
}

func (s *MemoryStore) bind(l *Limiter) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if s.l != nil {
			sh.m = index{}
			sh.free = [numKinds][]*cell{}
		}
		sh.mu.Unlock()
	}
	s.l = l
}

// Len returns the number of keys held (for tests and metrics).
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.m.n
		sh.mu.Unlock()
	}
	return n
}

// hkey is a cell's key hashed twice with independent random seeds. Two keys
// share a cell only if both 64-bit hashes collide (about 2⁻¹²⁸ for a pair;
// the seeds are secret, so a caller cannot aim at a collision).
type hkey struct{ h1, h2 uint64 }

func mix(a, b uint64) uint64 { return (a ^ (b<<31 | b>>33)) * 0x9E3779B97F4A7C15 }

func (h hkey) kind(k kind) hkey {
	return hkey{mix(h.h1, uint64(k)+1), mix(h.h2, uint64(k)+1)}
}

func (s *MemoryStore) hashOf(str string) hkey {
	return hkey{maphash.String(s.seed, str), maphash.String(s.seed2, str)}
}

func (h hkey) then(o hkey) hkey { return hkey{mix(h.h1, o.h1), mix(h.h2, o.h2)} }

// locate returns the hash of a cell key and its shard; collect computes
// the same with shared parts.
func (s *MemoryStore) locate(k ckey) (hkey, int) {
	h := s.hashOf(k.a)
	if k.k == kindSession {
		h = h.then(s.hashOf(k.b))
	}
	h = h.kind(k.k)
	return h, shardOfHash(h)
}

func shardOfHash(h hkey) int { return int(h.h1 % nShards) }

// slot is one cell a reservation touches.
type slot struct {
	kp *kindPlan
	h  hkey
	sh int
	c  *cell
}

type slots struct {
	s     [numKinds]slot
	n     int
	locks [numKinds]int
	nl    int
}

// collect lists the cells of the call's keys (only those holding a
// concurrency slot when slotsOnly) and the shards to lock, in order.
func (s *MemoryStore) collect(p *plan, id *ident, ss *slots, slotsOnly bool) {
	var hUser, hSession hkey
	hashedUser, hashedSession := false, false
	for k := kind(0); k < numKinds; k++ {
		kp := p.kinds[k]
		if kp == nil || slotsOnly && kp.concurrent == 0 {
			continue
		}
		var h hkey
		switch k {
		case kindUser, kindSessionUser, kindSession:
			if !hashedUser {
				hUser, hashedUser = s.hashOf(id.user), true
			}
			h = hUser
			if k == kindSession {
				if !hashedSession {
					hSession, hashedSession = hUser.then(s.hashOf(id.session)), true
				}
				h = hSession
			}
		case kindOrg:
			h = s.hashOf(id.org)
		case kindAgent:
			h = s.hashOf(id.agent)
		default:
			h = s.hGlobal
		}
		h = h.kind(k)
		sh := shardOfHash(h)
		ss.s[ss.n] = slot{kp: kp, h: h, sh: sh}
		ss.n++
		// insert sh into the sorted unique lock list
		i := 0
		for i < ss.nl && ss.locks[i] < sh {
			i++
		}
		if i < ss.nl && ss.locks[i] == sh {
			continue
		}
		copy(ss.locks[i+1:ss.nl+1], ss.locks[i:ss.nl])
		ss.locks[i] = sh
		ss.nl++
	}
}

func (s *MemoryStore) lock(ss *slots) {
	for i := 0; i < ss.nl; i++ {
		s.shards[ss.locks[i]].mu.Lock()
	}
}

func (s *MemoryStore) unlock(ss *slots) {
	for i := ss.nl - 1; i >= 0; i-- {
		s.shards[ss.locks[i]].mu.Unlock()
	}
}

// find fills in the cells of ss that exist and pins them (so that creating
// another cell of the call cannot evict them). The lookups do not depend on
// each other, so their cache misses overlap. The shards are locked.
func (s *MemoryStore) find(ss *slots) {
	for i := 0; i < ss.n; i++ {
		sl := &ss.s[i]
		if c := s.shards[sl.sh].m.get(sl.h); c != nil {
			sl.c = c
			c.pin++
		}
	}
}

func (s *MemoryStore) reserve(_ context.Context, p *plan, r *Reservation) (*airlock.RateLimit, error) {
	var ss slots
	s.collect(p, &r.id, &ss, false)
	if ss.n == 0 {
		return nil, nil
	}
	cfg := &s.l.cfg
	now := r.at
	s.lock(&ss)
	defer s.unlock(&ss)
	s.find(&ss)
	var refusal *airlock.RateLimit
	for i := 0; i < ss.n; i++ {
		sl := &ss.s[i]
		if sl.c == nil {
			c := s.create(sl, r.id.key(sl.kp.kind), now)
			if c == nil {
				refusal = &airlock.RateLimit{Scope: kindScopes[sl.kp.kind], Key: r.id.key(sl.kp.kind).String(), Dimension: DimKeys,
					Limit: float64(s.perShard * nShards), Used: float64(s.perShard * nShards)}
				retryAfter(refusal, sweepRetryEvery)
				break
			}
			sl.c = c
			c.pin++
		}
		if refusal = sl.c.check(sl.kp, now, &r.am, cfg); refusal != nil {
			refusal.Key = r.id.key(sl.kp.kind).String()
			break
		}
	}
	if refusal == nil {
		for j := 0; j < ss.n; j++ {
			sl := &ss.s[j]
			sl.c.charge(sl.kp, now, &r.am, cfg)
			if sl.kp.concurrent > 0 {
				r.slot = true
			}
		}
	}
	for j := 0; j < ss.n; j++ {
		if c := ss.s[j].c; c != nil {
			c.pin--
		}
	}
	return refusal, nil
}

// create makes the cell of sl, which does not exist yet; nil when the shard
// is full of keys that still hold usage. The shard is locked.
func (s *MemoryStore) create(sl *slot, key ckey, now int64) *cell {
	sh := &s.shards[sl.sh]
	if now-sh.lastSweep >= sweepEvery {
		s.sweep(sh, now, -1, true)
	}
	if sh.m.n >= s.perShard {
		// Full: evict keys holding nothing, else keys holding only the
		// slow-and-steady signal (or a session's message count); never
		// keys holding usage. When nothing can go, refuse new keys at once
		// for a second, so a flood of new keys cannot make every call pay
		// for a sweep.
		if now < sh.fullUntil {
			return nil
		}
		if s.sweep(sh, now, evictSample, true) == 0 {
			s.sweep(sh, now, evictSample, false)
		}
		if sh.m.n >= s.perShard {
			sh.fullUntil = now + sweepRetryEvery
			return nil
		}
	}
	var c *cell
	if f := sh.free[sl.kp.kind]; len(f) > 0 {
		c = f[len(f)-1]
		sh.free[sl.kp.kind] = f[:len(f)-1]
		c.reset(sl.kp)
	} else {
		c = newCell(sl.kp)
	}
	c.key, c.h = key, sl.h
	sh.m.put(c)
	return c
}

// sweep evicts idle cells (see cell.idle), looking at up to limit of them
// from where the last limited sweep stopped (all of them when limit < 0),
// and returns how many it evicted.
func (s *MemoryStore) sweep(sh *mshard, now int64, limit int, withPressure bool) int {
	p, cfg := s.l.p, &s.l.cfg
	if limit < 0 {
		sh.lastSweep = now
	}
	x := &sh.m
	size := len(x.slots)
	if size == 0 {
		return 0
	}
	i := 0
	if limit >= 0 {
		i = sh.cursor & (size - 1)
	}
	n, seen := 0, 0
	for steps := 0; steps < size && (limit < 0 || seen < limit); {
		c := x.slots[i].c
		if c == nil {
			i, steps = (i+1)&(size-1), steps+1
			continue
		}
		seen++
		kd := c.key.k
		kp := p.kinds[kd]
		if kp == nil || c.idle(kp, now, cfg, withPressure) {
			// Deleting shifts a later cell into slot i: look at it again.
			x.deleteAt(i)
			n++
			if kp != nil && len(sh.free[kd]) < maxFree {
				c.key = ckey{}
				sh.free[kd] = append(sh.free[kd], c)
			}
			continue
		}
		i, steps = (i+1)&(size-1), steps+1
	}
	if limit >= 0 {
		sh.cursor = i
	}
	return n
}

func (s *MemoryStore) refund(_ context.Context, p *plan, r *Reservation, what refundKind) error {
	var ss slots
	s.collect(p, &r.id, &ss, what == refundSlot)
	if ss.n == 0 {
		return nil
	}
	cfg := &s.l.cfg
	var now int64
	if what&(refundUsage|refundAll) != 0 { // giving back a slot needs no clock
		now = s.l.now()
	}
	s.lock(&ss)
	defer s.unlock(&ss)
	for i := 0; i < ss.n; i++ {
		sl := &ss.s[i]
		if c := s.shards[sl.sh].m.get(sl.h); c != nil {
			c.refund(sl.kp, now, r.at, &r.am, what, cfg)
		}
	}
	return nil
}

func (s *MemoryStore) usage(_ context.Context, p *plan, now int64, scope, key string) ([]Usage, error) {
	var out []Usage
	cfg := &s.l.cfg
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, is := range sh.m.slots {
			c := is.c
			if c == nil {
				continue
			}
			k := c.key
			kp := p.kinds[k.k]
			if kp == nil || !wantKind(scope, k.k) || !keyMatches(k, scope, key) {
				continue
			}
			if key == "" && c.idle(kp, now, cfg, true) {
				continue
			}
			out = c.usage(out, kp, k, now, cfg)
		}
		sh.mu.Unlock()
	}
	return out, nil
}

func (s *MemoryStore) pressure(kp *kindPlan, key ckey, now int64) (int, float64) {
	h, shi := s.locate(key)
	sh := &s.shards[shi]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.m.get(h)
	if c == nil {
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

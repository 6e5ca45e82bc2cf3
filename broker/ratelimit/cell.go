package ratelimit

import (
	"math"

	"github.com/airlock/airlock"
)

// rate is the sliding-window counter of one budget: the units counted in
// the current window-aligned bucket and in the one before it.
type rate struct {
	start     int64 // start of the current bucket (a multiple of the window)
	cur, prev float64
	last      float64 // units of the last call counted (for pressure)
}

// roll moves r to the bucket holding now. A clock behind r (another broker's
// clock, a step back) keeps the current bucket.
func (r *rate) roll(w, now int64) {
	s := now - now%w
	if s <= r.start {
		return
	}
	if s == r.start+w {
		r.prev, r.cur = r.cur, 0
	} else {
		r.prev, r.cur = 0, 0
	}
	r.start = s
}

// est is the sliding-window estimate at now of r rolled to now: the
// previous bucket weighted by the share of it still inside the window,
// plus the current bucket.
func (r *rate) est(w, now int64) float64 {
	f := float64(now-r.start) / float64(w)
	if f < 0 {
		f = 0
	} else if f > 1 {
		f = 1
	}
	return r.prev*(1-f) + r.cur
}

// retryAt is when a call of u units would pass against r (rolled to now),
// assuming nothing else is counted meanwhile.
func (r *rate) retryAt(w int64, amount, u float64) int64 {
	if r.cur+u <= amount {
		if r.prev <= 0 {
			return r.start
		}
		f := 1 - (amount-r.cur-u)/r.prev
		return r.start + int64(math.Ceil(f*float64(w)))
	}
	f := 1 - (amount-u)/r.cur
	return r.start + w + int64(math.Ceil(f*float64(w)))
}

// hotUntil is when the estimate of r (rolled to x0) falls below level,
// with nothing more counted; at or before x0 when it already is.
func (r *rate) hotUntil(w int64, level float64, x0 int64) int64 {
	if r.cur >= level {
		return r.start + w + int64((1-level/r.cur)*float64(w))
	}
	if r.prev <= 0 {
		return x0
	}
	f := 1 - (level-r.cur)/r.prev
	if f <= 0 {
		return x0
	}
	return r.start + int64(f*float64(w))
}

// hot counts, for one budget of a user or org, the time spent at ≥ 90% of
// it, in two buckets of the long (pressure) window.
type hot struct{ cur, prev int64 }

// cell is the state of one key of one kind: everything O(1). It is 312
// bytes with up to inlineRates budgets (the 320-byte size class: five
// whole cache lines), the fields a check reads first at the front.
type cell struct {
	h             hkey  // the key's hash (MemoryStore)
	hotStart      int64 // start of the current pressure bucket
	hotAt         int64 // time at ≥ 90% is counted up to here
	inflight      int64
	inflightUntil int64 // the in-flight count is void after this (slots never released)
	messages      int64
	seen          int64    // last charge
	pin           int32    // in use by a reservation in progress (MemoryStore)
	nr            uint8    // budgets (len(kp.rates))
	pressure      bool     // holds pressure buckets (kp.pressure)
	ext           *cellExt // the budgets when more than inlineRates
	inl           [inlineRates]rate
	hinl          [inlineRates]hot
	key           ckey // the key (MemoryStore)
}

// cellExt holds the budgets of a cell with more than inlineRates of them.
type cellExt struct {
	rates []rate
	hot   []hot
}

// inlineRates is how many budgets a cell holds without a second allocation.
const inlineRates = 4

// rs is the rate state of each budget of the cell's kindPlan.
func (c *cell) rs() []rate {
	if c.ext != nil {
		return c.ext.rates
	}
	return c.inl[:c.nr:c.nr]
}

// hs is the pressure buckets of each budget; nil without pressure.
func (c *cell) hs() []hot {
	switch {
	case !c.pressure:
		return nil
	case c.ext != nil:
		return c.ext.hot
	}
	return c.hinl[:c.nr:c.nr]
}

func newCell(kp *kindPlan) *cell {
	c := &cell{}
	c.setup(kp, nil)
	return c
}

// setup sizes a zero cell for kp, reusing ext (cleared) when there is one.
func (c *cell) setup(kp *kindPlan, ext *cellExt) {
	n := len(kp.rates)
	c.nr, c.pressure = uint8(min(n, inlineRates)), kp.pressure
	if n <= inlineRates {
		return
	}
	if ext == nil || len(ext.rates) != n {
		ext = &cellExt{rates: make([]rate, n), hot: make([]hot, n)}
	} else {
		clear(ext.rates)
		clear(ext.hot)
	}
	c.ext = ext
}

// reset makes a recycled cell fresh for kp (the plan it was made for).
func (c *cell) reset(kp *kindPlan) {
	ext := c.ext
	*c = cell{}
	c.setup(kp, ext)
}

func (c *cell) liveInflight(now int64) int64 {
	if c.inflight <= 0 || now > c.inflightUntil {
		return 0
	}
	return c.inflight
}

func (c *cell) liveMessages(now int64, cfg *config) int64 {
	if c.messages <= 0 || now-c.seen >= int64(cfg.sessionTTL) {
		return 0
	}
	return c.messages
}

// check reports the first budget of c that the call would exceed at now, or
// nil. It changes nothing. The caller fills in the refusal's Key.
func (c *cell) check(kp *kindPlan, now int64, am *amounts, cfg *config) *airlock.RateLimit {
	rs := c.rs()
	for i := range kp.rates {
		ru := &kp.rates[i]
		u := am.units[ru.dim]
		if u == 0 {
			continue
		}
		r := rs[i]
		r.roll(ru.window, now)
		e := r.est(ru.window, now)
		if e+u <= ru.amount+ru.eps {
			continue
		}
		rl := &airlock.RateLimit{Scope: kindScopes[kp.kind], Dimension: dimNames[ru.dim],
			Window: FormatWindow(durationOf(ru.window)), Limit: ru.amount, Used: round6(e)}
		if u <= ru.amount+ru.eps { // else it will never pass: no retry_after
			retryAfter(rl, r.retryAt(ru.window, ru.amount, u)-now)
		}
		return rl
	}
	if kp.concurrent > 0 {
		if n := c.liveInflight(now); n >= kp.concurrent {
			return &airlock.RateLimit{Scope: kindScopes[kp.kind], Dimension: DimConcurrent,
				Limit: float64(kp.concurrent), Used: float64(n)}
		}
	}
	if kp.messages > 0 {
		if n := c.liveMessages(now, cfg); n >= kp.messages {
			rl := &airlock.RateLimit{Scope: kindScopes[kp.kind], Dimension: DimSessionMessages,
				Limit: float64(kp.messages), Used: float64(n)}
			retryAfter(rl, c.seen+int64(cfg.sessionTTL)-now)
			return rl
		}
	}
	return nil
}

// charge counts the call in c. check must have passed.
func (c *cell) charge(kp *kindPlan, now int64, am *amounts, cfg *config) {
	rs := c.rs()
	if kp.pressure {
		c.observe(kp, now, cfg)
	}
	for i := range kp.rates {
		ru := &kp.rates[i]
		r := &rs[i]
		r.roll(ru.window, now)
		r.cur += am.units[ru.dim]
		r.last = am.units[ru.dim]
	}
	if kp.concurrent > 0 {
		c.inflight = c.liveInflight(now) + 1
		if u := now + int64(cfg.inflightTTL); u > c.inflightUntil {
			c.inflightUntil = u
		}
	}
	if kp.messages > 0 {
		c.messages = c.liveMessages(now, cfg) + 1
	}
	c.seen = now
}

// refund gives back what a reservation taken at `at` counted in c.
func (c *cell) refund(kp *kindPlan, now, at int64, am *amounts, what refundKind, cfg *config) {
	rs := c.rs()
	if what&refundSlot != 0 && kp.concurrent > 0 && c.inflight > 0 {
		c.inflight--
	}
	if what&(refundUsage|refundAll) == 0 {
		return
	}
	if kp.pressure {
		c.observe(kp, now, cfg)
	}
	for i := range kp.rates {
		ru := &kp.rates[i]
		if ru.dim == dimRequests && what&refundAll == 0 {
			continue
		}
		u := am.units[ru.dim]
		r := &rs[i]
		r.roll(ru.window, now)
		switch b := at - at%ru.window; b {
		case r.start:
			r.cur = math.Max(0, r.cur-u)
		case r.start - ru.window:
			r.prev = math.Max(0, r.prev-u)
		}
	}
	if kp.messages > 0 && c.messages > 0 && c.seen >= at {
		c.messages--
	}
}

// hotStep is budget i's pressure buckets brought forward to now: the time
// at ≥ 90% between c.hotAt and now is added, following the estimate as it
// decays with nothing new counted (it only falls between two charges).
func (c *cell) hotStep(kp *kindPlan, i int, now, p int64) (hs int64, h hot) {
	hs, h = c.hotStart, c.hs()[i]
	if s := now - now%p; s > hs {
		if s == hs+p {
			h.prev, h.cur = h.cur, 0
		} else {
			h = hot{}
		}
		hs = s
	}
	x0 := c.hotAt
	if x0 <= 0 || now <= x0 {
		return hs, h
	}
	ru := &kp.rates[i]
	r := c.rs()[i]
	r.roll(ru.window, x0)
	x1 := min(now, r.hotUntil(ru.window, hotLevel(ru.amount, r.last), x0))
	if x1 > x0 {
		h.cur += overlap(x0, x1, hs, hs+p)
		h.prev += overlap(x0, x1, hs-p, hs)
	}
	return hs, h
}

// observe brings the pressure buckets forward to now; it must run before
// the rates change.
func (c *cell) observe(kp *kindPlan, now int64, cfg *config) {
	if now <= c.hotAt {
		return
	}
	p := int64(cfg.pressureWin)
	var hs int64
	for i := range kp.rates {
		hs, c.hs()[i] = c.hotStep(kp, i, now, p)
	}
	if len(kp.rates) == 0 {
		hs = now - now%p
	}
	c.hotStart, c.hotAt = hs, now
}

// hotFrac is the share of the last pressure window budget i spent at ≥ 90%.
func (c *cell) hotFrac(kp *kindPlan, i int, now int64, cfg *config) float64 {
	p := int64(cfg.pressureWin)
	hs, h := c.hotStep(kp, i, now, p)
	if now < c.hotAt {
		now = c.hotAt
	}
	f := float64(now-hs) / float64(p)
	if f > 1 {
		f = 1
	}
	v := (float64(h.prev)*(1-f) + float64(h.cur)) / float64(p)
	return math.Min(1, math.Max(0, v))
}

// idle reports whether c holds no usage: evicting it loses nothing a limit
// needs. With withPressure it must also hold no time at ≥ 90% (the
// slow-and-steady signal), which evicting would forget.
//
// Without withPressure (the store is full) a session's cell also counts as
// idle once nothing of it is in flight: its budgets are counted per user as
// well (kindSessionUser), and forgetting its message count gives no more than
// opening a new session does.
func (c *cell) idle(kp *kindPlan, now int64, cfg *config, withPressure bool) bool {
	rs := c.rs()
	if c.pin > 0 {
		return false
	}
	if !withPressure && kp.kind == kindSession {
		return c.liveInflight(now) == 0
	}
	for i := range kp.rates {
		r := &rs[i]
		if (r.cur > 0 || r.prev > 0) && now < r.start+2*kp.rates[i].window {
			return false
		}
	}
	if c.liveInflight(now) > 0 || c.liveMessages(now, cfg) > 0 {
		return false
	}
	if kp.pressure && withPressure {
		p := int64(cfg.pressureWin)
		for i := range c.hs() {
			if (c.hs()[i].cur > 0 || c.hs()[i].prev > 0) && now < c.hotStart+2*p {
				return false
			}
		}
		// Time at ≥ 90% not yet folded into the buckets.
		for i := range kp.rates {
			if _, h := c.hotStep(kp, i, now, p); h.cur > 0 || h.prev > 0 {
				return false
			}
		}
	}
	return true
}

// usage appends the rows of c.
func (c *cell) usage(dst []Usage, kp *kindPlan, key ckey, now int64, cfg *config) []Usage {
	rs := c.rs()
	scope, k := kindScopes[kp.kind], key.String()
	for i := range kp.rates {
		ru := &kp.rates[i]
		r := rs[i]
		r.roll(ru.window, now)
		u := Usage{Scope: scope, Key: k, Dimension: dimNames[ru.dim], Window: durationOf(ru.window),
			Used: round6(r.est(ru.window, now)), Limit: ru.amount}
		if kp.pressure {
			u.Pressure = round6(c.hotFrac(kp, i, now, cfg))
		}
		dst = append(dst, u)
	}
	if kp.concurrent > 0 {
		dst = append(dst, Usage{Scope: scope, Key: k, Dimension: DimConcurrent, Used: float64(c.liveInflight(now)), Limit: float64(kp.concurrent)})
	}
	if kp.messages > 0 {
		dst = append(dst, Usage{Scope: scope, Key: k, Dimension: DimSessionMessages, Used: float64(c.liveMessages(now, cfg)), Limit: float64(kp.messages)})
	}
	return dst
}

// hotLevel is the estimate from which a budget counts as running at ≥ 90%:
// one more call the size of the last one would reach 90% of it. (Measured on
// the estimate alone, steady traffic at 92% of a small budget would dip
// under 90% between its calls most of the time.)
func hotLevel(amount, last float64) float64 {
	return max(pressureLevel*amount-last, amount/2)
}

func overlap(a0, a1, b0, b1 int64) int64 {
	lo, hi := max(a0, b0), min(a1, b1)
	if hi <= lo {
		return 0
	}
	return hi - lo
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

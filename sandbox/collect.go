package sandbox

import (
	"fmt"
	"sync"
)

// Collector is an io.Writer that retains at most a fixed number of bytes of
// everything written to it: the first half (head) and the last half (tail,
// in a ring buffer), while counting every byte. It never blocks and never
// fails, so a program flooding its output keeps being drained, and the
// runner's memory stays bounded whatever the program writes (a 100 MB line
// without a newline, gigabytes of `yes`). It is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	headCap int
	tailCap int
	head    []byte
	ring    []byte // grows up to tailCap, then wraps at pos
	pos     int    // next write position once len(ring) == tailCap
	total   int64
}

// NewCollector returns an io.Writer keeping at most cap bytes (head half +
// tail half), counting all bytes. A cap <= 0 keeps nothing and only counts.
func NewCollector(cap int64) *Collector {
	if cap < 0 {
		cap = 0
	}
	// Bound the cap to what an int can index; a retained buffer this large
	// is a configuration error, not something to honour.
	const maxCap = 1 << 40
	if cap > maxCap {
		cap = maxCap
	}
	h := int(cap / 2)
	return &Collector{headCap: h, tailCap: int(cap) - h}
}

// Write retains what fits and counts everything. It always returns
// len(p), nil.
func (c *Collector) Write(p []byte) (int, error) {
	n := len(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(n)
	if room := c.headCap - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = appendBounded(c.head, p[:k], c.headCap)
		p = p[k:]
	}
	if len(p) == 0 || c.tailCap == 0 {
		return n, nil
	}
	if len(p) >= c.tailCap {
		// Only the last tailCap bytes can survive: replace the ring.
		if cap(c.ring) < c.tailCap {
			c.ring = make([]byte, c.tailCap)
		}
		c.ring = c.ring[:c.tailCap]
		copy(c.ring, p[len(p)-c.tailCap:])
		c.pos = 0
		return n, nil
	}
	if room := c.tailCap - len(c.ring); room > 0 {
		// Still filling: append (growing geometrically, capped at tailCap).
		k := min(room, len(p))
		c.ring = appendBounded(c.ring, p[:k], c.tailCap)
		p = p[k:]
		if len(p) == 0 {
			return n, nil
		}
	}
	// Full ring: overwrite the oldest bytes starting at pos.
	for len(p) > 0 {
		k := copy(c.ring[c.pos:], p)
		p = p[k:]
		c.pos = (c.pos + k) % c.tailCap
	}
	return n, nil
}

// appendBounded appends p to buf, growing it geometrically but never past
// limit (len(buf)+len(p) <= limit is the caller's promise), so the buffers
// cost nothing until output arrives and never exceed the cap.
func appendBounded(buf, p []byte, limit int) []byte {
	if need := len(buf) + len(p); need > cap(buf) {
		grown := make([]byte, len(buf), min(limit, max(2*cap(buf), need, 4096)))
		copy(grown, buf)
		buf = grown
	}
	return append(buf, p...)
}

// Bytes returns the retained output: everything when it fit, otherwise the
// head, a marker "\n…[N bytes truncated]…\n" and the tail. The result is a
// fresh slice the caller owns.
func (c *Collector) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := int64(len(c.head) + len(c.ring))
	var marker string
	if dropped := c.total - kept; dropped > 0 {
		marker = fmt.Sprintf("\n…[%d bytes truncated]…\n", dropped)
	}
	out := make([]byte, 0, int(kept)+len(marker))
	out = append(out, c.head...)
	out = append(out, marker...)
	out = append(out, c.ring[c.pos:]...)
	out = append(out, c.ring[:c.pos]...)
	return out
}

// Total returns the number of bytes written, retained or not.
func (c *Collector) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Truncated reports whether some written bytes were dropped.
func (c *Collector) Truncated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total > int64(len(c.head)+len(c.ring))
}

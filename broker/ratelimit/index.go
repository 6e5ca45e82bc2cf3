package ratelimit

import "math/bits"

// index maps a cell's hash to the cell: open addressing with linear probing
// and backward-shift deletion (no tombstones), at most 3/4 full. A slot is
// 16 bytes (four to a cache line) and holds the first half of the hash and
// the cell, which holds the whole hash: a lookup reads one slot line and
// then the cell, which the check reads anyway. (A Go map reads a control
// word, a slot in another line and then the cell.)
type index struct {
	slots []islot
	n     int
	shift uint // 64 − log2(len(slots))
}

type islot struct {
	h1 uint64
	c  *cell // nil: empty
}

const indexMin = 16

// home is the slot where a hash's probe starts: the top bits of h1 mixed
// once more (the shard is taken from the low bits of a related hash).
func (x *index) home(h1 uint64) int {
	return int(((h1 ^ h1>>32) * 0xD6E8FEB86659FD93) >> x.shift)
}

// get returns the cell of h, or nil.
func (x *index) get(h hkey) *cell {
	if x.n == 0 {
		return nil
	}
	mask := len(x.slots) - 1
	for i := x.home(h.h1); ; i = (i + 1) & mask {
		sl := &x.slots[i]
		if sl.c == nil {
			return nil
		}
		if sl.h1 == h.h1 && sl.c.h == h {
			return sl.c
		}
	}
}

// put adds c (keyed by c.h), which must not be in x.
func (x *index) put(c *cell) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	x.insert(c)
}

func (x *index) insert(c *cell) {
	mask := len(x.slots) - 1
	i := x.home(c.h.h1)
	for x.slots[i].c != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = islot{h1: c.h.h1, c: c}
	x.n++
}

func (x *index) grow() {
	old := x.slots
	size := max(indexMin, 2*len(old))
	x.slots = make([]islot, size)
	x.shift = 64 - uint(bits.TrailingZeros(uint(size)))
	x.n = 0
	for _, sl := range old {
		if sl.c != nil {
			x.insert(sl.c)
		}
	}
}

// deleteAt empties slot i and moves later cells of its probe run back, so
// that every cell stays reachable from its home slot.
func (x *index) deleteAt(i int) {
	mask := len(x.slots) - 1
	x.n--
	for j := i; ; {
		j = (j + 1) & mask
		sl := x.slots[j]
		if sl.c == nil {
			x.slots[i] = islot{}
			return
		}
		// The cell in j may move to i unless its home lies cyclically in (i, j].
		if h := x.home(sl.h1); (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.slots[i] = sl
			i = j
		}
	}
}

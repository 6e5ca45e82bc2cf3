package risk

// wordSet is a fixed-size hash set of the lower-cased words of a text
// (camelCase and snake_case split), built in one pass, so detectors can ask
// "does the text contain any of these words?" in constant time before they
// run a regular expression over it.
type wordSet struct {
	slots [1024]uint32
	n     int
	full  bool // too many distinct words: every query answers true
}

const wordSetMax = 700

func fnvWord(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	if h == 0 {
		h = 1
	}
	return h
}

func (w *wordSet) insert(h uint32) {
	if w.full {
		return
	}
	i := h & uint32(len(w.slots)-1)
	for {
		switch w.slots[i] {
		case h:
			return
		case 0:
			w.slots[i] = h
			w.n++
			if w.n >= wordSetMax {
				w.full = true
			}
			return
		}
		i = (i + 1) & uint32(len(w.slots)-1)
	}
}

// index adds the ASCII words of s; non-ASCII letters end a word. Callers
// keep the set on their stack: var ws wordSet; ws.index(s).
func (w *wordSet) index(s string) {
	var buf [48]byte
	n := 0
	var prev byte
	flush := func() {
		if n > 0 && n <= len(buf) {
			w.insert(fnvWord(buf[:n]))
		}
		n = 0
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '\'':
		case c >= 'A' && c <= 'Z':
			if prev >= 'a' && prev <= 'z' {
				flush() // camelCase boundary
			}
			c += 'a' - 'A'
		default:
			flush()
			prev = s[i]
			continue
		}
		if n < len(buf) {
			buf[n] = c
		}
		n++
		prev = s[i]
	}
	flush()
}

func (w *wordSet) has(word string) bool {
	if w.full {
		return true
	}
	h := fnvWord([]byte(word))
	i := h & uint32(len(w.slots)-1)
	for {
		switch w.slots[i] {
		case h:
			return true
		case 0:
			return false
		}
		i = (i + 1) & uint32(len(w.slots)-1)
	}
}

func (w *wordSet) any(words ...string) bool {
	for _, x := range words {
		if w.has(x) {
			return true
		}
	}
	return false
}

// Package argdiff computes what changed between two sets of tool-call
// arguments: a structural diff of the JSON (keys added, removed, changed,
// with paths like to[1] or headers.Authorization), a line diff inside long
// strings (SQL, code, email bodies), and a plain-text rendering that puts
// changes to recipients, hosts, amounts, paths and accounts first so they
// cannot hide in a wall of text.
//
// Apply(base, Diff(base, next)) equals next for any JSON values.
package argdiff

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Change ops.
const (
	OpAdded   = "added"
	OpRemoved = "removed"
	OpChanged = "changed"
)

// Change is one difference at a path.
type Change struct {
	Path string `json:"path"`
	Op   string `json:"op"` // added, removed, changed
	Old  any    `json:"old,omitempty"`
	New  any    `json:"new,omitempty"`
	// Lines is a line diff of Old and New when both are long or multi-line
	// strings.
	Lines []LineEdit `json:"lines,omitempty"`
	// Sensitive marks a change to where something goes or how much: a
	// recipient, host, URL, amount, path, account, role or user.
	Sensitive bool `json:"sensitive,omitempty"`
}

// LineEdit is one line of a line diff.
type LineEdit struct {
	Op   string `json:"op"` // equal, added, removed
	Text string `json:"text"`
}

// Line edit ops.
const (
	LineEqual   = "equal"
	LineAdded   = "added"
	LineRemoved = "removed"
)

// longString is the length from which a changed string gets a line diff.
const longString = 80

// maxDepth bounds recursion; deeper values are compared and replaced whole.
const maxDepth = 100

// sensitiveKeys name arguments whose change decides where data or money goes.
var sensitiveKeys = map[string]bool{
	"to": true, "cc": true, "bcc": true, "recipient": true, "recipients": true, "reply_to": true, "from": true,
	"host": true, "hostname": true, "url": true, "uri": true, "endpoint": true, "webhook": true, "domain": true, "server": true,
	"amount": true, "currency": true, "account": true, "iban": true, "payee": true, "beneficiary": true, "wallet": true,
	"path": true, "file": true, "file_path": true, "filename": true, "dest": true, "destination": true, "target": true, "remote": true,
	"role": true, "user": true, "username": true, "member": true, "permission": true, "permissions": true, "method": true,
	"table": true, "bucket": true, "email": true, "authorization": true, "cookie": true, "scope": true,
}

// Diff returns the changes that turn base into next: object keys in sorted
// order; array elements aligned by a longest common subsequence, so an
// inserted recipient shows as one insertion, not a cascade of changes
// (removals come first, by their old index; insertions and changes by their
// new index).
func Diff(base, next map[string]any) []Change {
	var out []Change
	diffMap(&out, "", base, next, 0)
	markSensitive(out)
	return out
}

func diffValue(out *[]Change, p string, a, b any, depth int) {
	if depth < maxDepth {
		if am, ok := a.(map[string]any); ok {
			if bm, ok := b.(map[string]any); ok {
				diffMap(out, p, am, bm, depth+1)
				return
			}
		}
		if aa, ok := a.([]any); ok {
			if ba, ok := b.([]any); ok {
				diffArray(out, p, aa, ba, depth+1)
				return
			}
		}
	}
	if equal(a, b) {
		return
	}
	c := Change{Path: p, Op: OpChanged, Old: a, New: b}
	if as, ok := a.(string); ok {
		if bs, ok := b.(string); ok && (len(as) >= longString || len(bs) >= longString || strings.Contains(as, "\n") || strings.Contains(bs, "\n")) {
			c.Lines = LineDiff(as, bs)
		}
	}
	*out = append(*out, c)
}

func diffMap(out *[]Change, p string, a, b map[string]any, depth int) {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		av, inA := a[k]
		bv, inB := b[k]
		kp := JoinKey(p, k)
		switch {
		case inA && inB:
			diffValue(out, kp, av, bv, depth)
		case inB:
			*out = append(*out, Change{Path: kp, Op: OpAdded, New: bv})
		default:
			*out = append(*out, Change{Path: kp, Op: OpRemoved, Old: av})
		}
	}
}

// maxAlignCells bounds the element alignment table of two arrays; larger
// arrays are compared index by index.
const maxAlignCells = 1 << 20

// diffArray aligns the elements of a and b (longest common subsequence of
// equal elements), pairs what is left between anchors as changes, and emits
// removals first (highest base index first), then changes and insertions in
// ascending index of b. Applied in that order, every path is valid when it is
// applied, and the indices read naturally: removals name where the element
// was, insertions and changes where it is now.
func diffArray(out *[]Change, p string, a, b []any, depth int) {
	type step struct {
		op   byte // '=', '-', '+'
		i, j int
	}
	var steps []step
	n, m := len(a), len(b)
	if n*m > maxAlignCells || n == 0 || m == 0 {
		k := min(n, m)
		for x := range k {
			steps = append(steps, step{'-', x, -1}, step{'+', -1, x})
		}
		for x := k; x < n; x++ {
			steps = append(steps, step{'-', x, -1})
		}
		for x := k; x < m; x++ {
			steps = append(steps, step{'+', -1, x})
		}
	} else {
		ka, kb := make([]string, n), make([]string, m)
		for i, v := range a {
			ka[i] = elemKey(v)
		}
		for j, v := range b {
			kb[j] = elemKey(v)
		}
		w := m + 1
		t := make([]int32, (n+1)*w)
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if ka[i] == kb[j] {
					t[i*w+j] = t[(i+1)*w+j+1] + 1
				} else {
					t[i*w+j] = max(t[(i+1)*w+j], t[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < n && j < m {
			switch {
			case ka[i] == kb[j]:
				steps = append(steps, step{'=', i, j})
				i++
				j++
			case t[(i+1)*w+j] >= t[i*w+j+1]:
				steps = append(steps, step{'-', i, -1})
				i++
			default:
				steps = append(steps, step{'+', -1, j})
				j++
			}
		}
		for ; i < n; i++ {
			steps = append(steps, step{'-', i, -1})
		}
		for ; j < m; j++ {
			steps = append(steps, step{'+', -1, j})
		}
	}
	// Between anchors, pair removals with insertions as changes.
	type later struct {
		j, i int // i < 0: an insertion
	}
	var removals []int
	var rest []later
	for s := 0; s < len(steps); {
		if steps[s].op == '=' {
			s++
			continue
		}
		var dels, ins []int
		for s < len(steps) && steps[s].op != '=' {
			if steps[s].op == '-' {
				dels = append(dels, steps[s].i)
			} else {
				ins = append(ins, steps[s].j)
			}
			s++
		}
		k := min(len(dels), len(ins))
		for x := range k {
			rest = append(rest, later{ins[x], dels[x]})
		}
		removals = append(removals, dels[k:]...)
		for _, j := range ins[k:] {
			rest = append(rest, later{j, -1})
		}
	}
	slices.Sort(removals)
	for x := len(removals) - 1; x >= 0; x-- {
		i := removals[x]
		*out = append(*out, Change{Path: p + "[" + strconv.Itoa(i) + "]", Op: OpRemoved, Old: a[i]})
	}
	slices.SortFunc(rest, func(x, y later) int { return x.j - y.j })
	for _, l := range rest {
		ip := p + "[" + strconv.Itoa(l.j) + "]"
		if l.i < 0 {
			*out = append(*out, Change{Path: ip, Op: OpAdded, New: b[l.j]})
		} else {
			diffValue(out, ip, a[l.i], b[l.j], depth)
		}
	}
}

// elemKey is a canonical string of an array element for alignment.
func elemKey(v any) string {
	switch x := v.(type) {
	case string:
		return "s" + x
	case float64:
		return "n" + strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return "b" + strconv.FormatBool(x)
	case nil:
		return "z"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%p", &v) // unique: never equal
	}
	return "j" + string(b)
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	return reflect.DeepEqual(a, b)
}

// JoinKey appends an object key to a path: base.key for identifiers,
// base["odd key"] otherwise.
func JoinKey(base, k string) string {
	if isIdent(k) {
		if base == "" {
			return k
		}
		return base + "." + k
	}
	return base + "[" + strconv.Quote(k) + "]"
}

func isIdent(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case (r >= '0' && r <= '9') || r == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// segment is one step of a path: an object key or an array index.
type segment struct {
	key   string
	index int
	isIdx bool
}

// parsePath splits a path made by JoinKey and [i] into segments.
func parsePath(p string) ([]segment, error) {
	var segs []segment
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			i++
		case '[':
			j := i + 1
			if j < len(p) && p[j] == '"' {
				// A quoted key: find the closing quote honouring escapes.
				k := j + 1
				for k < len(p) && p[k] != '"' {
					if p[k] == '\\' {
						k++
					}
					k++
				}
				if k >= len(p) || k+1 >= len(p) || p[k+1] != ']' {
					return nil, fmt.Errorf("argdiff: bad path %q: unterminated key", p)
				}
				key, err := strconv.Unquote(p[j : k+1])
				if err != nil {
					return nil, fmt.Errorf("argdiff: bad path %q: %w", p, err)
				}
				segs = append(segs, segment{key: key})
				i = k + 2
				continue
			}
			k := strings.IndexByte(p[j:], ']')
			if k < 0 {
				return nil, fmt.Errorf("argdiff: bad path %q: unterminated index", p)
			}
			n, err := strconv.Atoi(p[j : j+k])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("argdiff: bad path %q: index %q", p, p[j:j+k])
			}
			segs = append(segs, segment{index: n, isIdx: true})
			i = j + k + 1
		default:
			j := i
			for j < len(p) && p[j] != '.' && p[j] != '[' {
				j++
			}
			segs = append(segs, segment{key: p[i:j]})
			i = j
		}
	}
	return segs, nil
}

// removed marks a value to delete while applying.
type removedMarker struct{}

// Apply returns a copy of base with the changes applied in order: "added" at
// an array index inserts there, "removed" deletes and shifts, "changed" and
// object keys set. Changes whose path does not parse are skipped.
// Apply(base, Diff(base, next)) deep-equals next.
func Apply(base map[string]any, changes []Change) map[string]any {
	var root any = deepCopy(base, 0)
	if root.(map[string]any) == nil {
		root = map[string]any{}
	}
	for _, c := range changes {
		segs, err := parsePath(c.Path)
		if err != nil || len(segs) == 0 {
			continue
		}
		root = applyAt(root, segs, c)
	}
	m, _ := root.(map[string]any)
	return m
}

func applyAt(node any, segs []segment, c Change) any {
	if len(segs) == 0 {
		if c.Op == OpRemoved {
			return removedMarker{}
		}
		return deepCopy(c.New, 0)
	}
	s := segs[0]
	if s.isIdx {
		arr, _ := node.([]any)
		switch {
		case len(segs) == 1 && c.Op == OpAdded && s.index <= len(arr):
			// Insert, shifting later elements.
			arr = append(arr, nil)
			copy(arr[s.index+1:], arr[s.index:])
			arr[s.index] = deepCopy(c.New, 0)
		case s.index < len(arr):
			child := applyAt(arr[s.index], segs[1:], c)
			if _, gone := child.(removedMarker); gone {
				return append(arr[:s.index:s.index], arr[s.index+1:]...)
			}
			arr[s.index] = child
		case c.Op != OpRemoved:
			for len(arr) < s.index {
				arr = append(arr, nil)
			}
			arr = append(arr, applyAt(nil, segs[1:], c))
		}
		if arr == nil {
			arr = []any{}
		}
		return arr
	}
	m, ok := node.(map[string]any)
	if !ok || m == nil {
		m = map[string]any{}
	}
	child := applyAt(m[s.key], segs[1:], c)
	if _, gone := child.(removedMarker); gone {
		delete(m, s.key)
	} else {
		m[s.key] = child
	}
	return m
}

func deepCopy(v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return map[string]any(nil)
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e, depth+1)
		}
		return m
	case []any:
		if x == nil {
			return []any(nil)
		}
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e, depth+1)
		}
		return a
	}
	return v
}

// Sensitive reports whether a path names a recipient, host, URL, amount,
// path, account or similar: any of its keys is one of those.
func Sensitive(path string) bool {
	segs, err := parsePath(path)
	if err != nil {
		return false
	}
	for _, s := range segs {
		if !s.isIdx && sensitiveKeys[strings.ToLower(s.key)] {
			return true
		}
	}
	return false
}

// markSensitive sets Sensitive on changes whose path is sensitive.
func markSensitive(cs []Change) {
	for i := range cs {
		cs[i].Sensitive = Sensitive(cs[i].Path)
	}
}

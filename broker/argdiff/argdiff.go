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

// Diff returns the changes that turn base into next, in path order (object
// keys sorted, array elements by index).
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

func diffArray(out *[]Change, p string, a, b []any, depth int) {
	n := min(len(a), len(b))
	for i := range n {
		diffValue(out, p+"["+strconv.Itoa(i)+"]", a[i], b[i], depth)
	}
	for i := n; i < len(b); i++ {
		*out = append(*out, Change{Path: p + "[" + strconv.Itoa(i) + "]", Op: OpAdded, New: b[i]})
	}
	// Removals from the end backwards, so applying them in order is safe.
	for i := len(a) - 1; i >= n; i-- {
		*out = append(*out, Change{Path: p + "[" + strconv.Itoa(i) + "]", Op: OpRemoved, Old: a[i]})
	}
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

// Apply returns a copy of base with the changes applied. Changes whose path
// does not parse are skipped. Apply(base, Diff(base, next)) deep-equals next.
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

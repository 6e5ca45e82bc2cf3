package risk

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// leaf is one scalar inside the arguments.
type leaf struct {
	path  string // arguments.to[1], arguments.headers.Authorization
	key   string // nearest object key, lower case ("" at the top of an array)
	s     string // the string value (numbers are formatted too)
	num   float64
	isNum bool
}

// sizeStats describes the shape of the arguments for the oversized factor.
type sizeStats struct {
	bytes    int // key and value bytes, a close estimate of the JSON size
	keys     int // object keys in total
	maxKeys  int // keys in the largest object
	depth    int // deepest nesting of objects and arrays
	elements int // array elements in total
	maxArray int
	maxKeyAt string
	deepAt   string
}

type walkItem struct {
	v     any
	path  string
	key   string
	depth int
}

// walk flattens args into leaves (bounded) and measures their size. It is
// iterative so that a 10,000-deep document cannot exhaust the stack.
func walk(args map[string]any) ([]leaf, sizeStats) {
	var st sizeStats
	var leaves []leaf
	stack := []walkItem{{v: args, path: "arguments", depth: 0}}
	analyzed := 0
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.depth > st.depth {
			st.depth = it.depth
			st.deepAt = it.path
		}
		switch v := it.v.(type) {
		case map[string]any:
			st.keys += len(v)
			if len(v) > st.maxKeys {
				st.maxKeys = len(v)
				st.maxKeyAt = it.path
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
				st.bytes += len(k) + 4
			}
			if len(keys) <= 4096 {
				slices.Sort(keys)
			}
			// Push in reverse so the walk visits keys in order.
			for i := len(keys) - 1; i >= 0; i-- {
				k := keys[i]
				p := it.path
				if it.depth < maxWalkDepthForLeaves {
					p = joinKey(it.path, k)
				}
				stack = append(stack, walkItem{v: v[k], path: p, key: strings.ToLower(k), depth: it.depth + 1})
			}
		case []any:
			st.elements += len(v)
			if len(v) > st.maxArray {
				st.maxArray = len(v)
			}
			st.bytes += 2 + len(v)
			for i := len(v) - 1; i >= 0; i-- {
				p := it.path
				if it.depth < maxWalkDepthForLeaves {
					p = it.path + "[" + strconv.Itoa(i) + "]"
				}
				stack = append(stack, walkItem{v: v[i], path: p, key: it.key, depth: it.depth + 1})
			}
		case string:
			st.bytes += len(v) + 2
			if len(leaves) < maxAnalyzedLeaves && analyzed < maxAnalyzedTotalBytes {
				s := v
				if len(s) > maxAnalyzedLeafBytes {
					s = cutUTF8(s, maxAnalyzedLeafBytes)
				}
				analyzed += len(s)
				leaves = append(leaves, leaf{path: it.path, key: it.key, s: s})
			}
		case float64:
			st.bytes += 8
			if len(leaves) < maxAnalyzedLeaves {
				leaves = append(leaves, leaf{path: it.path, key: it.key, s: strconv.FormatFloat(v, 'f', -1, 64), num: v, isNum: true})
			}
		case json.Number:
			st.bytes += len(v)
			f, err := v.Float64()
			if err == nil && len(leaves) < maxAnalyzedLeaves {
				leaves = append(leaves, leaf{path: it.path, key: it.key, s: string(v), num: f, isNum: true})
			}
		case int:
			st.bytes += 8
			if len(leaves) < maxAnalyzedLeaves {
				leaves = append(leaves, leaf{path: it.path, key: it.key, s: strconv.Itoa(v), num: float64(v), isNum: true})
			}
		case int64:
			st.bytes += 8
			if len(leaves) < maxAnalyzedLeaves {
				leaves = append(leaves, leaf{path: it.path, key: it.key, s: strconv.FormatInt(v, 10), num: float64(v), isNum: true})
			}
		case bool:
			st.bytes += 5
		case nil:
			st.bytes += 4
		default:
			// Go callers may pass typed values ([]string, map[string]string,
			// structs): look at them through their JSON form.
			if conv, ok := jsonShape(v); ok {
				stack = append(stack, walkItem{v: conv, path: it.path, key: it.key, depth: it.depth})
			}
		}
	}
	return leaves, st
}

// jsonShape converts a typed Go value to the generic JSON shape
// (map[string]any, []any, string, float64, bool) by a JSON round trip.
func jsonShape(v any) (any, bool) {
	switch v.(type) {
	case float32, int8, int16, int32, uint, uint8, uint16, uint32, uint64:
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct, reflect.Pointer, reflect.String:
		default:
			return nil, false
		}
	}
	b, err := json.Marshal(v)
	if err != nil || len(b) > maxAnalyzedTotalBytes {
		return nil, false
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil, false
	}
	return out, true
}

func joinKey(base, k string) string {
	if isIdent(k) {
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
		case r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// cutUTF8 cuts s to at most n bytes at a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// clip shortens a value for a detail line: control characters become
// spaces and invisible or direction-changing characters are written out
// (\u200b, \u202e) so the reviewer sees what is really there.
func clip(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			b.WriteByte(' ')
		case isBidi(r) || isZeroWidth(r) || r == 0x200e || r == 0x200f || r == 0x061c || (r >= 0xe0000 && r <= 0xe007f):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
		if b.Len() > n+16 {
			break
		}
	}
	out := b.String()
	if len(out) <= n {
		return out
	}
	return cutUTF8(out, n) + "…"
}

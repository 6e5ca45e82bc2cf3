package policy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/airlock/airlock"
)

// This file holds the strict yaml.Node walker: every value is read through
// it, so that each problem names the file, the line and the field path.

const (
	maxAliases    = 1000 // alias dereferences per file
	maxMergeDepth = 16
)

type parser struct {
	file    string // name in messages
	dir     string // directory relative paths (auth.file, sandbox.workspace) resolve against
	errs    ErrorList
	warns   ErrorList
	aliases int
	exprs   int // CEL expressions compiled
}

// maxExprs bounds the CEL expressions of one file (each costs about 0.1 ms
// to compile), so that no file can make a load take minutes.
const maxExprs = 10000

// compile compiles a rule or chain condition, counting it against maxExprs.
func (p *parser) compile(n *yaml.Node, path, expr string) (*compiled, bool) {
	p.exprs++
	if p.exprs == maxExprs+1 {
		p.errf(n, path, "more than %d rules and chain conditions in one file", maxExprs)
	}
	if p.exprs > maxExprs {
		return nil, false
	}
	c, err := compile(expr)
	if err != nil {
		p.errf(n, path, "%v", err)
		return nil, false
	}
	return c, true
}

type pair struct {
	key  string
	k, v *yaml.Node
}

func (p *parser) errf(n *yaml.Node, path, format string, a ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, a...)})
}

func (p *parser) warnf(n *yaml.Node, path, format string, a ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.warns = append(p.warns, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, a...)})
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the problems yaml.v3's parser (not its scanner)
// reports; it numbers their lines from 0, the scanner's from 1.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'", "did not find expected '-' indicator",
	"did not find expected <document start>", "did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive", "found duplicate %YAML directive",
	"found incompatible YAML document", "found undefined tag handle",
}

// yamlErr turns a yaml.v3 syntax error into an Error with its line.
func (p *parser) yamlErr(err error) {
	msg := strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", " "), "yaml: ")
	line := 0
	if m := yamlLineRe.FindStringSubmatch("yaml: " + msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	for _, pp := range yamlParserProblems {
		if strings.HasPrefix(msg, pp) {
			line++ // 0-based from the parser
			break
		}
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: "invalid YAML: " + msg})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows aliases, within a budget (a file cannot make the walker
// expand aliases exponentially).
func (p *parser) resolve(n *yaml.Node, path string) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		p.aliases++
		if p.aliases > maxAliases || i > maxMergeDepth {
			if p.aliases == maxAliases+1 || i > maxMergeDepth {
				p.errf(n, path, "too many alias references (at most %d)", maxAliases)
			}
			return nil
		}
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "empty"
		case "!!bool":
			return "true/false"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		}
		return fmt.Sprintf("the string %q", short(n.Value))
	}
	return "something else"
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// pairs returns the key/value pairs of a mapping in file order, with YAML
// merge keys (<<: *base) expanded and duplicate keys reported.
func (p *parser) pairs(n *yaml.Node, path string, depth int) []pair {
	var out, merged []pair
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.resolve(n.Content[i], path)
		v := n.Content[i+1]
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.errf(k, path, "keys must be plain strings, not %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			if depth >= maxMergeDepth {
				p.errf(k, path, "merge keys nested too deep")
				continue
			}
			src := p.resolve(v, path)
			if src == nil {
				continue
			}
			var maps []*yaml.Node
			switch src.Kind {
			case yaml.MappingNode:
				maps = []*yaml.Node{src}
			case yaml.SequenceNode:
				for _, e := range src.Content {
					if e = p.resolve(e, path); e != nil {
						maps = append(maps, e)
					}
				}
			}
			for _, m := range maps {
				if m.Kind != yaml.MappingNode {
					p.errf(m, path, "<< merges a mapping, not %s", kindName(m))
					continue
				}
				merged = append(merged, p.pairs(m, path, depth+1)...)
			}
			continue
		}
		if seen[k.Value] {
			p.errf(k, join(path, k.Value), "duplicate key")
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{key: k.Value, k: k, v: v})
	}
	for _, m := range merged {
		if !seen[m.key] {
			seen[m.key] = true
			out = append(out, m)
		}
	}
	return out
}

// mapping reads a mapping with a fixed set of keys; an unknown key is an
// error (with a suggestion when it looks like a typo).
func (p *parser) mapping(n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, *yaml.Node) {
	n = p.resolve(n, path)
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, path, "must be a mapping (key: value), not %s", kindName(n))
		return nil, n
	}
	out := make(map[string]*yaml.Node, len(known))
	for _, kv := range p.pairs(n, path, 0) {
		ok := false
		for _, k := range known {
			if k == kv.key {
				ok = true
				break
			}
		}
		if !ok {
			p.errf(kv.k, join(path, kv.key), "unknown key%s", suggest(kv.key, known, " (did you mean %q?)"))
			continue
		}
		out[kv.key] = kv.v
	}
	return out, n
}

// named reads a mapping of user-chosen names (tools, agents, orgs).
func (p *parser) named(n *yaml.Node, path string) ([]pair, bool) {
	n = p.resolve(n, path)
	if n == nil {
		return nil, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, path, "must be a mapping of names, not %s", kindName(n))
		return nil, false
	}
	return p.pairs(n, path, 0), true
}

// seq reads a list.
func (p *parser) seq(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	n = p.resolve(n, path)
	if n == nil {
		return nil, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, path, "must be a list, not %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}

func (p *parser) scalar(n *yaml.Node, path string) (*yaml.Node, bool) {
	n = p.resolve(n, path)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode {
		p.errf(n, path, "must be a single value, not %s", kindName(n))
		return nil, false
	}
	return n, true
}

// str reads a non-empty string (any plain scalar: "reason: 404" is "404").
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	n, ok := p.scalar(n, path)
	if !ok {
		return "", false
	}
	if n.Tag == "!!null" || n.Value == "" {
		p.errf(n, path, "must not be empty")
		return "", false
	}
	if n.Tag == "!!binary" {
		p.errf(n, path, "must be text, not binary")
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	if n.Tag != "!!int" {
		p.errf(n, path, "must be a whole number, not %s", kindName(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		p.errf(n, path, "%q is not a valid whole number", short(n.Value))
		return 0, false
	}
	if v < lo || v > hi {
		p.errf(n, path, "must be between %d and %d, not %d", lo, hi, v)
		return 0, false
	}
	return v, true
}

func (p *parser) number(n *yaml.Node, path string, lo, hi float64) (float64, bool) {
	n, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	if n.Tag != "!!int" && n.Tag != "!!float" {
		p.errf(n, path, "must be a number, not %s", kindName(n))
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.errf(n, path, "%q is not a valid number", short(n.Value))
		return 0, false
	}
	if v < lo || v > hi {
		p.errf(n, path, "must be between %s and %s, not %s",
			strconv.FormatFloat(lo, 'g', -1, 64), strconv.FormatFloat(hi, 'g', -1, 64), strconv.FormatFloat(v, 'g', -1, 64))
		return 0, false
	}
	return v, true
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	n, ok := p.scalar(n, path)
	if !ok {
		return false, false
	}
	if n.Tag != "!!bool" {
		p.errf(n, path, "must be true or false, not %s", kindName(n))
		return false, false
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		p.errf(n, path, "must be true or false")
		return false, false
	}
	return v, true
}

// duration reads "30s", "10m", "24h", "7d"; lo is the smallest value allowed.
func (p *parser) duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	n, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	if n.Tag == "!!null" {
		p.errf(n, path, "must be a duration such as 30s, 10m, 24h or 7d")
		return 0, false
	}
	d, err := ParseDuration(n.Value)
	if err != nil {
		p.errf(n, path, "%v", err)
		return 0, false
	}
	if d < lo || hi > 0 && d > hi {
		if hi > 0 {
			p.errf(n, path, "must be between %v and %v, not %v", lo, hi, d)
		} else {
			p.errf(n, path, "must be at least %v, not %v", lo, d)
		}
		return 0, false
	}
	return d, true
}

// size reads "256MiB", "1GiB", "512M" or a number of bytes.
func (p *parser) size(n *yaml.Node, path string, lo int64) (int64, bool) {
	n, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	if n.Tag == "!!null" {
		p.errf(n, path, "must be a size such as 512MiB or 1GiB")
		return 0, false
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		p.errf(n, path, "%v", err)
		return 0, false
	}
	if v < lo {
		p.errf(n, path, "must be at least %s, not %s", FormatSize(lo), FormatSize(v))
		return 0, false
	}
	return v, true
}

// strList reads a list of non-empty strings.
func (p *parser) strList(n *yaml.Node, path string) ([]string, bool) {
	items, ok := p.seq(n, path)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	good := true
	for i, it := range items {
		s, ok := p.str(it, fmt.Sprintf("%s[%d]", path, i))
		if !ok {
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

func (p *parser) tier(n *yaml.Node, path string) (airlock.Tier, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	t := airlock.Tier(s)
	if !t.Valid() {
		p.errf(n, path, "%q is not a tier (auto, notify, approve or deny)%s", short(s),
			suggest(s, []string{"auto", "notify", "approve", "deny"}, "; did you mean %q?"))
		return "", false
	}
	return t, true
}

// suggest returns format applied to the known word closest to s, or "" when
// none is close enough to be a typo.
func suggest(s string, known []string, format string) string {
	best, bestD := "", 3
	for _, k := range known {
		lim := 2
		if len(k) <= 4 {
			lim = 1
		}
		if d := editDistance(strings.ToLower(s), k); d <= lim && d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(format, best)
}

// editDistance is the Damerau–Levenshtein (optimal string alignment) distance.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

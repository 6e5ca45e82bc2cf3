package risk

import (
	"container/list"
	"fmt"
	"strings"
	"sync"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// lru is a bounded map that evicts the least recently touched key.
type lru[V any] struct {
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

// peek returns the value without changing recency (safe under a read lock).
func (l *lru[V]) peek(k string) (V, bool) {
	if e, ok := l.items[k]; ok {
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

// touch returns the value for k, creating it with mk, and marks it recent.
func (l *lru[V]) touch(k string, mk func() V) V {
	if e, ok := l.items[k]; ok {
		l.ll.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val
	}
	v := mk()
	l.items[k] = l.ll.PushFront(&lruEntry[V]{k, v})
	for l.ll.Len() > l.max {
		old := l.ll.Back()
		l.ll.Remove(old)
		delete(l.items, old.Value.(*lruEntry[V]).key)
	}
	return v
}

func (l *lru[V]) len() int { return l.ll.Len() }

// sessionEvent is one approved call of a session, reduced to what chains need.
type sessionEvent struct {
	tool    string
	classes map[string]string
	chains  map[int]bool // policy chains whose First this call matched
}

type sessionHist struct {
	events  []sessionEvent // newest last, at most defaultSessionEvents
	remotes map[string]string
	payees  []string
}

type agentHist struct {
	approved int
	tools    map[string]bool
	values   map[string]bool
	order    []string // insertion order of values, for eviction
}

type history struct {
	mu        sync.RWMutex
	sessions  *lru[*sessionHist]
	agents    *lru[*agentHist]
	maxValues int
}

func newHistory(sessions, agents int) *history {
	return &history{sessions: newLRU[*sessionHist](sessions), agents: newLRU[*agentHist](agents), maxValues: defaultAgentValues}
}

func (h *history) agentMaxValues() int { return h.maxValues }

func (h *history) observe(a *analysis, maxValues int, firsts map[int]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sid := a.call.Session; sid != "" {
		sh := h.sessions.touch(sid, func() *sessionHist { return &sessionHist{remotes: map[string]string{}} })
		ev := sessionEvent{tool: a.tool, classes: a.classes, chains: firsts}
		sh.events = append(sh.events, ev)
		if len(sh.events) > defaultSessionEvents {
			sh.events = sh.events[len(sh.events)-defaultSessionEvents:]
		}
		for k, v := range a.remotes {
			if len(sh.remotes) < 64 {
				sh.remotes[k] = v
			}
		}
		for _, p := range a.payees {
			if len(sh.payees) < 64 {
				sh.payees = append(sh.payees, p)
			}
		}
	}
	if a.call.Agent != "" {
		ah := h.agents.touch(a.call.Agent, func() *agentHist { return &agentHist{tools: map[string]bool{}, values: map[string]bool{}} })
		ah.approved++
		if len(ah.tools) < defaultAgentTools {
			ah.tools[a.tool] = true
		}
		for _, v := range a.values {
			k := v.kind + "\x00" + v.value
			if ah.values[k] || v.value == "" {
				continue
			}
			ah.values[k] = true
			ah.order = append(ah.order, k)
			for len(ah.order) > maxValues {
				delete(ah.values, ah.order[0])
				ah.order = ah.order[1:]
			}
		}
	}
}

// historyFindings adds novelty and chain findings; the caller holds the
// history's read lock.
func (s *Scorer) historyFindings(a *analysis) {
	h := s.hist
	if ah, ok := h.agents.peek(a.call.Agent); ok && a.call.Agent != "" && ah.approved >= s.minHistory {
		if !ah.tools[a.tool] {
			a.f.add(FactorNoveltyTool, 1, fmt.Sprintf("first %s call by %s (after %d approved calls)", a.call.Tool, a.call.Agent, ah.approved))
		}
		var fresh []novel
		seen := map[string]bool{}
		for _, v := range a.values {
			k := v.kind + "\x00" + v.value
			if v.value == "" || seen[k] || ah.values[k] {
				continue
			}
			seen[k] = true
			fresh = append(fresh, v)
		}
		if len(fresh) > 0 {
			d := fmt.Sprintf("%s %s never seen in %s's approved calls", fresh[0].kind, clip(fresh[0].value, 50), a.call.Agent)
			if len(fresh) > 1 {
				d += fmt.Sprintf(" (+%d more new values)", len(fresh)-1)
			}
			a.f.add(FactorNoveltyValue, 1, d)
		}
	}
	if a.call.Session == "" {
		return
	}
	sh, ok := h.sessions.peek(a.call.Session)
	if !ok {
		return
	}
	s.builtinChains(a, sh)
	s.policyChains(a, sh)
}

// codeHostOwner returns the account of a repository URL on a public code
// host (github.com/OWNER/repo), or "".
func codeHostOwner(t target) string {
	switch registrable(t.host) {
	case "github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "sr.ht":
		p := strings.TrimPrefix(t.path, "/")
		if i := strings.IndexByte(p, '/'); i > 0 {
			return strings.TrimPrefix(p[:i], "~")
		}
	}
	return ""
}

// earlier returns the detail of the most recent earlier event with a class.
func (sh *sessionHist) earlier(class string) (string, bool) {
	for i := len(sh.events) - 1; i >= 0; i-- {
		if d, ok := sh.events[i].classes[class]; ok {
			return d, true
		}
	}
	return "", false
}

func (s *Scorer) builtinChains(a *analysis, sh *sessionHist) {
	egress, isEgress := a.classes["egress"]
	_, upload := a.classes["upload"]
	_, secretOut := a.classes["secret_egress"]
	if isEgress {
		if d, ok := sh.earlier("sensitive_read"); ok {
			w := 0.3
			if upload {
				w = 1
			}
			a.f.add(FactorChain, w, "after "+d+" earlier in this session, data goes out: "+egress)
		}
		if d, ok := sh.earlier("credential_read"); ok {
			a.f.add(FactorChain, 1, "after a read of "+d+" earlier in this session, a network call goes out: "+egress)
		}
		if d, ok := sh.earlier("config_read"); ok {
			w := 0.5
			if secretOut || upload {
				w = 1
			}
			a.f.add(FactorChain, w, "after the "+d+" earlier in this session, a call goes out: "+egress)
		}
	} else if a.network {
		if d, ok := sh.earlier("credential_read"); ok {
			a.f.add(FactorChain, 0.3, "network call after a read of "+d+" earlier in this session")
		}
	}
	for _, r := range a.pushes {
		if u, ok := sh.remotes[r]; ok {
			t, _ := parseTarget(gitURL(u))
			out, why := a.outsideHost(t.host, false)
			if out && a.org != nil && codeHostOwner(t) != "" && a.org.ownAccount(codeHostOwner(t)) {
				out = false // github.com/acme/… belongs to org acme
			}
			if out || (a.org == nil && t.host != "") {
				if why == "" {
					why = "added in this session"
				}
				a.f.add(FactorChain, 1, "git push to remote "+r+" ("+clip(u, 60)+"), added earlier in this session, "+why)
				a.f.add(FactorEgress, 1, "git push sends the repository to "+t.host+" "+why)
				a.classes["upload"] = "git push " + r
			}
		}
	}
	if a.payTo != "" {
		lp := strings.ToLower(a.payTo)
		for _, p := range sh.payees {
			pl := strings.ToLower(p)
			if len(pl) >= 3 && (strings.Contains(lp, pl) || (len(lp) >= 6 && strings.Contains(pl, lp))) {
				a.f.add(FactorChain, 1, "payment to "+clip(p, 40)+", a payee created earlier in this session")
				break
			}
		}
	}
}

// policyChains applies the policy's chain patterns. First and Then are each a
// CEL condition over the call (compiled by the policy package) or a class
// name: a factor name (secret, sensitive_path, …), an event class
// (sensitive_read, credential_read alias secret_read, config_read, egress,
// upload, data_egress, secret_egress, payee_created, payment,
// privilege_change, internal_target), a tool ("tool:send_email" or the bare
// name), alternatives joined with "|", or "*".
func (s *Scorer) policyChains(a *analysis, sh *sessionHist) {
	for i, c := range s.chains {
		if !chainMatch(c.ThenCond, c.Then, a) {
			continue
		}
		for j := len(sh.events) - 1; j >= 0; j-- {
			if !sh.events[j].chains[i] {
				continue
			}
			pts := c.Points
			if pts == 0 {
				pts = s.points[FactorChain]
			}
			d := c.Reason
			if d == "" {
				d = c.Name
			}
			if d == "" {
				d = c.First + " then " + c.Then
			}
			a.extra = append(a.extra, airlock.Factor{Name: FactorChain, Points: pts, Detail: "policy chain " + c.Name + ": " + d})
			break
		}
	}
}

// chainFirsts returns the policy chains whose First matches a call.
func (s *Scorer) chainFirsts(a *analysis) map[int]bool {
	var m map[int]bool
	for i, c := range s.chains {
		if chainMatch(c.FirstCond, c.First, a) {
			if m == nil {
				m = map[int]bool{}
			}
			m[i] = true
		}
	}
	return m
}

func chainMatch(cond *policy.Cond, spec string, a *analysis) bool {
	if cond != nil && cond.Class == "" && cond.Expr != "" {
		ok, err := cond.Match(a.call)
		return err == nil && ok
	}
	if cond != nil && cond.Class != "" {
		spec = cond.Class
	}
	return matchClass(spec, a.tool, a.classes)
}

var classAliases = map[string]string{"secret_read": "credential_read", "credential": "credential_read", "pii_read": "sensitive_read",
	"customer_read": "sensitive_read", "network": "egress", "exfil": "data_egress"}

func matchClass(spec, tool string, classes map[string]string) bool {
	spec = strings.TrimSpace(strings.ToLower(spec))
	if spec == "" {
		return false
	}
	for _, alt := range strings.Split(spec, "|") {
		alt = strings.TrimSpace(alt)
		if a, ok := classAliases[alt]; ok {
			alt = a
		}
		if alt == "*" || alt == tool || alt == "tool:"+tool {
			return true
		}
		if _, ok := classes[alt]; ok {
			return true
		}
	}
	return false
}

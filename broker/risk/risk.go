// Package risk computes an explainable risk score for a tool call: a list of
// factors (name, points, a one-line detail a reviewer can check), each from a
// real analysis of the arguments (a SQL tokenizer, a shell parser, URL and IP
// parsing, path cleaning, secret patterns with entropy, Unicode and terminal
// control inspection), plus the agent's and the session's history (novelty and
// "safe steps, unsafe outcome" chains). The score is the sum of the factor
// points capped at 100; the band follows the policy's thresholds.
//
// Factor points are configurable by name in the policy (risk.points); each
// detector reports a weight in (0, 1] that scales the configured points, so a
// weaker signal of the same kind scores less than a certain one.
package risk

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// Factor names. They are stable: policies tune them by name and the audit
// log stores them.
const (
	FactorDestructiveSQL  = "destructive_sql"
	FactorShellDanger     = "shell_danger"
	FactorEgress          = "egress"
	FactorExfiltration    = "exfiltration"
	FactorSecret          = "secret"
	FactorSensitivePath   = "sensitive_path"
	FactorSSRF            = "ssrf"
	FactorInjection       = "injection"
	FactorUnicode         = "unicode_deception"
	FactorTerminalEscape  = "terminal_escape"
	FactorNoveltyTool     = "novelty_tool"
	FactorNoveltyValue    = "novelty_value"
	FactorChain           = "chain"
	FactorPolicyRule      = "policy_rule"
	FactorOversized       = "oversized"
	FactorFinancial       = "financial"
	FactorPrivilege       = "privilege"
	FactorRatePressure    = "rate_pressure"
	defaultBandMedium     = 25
	defaultBandHigh       = 50
	defaultBandCritical   = 80
	defaultMinHistory     = 5
	defaultMaxSessions    = 10000
	defaultMaxAgents      = 10000
	defaultSessionEvents  = 64
	defaultAgentValues    = 4096
	defaultAgentTools     = 512
	maxAnalyzedLeafBytes  = 256 << 10
	maxAnalyzedTotalBytes = 1 << 20
	maxAnalyzedLeaves     = 4096
	maxWalkDepthForLeaves = 128
)

// DefaultPoints are the points a factor scores at full weight, before the
// policy's risk.points overrides.
var DefaultPoints = map[string]int{
	FactorDestructiveSQL: 60,
	FactorShellDanger:    60,
	FactorEgress:         20,
	FactorExfiltration:   55,
	FactorSecret:         55,
	FactorSensitivePath:  55,
	FactorSSRF:           60,
	FactorInjection:      55,
	FactorUnicode:        55,
	FactorTerminalEscape: 60,
	FactorNoveltyTool:    8,
	FactorNoveltyValue:   6,
	FactorChain:          50,
	FactorOversized:      55,
	FactorFinancial:      55,
	FactorPrivilege:      55,
}

// Option configures a Scorer.
type Option func(*Scorer)

// WithMinHistory sets how many approved calls an agent needs before novelty
// factors apply (default 5), so a cold start does not flag everything.
func WithMinHistory(n int) Option { return func(s *Scorer) { s.minHistory = n } }

// WithHistoryLimits bounds the in-memory history: at most sessions sessions
// and agents agents are remembered (least recently observed evicted first).
func WithHistoryLimits(sessions, agents int) Option {
	return func(s *Scorer) {
		if sessions > 0 {
			s.hist.sessions.max = sessions
		}
		if agents > 0 {
			s.hist.agents.max = agents
		}
	}
}

// WithOrg adds (or replaces) an organisation's own domains, for callers that
// have no policy file (airlock risk eval --org-domains).
func WithOrg(o *policy.Org) Option {
	return func(s *Scorer) {
		if o != nil {
			s.orgs[strings.ToLower(o.Name)] = newOrgInfo(o)
		}
	}
}

// Scorer scores tool calls. It is safe for concurrent use.
type Scorer struct {
	points     map[string]int
	bands      policy.Bands
	chains     []policy.Chain
	orgs       map[string]*orgInfo
	minHistory int
	hist       *history
}

// New builds a scorer from the policy's risk config and orgs. A nil policy
// gives the defaults and no org (only well-known free-mail and paste sites
// count as outside).
func New(p *policy.Policy, opts ...Option) *Scorer {
	s := &Scorer{
		points:     make(map[string]int, len(DefaultPoints)),
		bands:      policy.Bands{Medium: defaultBandMedium, High: defaultBandHigh, Critical: defaultBandCritical},
		orgs:       map[string]*orgInfo{},
		minHistory: defaultMinHistory,
		hist:       newHistory(defaultMaxSessions, defaultMaxAgents),
	}
	for k, v := range DefaultPoints {
		s.points[k] = v
	}
	if p != nil {
		for k, v := range p.Risk.Points {
			s.points[k] = v
		}
		if p.Risk.Bands.Medium > 0 {
			s.bands.Medium = p.Risk.Bands.Medium
		}
		if p.Risk.Bands.High > 0 {
			s.bands.High = p.Risk.Bands.High
		}
		if p.Risk.Bands.Critical > 0 {
			s.bands.Critical = p.Risk.Bands.Critical
		}
		s.chains = slices.Clone(p.Risk.Chains)
		for name, o := range p.Orgs {
			if o == nil {
				continue
			}
			oc := *o
			if oc.Name == "" {
				oc.Name = name
			}
			s.orgs[strings.ToLower(name)] = newOrgInfo(&oc)
		}
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithPolicy returns a scorer configured from a reloaded policy that shares
// this scorer's history (novelty and chains survive a policy reload).
func (s *Scorer) WithPolicy(p *policy.Policy, opts ...Option) *Scorer {
	n := New(p, opts...)
	n.hist = s.hist
	return n
}

// Band maps a score to low, medium, high or critical per the policy's bands.
func (s *Scorer) Band(score int) string {
	switch {
	case score >= s.bands.Critical:
		return airlock.BandCritical
	case score >= s.bands.High:
		return airlock.BandHigh
	case score >= s.bands.Medium:
		return airlock.BandMedium
	}
	return airlock.BandLow
}

// Points returns the full-weight points of a factor name.
func (s *Scorer) Points(name string) int { return s.points[name] }

// Score scores one call. extra holds factors from policy rules or the rate
// limiter, added as they are. The history is read, never changed.
func (s *Scorer) Score(call *airlock.ToolCall, extra ...airlock.Factor) airlock.Risk {
	r, _ := s.score(call, false, extra)
	return r
}

// Assessment is a call's analysis kept from ScoreAssessed for
// ObserveAssessed, so that a call scored and then observed is analysed once.
type Assessment struct {
	s       *Scorer
	a       *analysis
	classes map[string]string // the analysis' classes before the history added any
}

// ScoreAssessed is Score that also returns the call's analysis. Passing it to
// ObserveAssessed (with the same, unchanged call) records exactly what
// Observe would, without analysing the call a second time.
func (s *Scorer) ScoreAssessed(call *airlock.ToolCall, extra ...airlock.Factor) (airlock.Risk, *Assessment) {
	return s.score(call, true, extra)
}

func (s *Scorer) score(call *airlock.ToolCall, keep bool, extra []airlock.Factor) (airlock.Risk, *Assessment) {
	var fs []airlock.Factor
	var as *Assessment
	if call != nil {
		a := s.analyze(call)
		if keep {
			// The history's findings may add classes (a git push to a
			// remote added earlier); Observe records the call's own.
			as = &Assessment{s: s, a: a, classes: maps.Clone(a.classes)}
		}
		s.hist.mu.RLock()
		s.historyFindings(a)
		s.hist.mu.RUnlock()
		fs = append(a.f.factors(s.points), a.extra...)
	}
	for _, e := range extra {
		if e.Points == 0 && e.Name == "" {
			continue
		}
		fs = append(fs, e)
	}
	slices.SortStableFunc(fs, func(x, y airlock.Factor) int {
		if c := cmp.Compare(y.Points, x.Points); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	total := 0
	for _, f := range fs {
		total += f.Points
	}
	total = min(max(total, 0), 100)
	if fs == nil {
		fs = []airlock.Factor{}
	}
	return airlock.Risk{Score: total, Band: s.Band(total), Factors: fs}, as
}

// Observe records a call and its final verdict into the bounded history:
// per session, the sensitive reads, remotes and payees that later steps of a
// chain refer to (approved calls only: a denied read read nothing); per
// agent, the tools and argument values of approved calls, for novelty.
func (s *Scorer) Observe(call *airlock.ToolCall, verdict airlock.Verdict) {
	if call == nil || verdict != airlock.VerdictApproved {
		return
	}
	a := s.analyze(call)
	s.hist.observe(a, s.hist.agentMaxValues(), s.chainFirsts(a))
}

// ObserveAssessed is Observe for a call scored by ScoreAssessed: as must
// come from this scorer's ScoreAssessed of call, and the call must not have
// changed since. Otherwise (as nil, another scorer's or another call's) it
// analyses the call afresh, as Observe does.
func (s *Scorer) ObserveAssessed(call *airlock.ToolCall, as *Assessment, verdict airlock.Verdict) {
	if call == nil || verdict != airlock.VerdictApproved {
		return
	}
	if as == nil || as.s != s || as.a == nil || as.a.call != call {
		s.Observe(call, verdict)
		return
	}
	a := *as.a
	a.classes = as.classes
	s.hist.observe(&a, s.hist.agentMaxValues(), s.chainFirsts(&a))
}

// finding is one detector's result before points are assigned.
type finding struct {
	name   string
	weight float64
	detail string
}

// findings keeps the strongest finding per factor name and counts the rest.
type findings struct {
	best  map[string]finding
	more  map[string]int
	order []string
}

func (f *findings) add(name string, weight float64, detail string) {
	if weight <= 0 {
		return
	}
	weight = min(weight, 1)
	if f.best == nil {
		f.best = map[string]finding{}
		f.more = map[string]int{}
	}
	old, ok := f.best[name]
	switch {
	case !ok:
		f.best[name] = finding{name, weight, detail}
		f.order = append(f.order, name)
	case weight > old.weight:
		f.best[name] = finding{name, weight, detail}
		f.more[name]++
	case detail != old.detail:
		f.more[name]++
	}
}

func (f *findings) has(name string) bool { _, ok := f.best[name]; return ok }

func (f *findings) weight(name string) float64 { return f.best[name].weight }

func (f *findings) factors(points map[string]int) []airlock.Factor {
	out := make([]airlock.Factor, 0, len(f.order))
	for _, n := range f.order {
		b := f.best[n]
		p := int(math.Round(float64(points[n]) * b.weight))
		if p <= 0 {
			continue
		}
		d := b.detail
		if m := f.more[n]; m > 0 {
			d += " (+" + itoa(m) + " more)"
		}
		out = append(out, airlock.Factor{Name: n, Points: p, Detail: d})
	}
	return out
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

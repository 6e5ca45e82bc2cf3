package policy

import (
	"time"

	"github.com/airlock/airlock"
)

// Policy is a loaded, validated policy file. Every other package reads its
// configuration from here: the broker (tiers, manifests, review settings),
// ratelimit (Limits), risk (Risk, Orgs) and the sandbox (Tool.Sandbox).
//
// A Policy is immutable once loaded; reload builds a new one.
type Policy struct {
	Version  int
	Defaults Defaults
	Tools    map[string]*Tool
	Agents   map[string]*Agent
	Limits   []Limit
	Review   Review
	Risk     RiskConfig
	Orgs     map[string]*Org
	// Auth is the identities section (agents, reviewers, brokers), when present.
	Auth *Auth
	// Source is the file the policy was loaded from; Digest the hex SHA-256
	// of its bytes, used as the policy version in audit rows and signatures.
	Source string
	Digest string
	// Warnings are problems that do not stop the policy from loading (a
	// manifest naming an undeclared tool, a rule that could only lower a
	// tier), formatted like errors: "file:line: path: message".
	Warnings []string
}

// Defaults are the policy-wide defaults.
type Defaults struct {
	UnknownTool airlock.Tier  // always deny; any other value is refused at load
	PendingTTL  time.Duration // how long a call may wait for a human (default 10m)
	// RequireUser denies every call that names no user (defaults.require_user).
	RequireUser bool
}

// Tool is one tool's entry.
type Tool struct {
	Name  string
	Tier  airlock.Tier
	Rules []*Rule
	// Sandbox, when set, means airlock itself runs the approved call's code.
	Sandbox *SandboxProfile
	// Writes marks a tool that needs an elevated write grant for the session.
	Writes bool
	// TwoPerson requires two different reviewers to approve.
	TwoPerson bool
	// Scope pins what the tool's arguments may reach; a call outside it is denied.
	Scope *Scope
	// Line in the policy file.
	Line int

	reason string // "x is an auto-tier tool", built at load
}

// Rule is a CEL rule on a tool. When matches, the tier is raised to Tier (never
// lowered) and Risk points are added with Reason.
type Rule struct {
	When   string
	Tier   airlock.Tier // empty: keep the tool's tier
	Risk   int
	Reason string
	// Line is the line of the rule in the policy file, for messages.
	Line int
	// ID names the rule in results and audit rows, e.g. "tools.read_file.rules[0]".
	ID string

	index       int
	prog        *compiled // When, compiled; nil when built by hand (fails closed)
	matchReason string    // "Reason (rule N)"
}

// Agent is an agent's tool manifest: the only tools it may call, and,
// when pinned, the only users and orgs it may act for.
type Agent struct {
	Name  string
	Tools []string
	// Users and Orgs pin whom the agent may act for: a call's user (org)
	// must match one entry, exactly or as a glob where * is any run of
	// characters. nil: no pin (any user or org, even none); empty and
	// non-nil: the agent may act for nobody.
	Users []string
	Orgs  []string

	set map[string]struct{} // Tools as a set, built at load
}

// Limit is one entry of `limits:`. Zero fields are off. A limit applies to
// every key of its scope (each user, each org, …).
type Limit struct {
	Scope  string        // user, org, agent, session, global
	Window time.Duration // for Requests, Tokens, Cost; default 1m
	// Per-window budgets.
	Requests int64
	Tokens   int64
	CostUSD  float64
	// Shorthands from the design's file; folded into the fields above at load
	// (requests_per_minute → Requests with a 1m window, and so on), kept for
	// display.
	RequestsPerMinute int64
	TokensPerMinute   int64
	CostPerHourUSD    float64
	// Per-call sizes.
	MaxInputTokens  int64
	MaxOutputTokens int64
	// In-flight calls (waiting for a reviewer counts).
	Concurrent int64
	// Messages per session, tracked per user so rotating sessions does not reset it.
	SessionMessages int64
	// Line in the policy file.
	Line int
}

// Budget is one normalised per-window budget of a Limit: at most Amount of
// Dimension (requests, tokens or cost_usd) in any Window.
type Budget struct {
	Dimension string // requests, tokens, cost_usd
	Window    time.Duration
	Amount    float64
}

// Review holds the anti-fatigue settings of the console and broker.
type Review struct {
	Batch                 bool
	BatchMaxRisk          int           // calls at or above this risk are never batched (default 50)
	MinDwellHighRisk      time.Duration // default 2s
	MaxApprovalsPerMinute int           // default 20
	CanaryRate            float64       // 0..1
	TwoPersonRisk         int           // 0 = off
	ConfirmRisk           int           // typed confirmation at or above (default 90)
	GraceMS               int           // keys ignored after an item appears (default 400)
	WriteGrantTTL         time.Duration // lifetime of a session's write grant (default 5m)
	GrantMaxTTL           time.Duration // longest "approve similar" grant a reviewer may create (default 1h)
}

// RiskConfig tunes the scorer: factor points by name and band thresholds.
type RiskConfig struct {
	Points map[string]int // factor name → points (overrides the defaults)
	Bands  Bands
	Chains []Chain
}

// Bands are the lower bounds of each band (score ≥ High is high, …).
type Bands struct {
	Medium   int // default 25
	High     int // default 50
	Critical int // default 80
}

// Chain is a configurable session pattern: a call matching First followed
// later in the same session by one matching Then scores Points.
type Chain struct {
	Name   string
	First  string // CEL over call (tool, args) or a factor class name
	Then   string
	Points int
	Reason string
	// FirstCond and ThenCond are First and Then compiled at load.
	FirstCond *Cond
	ThenCond  *Cond
	// Line in the policy file.
	Line int
}

// Org describes an organisation's own domains, for egress and look-alike checks.
type Org struct {
	Name        string
	MailDomains []string // e.g. acme.com
	Hosts       []string // e.g. acme.com, *.acme.internal
	// Line in the policy file.
	Line int
}

// SandboxProfile is a tool's `sandbox:` block.
type SandboxProfile struct {
	Backend     string        // native (default), bwrap, docker, wasm
	Lang        string        // python, shell, … (how the code argument is run)
	Command     []string      // argv template, when not a language
	CodeArg     string        // argument holding the code (default "code", or "command" for shell)
	Timeout     time.Duration // wall time (default 30s)
	CPUTime     time.Duration
	Memory      int64 // bytes (default 512 MiB)
	Pids        int   // default 128
	CPUs        float64
	FileSize    int64    // RLIMIT_FSIZE bytes
	TmpSize     int64    // /tmp tmpfs bytes
	Output      int64    // retained output bytes
	Network     bool     // false: no network (the default)
	Allow       []string // allow-listed hosts when Network is true
	Env         []string // environment variables passed through
	Workspace   string   // host directory bound at /workspace
	WorkspaceRW bool
}

// Scope pins what a tool's arguments may reach.
type Scope struct {
	From    []string // allowed sender addresses (email)
	Domains []string // allowed recipient domains (email)
	Schemas []string // allowed SQL schemas
	Hosts   []string // allowed HTTP hosts (exact or *.suffix)
	Paths   []string // allowed path prefixes
}

// Auth declares who may say what on the bus.
type Auth struct {
	Agents    map[string]Identity
	Reviewers map[string]Identity
	Brokers   map[string]Identity
}

// Identity is one principal: an nkey public key or a token, plus, for
// reviewers, an SSH public key for the console over SSH.
type Identity struct {
	NKey   string
	Token  string
	SSHKey string
}

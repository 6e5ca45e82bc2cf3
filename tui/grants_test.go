package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/grant"
	"github.com/airlock/airlock/broker/policy"
)

var _ AdminBackend = (*fakeBackend)(nil)

// listEmail is a routine email with its recipients as a list, as agents send them.
func listEmail(id, to, body string) airlock.Pending {
	return pending(id, "mailer", "send_email", 10, map[string]any{"to": []any{to}, "subject": "Your ticket", "body": body})
}

// grantReply answers approvals the way the broker does: a grant asked for
// is created (or refused with a note).
func grantReply(refuse string) func(airlock.Review) (airlock.ReviewReply, error) {
	return func(r airlock.Review) (airlock.ReviewReply, error) {
		rep := airlock.ReviewReply{Accepted: true}
		if r.Grant == nil {
			return rep, nil
		}
		if refuse != "" {
			rep.Note = "approved, but no grant: " + refuse
			return rep, nil
		}
		rep.Grant = &airlock.Grant{ID: "g01", Agent: "mailer", Tool: "send_email", When: r.Grant.When, MaxUses: r.Grant.MaxUses,
			MaxRisk: 50, CreatedBy: "reviewer:" + r.Reviewer, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute), FromCall: r.CallID}
		rep.Note = "grant g01: " + rep.Grant.Describe()
		return rep, nil
	}
}

func TestGrantFormSendsApprovalWithGrant(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.b.reply = grantReply("")
	p := listEmail("a", "ops@acme.com", "weekly numbers")
	h.add(p)
	h.wait(time.Second)
	if !strings.Contains(h.screen(), "A approve similar") {
		t.Errorf("the help line does not offer a grant on a routine call:\n%s", h.screen())
	}
	h.press("A")
	if h.m.mode != modeGrant {
		t.Fatalf("got mode %v after A, want the grant form", h.m.mode)
	}
	want := grant.Suggest(&p.Call)
	scr := h.screen()
	if !strings.Contains(scr, `endsWith("@acme.com")`) || !strings.Contains(scr, "15m") {
		t.Fatalf("the form does not show the suggested constraint %q and 15m:\n%s", want, scr)
	}
	if got := h.b.sent(); len(got) != 0 {
		t.Fatalf("got reviews %+v while the form is open, want none", got)
	}
	// 30 minutes, at most 10 uses.
	h.press("tab", "backspace", "backspace", "backspace")
	h.typeText("30m")
	h.press("tab")
	h.typeText("10")
	h.press("enter")
	got := h.b.sent()
	if len(got) != 1 {
		t.Fatalf("got %d reviews, want 1", len(got))
	}
	r := got[0]
	if r.Action != airlock.ActionApprove || r.CallID != "a" || r.Grant == nil {
		t.Fatalf("got %+v, want an approval of a with a grant", r)
	}
	if *r.Grant != (airlock.GrantRequest{For: "30m", When: want, MaxUses: 10}) {
		t.Errorf("got grant %+v, want 30m, %q, 10 uses", *r.Grant, want)
	}
	if s := h.screen(); !strings.Contains(s, "grant g01 created") {
		t.Errorf("the created grant is not shown:\n%s", s)
	}
}

func TestGrantFormEditedConstraint(t *testing.T) {
	tests := []struct {
		name    string
		when    string
		wantErr string // empty: sent
	}{
		{"narrower-still-covers", `args.to == ["ops@acme.com"]`, ""},
		{"does-not-compile", `args.to ==`, "constraint:"},
		{"does-not-cover-the-call", `args.to == ["eve@acme.com"]`, "does not cover"},
		{"empty", ``, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, policy.Review{})
			h.b.reply = grantReply("")
			h.add(listEmail("a", "ops@acme.com", "weekly numbers"))
			h.wait(time.Second)
			h.press("A")
			h.m.gform.in[fieldWhen].SetValue(tt.when)
			h.press("enter")
			got := h.b.sent()
			if tt.wantErr != "" {
				if len(got) != 0 || h.m.mode != modeGrant {
					t.Fatalf("got reviews %+v, mode %v; want nothing sent and the form kept open", got, h.m.mode)
				}
				if s := h.screen(); !strings.Contains(s, tt.wantErr) {
					t.Errorf("screen does not say %q:\n%s", tt.wantErr, s)
				}
				return
			}
			if len(got) != 1 || got[0].Grant == nil || got[0].Grant.When != tt.when {
				t.Fatalf("got %+v, want one approval with the edited constraint", got)
			}
		})
	}
}

func TestGrantFormChecksDurationAndUses(t *testing.T) {
	tests := []struct {
		name, dur, uses, want string
	}{
		{"not-a-duration", "soon", "", "not a duration"},
		{"over-the-maximum", "2h", "", "longer than the 1h"},
		{"zero-uses", "15m", "0", "not a positive number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, policy.Review{})
			h.add(listEmail("a", "ops@acme.com", "weekly numbers"))
			h.wait(time.Second)
			h.press("A")
			h.m.gform.in[fieldFor].SetValue(tt.dur)
			h.m.gform.in[fieldUses].SetValue(tt.uses)
			h.press("enter")
			if got := h.b.sent(); len(got) != 0 {
				t.Fatalf("got reviews %+v, want none", got)
			}
			if s := h.screen(); !strings.Contains(s, tt.want) {
				t.Errorf("screen does not say %q:\n%s", tt.want, s)
			}
		})
	}
}

func TestGrantRefusedByBrokerIsShown(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.b.reply = grantReply("grants never cover deny-tier or unknown tools")
	h.add(listEmail("a", "ops@acme.com", "weekly numbers"))
	h.wait(time.Second)
	h.press("A", "enter")
	if got := h.b.sent(); len(got) != 1 || got[0].Grant == nil {
		t.Fatalf("got %+v, want one approval asking for a grant", got)
	}
	if s := h.screen(); !strings.Contains(s, "no grant: grants never cover deny-tier") {
		t.Errorf("the broker's refusal is not shown:\n%s", s)
	}
}

func TestNoGrantOfferedForHighRisk(t *testing.T) {
	tests := []struct {
		name    string
		score   int
		ceiling int
	}{
		{"high-band", 70, 0},
		{"critical-band", 95, 0},
		{"at-the-batch-ceiling", 30, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, policy.Review{BatchMaxRisk: tt.ceiling})
			h.add(pending("a", "bot", "send_email", tt.score, map[string]any{"to": "x@evil.example", "body": "export"}))
			h.wait(5 * time.Second)
			if s := h.screen(); strings.Contains(s, "approve similar") {
				t.Errorf("a grant is offered on a risk-%d call:\n%s", tt.score, s)
			}
			h.press("A")
			if h.m.mode != modeNone {
				t.Fatalf("got mode %v after A, want none", h.m.mode)
			}
			h.press("enter", "y")
			if got := h.b.sent(); len(got) != 0 {
				t.Fatalf("got reviews %+v, want none", got)
			}
			if s := h.screen(); !strings.Contains(s, "no grant for this call") {
				t.Errorf("screen does not say why:\n%s", s)
			}
		})
	}
}

func TestGrantOnBatchRidesOnOneVerdict(t *testing.T) {
	h := newHarness(t, policy.Review{Batch: true})
	h.b.reply = grantReply("")
	var ps []airlock.Pending
	for i := range 3 {
		p := pending(fmt.Sprintf("r%d", i), "reports", "read_file", 5, map[string]any{"path": fmt.Sprintf("/srv/reports/%d.csv", i)})
		p.ReceivedAt = t0.Add(time.Duration(i) * time.Second)
		ps = append(ps, p)
	}
	h.add(ps...)
	h.wait(time.Second)
	h.press("A")
	if s := h.screen(); !strings.Contains(s, "the 3 calls of this batch") || !strings.Contains(s, `startsWith("/srv/reports/")`) {
		t.Fatalf("the form does not describe the batch and its path prefix:\n%s", s)
	}
	h.press("enter")
	got := h.b.sent()
	if len(got) != 3 {
		t.Fatalf("got %d reviews, want 3", len(got))
	}
	withGrant := 0
	for _, r := range got {
		if r.Grant != nil {
			withGrant++
		}
	}
	if withGrant != 1 {
		t.Errorf("got %d verdicts asking for a grant, want exactly 1", withGrant)
	}
}

func TestGrantsViewListsAndRevokes(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.b.grants = []airlock.Grant{
		{ID: "g2", Agent: "reports", Tool: "read_file", When: `args.path.startsWith("/srv/reports/")`, Uses: 3,
			CreatedBy: "reviewer:bob", CreatedAt: t0, ExpiresAt: t0.Add(20 * time.Minute)},
		{ID: "g1", Agent: "mailer", Tool: "send_email", When: `args.to.all(r, r.endsWith("@acme.com"))`, Uses: 1, MaxUses: 10,
			CreatedBy: "reviewer:alice", CreatedAt: t0, ExpiresAt: t0.Add(5 * time.Minute)},
		{ID: "g0", Agent: "old", Tool: "send_email", When: "true", ExpiresAt: t0.Add(-time.Minute)}, // expired: not listed
	}
	for h.m.tab != tabGrants {
		h.press("tab")
	}
	s := h.screen()
	for _, want := range []string{"g1", "mailer", "send_email", "5m00s", "1/10", "g2", "20m00s", `startsWith("/srv/reports/")`} {
		if !strings.Contains(s, want) {
			t.Errorf("the Grants view lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "g0 ") {
		t.Errorf("an expired grant is listed:\n%s", s)
	}
	// g1 expires first and is listed first; select g2 and revoke it.
	h.press("j", "r")
	if h.m.mode != modeRevoke || !strings.Contains(h.screen(), "revoke grant g2") {
		t.Fatalf("got mode %v, want the revoke confirmation for g2:\n%s", h.m.mode, h.screen())
	}
	h.press("n")
	if got := h.b.revokes(); len(got) != 0 {
		t.Fatalf("got revocations %v after n, want none", got)
	}
	h.press("r", "esc")
	if got := h.b.revokes(); len(got) != 0 {
		t.Fatalf("got revocations %v after Esc, want none", got)
	}
	h.press("r", "y")
	if got := h.b.revokes(); !slices.Equal(got, []string{"g2 by alice"}) {
		t.Fatalf("got revocations %v, want g2 by alice", got)
	}
	s = h.screen()
	if !strings.Contains(s, "revoked grant g2") || strings.Contains(s, "/srv/reports/") {
		t.Errorf("the view still lists g2 or does not say it was revoked:\n%s", s)
	}
}

func TestGrantsViewErrors(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.b.grantsErr = errors.New("no responders")
	for h.m.tab != tabGrants {
		h.press("tab")
	}
	if s := h.screen(); !strings.Contains(s, "no responders") {
		t.Errorf("the Grants view does not show the error:\n%s", s)
	}
	// A backend without the admin side.
	st := DefaultStyles(true)
	m := New(plainBackend{}, Options{Reviewer: "alice", Styles: &st})
	m.Update(keyMsg("tab"))
	m.Update(keyMsg("tab"))
	m.Update(keyMsg("tab"))
	if s := stripANSI(m.View().Content); !strings.Contains(s, "cannot list grants") {
		t.Errorf("a backend without grants is not explained:\n%s", s)
	}
}

// plainBackend has no admin side.
type plainBackend struct{}

func (plainBackend) Events(ctx context.Context) <-chan Event { return make(chan Event) }
func (plainBackend) Decide(context.Context, airlock.Review) (airlock.ReviewReply, error) {
	return airlock.ReviewReply{Accepted: true}, nil
}
func (plainBackend) Recent(context.Context, string, int) ([]airlock.DecisionRecord, error) {
	return nil, nil
}

// approveOneByOne approves n look-alike report reads, one verdict each.
func approveOneByOne(h *harness, from, n int) {
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("r%d", i)
		h.add(pending(id, "reports", "read_file", 5, map[string]any{"path": fmt.Sprintf("/srv/reports/2026-11-%02d.csv", i)}))
		h.wait(time.Second)
		h.press("a")
		h.send(Event{Kind: EventRemoved, CallID: id})
		h.send(flushMsg{})
	}
}

func TestRuleSuggestionAfterNApprovals(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.b.replayRes = ReplaySummary{Replayed: 40, Matched: 37, MatchedApproved: 36, MatchedDenied: 1, Examples: []string{"01JBAD"}}
	approveOneByOne(h, 1, 4)
	if got := h.b.replayed(); len(got) != 0 {
		t.Fatalf("got replays %+v after 4 approvals, want none", got)
	}
	approveOneByOne(h, 5, 1)
	got := h.b.replayed()
	want := `args.path.startsWith("/srv/reports/") && !args.path.contains("..")`
	if len(got) != 1 || got[0] != (replayCall{"reports", "read_file", want}) {
		t.Fatalf("got replays %+v, want one of reports/read_file %q", got, want)
	}
	if s := h.screen(); !strings.Contains(s, "a rule suggestion is in the Grants view") {
		t.Errorf("the console does not announce the suggestion:\n%s", s)
	}
	approveOneByOne(h, 6, 3)
	if got := h.b.replayed(); len(got) != 1 {
		t.Errorf("got %d replays after more approvals, want still 1", len(got))
	}
	for h.m.tab != tabGrants {
		h.press("tab")
	}
	h.press("j") // no grants: the first entry is the suggestion; j stays on it
	s := h.screen()
	for _, w := range []string{"reports · read_file · approved 8× here", "would have decided 37 of the last 40", "36 approved by people, 1 denied",
		"too wide", "01JBAD", "tier: notify  # was approve", "covers 5 of the last 5"} {
		if !strings.Contains(s, w) {
			t.Errorf("the suggestion lacks %q:\n%s", w, s)
		}
	}
	// The snippet is valid YAML whose rule compiles, and it raises exactly
	// the calls outside the approved shape.
	sg := h.m.suggestions[0]
	var doc struct {
		Tools map[string]struct {
			Tier  string
			Rules []struct{ When, Tier, Reason string }
		}
	}
	if err := yaml.Unmarshal([]byte(sg.yaml), &doc); err != nil {
		t.Fatalf("the snippet is not YAML: %v\n%s", err, sg.yaml)
	}
	tool := doc.Tools["read_file"]
	if tool.Tier != "notify" || len(tool.Rules) != 1 || tool.Rules[0].Tier != "approve" || tool.Rules[0].Reason == "" {
		t.Fatalf("got %+v, want read_file notify with one rule raising to approve", tool)
	}
	// Adopted as is into a policy, the loader takes it and it decides as
	// it says.
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("version: 1\ndefaults: {unknown_tool: deny}\n"+sg.yaml+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(file)
	if err != nil {
		t.Fatalf("the policy loader refuses the snippet: %v\n%s", err, sg.yaml)
	}
	for _, c := range []struct {
		agent, path string
		want        airlock.Tier
	}{
		{"reports", "/srv/reports/2026-12-01.csv", airlock.TierNotify},
		{"reports", "/srv/reports/../../etc/passwd", airlock.TierApprove},
		{"reports", "/etc/passwd", airlock.TierApprove},
		{"other-bot", "/srv/reports/2026-12-01.csv", airlock.TierApprove},
	} {
		call := airlock.ToolCall{Agent: c.agent, Tool: "read_file", Arguments: map[string]any{"path": c.path}}
		if got := pol.Evaluate(&call); got.Tier != c.want {
			t.Errorf("%s reading %s: got tier %s (%s), want %s", c.agent, c.path, got.Tier, got.Reason, c.want)
		}
	}
}

func TestNoRuleSuggestion(t *testing.T) {
	t.Run("after-a-denial-of-the-shape", func(t *testing.T) {
		h := newHarness(t, policy.Review{})
		h.add(pending("r0", "reports", "read_file", 5, map[string]any{"path": "/srv/reports/0.csv"}))
		h.wait(time.Second)
		h.press("d", "enter")
		h.send(Event{Kind: EventRemoved, CallID: "r0"})
		approveOneByOne(h, 1, 6)
		if got := h.b.replayed(); len(got) != 0 {
			t.Errorf("got replays %+v, want none: the reviewer denied a call of this shape", got)
		}
	})
	t.Run("when-turned-off", func(t *testing.T) {
		h := newHarness(t, policy.Review{})
		h.m.opts.SuggestAfter = -1
		approveOneByOne(h, 1, 6)
		if got := h.b.replayed(); len(got) != 0 || len(h.m.suggestions) != 0 {
			t.Errorf("got replays %+v, want none", got)
		}
	})
	t.Run("replay-error-is-shown", func(t *testing.T) {
		h := newHarness(t, policy.Review{})
		h.m.opts.SuggestAfter = 2
		h.b.replayErr = errors.New("this broker has no audit history to replay against")
		approveOneByOne(h, 1, 2)
		for h.m.tab != tabGrants {
			h.press("tab")
		}
		if s := h.screen(); !strings.Contains(s, "replay: this broker has no audit history") {
			t.Errorf("the replay error is not shown:\n%s", s)
		}
	})
}

func TestStatusBarTelemetry(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.m.SetSize(120, 30)
	h.add(pending("a", "bot", "read_file", 5, map[string]any{"path": "/tmp/a"}),
		pending("b", "bot", "read_file", 5, map[string]any{"path": "/tmp/b"}))
	h.wait(3 * time.Second)
	h.press("a")
	h.wait(time.Second)
	h.press("d", "enter")
	lines := strings.Split(h.screen(), "\n")
	status := lines[len(lines)-1]
	if !strings.Contains(status, "2 today") || !strings.Contains(status, "50% approved │ median") {
		t.Errorf("got status bar %q, want decisions, approval rate and median time", status)
	}
	h.m.SetSize(60, 20)
	lines = strings.Split(h.screen(), "\n")
	if status := lines[len(lines)-1]; strings.Contains(status, "median") {
		t.Errorf("got status bar %q at 60 columns, want the telemetry left out", status)
	}
}

func TestYAMLCELRoundTrips(t *testing.T) {
	tests := []struct{ name, cel string }{
		{"short", `args.path == "/srv/a"`},
		{"long-folded", `call.agent != "reports" || !(args.path.startsWith("/srv/reports/") && !args.path.contains("..") && args.mode == "read only please")`},
		{"quote-inside", `args.subject == "it's done" && args.to.all(r, r.endsWith("@acme.com")) && args.body.contains("a  b")`},
		{"one-long-word", strings.Repeat("x", 120)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkYAMLCEL(t, tt.cel)
		})
	}
}

func checkYAMLCEL(t *testing.T, cel string) {
	t.Helper()
	doc := "rules:\n  - when: " + yamlCEL(cel, "      ", snippetWidth) + "\n"
	var got struct{ Rules []struct{ When string } }
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, doc)
	}
	if len(got.Rules) != 1 || got.Rules[0].When != cel {
		t.Fatalf("got %+v, want %q back from\n%s", got.Rules, cel, doc)
	}
}

// FuzzYAMLCEL checks that the snippet's constraint reads back as written.
func FuzzYAMLCEL(f *testing.F) {
	f.Add(`args.path.startsWith("/srv/reports/") && !args.path.contains("..")`)
	f.Add(`call.agent != "a b" || !(args.to.all(r, r.endsWith("@acme.com")) && args.x == 'it''s')`)
	f.Fuzz(func(t *testing.T, cel string) {
		// What grant.Suggest and a reviewer write: one printable line,
		// no edge spaces.
		if cel == "" || strings.TrimSpace(cel) != cel || !utf8ValidPrintable(cel) {
			return // not an input this property is about
		}
		checkYAMLCEL(t, cel)
	})
}

func utf8ValidPrintable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '\u00a0' || r == '\ufeff' {
			return false
		}
	}
	return true
}

func TestNewerStatusShowsOverOlderNotice(t *testing.T) {
	h := newHarness(t, policy.Review{})
	h.b.reply = grantReply("")
	h.add(listEmail("a", "ops@acme.com", "weekly numbers"))
	h.wait(time.Second)
	h.press("A", "enter")
	if s := h.screen(); !strings.Contains(s, "grant g01 created") {
		t.Fatalf("the grant notice is not shown:\n%s", s)
	}
	h.wait(time.Second)
	h.press("/")
	h.press("esc")
	if s := h.screen(); !strings.Contains(s, "filter cleared") {
		t.Errorf("a newer status is hidden behind the older notice:\n%s", s)
	}
	// An attention check's outcome stays over newer statuses.
	h.b.reply = func(airlock.Review) (airlock.ReviewReply, error) {
		return airlock.ReviewReply{Accepted: true, Canary: true}, nil
	}
	h.send(Event{Kind: EventRemoved, CallID: "a"})
	h.add(pending("c", "bot", "read_file", 5, map[string]any{"path": "/tmp/c"}))
	h.wait(time.Second)
	h.press("a")
	h.wait(time.Second)
	h.press("/")
	h.press("esc")
	if s := h.screen(); !strings.Contains(s, "attention check") {
		t.Errorf("the attention check's outcome gave way to a status:\n%s", s)
	}
}

func TestGrantFormRespectsRateGuard(t *testing.T) {
	h := newHarness(t, policy.Review{MaxApprovalsPerMinute: 1})
	h.add(listEmail("a", "ops@acme.com", "one"), listEmail("b", "ops@acme.com", "two"))
	h.wait(time.Second)
	h.press("a")
	h.send(Event{Kind: EventRemoved, CallID: "a"})
	h.send(flushMsg{})
	h.wait(time.Second)
	h.press("A")
	if h.m.mode != modeNone || !strings.Contains(h.screen(), "rate guard") {
		t.Fatalf("got mode %v, want the rate guard to refuse the grant form:\n%s", h.m.mode, h.screen())
	}
	if got := h.b.sent(); len(got) != 1 {
		t.Fatalf("got %d reviews, want only the first approval", len(got))
	}
}

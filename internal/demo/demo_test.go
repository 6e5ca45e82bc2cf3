package demo

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

// TestScenariosFitThePolicy: every simulated call reaches the policy's
// tiers (no agent calls a tool outside its manifest by accident), except
// the deliberately forbidden delete_record.
func TestScenariosFitThePolicy(t *testing.T) {
	pol, err := policy.Parse("demo/policy.yaml", Policy)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i, sc := range scenarios {
		for k := 0; k < 5; k++ {
			for _, c := range sc.steps(r) {
				res := pol.Evaluate(c)
				if res.Denied && c.Tool != "delete_record" {
					t.Errorf("scenario %d: %s/%s denied: %s", i, c.Agent, c.Tool, res.Reason)
				}
			}
		}
	}
}

type recorder struct {
	mu    sync.Mutex
	calls []*airlock.ToolCall
}

func (r *recorder) Submit(ctx context.Context, c *airlock.ToolCall) (airlock.Decision, error) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return airlock.Decision{CallID: c.ID, Verdict: airlock.VerdictApproved}, nil
}

// TestRunOpensWithReviewWork: the demo starts with calls that need a
// reviewer, from several agents and users, and stops when told.
func TestRunOpensWithReviewWork(t *testing.T) {
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, rec, 7, 50); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.calls)
		rec.mu.Unlock()
		if n >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	agents, tools := map[string]bool{}, map[string]bool{}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, c := range rec.calls {
		agents[c.Agent] = true
		tools[c.Tool] = true
		if c.User == "" || c.Session == "" || !strings.HasPrefix(c.Session, "s-") {
			t.Errorf("call without user or session: %+v", c)
		}
	}
	if len(rec.calls) < 20 || len(agents) < 3 || len(tools) < 4 {
		t.Fatalf("%d calls from %d agents over %d tools; want a varied stream", len(rec.calls), len(agents), len(tools))
	}
}

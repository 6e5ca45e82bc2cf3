package risk_test

import (
	"fmt"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/broker/risk"
)

func ExampleScorer_Score() {
	pol := &policy.Policy{Orgs: map[string]*policy.Org{
		"acme": {Name: "acme", MailDomains: []string{"acme.com"}, Hosts: []string{"acme.com", "*.acme.internal"}},
	}}
	sc := risk.New(pol)
	call := &airlock.ToolCall{Agent: "analyst", Org: "acme", Session: "s1", Tool: "execute_sql",
		Arguments: map[string]any{"query": "DELETE FROM customers -- WHERE id = 7"}}
	r := sc.Score(call, airlock.Factor{Name: "policy_rule", Points: 10, Detail: "sql needs review"})
	fmt.Println(r.Score, r.Band)
	for _, f := range r.Factors {
		fmt.Printf("%s %d %s\n", f.Name, f.Points, f.Detail)
	}
	sc.Observe(call, airlock.VerdictDenied)
	// Output:
	// 70 high
	// destructive_sql 60 DELETE without WHERE on customers
	// policy_rule 10 sql needs review
}

func ExampleScorer_WithPolicy() {
	sc := risk.New(nil)
	sc.Observe(&airlock.ToolCall{Agent: "a", Session: "s1", Tool: "execute_sql",
		Arguments: map[string]any{"query": "SELECT email, phone FROM customers"}}, airlock.VerdictApproved)
	reloaded := sc.WithPolicy(&policy.Policy{Orgs: map[string]*policy.Org{"acme": {Name: "acme", MailDomains: []string{"acme.com"}}}})
	r := reloaded.Score(&airlock.ToolCall{Agent: "a", Org: "acme", Session: "s1", Tool: "send_email",
		Arguments: map[string]any{"to": []any{"me@gmail.com"}, "body": "see attached"}})
	fmt.Println(r.Band, r.Factors[0].Name)
	// Output:
	// high chain
}

package policy

import "fmt"

// CompileCond compiles a CEL condition over args and call, with the same
// environment, cost limit and timeout as tool rules. Grants use it for their
// constraints.
func CompileCond(expr string) (*Cond, error) {
	prg, err := compile(expr)
	if err != nil {
		return nil, fmt.Errorf("policy: condition %q: %w", expr, err)
	}
	return &Cond{Expr: expr, prog: prg}, nil
}

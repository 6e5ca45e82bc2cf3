package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/mail"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/airlock/airlock"
)

// Limits on rule evaluation, so that a hostile argument (a huge list, a deep
// comprehension) cannot stall the broker. An evaluation that hits either
// fails closed (see Evaluate).
var (
	// EvalCostLimit bounds the CEL cost of one rule evaluation.
	EvalCostLimit uint64 = 1_000_000
	// EvalTimeout bounds the wall time of all rules of one call together.
	EvalTimeout = 100 * time.Millisecond
)

// maxExprLen bounds a rule's source text.
const maxExprLen = 16 << 10

var (
	celEnvOnce sync.Once
	celEnv     *cel.Env
	celEnvErr  error
)

// env returns the CEL environment rules are compiled in: the variables args
// and call.*, the standard library, the strings and sets extensions, and the
// helpers hostOf, domainOf and cleanPath.
func env() (*cel.Env, error) {
	celEnvOnce.Do(func() {
		celEnv, celEnvErr = cel.NewEnv(
			cel.CustomTypeAdapter(adapter{types.NewEmptyRegistry()}),
			cel.CrossTypeNumericComparisons(true),
			cel.ParserExpressionSizeLimit(maxExprLen),
			cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("call.id", cel.StringType),
			cel.Variable("call.agent", cel.StringType),
			cel.Variable("call.user", cel.StringType),
			cel.Variable("call.org", cel.StringType),
			cel.Variable("call.session", cel.StringType),
			cel.Variable("call.tool", cel.StringType),
			cel.Variable("call.input_tokens", cel.IntType),
			cel.Variable("call.output_tokens", cel.IntType),
			cel.Variable("call.cost_usd", cel.DoubleType),
			cel.Variable("call.context", cel.MapType(cel.StringType, cel.DynType)),
			ext.Strings(),
			ext.Sets(),
			cel.Function("hostOf", cel.Overload("hostOf_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return types.String(hostOf(string(v.(types.String)))) }))),
			cel.Function("domainOf", cel.Overload("domainOf_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return types.String(domainOf(string(v.(types.String)))) }))),
			cel.Function("cleanPath", cel.Overload("cleanPath_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return types.String(path.Clean(string(v.(types.String)))) }))),
		)
	})
	return celEnv, celEnvErr
}

// compiled is a compiled boolean expression. loops is set when it holds a
// comprehension (all, exists, map, filter…): only those can run long on
// small input, so only those are evaluated under a context deadline, which
// costs about a microsecond per evaluation. Every evaluation is bounded by
// EvalCostLimit.
type compiled struct {
	prog  cel.Program
	loops bool
}

// compile compiles a boolean CEL expression. The error lists every problem,
// without CEL's "ERROR: <input>:1:2:" decoration.
func compile(expr string) (*compiled, error) {
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	if len(expr) > maxExprLen {
		return nil, fmt.Errorf("expression is %d bytes, more than %d", len(expr), maxExprLen)
	}
	ast, iss := e.Compile(expr)
	if iss != nil && iss.Err() != nil {
		var msgs []string
		for _, ce := range iss.Errors() {
			m := strings.TrimSuffix(ce.Message, " (in container '')")
			if ce.Location != nil && ce.Location.Line() > 1 {
				m = fmt.Sprintf("%s (expression line %d)", m, ce.Location.Line())
			}
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			msgs = append(msgs, iss.Err().Error())
		}
		if len(msgs) > 3 {
			msgs = append(msgs[:3], fmt.Sprintf("and %d more", len(msgs)-3))
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("must be a boolean expression, not %s", t)
	}
	prg, err := e.Program(ast,
		cel.EvalOptions(cel.OptOptimize), // constant folding, regex literals compiled once
		cel.CostLimit(EvalCostLimit),
		cel.InterruptCheckFrequency(64),
	)
	if err != nil {
		return nil, err
	}
	loops := len(celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))) > 0
	return &compiled{prog: prg, loops: loops}, nil
}

// errAbsent reports whether a CEL evaluation error means the data the rule
// looks at is not there (a missing argument or an index past the end of a
// list). Such a rule does not match.
func errAbsent(err error) bool {
	m := err.Error()
	return strings.HasPrefix(m, "no such key") || strings.HasPrefix(m, "index out of bounds")
}

// run evaluates a compiled condition against a call. matched is false with a
// nil error when the data the condition reads is absent.
func run(ctx context.Context, c *compiled, a *activation) (matched bool, err error) {
	defer func() {
		if r := recover(); r != nil { // cel-go recovers its own panics; this is a last guard
			matched, err = false, fmt.Errorf("internal error: %v", r)
		}
	}()
	var out ref.Val
	if ctx != nil && c.loops {
		out, _, err = c.prog.ContextEval(ctx, a)
	} else {
		out, _, err = c.prog.Eval(a)
	}
	if err != nil {
		if errAbsent(err) {
			return false, nil
		}
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rule returned %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// Cond is a compiled chain condition (risk.chains[].first / then): either
// class names, or a CEL expression over args and call like a tool rule. A
// condition is class names when it is "*", a factor or event class
// (secret_read), a tool ("tool:send_email" or a bare name), or alternatives
// of those joined with "|"; anything else is compiled as CEL.
type Cond struct {
	// Class holds the class names; the risk scorer matches them against
	// what it found in the call.
	Class string
	// Expr is the CEL source when the condition is an expression.
	Expr string
	prog *compiled
}

// Match evaluates an expression condition against a call. It reports false
// for a class condition (the scorer matches those) and when the data the
// expression reads is absent; an error means the expression could not be
// evaluated (type mismatch, cost or time limit).
func (c *Cond) Match(call *airlock.ToolCall) (bool, error) {
	if c == nil || c.prog == nil || call == nil {
		return false, nil
	}
	if !c.prog.loops {
		return run(nil, c.prog, &activation{call: call})
	}
	ctx, cancel := context.WithTimeout(context.Background(), EvalTimeout)
	defer cancel()
	return run(ctx, c.prog, &activation{call: call})
}

// activation resolves args and call.* straight from a ToolCall, without
// building maps.
type activation struct {
	call *airlock.ToolCall
}

var emptyMap = map[string]any{}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	c := a.call
	switch name {
	case "args":
		if c.Arguments == nil {
			return emptyMap, true
		}
		return c.Arguments, true
	case "call.id":
		return c.ID, true
	case "call.agent":
		return c.Agent, true
	case "call.user":
		return c.User, true
	case "call.org":
		return c.Org, true
	case "call.session":
		return c.Session, true
	case "call.tool":
		return c.Tool, true
	case "call.input_tokens":
		return c.InputTokens, true
	case "call.output_tokens":
		return c.OutputTokens, true
	case "call.cost_usd":
		return c.CostUSD, true
	case "call.context":
		if c.Context == nil {
			return emptyMap, true
		}
		return c.Context, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// adapter converts argument values to CEL values. Beyond the default it
// understands json.Number (a broker decoding with UseNumber) as an int when
// integral and a double otherwise, at any depth of maps and lists.
type adapter struct{ base types.Adapter }

// NativeToValue implements types.Adapter.
func (a adapter) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return types.Int(i)
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return types.NewErr("invalid number %q", string(x))
		}
		return types.Double(f)
	case map[string]any:
		return types.NewStringInterfaceMap(a, x)
	case []any:
		return types.NewDynamicList(a, x)
	case int:
		return types.Int(x)
	}
	return a.base.NativeToValue(v)
}

// hostOf returns the lower-case host of a URL ("https://API.acme.com:8443/x"
// → "api.acme.com"), or of a bare host[:port]; "" when there is none.
func hostOf(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "://") {
		s = "//" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return normHost(u.Hostname())
}

// domainOf returns the lower-case domain of an email address ("Bob
// <bob@Acme.com>" → "acme.com"), or "" when it has none.
func domainOf(s string) string {
	if strings.ContainsAny(s, "<>\"(),;:\\") {
		if a, err := mail.ParseAddress(s); err == nil {
			s = a.Address
		}
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return ""
	}
	return normHost(strings.TrimRight(strings.TrimSpace(s[i+1:]), ">"))
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/sandbox"
)

// indexRun records a sandbox run as under way (exec.<id> in the state
// bucket) before its call record becomes "executing": without the index an
// executing record left by a dead broker would never be recovered.
func (b *Broker) indexRun(ctx context.Context, id string, tool *policy.Tool) error {
	timeout := tool.Sandbox.Timeout
	if timeout <= 0 {
		timeout = sandbox.Defaults.WallTimeout
	}
	now := b.now()
	idx, _ := json.Marshal(execIndex{Broker: b.cfg.Name, Started: now, Deadline: now.Add(timeout + time.Minute)})
	return retryTransient(ctx, func() error { _, err := b.st.state.Put(ctx, execIndexPrefix+id, idx); return err })
}

// execute runs an approved sandboxed call at most once. The call record is
// already "executing" (at rev), so no broker starts it again; a broker that
// dies mid-run leaves it to recover(), which records it as interrupted.
func (b *Broker) execute(ctx context.Context, call *airlock.ToolCall, rev uint64, d airlock.Decision, tool *policy.Tool) airlock.Decision {
	args := call.Arguments
	if d.UpdatedArguments != nil {
		args = d.UpdatedArguments
	}
	ex := &airlock.Execution{Backend: backendName(tool.Sandbox)}
	profile := isolationSummary(tool.Sandbox)
	start := b.now()
	finish := func() airlock.Decision {
		d.Execution = ex
		b.cfg.Metrics.SandboxRun(ex.Backend, ex.LimitHit, b.now().Sub(start))
		if _, err := b.appendPersistent(ctx, airlock.Event{Kind: airlock.EventExecution, CallID: call.ID, TS: b.now().UTC(),
			Payload: airlock.ExecRecord{CallID: call.ID, Profile: profile, Execution: ex}}); err != nil {
			b.log.Error("audit execution", "call", call.ID, "err", err)
			ex.Error = joinErr(ex.Error, "the run's result could not be audited")
		}
		rec := callRecord{State: stateDecided, Fingerprint: fingerprint(call), Call: *call, Decision: &d, UpdatedAt: b.now()}
		if _, err := b.st.update(context.WithoutCancel(ctx), call.ID, rec, rev); err != nil {
			b.log.Error("record execution", "call", call.ID, "err", err)
		}
		return d
	}
	spec, err := sandbox.FromProfile(tool.Sandbox, args)
	if err != nil {
		ex.Error = "not run: " + err.Error()
		ex.ExitCode = -1
		return finish()
	}
	if b.cfg.Sandbox == nil {
		ex.Error = "not run: this broker has no sandbox configured"
		ex.ExitCode = -1
		return finish()
	}
	runner, err := b.cfg.Sandbox(tool.Sandbox.Backend)
	if err != nil {
		ex.Error = "not run: " + err.Error()
		ex.ExitCode = -1
		return finish()
	}
	ex.Backend = runner.Name()
	if _, err := b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventExecStart, CallID: call.ID, TS: start.UTC(),
		Payload: airlock.ExecRecord{CallID: call.ID, Profile: profile}}); err != nil {
		ex.Error = "not run: " + ReasonAuditUnavailable + ": " + err.Error()
		ex.ExitCode = -1
		return finish()
	}
	timeout := spec.WallTimeout
	if timeout <= 0 {
		timeout = sandbox.Defaults.WallTimeout
	}
	idx, _ := json.Marshal(execIndex{Broker: b.cfg.Name, Started: start, Deadline: start.Add(timeout + time.Minute)})
	if err := retryTransient(ctx, func() error { _, err := b.st.state.Put(ctx, execIndexPrefix+call.ID, idx); return err }); err != nil {
		ex.Error = "not run: " + ReasonStateUnavailable + ": " + err.Error()
		ex.ExitCode = -1
		return finish()
	}
	defer func() { _ = b.st.state.Delete(context.WithoutCancel(ctx), execIndexPrefix+call.ID) }()
	res, err := runner.Run(ctx, spec)
	ex.DurationMS = b.now().Sub(start).Milliseconds()
	if err != nil {
		ex.Error = "not run: " + err.Error()
		ex.ExitCode = -1
		return finish()
	}
	fillExecution(ex, res)
	return finish()
}

// appendPersistent appends an event that records something already done
// (a run's result): there is no failing closed left to do, so a failed
// append is tried again for a while (a leader election in the fleet's
// audit stream lasts seconds) before the result is given up as unaudited.
// The event's Key (its kind, call and content) makes a retry whose first
// attempt landed count once, where the log can tell.
func (b *Broker) appendPersistent(ctx context.Context, ev airlock.Event) (airlock.Receipt, error) {
	ctx = context.WithoutCancel(ctx)
	if ev.Key == "" {
		if data, err := airlock.CanonicalJSON(ev.Payload); err == nil {
			sum := sha256.Sum256(data)
			ev.Key = ev.Kind + ":" + ev.CallID + ":" + hex.EncodeToString(sum[:12])
		}
	}
	var r airlock.Receipt
	err := retryWhile(ctx, persistFor, func(err error) bool {
		b.log.Warn("audit append failed; trying again", "call", ev.CallID, "kind", ev.Kind, "err", err)
		return true
	}, func() (err error) { r, err = b.cfg.Audit.Append(ctx, ev); return err })
	return r, err
}

// persistFor bounds appendPersistent's retries.
const persistFor = 30 * time.Second

func fillExecution(ex *airlock.Execution, res sandbox.Result) {
	ex.ExitCode = res.ExitCode
	ex.Signal = res.Signal
	ex.Stdout = string(res.Stdout)
	ex.Stderr = string(res.Stderr)
	ex.Truncated = res.Truncated
	ex.LimitHit = res.LimitHit
	ex.PeakMemory = res.PeakMemory
	ex.Isolation = res.Isolation
	ex.ChangedFile = res.Changed
	if res.Wall > 0 {
		ex.DurationMS = res.Wall.Milliseconds()
	}
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func backendName(p *policy.SandboxProfile) string {
	if p == nil || p.Backend == "" {
		return "native"
	}
	return p.Backend
}

// backendOf names the sandbox backend the policy gives a tool ("unknown"
// when the policy in force no longer sandboxes it), for runs recorded
// without having been started or finished here.
func (b *Broker) backendOf(tool string) string {
	if t := b.pol.Load().Tool(tool); t != nil && t.Sandbox != nil {
		return backendName(t.Sandbox)
	}
	return "unknown"
}

// isolationSummary is what reviewers see before approving a sandboxed call.
func isolationSummary(p *policy.SandboxProfile) map[string]string {
	if p == nil {
		return nil
	}
	return sandbox.IsolationSummary(p)
}

// interrupt records a run its broker never finished. It is never re-run.
func (b *Broker) interrupt(ctx context.Context, id string, rec callRecord, rev uint64) {
	d := airlock.Decision{CallID: id, Verdict: airlock.VerdictApproved}
	if rec.Decision != nil {
		d = *rec.Decision
	}
	ex := &airlock.Execution{Backend: b.backendOf(rec.Call.Tool), ExitCode: -1, LimitHit: "interrupted",
		Error: fmt.Sprintf("the broker running this call (%s) stopped mid-run at %s; it is not run again", rec.ClaimedBy, rec.ClaimedAt.UTC().Format(time.RFC3339))}
	d.Execution = ex
	if _, err := b.appendPersistent(ctx, airlock.Event{Kind: airlock.EventExecution, CallID: id, TS: b.now().UTC(),
		Payload: airlock.ExecRecord{CallID: id, Execution: ex}}); err != nil {
		b.log.Error("audit interrupted run", "call", id, "err", err)
		return
	}
	rec.State = stateDecided
	rec.Decision = &d
	rec.UpdatedAt = b.now()
	if _, err := b.st.update(ctx, id, rec, rev); err != nil {
		b.log.Error("record interrupted run", "call", id, "err", err)
		return
	}
	call := rec.Call
	b.publishDecision(&call, d)
}

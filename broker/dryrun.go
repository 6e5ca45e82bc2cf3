package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/sandbox"
)

// DryRunRequest asks for a trial run of a pending sandboxed call.
type DryRunRequest struct {
	CallID   string `json:"call_id"`
	Reviewer string `json:"reviewer"`
	// Arguments, when set, try the call with edited arguments instead.
	Arguments map[string]any `json:"arguments,omitempty"`
}

// DryRunReply carries the trial run's result.
type DryRunReply struct {
	Execution *airlock.Execution `json:"execution,omitempty"`
	Error     string             `json:"error,omitempty"`
}

// DryRun runs a pending sandboxed call in a throw-away sandbox: never with
// network, on a scratch copy of the workspace, so a reviewer sees its
// output, exit status and the files it would change before deciding. The
// run is audited as a dry run and never counts as the approved run.
func (b *Broker) DryRun(ctx context.Context, r DryRunRequest) DryRunReply {
	if !idPattern.MatchString(r.CallID) {
		return DryRunReply{Error: "dry run: bad call id"}
	}
	if !namePattern.MatchString(r.Reviewer) {
		return DryRunReply{Error: "dry run: a reviewer name is required"}
	}
	p, err := b.st.getPending(ctx, r.CallID)
	if err != nil {
		return DryRunReply{Error: "dry run: call " + r.CallID + " is not waiting for a reviewer"}
	}
	if p.Canary {
		// An attention check must look like any other call, and must never run.
		return DryRunReply{Error: "dry run: this call's tool has no sandbox profile; nothing to run"}
	}
	tool := b.pol.Load().Tool(p.Call.Tool)
	if tool == nil || tool.Sandbox == nil {
		return DryRunReply{Error: "dry run: this call's tool has no sandbox profile; nothing to run"}
	}
	args := p.Call.Arguments
	if r.Arguments != nil {
		args = r.Arguments
	}
	spec, err := sandbox.FromProfile(tool.Sandbox, args)
	if err != nil {
		return DryRunReply{Error: "dry run: " + err.Error()}
	}
	spec.DryRun = true
	spec.Network = sandbox.NetworkOff
	spec.Allow = nil
	if b.cfg.Sandbox == nil {
		return DryRunReply{Error: "dry run: this broker has no sandbox configured"}
	}
	runner, err := b.cfg.Sandbox(tool.Sandbox.Backend)
	if err != nil {
		return DryRunReply{Error: "dry run: " + err.Error()}
	}
	start := b.now()
	ex := &airlock.Execution{Backend: runner.Name(), DryRun: true}
	res, err := runner.Run(ctx, spec)
	if err != nil {
		ex.ExitCode = -1
		ex.Error = "not run: " + err.Error()
	} else {
		fillExecution(ex, res)
	}
	if ex.DurationMS == 0 {
		ex.DurationMS = b.now().Sub(start).Milliseconds()
	}
	profile := isolationSummary(tool.Sandbox)
	profile["dry_run_by"] = "reviewer:" + r.Reviewer
	if _, err := b.cfg.Audit.Append(ctx, airlock.Event{Kind: airlock.EventDryRun, CallID: r.CallID, TS: b.now().UTC(),
		Payload: airlock.ExecRecord{CallID: r.CallID, Profile: profile, Execution: ex}}); err != nil {
		// Unaudited, the result is not shown: the audit sees everything a reviewer saw.
		return DryRunReply{Error: fmt.Sprintf("dry run: %s: %v", ReasonAuditUnavailable, err)}
	}
	return DryRunReply{Execution: ex}
}

func (b *Broker) handleDryRun(req micro.Request) {
	var r DryRunRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil {
		respondJSON(req, DryRunReply{Error: "bad request: " + err.Error()})
		return
	}
	b.spawn(func() {
		ctx, cancel := context.WithTimeout(b.ctx, 11*time.Minute)
		defer cancel()
		respondJSON(req, b.DryRun(ctx, r))
	})
}

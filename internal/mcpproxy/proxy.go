// Package mcpproxy puts airlock between an MCP client and an MCP server.
//
// The proxy is an MCP server to the client and an MCP client to the real
// ("upstream") server, both built on the official Go SDK. It mirrors the
// upstream server's tools (same names, descriptions, schemas and
// annotations), prompts, resources and resource templates. Listing, prompts
// and resource reads pass through unchanged; every tools/call is first
// submitted to airlock as a ToolCall:
//
//   - approved: the call is forwarded (with the reviewer's edited arguments
//     when the reviewer edited them) and the upstream result returned as is;
//   - anything else: the upstream server never sees the call, and the client
//     gets a tool result with isError set and the reason as text, so the
//     model can adapt.
//
// The ToolCall's context carries the tool's annotations
// (context.mcp_annotations: readOnlyHint, destructiveHint, openWorldHint,
// idempotentHint with the spec's defaults applied) for the risk score, the
// upstream server's name (context.mcp_server) and the hash of the tool's
// definition (context.mcp_tool_hash).
//
// Tool-poisoning defence: the proxy remembers each tool's definition hash at
// first sight (optionally across runs, in a pin file). When a tool's
// description, schemas or annotations change afterwards, its calls carry
// context.mcp_tool_changed = true with the old and new hashes
// (mcp_tool_hash_first, mcp_tool_hash), and the proxy forwards such a call
// only when a human reviewer approved it: an approval by policy or grant is
// refused.
//
// Not proxied: requests the server makes of the client (sampling,
// elicitation, roots) and resource subscriptions. Log messages and progress
// on forwarded calls are relayed to the client; while a call waits for a
// decision, a client that asked for progress hears that it is waiting.
package mcpproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/oklog/ulid/v2"

	"github.com/airlock/airlock"
)

// Decider decides a tool call (broker/client.Client and
// claudehook.NATSSubmitter implement it).
type Decider interface {
	Submit(ctx context.Context, call *airlock.ToolCall) (airlock.Decision, error)
}

// Context keys the proxy sets on every ToolCall.
const (
	CtxAnnotations = "mcp_annotations"     // map: readOnlyHint, destructiveHint, openWorldHint, idempotentHint (bools)
	CtxServer      = "mcp_server"          // the upstream server's name
	CtxToolHash    = "mcp_tool_hash"       // hex SHA-256 of the tool's definition now
	CtxChanged     = "mcp_tool_changed"    // true when the definition differs from first sight
	CtxFirstHash   = "mcp_tool_hash_first" // the definition's hash at first sight (set with CtxChanged)
	CtxTransport   = "mcp_transport"       // "stdio" or "http"
)

// Config configures a proxy.
type Config struct {
	// Agent is the airlock agent name the calls are made as (required).
	Agent string
	// User, Org and Session identify the calls; Session defaults to a new
	// id per proxy run.
	User, Org, Session string
	// ToolPrefix is prepended to tool names in ToolCalls, so one policy can
	// tell servers apart ("github." makes create_issue github.create_issue).
	ToolPrefix string
	// Decider decides calls (required).
	Decider Decider
	// Timeout bounds the wait for one decision (default 5m); when it passes
	// the call is refused (fail closed).
	Timeout time.Duration
	// PinFile, when set, keeps tool definition hashes across runs (JSON), so
	// a definition that changed while the proxy was down is still caught.
	PinFile string
	// Transport is recorded in the calls' context (default "stdio").
	Transport string
	// ProgressEvery is how often a client that asked for progress
	// (a progressToken) hears that its call still waits for a decision, so
	// it does not give up on a call a reviewer is looking at (default 10s).
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Proxy is a running proxy with its upstream session.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	up     *mcp.ClientSession
	server *mcp.Server
	name   string

	mu        sync.Mutex
	tools     map[string]*toolState
	prompts   map[string]string // name → definition hash
	resources map[string]string // uri or template → definition hash
	pins      map[string]string
	syncMu    sync.Mutex
	progress  map[string]progressTarget // upstream progress token → the client's
}

// progressTarget is where an upstream server's progress for a forwarded
// call goes: the client session and the token it chose.
type progressTarget struct {
	ss    *mcp.ServerSession
	token any
}

type toolState struct {
	first   string // definition hash at first sight (or from the pin file)
	current string
	tool    *mcp.Tool
}

func (s *toolState) changed() bool { return s.first != s.current }

// Start connects to the upstream server over t, mirrors its features and
// returns the proxy. Serve it with Run (stdio) or Handler (streamable HTTP).
func Start(ctx context.Context, t mcp.Transport, cfg Config) (*Proxy, error) {
	if cfg.Agent == "" {
		return nil, errors.New("mcpproxy: an agent name is required")
	}
	if cfg.Decider == nil {
		return nil, errors.New("mcpproxy: a decider is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Session == "" {
		cfg.Session = "mcp-" + ulid.Make().String()
	}
	if cfg.Transport == "" {
		cfg.Transport = "stdio"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 10 * time.Second
	}
	p := &Proxy{
		cfg: cfg, log: cfg.Logger.With("subsystem", "mcpproxy"),
		tools: map[string]*toolState{}, prompts: map[string]string{}, resources: map[string]string{},
		pins: map[string]string{}, progress: map[string]progressTarget{},
	}
	if err := p.loadPins(); err != nil {
		return nil, err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-mcp-proxy", Version: "0.1.0"}, &mcp.ClientOptions{
		Capabilities:                &mcp.ClientCapabilities{},
		ToolListChangedHandler:      func(context.Context, *mcp.ToolListChangedRequest) { go p.resync() },
		PromptListChangedHandler:    func(context.Context, *mcp.PromptListChangedRequest) { go p.resync() },
		ResourceListChangedHandler:  func(context.Context, *mcp.ResourceListChangedRequest) { go p.resync() },
		LoggingMessageHandler:       p.forwardLog,
		ProgressNotificationHandler: p.forwardProgress,
	})
	up, err := client.Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: connect to the MCP server: %w", err)
	}
	p.up = up
	init := up.InitializeResult()
	impl := &mcp.Implementation{Name: "airlock-mcp-proxy", Version: "0.1.0"}
	caps := &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{ListChanged: true}}
	instructions := ""
	if init != nil {
		if init.ServerInfo != nil {
			impl = &mcp.Implementation{Name: init.ServerInfo.Name, Title: init.ServerInfo.Title, Version: init.ServerInfo.Version}
			p.name = init.ServerInfo.Name
		}
		instructions = init.Instructions
		if c := init.Capabilities; c != nil {
			if c.Prompts != nil {
				caps.Prompts = &mcp.PromptCapabilities{ListChanged: true}
			}
			if c.Resources != nil {
				caps.Resources = &mcp.ResourceCapabilities{ListChanged: true}
			}
			if c.Logging != nil {
				caps.Logging = &mcp.LoggingCapabilities{}
			}
			if c.Completions != nil {
				caps.Completions = &mcp.CompletionCapabilities{}
			}
		}
	}
	opts := &mcp.ServerOptions{Instructions: instructions, Capabilities: caps, Logger: nil}
	if caps.Completions != nil {
		opts.CompletionHandler = func(ctx context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return p.up.Complete(ctx, req.Params)
		}
	}
	p.server = mcp.NewServer(impl, opts)
	if err := p.sync(ctx); err != nil {
		up.Close()
		return nil, err
	}
	return p, nil
}

// Server returns the MCP server the proxy presents to clients.
func (p *Proxy) Server() *mcp.Server { return p.server }

// Run serves one client over t (a *mcp.StdioTransport for stdio) until the
// client disconnects, the upstream server exits, or ctx ends.
func (p *Proxy) Run(ctx context.Context, t mcp.Transport) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upDone := make(chan struct{})
	go func() {
		_ = p.up.Wait()
		close(upDone)
		cancel()
	}()
	err := p.server.Run(rctx, t)
	select {
	case <-upDone:
		if ctx.Err() == nil {
			return errors.New("mcpproxy: the MCP server exited")
		}
	default:
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Handler serves the proxy over MCP's streamable HTTP transport; every HTTP
// session shares the one upstream session.
func (p *Proxy) Handler() http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return p.server }, nil)
}

// Wait blocks until the upstream session ends.
func (p *Proxy) Wait() error { return p.up.Wait() }

// Close ends the upstream session (and stops a command-started server).
func (p *Proxy) Close() error { return p.up.Close() }

// ToolChanged reports whether the named tool's definition differs from the
// one first seen.
func (p *Proxy) ToolChanged(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.tools[name]
	return ok && st.changed()
}

func (p *Proxy) resync() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.sync(ctx); err != nil {
		p.log.Warn("refresh upstream features", "err", err)
	}
}

// sync mirrors the upstream server's tools, prompts and resources.
func (p *Proxy) sync(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	if err := p.syncTools(ctx); err != nil {
		return err
	}
	caps := p.up.InitializeResult().Capabilities
	if caps != nil && caps.Prompts != nil {
		p.syncPrompts(ctx)
	}
	if caps != nil && caps.Resources != nil {
		p.syncResources(ctx)
	}
	return nil
}

func (p *Proxy) syncTools(ctx context.Context) error {
	seen := map[string]bool{}
	var add []*mcp.Tool
	for t, err := range p.up.Tools(ctx, nil) {
		if err != nil {
			return fmt.Errorf("mcpproxy: list the server's tools: %w", err)
		}
		seen[t.Name] = true
		h := ToolHash(t)
		p.mu.Lock()
		st, ok := p.tools[t.Name]
		switch {
		case !ok:
			first := h
			if pinned, ok := p.pins[t.Name]; ok {
				first = pinned
			} else {
				p.pins[t.Name] = h
			}
			st = &toolState{first: first, current: h, tool: t}
			p.tools[t.Name] = st
			add = append(add, t)
		case st.current != h:
			st.current, st.tool = h, t
			add = append(add, t)
		}
		if st.changed() {
			p.log.Warn("tool definition changed since first seen", "tool", t.Name, "first", st.first, "now", h)
		}
		p.mu.Unlock()
	}
	var gone []string
	p.mu.Lock()
	for name := range p.tools {
		if !seen[name] {
			gone = append(gone, name)
			delete(p.tools, name)
		}
	}
	p.mu.Unlock()
	if len(gone) > 0 {
		p.server.RemoveTools(gone...)
	}
	for _, t := range add {
		p.addTool(t)
	}
	return p.savePins()
}

func (p *Proxy) addTool(t *mcp.Tool) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("cannot mirror tool", "tool", t.Name, "err", r)
		}
	}()
	mirror := *t
	name := t.Name
	p.server.AddTool(&mirror, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return p.callTool(ctx, name, req)
	})
}

func (p *Proxy) syncPrompts(ctx context.Context) {
	seen := map[string]bool{}
	for pr, err := range p.up.Prompts(ctx, nil) {
		if err != nil {
			p.log.Warn("list prompts", "err", err)
			return
		}
		seen[pr.Name] = true
		h := hashOf(pr)
		p.mu.Lock()
		old, ok := p.prompts[pr.Name]
		p.prompts[pr.Name] = h
		p.mu.Unlock()
		if ok && old == h {
			continue
		}
		p.server.AddPrompt(pr, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return p.up.GetPrompt(ctx, req.Params)
		})
	}
	p.mu.Lock()
	var gone []string
	for n := range p.prompts {
		if !seen[n] {
			gone = append(gone, n)
			delete(p.prompts, n)
		}
	}
	p.mu.Unlock()
	if len(gone) > 0 {
		p.server.RemovePrompts(gone...)
	}
}

func (p *Proxy) syncResources(ctx context.Context) {
	read := func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return p.up.ReadResource(ctx, req.Params)
	}
	seen := map[string]bool{}
	var goneURIs, goneTemplates []string
	for r, err := range p.up.Resources(ctx, nil) {
		if err != nil {
			p.log.Warn("list resources", "err", err)
			return
		}
		key := "r:" + r.URI
		seen[key] = true
		if p.remember(key, hashOf(r)) {
			p.server.AddResource(r, read)
		}
	}
	for rt, err := range p.up.ResourceTemplates(ctx, nil) {
		if err != nil {
			p.log.Warn("list resource templates", "err", err)
			break
		}
		key := "t:" + rt.URITemplate
		seen[key] = true
		if p.remember(key, hashOf(rt)) {
			func() {
				defer func() {
					if r := recover(); r != nil {
						p.log.Error("cannot mirror resource template", "template", rt.URITemplate, "err", r)
					}
				}()
				p.server.AddResourceTemplate(rt, read)
			}()
		}
	}
	p.mu.Lock()
	for k := range p.resources {
		if !seen[k] {
			delete(p.resources, k)
			if strings.HasPrefix(k, "r:") {
				goneURIs = append(goneURIs, k[2:])
			} else {
				goneTemplates = append(goneTemplates, k[2:])
			}
		}
	}
	p.mu.Unlock()
	if len(goneURIs) > 0 {
		p.server.RemoveResources(goneURIs...)
	}
	if len(goneTemplates) > 0 {
		p.server.RemoveResourceTemplates(goneTemplates...)
	}
}

// remember records a resource's hash and reports whether it is new or changed.
func (p *Proxy) remember(key, h string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := p.resources[key]
	p.resources[key] = h
	return !ok || old != h
}

func (p *Proxy) forwardLog(ctx context.Context, req *mcp.LoggingMessageRequest) {
	for ss := range p.server.Sessions() {
		_ = ss.Log(ctx, req.Params)
	}
}

// forwardProgress relays an upstream server's progress on a forwarded call
// to the client that asked for it, under the client's own token.
func (p *Proxy) forwardProgress(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
	tok, ok := req.Params.ProgressToken.(string)
	if !ok {
		return
	}
	p.mu.Lock()
	t, ok := p.progress[tok]
	p.mu.Unlock()
	if !ok {
		return
	}
	fwd := *req.Params
	fwd.ProgressToken = t.token
	_ = t.ss.NotifyProgress(ctx, &fwd)
}

// keepAlive tells a client that asked for progress that its call is still
// waiting for airlock, until stop is closed.
func (p *Proxy) keepAlive(ctx context.Context, req *mcp.CallToolRequest, callID string, stop <-chan struct{}) {
	tok := req.Params.GetProgressToken()
	if tok == nil || req.Session == nil {
		return
	}
	t := time.NewTicker(p.cfg.ProgressEvery)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(n),
				Message: fmt.Sprintf("waiting for airlock's decision on call %s", callID)})
		}
	}
}

// callTool gates one tools/call.
func (p *Proxy) callTool(ctx context.Context, name string, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, err := decodeArgs(req.Params.Arguments)
	if err != nil {
		return refusal("airlock: the arguments of %s must be a JSON object: %v", name, err), nil
	}
	p.mu.Lock()
	st, ok := p.tools[name]
	var snapshot toolState
	if ok {
		snapshot = *st
	}
	p.mu.Unlock()
	if !ok {
		return refusal("airlock: the server no longer offers %s", name), nil
	}
	call := &airlock.ToolCall{
		ID: ulid.Make().String(), Agent: p.cfg.Agent, User: p.cfg.User, Org: p.cfg.Org, Session: p.cfg.Session,
		Tool: p.cfg.ToolPrefix + name, Arguments: args, Context: p.callContext(&snapshot),
	}
	dctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	stop := make(chan struct{})
	go p.keepAlive(dctx, req, call.ID, stop)
	d, err := p.cfg.Decider.Submit(dctx, call)
	close(stop)
	cancel()
	if err != nil {
		p.log.Warn("no decision", "tool", name, "call", call.ID, "err", err)
		return refusal("airlock: no decision for this call (%v); it was not run (fail closed)", err), nil
	}
	if d.Verdict != airlock.VerdictApproved {
		return refusal("%s", denialText(name, d)), nil
	}
	if snapshot.changed() && !strings.HasPrefix(d.DecidedBy, "reviewer:") {
		return refusal("airlock: the definition of tool %s changed after it was first seen (possible tool poisoning); its calls run only with a human reviewer's approval, and this one was approved by %s (call %s)", name, d.DecidedBy, d.CallID), nil
	}
	p.mu.Lock()
	now := ""
	if cur, ok := p.tools[name]; ok {
		now = cur.current
	}
	p.mu.Unlock()
	if now != snapshot.current {
		return refusal("airlock: the definition of tool %s changed while call %s waited for a decision; it was not run, call it again", name, d.CallID), nil
	}
	if d.Execution != nil {
		return sandboxResult(d), nil
	}
	fwd := args
	if d.UpdatedArguments != nil {
		fwd = d.UpdatedArguments
	}
	params := &mcp.CallToolParams{Name: name, Arguments: fwd}
	if tok := req.Params.GetProgressToken(); tok != nil && req.Session != nil {
		// The upstream server reports progress under a token of the
		// proxy's own (clients' tokens may collide); forwardProgress maps
		// it back.
		up := "airlock-" + call.ID
		params.SetProgressToken(up)
		p.mu.Lock()
		p.progress[up] = progressTarget{ss: req.Session, token: tok}
		p.mu.Unlock()
		// Notifications may be handled after the result arrives: keep the
		// mapping a little longer than the call.
		defer time.AfterFunc(2*time.Second, func() {
			p.mu.Lock()
			delete(p.progress, up)
			p.mu.Unlock()
		})
	}
	res, err := p.up.CallTool(ctx, params)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (p *Proxy) callContext(st *toolState) map[string]any {
	c := map[string]any{CtxTransport: p.cfg.Transport, CtxToolHash: st.current}
	if p.name != "" {
		c[CtxServer] = p.name
	}
	if a := st.tool.Annotations; a != nil {
		c[CtxAnnotations] = map[string]any{
			"readOnlyHint":    a.ReadOnlyHint,
			"destructiveHint": boolOr(a.DestructiveHint, true),
			"openWorldHint":   boolOr(a.OpenWorldHint, true),
			"idempotentHint":  a.IdempotentHint,
		}
	}
	if st.changed() {
		c[CtxChanged] = true
		c[CtxFirstHash] = st.first
	}
	return c
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func denialText(tool string, d airlock.Decision) string {
	var what string
	switch d.Verdict {
	case airlock.VerdictExpired:
		what = "no reviewer decided in time"
	case airlock.VerdictRateLimited:
		what = "rate limited"
	case airlock.VerdictRejected:
		what = "rejected as malformed"
	default:
		what = "denied by " + d.DecidedBy
	}
	s := fmt.Sprintf("airlock: the call to %s was not run: %s (call %s)", tool, what, d.CallID)
	if d.Reason != "" {
		s += ": " + d.Reason
	}
	return s
}

func sandboxResult(d airlock.Decision) *mcp.CallToolResult {
	x := d.Execution
	s := fmt.Sprintf("airlock ran this call in its %s sandbox (call %s): exit code %d", x.Backend, d.CallID, x.ExitCode)
	if x.LimitHit != "" {
		s += ", stopped by the " + x.LimitHit + " limit"
	}
	if x.Stdout != "" {
		s += "\nstdout:\n" + x.Stdout
	}
	if x.Stderr != "" {
		s += "\nstderr:\n" + x.Stderr
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}, IsError: x.ExitCode != 0 || x.LimitHit != ""}
}

func refusal(format string, a ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, a...)}}}
}

// decodeArgs decodes tools/call arguments into an object, keeping integers
// as integers.
func decodeArgs(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("got %s", kind(v))
	}
	return normalize(m).(map[string]any), nil
}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	}
	return v
}

func kind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// ToolHash is the hex SHA-256 of a tool's definition: its title,
// description, input and output schemas and annotations, canonically
// encoded. Any change to what the model reads about the tool changes it.
func ToolHash(t *mcp.Tool) string {
	return hashOf(map[string]any{
		"title": t.Title, "description": t.Description, "inputSchema": t.InputSchema,
		"outputSchema": t.OutputSchema, "annotations": t.Annotations,
	})
}

func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unencodable"
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return "unencodable"
	}
	c, err := airlock.CanonicalJSON(generic)
	if err != nil {
		return "unencodable"
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:])
}

// pinFile is the pin file's format.
type pinFile struct {
	Server string            `json:"server,omitempty"`
	Tools  map[string]string `json:"tools"`
}

func (p *Proxy) loadPins() error {
	if p.cfg.PinFile == "" {
		return nil
	}
	b, err := os.ReadFile(p.cfg.PinFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mcpproxy: pin file: %w", err)
	}
	var f pinFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("mcpproxy: pin file %s: %w", p.cfg.PinFile, err)
	}
	for k, v := range f.Tools {
		p.pins[k] = v
	}
	return nil
}

func (p *Proxy) savePins() error {
	if p.cfg.PinFile == "" {
		return nil
	}
	p.mu.Lock()
	f := pinFile{Server: p.name, Tools: map[string]string{}}
	keys := make([]string, 0, len(p.pins))
	for k := range p.pins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f.Tools[k] = p.pins[k]
	}
	p.mu.Unlock()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.cfg.PinFile + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("mcpproxy: pin file: %w", err)
	}
	if err := os.Rename(tmp, p.cfg.PinFile); err != nil {
		return fmt.Errorf("mcpproxy: pin file: %w", err)
	}
	return nil
}

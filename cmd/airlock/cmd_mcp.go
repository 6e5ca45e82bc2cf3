package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"

	"github.com/airlock/airlock/broker/client"
	"github.com/airlock/airlock/internal/claudehook"
	"github.com/airlock/airlock/internal/mcpproxy"
)

func init() {
	register(command{Name: "mcp-proxy", Summary: "gate an MCP server's tool calls through airlock", Run: runMCPProxy})
}

const mcpUsage = `--agent NAME [--nats URL] [--listen HOST:PORT] [--tool-prefix P] [--pins FILE] -- COMMAND ARGS…

Starts the MCP server COMMAND and serves its tools, prompts and resources to
the MCP client on stdin/stdout (or over streamable HTTP at
http://HOST:PORT/mcp with --listen). Every tools/call is decided by airlock
first; a refused call returns a tool result with isError and the reason.`

// mcpConfig is `airlock mcp-proxy`'s configuration.
type mcpConfig struct {
	NATS       string
	Prefix     string
	Agent      string
	User       string
	Org        string
	Session    string
	Listen     string
	ToolPrefix string
	Pins       string
	Timeout    time.Duration
	Command    []string
}

func (c *mcpConfig) Validate() error {
	if c.Agent == "" {
		return usageErr("mcp-proxy: --agent NAME is required")
	}
	if claudehook.SanitizeName(c.Agent) != c.Agent {
		return usageErr("mcp-proxy: --agent %q: use letters, digits and _ . : @ + -", c.Agent)
	}
	if len(c.Command) == 0 {
		return usageErr("mcp-proxy: the MCP server command is missing (airlock mcp-proxy --agent NAME -- COMMAND ARGS…)")
	}
	if c.Timeout <= 0 {
		return usageErr("mcp-proxy: --timeout must be positive")
	}
	return nil
}

func runMCPProxy(ctx context.Context, e env) error {
	var c mcpConfig
	fs := newFlags(e, "mcp-proxy", mcpUsage)
	fs.StringVar(&c.NATS, "nats", natsURLDefault(), "NATS URL of the broker")
	fs.StringVar(&c.Prefix, "prefix", "airlock", "subject prefix")
	fs.StringVar(&c.Agent, "agent", os.Getenv("AIRLOCK_AGENT"), "agent name the calls are made as")
	fs.StringVar(&c.User, "user", os.Getenv("USER"), "user on whose behalf the agent acts")
	fs.StringVar(&c.Org, "org", os.Getenv("AIRLOCK_ORG"), "organisation")
	fs.StringVar(&c.Session, "session", "", "session id (default: a new one per run)")
	fs.StringVar(&c.Listen, "listen", "", "serve streamable HTTP on HOST:PORT (path /mcp) instead of stdio")
	fs.StringVar(&c.ToolPrefix, "tool-prefix", "", "prefix for tool names in airlock's policy (e.g. github.)")
	fs.StringVar(&c.Pins, "pins", "", "file that remembers tool definitions across runs (tool-poisoning defence)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "how long one call may wait for a decision")
	cf := addConnFlags(fs)
	// Flags come first; everything after them (or after "--") is the server's command line.
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	c.Command = fs.Args()
	if err := c.Validate(); err != nil {
		return err
	}
	copts, _, _, err := cf.options(client.RoleAgent, c.Agent)
	if err != nil {
		return err
	}
	// stdout carries the MCP protocol: diagnostics go to stderr only.
	logger := slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn, err := client.Connect(c.NATS, []nats.Option{nats.Timeout(3 * time.Second), nats.Name("airlock mcp-proxy " + c.Agent)}, copts...)
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("mcp-proxy: %w", err)}
	}
	defer conn.Close()
	cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
	cmd.Stderr = e.Stderr
	transport := "stdio"
	if c.Listen != "" {
		transport = "http"
	}
	px, err := mcpproxy.Start(ctx, &mcp.CommandTransport{Command: cmd}, mcpproxy.Config{
		Agent: c.Agent, User: claudehook.SanitizeName(c.User), Org: c.Org, Session: c.Session,
		ToolPrefix: c.ToolPrefix, Timeout: c.Timeout, PinFile: c.Pins, Transport: transport, Logger: logger,
		Decider: &claudehook.NATSSubmitter{Conn: conn.Conn(), Prefix: c.Prefix},
	})
	if err != nil {
		return err
	}
	defer px.Close()
	if c.Listen == "" {
		return px.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(e.Stdin), Writer: nopWriteCloser{e.Stdout}})
	}
	return serveMCPHTTP(ctx, c.Listen, px, e.Stderr)
}

func serveMCPHTTP(ctx context.Context, addr string, px *mcpproxy.Proxy, stderr io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &exitError{Code: 2, Err: fmt.Errorf("mcp-proxy: listen: %w", err)}
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", px.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stderr, "airlock mcp-proxy: serving MCP at http://%s/mcp\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	upstream := make(chan error, 1)
	go func() { upstream <- px.Wait() }()
	select {
	case err := <-errc:
		return err
	case err := <-upstream:
		_ = srv.Close()
		if err != nil {
			return fmt.Errorf("mcp-proxy: the MCP server exited: %w", err)
		}
		return errors.New("mcp-proxy: the MCP server exited")
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const mcpTestPolicy = `version: 1
defaults: {unknown_tool: deny, pending_ttl: 1m}
tools:
  echo: {tier: auto}
`

func buildMCPTestServer(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mcp-test-server")
	cmd := exec.Command(goTool, "build", "-o", bin, "../../internal/mcpproxy/testdata/server")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test server: %v\n%s", err, out)
	}
	return bin
}

func mcpText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// checkProxied lists the tools through the proxy, calls an allowed one and
// one the policy does not list.
func checkProxied(t *testing.T, ctx context.Context, cs *mcp.ClientSession, logPath string) {
	t.Helper()
	lt, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lt.Tools) != 3 {
		t.Fatalf("got %d tools, want the server's 3", len(lt.Tools))
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "through the proxy"}})
	if err != nil || res.IsError || mcpText(res) != "through the proxy" {
		t.Fatalf("echo: %+v %v", res, err)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_everything", Arguments: map[string]any{"target": "prod"}})
	if err != nil || !res.IsError || !strings.Contains(mcpText(res), "denied by policy") {
		t.Fatalf("delete_everything: %+v %v, want an isError denial", res, err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != `{"arguments":{"text":"through the proxy"},"tool":"echo"}` {
		t.Fatalf("the server saw %s, want only the echo", got)
	}
}

func TestMCPProxyStdio(t *testing.T) {
	bin := buildMCPTestServer(t)
	srv, _ := startTestBroker(t, mcpTestPolicy)
	logPath := filepath.Join(t.TempDir(), "calls.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"mcp-proxy", "--agent", "mcp-test", "--nats", srv.URL, "--", bin, "-log", logPath}, inR, outW, &stderr)
		outW.Close()
		done <- err
	}()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatalf("connect: %v (%s)", err, stderr.String())
	}
	checkProxied(t, ctx, cs, logPath)
	cs.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mcp-proxy: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mcp-proxy did not exit when the client went away")
	}
}

func TestMCPProxyHTTP(t *testing.T) {
	bin := buildMCPTestServer(t)
	srv, _ := startTestBroker(t, mcpTestPolicy)
	logPath := filepath.Join(t.TempDir(), "calls.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var stderr syncBuffer
	done := make(chan error, 1)
	pctx, stop := context.WithCancel(ctx)
	go func() {
		done <- run(pctx, []string{"mcp-proxy", "--agent", "mcp-test", "--nats", srv.URL, "--listen", addr, "--", bin, "-log", logPath},
			strings.NewReader(""), io.Discard, &stderr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mcp-proxy never listened on %s: %s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("connect: %v (%s)", err, stderr.String())
	}
	checkProxied(t, ctx, cs, logPath)
	cs.Close()
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("mcp-proxy: %v", err)
	}
}

func TestMCPProxyUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no-agent", []string{"--", "true"}, "--agent"},
		{"no-command", []string{"--agent", "a"}, "command is missing"},
		{"nats-down", []string{"--agent", "a", "--nats", "nats://127.0.0.1:1", "--", "true"}, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), append([]string{"mcp-proxy"}, tt.args...), strings.NewReader(""), &out, &errb)
			var ee *exitError
			if !errors.As(err, &ee) || ee.Code != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want exit 2 mentioning %q", err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("got stdout %q, want nothing", out.String())
			}
		})
	}
}

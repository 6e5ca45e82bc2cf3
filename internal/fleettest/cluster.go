// Package fleettest starts a real NATS JetStream cluster (nats-server
// processes on loopback ports) for airlock's fleet tests, and kills and
// restarts its nodes the hard way (SIGKILL, same store directory).
//
//	c := fleettest.Start(t, 3)      // skips (or fails under AIRLOCK_REQUIRE_E2E=1) without nats-server
//	c.Kill(1)                        // kill -9 node n1
//	c.Restart(1)                     // bring it back on the same ports and store
//	nc := c.Connect(t)               // a client to any node
package fleettest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock/internal/testenv"
)

// ReadyTimeout bounds how long Start and Restart wait for JetStream.
var ReadyTimeout = 45 * time.Second

// Cluster is a running nats-server cluster.
type Cluster struct {
	Dir   string
	Nodes []*Node
	bin   string
	t     testing.TB
}

// Node is one nats-server process of a cluster.
type Node struct {
	Name        string
	Port        int    // client port on 127.0.0.1
	ClusterPort int    // route port on 127.0.0.1
	URL         string // nats://127.0.0.1:Port
	Conf        string // the configuration file
	Log         string // stdout and stderr of every run
	StoreDir    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Config renders a node's nats-server configuration: JetStream on a file
// store, a cluster named "airlock" with routes to its peers, loopback only.
// docs/deploy.md shows the same shape for real machines.
func Config(name string, port, clusterPort int, storeDir string, routes []int) string {
	var rs []string
	for _, p := range routes {
		rs = append(rs, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
cluster {
  name: airlock
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, name, port, storeDir, clusterPort, strings.Join(rs, ", "))
}

// Start runs an n-node cluster (n >= 1) in a temporary directory and waits
// until JetStream has a meta leader and every node answers JetStream API
// requests. Everything is killed at cleanup.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := testenv.Tool(t, "nats-server")
	c := &Cluster{Dir: t.TempDir(), bin: bin, t: t}
	// Hold every listener until all ports are chosen, so that no two are
	// the same.
	var ls []net.Listener
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		return l.Addr().(*net.TCPAddr).Port
	}
	ports := make([]int, n)
	cports := make([]int, n)
	for i := range n {
		ports[i], cports[i] = port(), port()
	}
	for _, l := range ls {
		l.Close()
	}
	for i := range n {
		var routes []int
		for j := range n {
			if j != i {
				routes = append(routes, cports[j])
			}
		}
		nd := &Node{Name: fmt.Sprintf("n%d", i), Port: ports[i], ClusterPort: cports[i],
			URL: fmt.Sprintf("nats://127.0.0.1:%d", ports[i])}
		nd.StoreDir = filepath.Join(c.Dir, nd.Name)
		nd.Conf = filepath.Join(c.Dir, nd.Name+".conf")
		nd.Log = filepath.Join(c.Dir, nd.Name+".log")
		if err := os.WriteFile(nd.Conf, []byte(Config(nd.Name, nd.Port, nd.ClusterPort, nd.StoreDir, routes)), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	t.Cleanup(c.stopAll)
	for i := range c.Nodes {
		c.start(i)
	}
	c.WaitReady()
	c.waitReplicated(n)
	return c
}

// waitReplicated waits until the cluster can place a stream with n
// replicas (every peer current), by creating and deleting one.
func (c *Cluster) waitReplicated(n int) {
	c.t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if last = tryReplicated(c.Nodes[0].URL, n); last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("fleettest: the cluster never placed an R%d stream (last: %v)\n%s", n, last, c.Logs())
}

func tryReplicated(url string, n int) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "FLEETTEST_READY", Subjects: []string{"fleettest.ready"},
		Replicas: n, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	if _, err := js.Publish(ctx, "fleettest.ready", nil); err != nil {
		return err
	}
	return js.DeleteStream(ctx, "FLEETTEST_READY")
}

// URLs is every node's client URL, comma separated (airlock serve --nats).
func (c *Cluster) URLs() string {
	var us []string
	for _, n := range c.Nodes {
		us = append(us, n.URL)
	}
	return strings.Join(us, ",")
}

// Connect dials the cluster (any node; reconnects forever) and closes the
// connection at cleanup.
func (c *Cluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return c.ConnectTo(t, c.URLs(), opts...)
}

// ConnectTo dials the given URLs and closes the connection at cleanup.
func (c *Cluster) ConnectTo(t testing.TB, urls string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	base := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.Timeout(2 * time.Second)}
	nc, err := nats.Connect(urls, append(base, opts...)...)
	if err != nil {
		t.Fatalf("fleettest: connect %s: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	nd := c.Nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		c.t.Fatalf("fleettest: %s is already running", nd.Name)
	}
	logf, err := os.OpenFile(nd.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "-c", nd.Conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("fleettest: start %s: %v", nd.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	nd.cmd, nd.done = cmd, done
}

// Running reports whether node i is up (started and not killed).
func (c *Cluster) Running(i int) bool {
	nd := c.Nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil
}

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	nd := c.Nodes[i]
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd, nd.done = nil, nil
	nd.mu.Unlock()
	if cmd == nil {
		c.t.Fatalf("fleettest: %s is not running", nd.Name)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts node i again (same ports, configuration and store) and
// waits until it serves JetStream requests again.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.start(i)
	c.waitNode(c.Nodes[i], time.Now().Add(ReadyTimeout))
}

// WaitReady waits until every running node answers JetStream requests
// (which needs a meta leader).
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for i, nd := range c.Nodes {
		if c.Running(i) {
			c.waitNode(nd, deadline)
		}
	}
}

func (c *Cluster) waitNode(nd *Node, deadline time.Time) {
	c.t.Helper()
	var last error
	for time.Now().Before(deadline) {
		if last = probe(nd.URL); last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(nd.Log)
	c.t.Fatalf("fleettest: %s never served JetStream (last: %v); log:\n%s", nd.Name, last, tail(b, 4000))
}

// probe asks one node for the account's JetStream info: it answers only
// once the node is up, routed and the cluster has a meta leader.
func probe(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return err
	}
	return nil
}

// StreamLeader returns the server name leading a stream's Raft group.
func StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil {
		return "", fmt.Errorf("fleettest: stream %s has no cluster info", stream)
	}
	return info.Cluster.Leader, nil
}

// Index returns the index of the node with the given server name, or -1.
func (c *Cluster) Index(name string) int {
	for i, nd := range c.Nodes {
		if nd.Name == name {
			return i
		}
	}
	return -1
}

// Logs returns the tail of every node's log, for failure messages.
func (c *Cluster) Logs() string {
	var sb strings.Builder
	for _, nd := range c.Nodes {
		b, _ := os.ReadFile(nd.Log)
		fmt.Fprintf(&sb, "--- %s\n%s\n", nd.Name, tail(b, 2000))
	}
	return sb.String()
}

func (c *Cluster) stopAll() {
	for _, nd := range c.Nodes {
		nd.mu.Lock()
		cmd, done := nd.cmd, nd.done
		nd.cmd, nd.done = nil, nil
		nd.mu.Unlock()
		if cmd == nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

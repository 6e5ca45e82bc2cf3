package ratelimit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock/broker/policy"
)

// The test binary doubles as a minimal broker process: with
// RATELIMIT_TEST_BROKER=<nats url> it serves Reserve on
// test.reserve.<RATELIMIT_TEST_NAME> over the shared KV bucket, until its
// stdin closes.
func TestMain(m *testing.M) {
	if url := os.Getenv("RATELIMIT_TEST_BROKER"); url != "" {
		if err := runTestBroker(url, os.Getenv("RATELIMIT_TEST_NAME"), os.Getenv("RATELIMIT_TEST_NOW")); err != nil {
			fmt.Fprintln(os.Stderr, "test broker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var fleetLimits = []policy.Limit{{Scope: "user", RequestsPerMinute: 20}, {Scope: "org", Requests: 1000, Window: 24 * time.Hour}}

func runTestBroker(url, name, nowNS string) error {
	ns, err := strconv.ParseInt(nowNS, 10, 64)
	if err != nil {
		return err
	}
	now := time.Unix(0, ns)
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "airlock_ratelimit")
	if err != nil {
		return err
	}
	l := New(fleetLimits, NewKVStore(kv), WithClock(func() time.Time { return now }))
	_, err = nc.Subscribe("test.reserve."+name, func(m *nats.Msg) {
		go func() {
			_, rl, err := l.Reserve(ctx, call(string(m.Data), "acme", ""))
			switch {
			case err != nil:
				_ = m.Respond([]byte("error " + err.Error()))
			case rl != nil:
				_ = m.Respond([]byte("refused " + rl.Dimension))
			default:
				_ = m.Respond([]byte("ok"))
			}
		}()
	})
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes our stdin
	return nil
}

// TestKVFleetTwoProcesses runs two broker processes on one NATS server and
// offers them 3 × a user's limit at once: exactly the limit passes.
func TestKVFleetTwoProcesses(t *testing.T) {
	s := runServer(t, t.TempDir())
	bucket(t, s, fleetLimits) // create the bucket
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RATELIMIT_TEST_BROKER="+s.ClientURL(), fmt.Sprintf("RATELIMIT_TEST_NAME=b%d", i),
			fmt.Sprintf("RATELIMIT_TEST_NOW=%d", t0.Add(30*time.Second).UnixNano()))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		ready := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			ready <- strings.TrimSpace(line)
		}()
		select {
		case line := <-ready:
			if line != "ready" {
				t.Fatalf("broker %d: got %q, want ready", i, line)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("broker %d did not start", i)
		}
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const limit, offered = 20, 60
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range offered {
		wg.Go(func() {
			m, err := nc.Request(fmt.Sprintf("test.reserve.b%d", i%2), []byte("alice"), 30*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			switch r := string(m.Data); {
			case r == "ok":
				ok.Add(1)
			case r == "refused requests":
				refused.Add(1)
			default:
				t.Errorf("got reply %q", r)
			}
		})
	}
	wg.Wait()
	if ok.Load() != limit || refused.Load() != offered-limit {
		t.Fatalf("got %d approved and %d refused of %d offered to two brokers, want exactly %d approved", ok.Load(), refused.Load(), offered, limit)
	}
}

package broker_test

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkAutoDecision measures auto-tier decisions end to end (request on
// airlock.submit, strict decode, idempotency record in JetStream KV, policy,
// risk, audit committed to SQLite, reply), from many concurrent agents,
// beside bare NATS request-reply on the same connection in the same run.
func BenchmarkAutoDecision(b *testing.B) {
	h := startHarness(b, testPolicy)
	echo, err := h.nc.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Unsubscribe()
	var n atomic.Int64
	body := func(i int64) []byte {
		return []byte(fmt.Sprintf(`{"id":"b%d-%d","agent":"a1","user":"u%d","org":"acme","session":"s1","tool":"search_web","arguments":{"query":"weather %d"}}`,
			time.Now().UnixNano()%1e6, i, i%50, i))
	}
	b.Run("bare-nats-request-reply", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		b.SetParallelism(128)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.nc.Request("bench.echo", body(n.Add(1)), 10*time.Second); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
	b.Run("airlock-auto-decision", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		b.SetParallelism(128)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m, err := h.nc.Request("airlock.submit.a1", body(n.Add(1)), 10*time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				if len(m.Data) < 20 || string(m.Data[:12]) != `{"call_id":"` {
					b.Errorf("unexpected reply %s", m.Data)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}

// reportCPU reports the process's CPU time (user and system: this test, the
// embedded NATS server and SQLite, all in one process) per operation, a
// figure other load on the machine disturbs far less than ns/op. Call it
// at the start and defer the function it returns.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

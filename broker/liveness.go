package broker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/airlock/airlock/internal/jsutil"
)

// BucketBrokers holds one key per live broker of a fleet (its name), put
// every heartbeatEvery; the bucket's TTL drops the key of a broker that
// stopped putting it. A claim held by a broker whose key is gone is taken
// over at once instead of after evaluatingTimeout.
const BucketBrokers = "airlock_brokers"

const (
	heartbeatEvery = time.Second
	// brokerTTL is how long a broker's key outlives its last heartbeat: a
	// broker unheard of for this long is presumed dead. It outlasts a
	// leader election in the bucket's stream (heartbeats fail meanwhile;
	// elections of up to 8 s were seen after a node kill), so that live
	// brokers are not presumed dead after one. It is also the
	// youngest a claim may be for its owner to be judged, so that a broker
	// that has just claimed is never judged by a heartbeat older than its
	// claim.
	brokerTTL = 15 * time.Second
)

// liveBroker is what a broker's heartbeat says.
type liveBroker struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Version string    `json:"version"`
}

// openBrokers creates the liveness bucket (fleets only: the embedded
// broker is alone, Exclusive).
func openBrokers(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{Bucket: BucketBrokers, Description: "airlock brokers alive (heartbeats)", History: 1,
		TTL: brokerTTL, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	return jsutil.CreateOrUpdateKV(ctx, js, cfg)
}

// heartbeat puts this broker's key until the broker closes.
func (b *Broker) heartbeat(kv jetstream.KeyValue) {
	defer b.wg.Done()
	host, _ := os.Hostname()
	data, _ := json.Marshal(liveBroker{Host: host, PID: os.Getpid(), Started: b.now().UTC(), Version: Version})
	put := func() {
		ctx, cancel := context.WithTimeout(b.ctx, heartbeatEvery)
		defer cancel()
		if _, err := kv.Put(ctx, b.cfg.Name, data); err != nil && b.ctx.Err() == nil {
			b.log.Warn("heartbeat", "err", err)
		}
	}
	put()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			// The key is left to expire: requests still finishing while the
			// broker closes keep their claims for brokerTTL more.
			return
		case <-t.C:
			put()
		}
	}
}

// presumedDead reports that the broker named owner, holding a claim last
// updated at since, has stopped: the claim is older than brokerTTL and the
// owner's heartbeat key is gone. Anything unclear (no liveness bucket, the
// bucket unreachable) is "not dead": the claim then waits for
// evaluatingTimeout as before. Even a wrong "dead" cannot decide a call
// twice: the taker looks up the audited decision first, and in a fleet the
// audit stream refuses a second decision for a call.
func (b *Broker) presumedDead(ctx context.Context, owner string, since time.Time) bool {
	if b.brokers == nil || owner == "" || b.now().Sub(since) < brokerTTL {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := b.brokers.Get(ctx, owner)
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

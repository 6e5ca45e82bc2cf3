package broker

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure the NATS server airlock embeds by default.
type EmbeddedOptions struct {
	Listen   string // HOST:PORT, default 127.0.0.1:4222; port -1 picks a free one
	StoreDir string // JetStream store, normally DATA/nats
	// Configure, when set, adjusts the server options before start (auth, TLS).
	Configure func(*server.Options) error
}

// StartEmbedded starts a NATS server with JetStream and waits until it
// accepts connections.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:4222"
	}
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker: --listen %q: want HOST:PORT", o.Listen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker: --listen %q: bad port", o.Listen)
	}
	if o.StoreDir == "" {
		return nil, errors.New("broker: embedded NATS needs a store directory")
	}
	opts := &server.Options{
		ServerName:         "airlock",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Clean(o.StoreDir),
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
		NoLog:              true,
	}
	if o.Configure != nil {
		if err := o.Configure(opts); err != nil {
			return nil, err
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("broker: embedded NATS did not start listening on %s (is the port in use?)", o.Listen)
	}
	return s, nil
}

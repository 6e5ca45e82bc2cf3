package ratelimit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Subject is the NATS subject on which the broker serves Handle, for
// `airlock limits` and the console.
const Subject = "airlock.admin.limits"

// Query asks for usage: one scope and key, or everything with activity
// when both are empty.
type Query struct {
	Scope string `json:"scope,omitempty"`
	Key   string `json:"key,omitempty"`
}

// Reply answers a Query. Error is empty on success.
type Reply struct {
	Usage []Usage `json:"usage"`
	Error string  `json:"error"`
}

// maxQuery bounds a Query's size.
const maxQuery = 4096

// ParseQuery decodes a Query strictly: unknown fields, a bad scope or an
// over-size body are errors. An empty body asks for everything.
func ParseQuery(req []byte) (Query, error) {
	var q Query
	if len(bytes.TrimSpace(req)) == 0 {
		return q, nil
	}
	if len(req) > maxQuery {
		return q, fmt.Errorf("ratelimit: query of %d bytes is over %d", len(req), maxQuery)
	}
	d := json.NewDecoder(bytes.NewReader(req))
	d.DisallowUnknownFields()
	if err := d.Decode(&q); err != nil {
		return Query{}, fmt.Errorf("ratelimit: bad query: %w", err)
	}
	if d.More() {
		return Query{}, fmt.Errorf("ratelimit: bad query: trailing data")
	}
	if q.Scope != "" {
		if _, ok := scopeKind(q.Scope); !ok {
			return Query{}, fmt.Errorf("ratelimit: unknown scope %q (want user, org, agent, session or global)", q.Scope)
		}
	}
	if q.Key != "" && q.Scope == "" {
		return Query{}, fmt.Errorf("ratelimit: a key needs a scope")
	}
	return q, nil
}

// Handle answers a Query (JSON) with a Reply (JSON). The broker mounts it on
// Subject.
func (l *Limiter) Handle(req []byte) []byte {
	reply := Reply{Usage: []Usage{}}
	q, err := ParseQuery(req)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var us []Usage
		if us, err = l.usage(ctx, q.Scope, q.Key); us != nil {
			reply.Usage = us
		}
	}
	if err != nil {
		reply.Error = err.Error()
	}
	b, err := json.Marshal(reply)
	if err != nil { // floats are finite and strings valid: cannot happen
		return []byte(`{"usage":[],"error":"ratelimit: encode reply"}`)
	}
	return b
}

// usageJSON is Usage on the wire: the window as in the policy file ("1m",
// "24h", "7d"; empty for concurrent and session messages).
type usageJSON struct {
	Scope     string  `json:"scope"`
	Key       string  `json:"key"`
	Dimension string  `json:"dimension"`
	Window    string  `json:"window,omitempty"`
	Used      float64 `json:"used"`
	Limit     float64 `json:"limit"`
	Pressure  float64 `json:"pressure"`
}

// MarshalJSON writes the window as in the policy file.
func (u Usage) MarshalJSON() ([]byte, error) {
	return json.Marshal(usageJSON{Scope: u.Scope, Key: u.Key, Dimension: u.Dimension, Window: FormatWindow(u.Window),
		Used: u.Used, Limit: u.Limit, Pressure: u.Pressure})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (u *Usage) UnmarshalJSON(b []byte) error {
	var j usageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	w, err := ParseWindow(j.Window)
	if err != nil {
		return err
	}
	*u = Usage{Scope: j.Scope, Key: j.Key, Dimension: j.Dimension, Window: w, Used: j.Used, Limit: j.Limit, Pressure: j.Pressure}
	return nil
}

// ParseWindow reads a window written by FormatWindow: a Go duration, or a
// whole number of days ("7d"). Empty is 0.
func ParseWindow(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseUint(n, 10, 16)
		if err != nil || d == 0 {
			return 0, fmt.Errorf("ratelimit: bad window %q", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("ratelimit: bad window %q", s)
	}
	return d, nil
}

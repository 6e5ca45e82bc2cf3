package ratelimit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
)

func TestHandle(t *testing.T) {
	l, _ := newLimiter(t, []policy.Limit{{Scope: "user", RequestsPerMinute: 5}, {Scope: "org", Requests: 100, Window: 7 * 24 * time.Hour}})
	admit(t, l, 2, func(int) *airlock.ToolCall { return call("alice", "acme", "s1") })
	admit(t, l, 1, func(int) *airlock.ToolCall { return call("bob", "acme", "s1") })
	tests := []struct {
		name    string
		req     string
		rows    int
		wantErr string
	}{
		{"empty-body-all", "", 3, ""},
		{"empty-object-all", "{}", 3, ""},
		{"user", `{"scope":"user","key":"alice"}`, 1, ""},
		{"org", `{"scope":"org","key":"acme"}`, 1, ""},
		{"scope-only", `{"scope":"user"}`, 2, ""},
		{"unknown-key", `{"scope":"user","key":"carol"}`, 0, ""},
		{"bad-scope", `{"scope":"planet"}`, 0, "unknown scope"},
		{"unknown-field", `{"scope":"user","who":"x"}`, 0, "unknown field"},
		{"key-without-scope", `{"key":"alice"}`, 0, "needs a scope"},
		{"not-json", `alice`, 0, "bad query"},
		{"trailing", `{} {}`, 0, "trailing"},
		{"too-big", `{"scope":"user","key":"` + strings.Repeat("a", 5000) + `"}`, 0, "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reply Reply
			if err := json.Unmarshal(l.Handle([]byte(tt.req)), &reply); err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" {
				if !strings.Contains(reply.Error, tt.wantErr) || len(reply.Usage) != 0 {
					t.Fatalf("got %+v, want error containing %q", reply, tt.wantErr)
				}
				return
			}
			if reply.Error != "" || len(reply.Usage) != tt.rows {
				t.Fatalf("got %+v, want %d rows", reply, tt.rows)
			}
		})
	}
	t.Run("wire-format", func(t *testing.T) {
		b := l.Handle([]byte(`{"scope":"org","key":"acme"}`))
		want := `{"usage":[{"scope":"org","key":"acme","dimension":"requests","window":"7d","used":3,"limit":100,"pressure":0}],"error":""}`
		if string(b) != want {
			t.Fatalf("got %s, want %s", b, want)
		}
	})
	t.Run("nil-limiter", func(t *testing.T) {
		var nl *Limiter
		if got := string(nl.Handle(nil)); got != `{"usage":[],"error":""}` {
			t.Fatalf("got %s", got)
		}
	})
}

func TestUsageRoundTrip(t *testing.T) {
	for _, u := range []Usage{
		{Scope: "user", Key: "a", Dimension: DimRequests, Window: time.Minute, Used: 3, Limit: 5, Pressure: 0.5},
		{Scope: "org", Key: "b", Dimension: DimCost, Window: 7 * 24 * time.Hour, Used: 0.25, Limit: 10},
		{Scope: "user", Key: "a", Dimension: DimConcurrent, Used: 1, Limit: 4},
		{Scope: "global", Key: "*", Dimension: DimTokens, Window: 90 * time.Second, Used: 1, Limit: 4},
		{Scope: "global", Key: "*", Dimension: DimTokens, Window: 1500 * time.Millisecond, Used: 1, Limit: 4},
	} {
		b, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		var got Usage
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got != u {
			t.Fatalf("got %+v from %s, want %+v", got, b, u)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "{}", `{"scope":"user","key":"alice"}`, `{"scope":"x"}`, `{"key":"a"}`, `[1]`, `{"scope":"session","key":"a/b"}`} {
		f.Add([]byte(s))
	}
	l, _ := newLimiter(f, []policy.Limit{{Scope: "session", RequestsPerMinute: 5, SessionMessages: 3}, {Scope: "global", Concurrent: 9}})
	admit(f, l, 1, func(int) *airlock.ToolCall { return call("a", "o", "b") })
	f.Fuzz(func(t *testing.T, req []byte) {
		q, err := ParseQuery(req)
		if err == nil {
			if _, ok := scopeKind(q.Scope); q.Scope != "" && !ok {
				t.Fatalf("accepted scope %q", q.Scope)
			}
		}
		var reply Reply
		if err := json.Unmarshal(l.Handle(req), &reply); err != nil {
			t.Fatalf("reply is not JSON: %v", err)
		}
		if (reply.Error == "") != (err == nil) {
			t.Fatalf("parse error %v but reply error %q", err, reply.Error)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	kp := compile([]policy.Limit{{Scope: "user", RequestsPerMinute: 5, TokensPerMinute: 100, Concurrent: 2}}, New(nil, nil).cfg.log).kinds[kindUser]
	f.Add([]byte(`{"v":1,"rates":{"requests/1m":{"start":60000000000,"cur":2,"prev":1}},"inflight":1,"inflight_until":99}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"rates":{"tokens/1m":{"cur":-5,"prev":1e308}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCell(kp, b)
		if err != nil {
			return
		}
		cfg := New(nil, nil).cfg
		now := t0.UnixNano()
		// Whatever was stored, checking, charging and reporting do not panic
		// and the state survives a round trip.
		am := amounts{units: [numDims]float64{1, 10, 0}}
		if c.check(kp, now, &am, &cfg) == nil {
			c.charge(kp, now, &am, &cfg)
		}
		c.usage(nil, kp, ckey{k: kindUser, a: "x"}, now, &cfg)
		c2, err := decodeCell(kp, encodeCell(kp, c))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if string(encodeCell(kp, c2)) != string(encodeCell(kp, c)) {
			t.Fatal("round trip changed the state")
		}
	})
}

func FuzzKVKey(f *testing.F) {
	for _, s := range []string{"alice", "", "a.b", "ü/🙂", "*", ">"} {
		f.Add(s, "s-1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for k := kind(0); k < numKinds; k++ {
			key := ckey{k: k, a: a}
			switch k {
			case kindSession:
				key.b = b
			case kindGlobal:
				key.a = "*"
			}
			name := kvKey(key)
			for _, r := range name {
				if !(r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
					t.Fatalf("key %q has %q, not allowed in a KV key", name, r)
				}
			}
			if got, ok := parseKVKey(name); !ok || got != key {
				t.Fatalf("parseKVKey(%q) = %+v, %v; want %+v", name, got, ok, key)
			}
		}
	})
}

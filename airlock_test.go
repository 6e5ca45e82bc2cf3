package airlock

import (
	"encoding/json"
	"testing"
)

func TestTierOrder(t *testing.T) {
	tests := []struct {
		a, b, want Tier
	}{
		{TierAuto, TierNotify, TierNotify},
		{TierApprove, TierNotify, TierApprove},
		{TierDeny, TierAuto, TierDeny},
		{TierAuto, Tier("bogus"), Tier("bogus")}, // unknown ranks as deny
	}
	for _, tt := range tests {
		if got := tt.a.Max(tt.b); got != tt.want {
			t.Errorf("%s.Max(%s) = %s, want %s", tt.a, tt.b, got, tt.want)
		}
	}
	if Tier("bogus").Valid() || !TierNotify.Valid() {
		t.Error("Valid is wrong")
	}
}

func TestCanonicalJSON(t *testing.T) {
	var a, b map[string]any
	_ = json.Unmarshal([]byte(`{"b":1,"a":{"y":"<x>","x":[1,2]}}`), &a)
	_ = json.Unmarshal([]byte(`{"a":{"x":[1,2],"y":"<x>"},"b":1}`), &b)
	ca, err := CanonicalJSON(a)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(ca), `{"a":{"x":[1,2],"y":"<x>"},"b":1}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if ArgsHash(a) != ArgsHash(b) {
		t.Fatal("key order changed the hash")
	}
	if ArgsHash(nil) != ArgsHash(map[string]any{}) {
		t.Fatal("nil and empty arguments hash differently")
	}
	b["b"] = 2.0
	if ArgsHash(a) == ArgsHash(b) {
		t.Fatal("different arguments hash alike")
	}
}

func TestVerdictValid(t *testing.T) {
	for _, v := range []Verdict{VerdictApproved, VerdictDenied, VerdictExpired, VerdictRateLimited, VerdictRejected} {
		if !v.Valid() {
			t.Errorf("%s not valid", v)
		}
	}
	if Verdict("maybe").Valid() {
		t.Error("maybe is valid")
	}
}

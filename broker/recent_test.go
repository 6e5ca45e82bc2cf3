package broker

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/airlock/airlock"
)

// TestRecentLogMatchesModel: the ring buffers answer exactly what keeping
// every session's whole list and cutting it to the last perSession records
// answers (newest first, at most n, oldest session dropped first).
func TestRecentLogMatchesModel(t *testing.T) {
	const maxSessions, perSession = 4, 5
	r := newRecentLog(maxSessions, perSession)
	model := map[string][]airlock.DecisionRecord{}
	var order []string
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		session := fmt.Sprintf("s%d", rng.IntN(7))
		rec := airlock.DecisionRecord{Call: airlock.ToolCall{ID: fmt.Sprintf("c%d", i), Session: session}}
		if _, ok := model[session]; !ok {
			order = append(order, session)
			for len(model) >= maxSessions && len(order) > 0 {
				delete(model, order[0])
				order = order[1:]
			}
		}
		list := append(model[session], rec)
		if len(list) > perSession {
			list = list[len(list)-perSession:]
		}
		model[session] = list
		r.add(session, rec)

		probe := fmt.Sprintf("s%d", rng.IntN(8))
		n := rng.IntN(perSession+2) - 1
		want := []airlock.DecisionRecord{}
		ml := model[probe]
		for j := len(ml) - 1; j >= 0 && (n <= 0 || len(want) < n); j-- {
			want = append(want, ml[j])
		}
		if got := r.get(probe, n); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: get(%s, %d): got %d records %v, want %d %v", i, probe, n, len(got), ids(got), len(want), ids(want))
		}
	}
}

func ids(recs []airlock.DecisionRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Call.ID
	}
	return out
}

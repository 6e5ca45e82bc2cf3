package audit

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock/airlock/internal/testenv"
)

// tamper opens path read-write with the stock driver, drops the triggers
// (as an attacker with file access would) and runs stmts.
func tamper(t *testing.T, path string, fn func(db *sql.DB) error) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"DROP TRIGGER event_log_no_update", "DROP TRIGGER event_log_no_delete"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := fn(db); err != nil {
		t.Fatal(err)
	}
}

func execAll(stmts ...string) func(db *sql.DB) error {
	return func(db *sql.DB) error {
		for _, q := range stmts {
			if _, err := db.Exec(q); err != nil {
				return err
			}
		}
		return nil
	}
}

// rehashFrom rewrites the chain from seq on so every row is self-consistent:
// only checkpoints can tell.
func rehashFrom(seq int64) func(db *sql.DB) error {
	return func(db *sql.DB) error {
		rows, err := db.Query("SELECT " + rowColumns + " FROM event_log ORDER BY seq")
		if err != nil {
			return err
		}
		all, err := scanRows(rows)
		if err != nil {
			return err
		}
		prev := GenesisHash
		for i := range all {
			r := &all[i]
			if r.Seq >= seq {
				r.PrevHash = prev
				r.Hash = HashRow(r)
				if _, err := db.Exec("UPDATE event_log SET prev_hash = ?, hash = ? WHERE seq = ?", r.PrevHash, r.Hash, r.Seq); err != nil {
					return err
				}
			}
			prev = r.Hash
		}
		return nil
	}
}

func seqOf(t *testing.T, path, callID, kind string) int64 {
	t.Helper()
	r := openRO(t, path)
	var seq int64
	if err := r.DB().QueryRow("SELECT seq FROM event_log WHERE call_id = ? AND kind = ?", callID, kind).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	r.Close()
	return seq
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name     string
		do       func(t *testing.T, path string) func(*sql.DB) error
		extraCPs func(t *testing.T, path string) []Checkpoint
		kind     string
		seq      func(t *testing.T, path string) int64
	}{
		{
			name: "edit-payload",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll("UPDATE event_log SET payload = replace(payload, 'DELETE FROM users', 'SELECT 1') WHERE call_id = 'q3' AND kind = 'decision'")
			},
			kind: ProblemEdited,
			seq:  func(t *testing.T, p string) int64 { return seqOf(t, p, "q3", "decision") },
		},
		{
			name: "edit-verdict-and-recompute-its-hash",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				seq := seqOf(t, path, "q3", "decision")
				return func(db *sql.DB) error {
					if err := execAll("UPDATE event_log SET payload = replace(payload, '\"denied\"', '\"approved\"') WHERE call_id = 'q3' AND kind = 'decision'")(db); err != nil {
						return err
					}
					rows, err := db.Query("SELECT "+rowColumns+" FROM event_log WHERE seq = ?", seq)
					if err != nil {
						return err
					}
					rs, err := scanRows(rows)
					if err != nil {
						return err
					}
					_, err = db.Exec("UPDATE event_log SET hash = ? WHERE seq = ?", HashRow(&rs[0]), seq)
					return err
				}
			},
			kind: ProblemReordered, // the next row no longer links to it
			seq:  func(t *testing.T, p string) int64 { return seqOf(t, p, "q3", "decision") + 1 },
		},
		{
			name: "edit-timestamp",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll("UPDATE event_log SET ts = '2020-01-01T00:00:00.000000000Z' WHERE seq = 4")
			},
			kind: ProblemEdited,
			seq:  func(*testing.T, string) int64 { return 4 },
		},
		{
			name: "delete-row",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll("DELETE FROM event_log WHERE seq = 10")
			},
			kind: ProblemDeleted,
			seq:  func(*testing.T, string) int64 { return 10 },
		},
		{
			name: "delete-first-row",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll("DELETE FROM event_log WHERE seq = 1")
			},
			kind: ProblemDeleted,
			seq:  func(*testing.T, string) int64 { return 2 },
		},
		{
			name: "delete-and-renumber",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll("DELETE FROM event_log WHERE seq = 10", "UPDATE event_log SET seq = seq - 1 WHERE seq > 10")
			},
			kind: ProblemReordered,
			seq:  func(*testing.T, string) int64 { return 10 },
		},
		{
			name: "reorder-two-rows",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll(
					"UPDATE event_log SET seq = -7 WHERE seq = 7",
					"UPDATE event_log SET seq = 7 WHERE seq = 8",
					"UPDATE event_log SET seq = 8 WHERE seq = -7")
			},
			kind: ProblemReordered,
			seq:  func(*testing.T, string) int64 { return 7 },
		},
		{
			name: "truncate-tail",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return execAll("DELETE FROM event_log WHERE seq > (SELECT max(seq) - 3 FROM event_log)")
			},
			kind: ProblemTruncated,
			seq: func(t *testing.T, p string) int64 {
				r := openRO(t, p)
				s, _, _ := r.Head(t.Context())
				return s
			},
		},
		{
			name: "rewrite-whole-chain-consistently",
			do: func(t *testing.T, path string) func(*sql.DB) error {
				return func(db *sql.DB) error {
					if err := execAll("UPDATE event_log SET payload = replace(payload, 'reviewer:bob', 'reviewer:mallory')")(db); err != nil {
						return err
					}
					return rehashFrom(1)(db)
				}
			},
			extraCPs: func(t *testing.T, path string) []Checkpoint {
				// A checkpoint kept elsewhere (JetStream KV) at seq 12.
				r := openRO(t, path)
				var h string
				r.DB().QueryRow("SELECT hash FROM event_log WHERE seq = 12").Scan(&h)
				r.Close()
				return []Checkpoint{{Seq: 12, Hash: h, Source: "kv"}}
			},
			kind: ProblemRewritten,
			seq:  func(*testing.T, string) int64 { return 12 },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := newFixture(t, fixtureBase)
			if rep := verifyPath(t, path); !rep.OK() {
				t.Fatalf("fresh fixture does not verify: %s", rep.Problem.Message)
			}
			var extra []Checkpoint
			if tc.extraCPs != nil {
				extra = tc.extraCPs(t, path)
			}
			wantSeq := int64(0)
			if tc.name != "truncate-tail" {
				wantSeq = tc.seq(t, path)
			}
			tamper(t, path, tc.do(t, path))
			if tc.name == "truncate-tail" {
				wantSeq = tc.seq(t, path)
			}
			cps, err := ReadCheckpoints(CheckpointPath(path))
			if err != nil {
				t.Fatal(err)
			}
			r := openRO(t, path)
			// One chunk, and chunks of 3 and 4 seqs so that problems fall on
			// chunk boundaries and inside chunks.
			for _, size := range []int64{65536, 3, 4} {
				verifyChunkSize = size
				rep, err := Verify(t.Context(), r, append(cps, extra...))
				verifyChunkSize = 65536
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK() {
					t.Fatalf("chunk %d: verify passed a tampered log: %+v", size, rep)
				}
				if rep.Problem.Kind != tc.kind || rep.Problem.Seq != wantSeq {
					t.Fatalf("chunk %d: got %s at seq %d (%s), want %s at seq %d", size, rep.Problem.Kind, rep.Problem.Seq, rep.Problem.Message, tc.kind, wantSeq)
				}
				if !strings.Contains(rep.Problem.Message, "seq ") {
					t.Fatalf("message %q does not name a seq", rep.Problem.Message)
				}
			}
		})
	}
}

func TestVerifyChunkedIntact(t *testing.T) {
	path := newFixture(t, fixtureBase)
	r := openRO(t, path)
	cps, _ := ReadCheckpoints(CheckpointPath(path))
	for _, size := range []int64{1, 2, 7, 35, 36} {
		verifyChunkSize = size
		rep, err := Verify(t.Context(), r, cps)
		verifyChunkSize = 65536
		if err != nil || !rep.OK() || rep.Events != 35 || rep.HeadSeq != 35 || rep.Matched != len(cps) {
			t.Fatalf("chunk %d: %+v %v", size, rep, err)
		}
	}
}

func TestVerifyWithoutCheckpointsCannotSeeTruncation(t *testing.T) {
	// The reason checkpoints exist: a cut tail is a valid shorter chain.
	path := newFixture(t, fixtureBase)
	tamper(t, path, execAll("DELETE FROM event_log WHERE seq > 30"))
	r := openRO(t, path)
	rep, err := Verify(t.Context(), r, nil)
	if err != nil || !rep.OK() || rep.HeadSeq != 30 {
		t.Fatalf("got %+v %v, want an intact 30-event chain", rep, err)
	}
	cps, _ := ReadCheckpoints(CheckpointPath(path))
	if rep, _ := Verify(t.Context(), r, cps); rep.OK() {
		t.Fatal("with the sidecar checkpoints the truncation must show")
	}
}

func TestVerifyCorruptCheckpointsFile(t *testing.T) {
	path := newFixture(t, fixtureBase)
	os.WriteFile(CheckpointPath(path), []byte("{\"seq\":1,\"hash\":\"short\"}\n"), 0o600)
	if _, err := ReadCheckpoints(CheckpointPath(path)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("got %v, want an error naming line 1", err)
	}
	// An unfinished last line (a crash mid-write) is ignored.
	good := "{\"seq\":2,\"hash\":\"" + GenesisHash + "\"}\n"
	os.WriteFile(CheckpointPath(path), []byte(good+"{\"seq\":3,\"ha"), 0o600)
	if cps, err := ReadCheckpoints(CheckpointPath(path)); err != nil || len(cps) != 1 || cps[0].Seq != 2 {
		t.Fatalf("got %+v %v, want the one finished line", cps, err)
	}
	// A complete last line without a newline (a hand-made file) counts.
	os.WriteFile(CheckpointPath(path), []byte(strings.TrimSuffix(good, "\n")), 0o600)
	if cps, err := ReadCheckpoints(CheckpointPath(path)); err != nil || len(cps) != 1 {
		t.Fatalf("got %+v %v, want the checkpoint without a newline", cps, err)
	}
}

// TestTamperScript uses the shared checks' tamper.py, which edits whichever
// table has a hash column.
func TestTamperScript(t *testing.T) {
	py := testenv.Tool(t, "python3")
	script := "/work/shared/checks/lib/tamper.py"
	if _, err := os.Stat(script); err != nil {
		script = filepath.Join("testdata", "tamper.py")
	}
	for _, tc := range []struct {
		name string
		args []string
		kind string
	}{
		{"edit", []string{"edit", "penguin", "walrus"}, ProblemEdited},
		{"delete", []string{"delete", "canary-1"}, ProblemDeleted},
		{"truncate", []string{"truncate", "3"}, ProblemTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newFixture(t, fixtureBase)
			out, err := exec.Command(py, append([]string{script, path}, tc.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("tamper.py: %v %s", err, out)
			}
			rep := verifyPath(t, path)
			if rep.OK() || rep.Problem.Kind != tc.kind {
				t.Fatalf("after tamper.py %v: %+v %v, want %s", tc.args, rep, rep.Problem, tc.kind)
			}
		})
	}
}

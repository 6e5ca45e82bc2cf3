package airlock_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/airlock/airlock/internal/testenv"
)

// TestBoundaries keeps the house in order (STYLE.md): the console talks to a
// small interface, not to NATS, SQLite or processes; the broker, the audit
// log and the sandbox never import the console; only cmd wires concrete
// types together.
func TestBoundaries(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, "go tool not on PATH")
	}
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Imports    []string
		Deps       []string
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	const mod = "github.com/airlock/airlock"
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	under := func(p, dir string) bool { return p == mod+"/"+dir || strings.HasPrefix(p, mod+"/"+dir+"/") }
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, mod+"/")
		// The console: no NATS, no database, no processes among its own imports.
		if under(p.ImportPath, "tui") {
			for _, imp := range p.Imports {
				if strings.HasPrefix(imp, "github.com/nats-io/") || imp == "database/sql" || imp == "os/exec" || strings.HasPrefix(imp, "github.com/mattn/go-sqlite3") {
					t.Errorf("%s imports %s: the console talks to tui.Backend only", rel, imp)
				}
			}
			for _, dep := range p.Deps {
				// (nkeys is only key parsing, which the policy loader does.)
				if strings.HasPrefix(dep, "github.com/nats-io/nats.go") || strings.HasPrefix(dep, "github.com/nats-io/nats-server") ||
					strings.HasPrefix(dep, "github.com/mattn/go-sqlite3") || dep == mod+"/broker" || dep == mod+"/audit" {
					t.Errorf("%s depends on %s", rel, dep)
				}
			}
		}
		// Nothing but cmd (and the SSH console adapter) reaches the console.
		if under(p.ImportPath, "broker") || under(p.ImportPath, "audit") || under(p.ImportPath, "sandbox") {
			for _, dep := range p.Deps {
				if under(dep, "tui") || under(dep, "cmd") {
					t.Errorf("%s depends on %s", rel, dep)
				}
			}
		}
		// The root package holds the shared types and depends on no part of the house.
		if p.ImportPath == mod {
			for _, dep := range p.Deps {
				if strings.HasPrefix(dep, mod+"/") {
					t.Errorf("the root package depends on %s", dep)
				}
			}
		}
	}
}

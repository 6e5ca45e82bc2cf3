# airlock: `make test` is the one test command (README, CI).
GO      ?= go
TAGS    ?= sqlite_fts5
# Packages with goroutines run under the race detector. cmd/airlock's tests
# are end-to-end (they re-exec the test binary as airlock, in tmux, as
# brokers being killed); under -race every such process is instrumented and
# the suite outgrows its budget, so they run without it: the packages they
# drive are race-tested here.
RACE_PKGS = ./broker/... ./audit/... ./tui/... ./internal/...

.PHONY: test vet fmt unit race build bench checks fuzz chaos

test: vet fmt race unit

build:
	$(GO) build -tags $(TAGS) -o airlock ./cmd/airlock

vet:
	$(GO) vet -tags $(TAGS) ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The race detector over the concurrent packages.
race:
	$(GO) test -tags $(TAGS) -race -count=1 -timeout 8m $(RACE_PKGS)

# Everything else: the root package, the sandbox's escape suite, the end-to-end tests.
unit:
	$(GO) test -tags $(TAGS) -count=1 -timeout 9m $$($(GO) list ./... | grep -v -e /broker -e /audit -e /tui -e /internal)

bench:
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem ./...

# The shared contract checks, driving the built binary as users do.
checks:
	../shared/checks/run

# A short fuzzing pass over every fuzz target (seeds live in testdata/fuzz).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    $(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; \
	  done; \
	done

# The chaos suite alone, verbose, for its figures (docs/bench/fleet.md): kill
# -9 brokers and NATS nodes under load (issue 11). `make test` runs it too.
chaos:
	$(GO) test -tags $(TAGS) -count=1 -timeout 12m -run 'TestChaos|TestAuditStreamOnCluster' -v ./cmd/airlock/ ./internal/fleettest/

# essc — build, run, test, lint, bench. See README.md.
GO        ?= go
BIN       := bin
DATA      ?= ./data
PKGS      := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 30s

.PHONY: all build run test test-short lint bench fuzz fuzz-smoke clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: the server on its embedded default (SQLite + in-memory sessions under ./data), demo data seeded.
run: build
	$(BIN)/esscd --data $(DATA) --demo

## test: the whole suite. Backend tests read ESSC_TEST_REDIS_URL / ESSC_TEST_DATABASE_URL (set by .ci/run).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	$(MAKE) fuzz-smoke

test-short:
	$(GO) test -short -count=1 $(PKGS)

## lint: go vet, staticcheck, gofmt and the import rules of docs/ARCHITECTURE.md.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1)
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	bash .ci/imports.sh

## bench: micro-benchmarks (signing, storage, idp token endpoint) then short load runs (bench-load);
## figures and how to read them: docs/PERFORMANCE.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./signing/ ./storage/...
	$(GO) test -run '^$$' -bench ClientCredentials -benchtime 2000x -count=1 ./idp/
	$(MAKE) bench-load

# Load runs: every esscbench scenario against a spawned esscd, on the embedded default and, when
# ESSC_TEST_REDIS_URL and ESSC_TEST_DATABASE_URL are set, on Redis + PostgreSQL. Reports (JSON),
# the chart (SVG) and the table land in BENCH_OUT. bench-check compares them with the committed
# baseline as ratios to an SM2 reference measured in the same run (never absolute times).
# Each scenario runs for BENCH_DURATION (a fixed count finished the fast scenarios in a
# quarter of a second, too short to measure on a shared machine).
BENCH_OUT      ?= $(BIN)/bench
BENCH_DURATION ?= 3s
BENCH_WORKERS  ?= 64
BENCH_ARGS      = --duration $(BENCH_DURATION) --workers $(BENCH_WORKERS)

BENCH_TAG      ?=

.PHONY: bench-load bench-check
bench-load: build
	@mkdir -p $(BENCH_OUT) && rm -f $(BENCH_OUT)/embedded$(BENCH_TAG).json $(BENCH_OUT)/redis-postgres$(BENCH_TAG).json
	$(BIN)/esscbench run --spawn $(BENCH_ARGS) --json $(BENCH_OUT)/embedded$(BENCH_TAG).json
	@if [ -n "$$ESSC_TEST_REDIS_URL" ] && [ -n "$$ESSC_TEST_DATABASE_URL" ]; then \
	  echo '$(BIN)/esscbench run --spawn --spawn-redis $$ESSC_TEST_REDIS_URL --spawn-database $$ESSC_TEST_DATABASE_URL $(BENCH_ARGS)'; \
	  $(BIN)/esscbench run --spawn --spawn-redis "$$ESSC_TEST_REDIS_URL" --spawn-database "$$ESSC_TEST_DATABASE_URL" \
	    $(BENCH_ARGS) --json $(BENCH_OUT)/redis-postgres$(BENCH_TAG).json; \
	else echo 'ESSC_TEST_REDIS_URL / ESSC_TEST_DATABASE_URL not set: Redis+PostgreSQL load run skipped'; fi
	$(BIN)/esscbench chart -o $(BENCH_OUT)/chart$(BENCH_TAG).svg $(BENCH_OUT)/*$(BENCH_TAG).json

## bench-check: fails when a scenario's throughput or CPU ratio regressed > 15 % against
## testdata/bench-baseline.json (best of BENCH_REPEAT load runs: a shared machine only slows runs down).
BENCH_REPEAT ?= 2
bench-check: build
	@mkdir -p $(BENCH_OUT)/check && rm -f $(BENCH_OUT)/check/*.json
	@for i in $$(seq $(BENCH_REPEAT)); do $(MAKE) --no-print-directory bench-load BENCH_OUT=$(BENCH_OUT)/check BENCH_TAG=-$$i || exit 1; done
	$(BIN)/esscbench check --baseline testdata/bench-baseline.json --tolerance 0.15 $(BENCH_OUT)/check/*.json

## bench-ab: this build against the esscd of BASE (a git revision), run alternately BENCH_AB_ROUNDS
## times (BENCH_AB_SCENARIOS, BENCH_DURATION each), compared as best ratios: tells a regression from a
## slow phase of a shared machine, which bench-check's committed baseline cannot.
BASE               ?= HEAD~1
BENCH_AB_ROUNDS    ?= 3
BENCH_AB_SCENARIOS ?= qr-login,client_credentials_gm,client_credentials_intl
.PHONY: bench-ab
bench-ab: build
	bash .ci/bench-ab.sh "$(BASE)" "$(BENCH_AB_ROUNDS)" "$(BENCH_AB_SCENARIOS)" "$(BENCH_DURATION)" "$(BENCH_OUT)/ab"

## bench-floor: server CPU of one PostgreSQL statement and one Redis command on this machine
## (pgbench, redis-benchmark; needs ESSC_TEST_DATABASE_URL and ESSC_TEST_REDIS_URL, local servers).
.PHONY: bench-floor
bench-floor:
	bash .ci/db-floor.sh

## fuzz: each fuzz target for FUZZTIME (longer than the smoke run in `make test`).
fuzz:
	bash .ci/fuzz.sh $(FUZZTIME)

# The smoke run in `make test` counts executions (5,000 per target) instead of
# timing them: a timed -fuzztime races Go's fuzz coordinator at the deadline
# (golang/go#75804, "context deadline exceeded" with no crasher; unfixed in go1.26).
fuzz-smoke:
	bash .ci/fuzz.sh 5000x

clean:
	rm -rf $(BIN)

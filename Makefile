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

## bench: micro-benchmarks (see docs/PERFORMANCE.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./signing/ ./storage/...

## fuzz: each fuzz target for FUZZTIME (longer than the smoke run in `make test`).
fuzz:
	bash .ci/fuzz.sh $(FUZZTIME)

fuzz-smoke:
	bash .ci/fuzz.sh 3s

clean:
	rm -rf $(BIN)

#!/usr/bin/env bash
# Runs every Fuzz* target in the module for the given time each (default 3s).
# A failure that left a new crasher under testdata/fuzz is a finding and fails
# at once (the input is kept for `go test` to replay). A failure without one
# (the fuzzing engine reporting a worker it lost, e.g. on a starved machine,
# or "context deadline exceeded" at the -fuzztime boundary: a race in Go's
# fuzz coordinator, golang/go#75804, unfixed in go1.26; seen here on
# FuzzPending) is retried once and fails if it happens again. The output is
# shown on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-3s}
# Minimising a new input may take up to 60 s per attempt by default; a run
# that ends in the middle of one is reported by the engine as a worker that
# "hung or terminated unexpectedly while minimizing". Keep attempts short.
m=${FUZZ_MINIMIZE:-1s}
n=0
crashers() { git ls-files --others --exclude-standard -- '*/testdata/fuzz/*' 2>/dev/null | sort; }
for dir in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./...); do
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u); do
    echo "fuzz $f in ${dir#$PWD/} for $t"
    for attempt in 1 2; do
      before=$(crashers)
      log=$(mktemp)
      if (cd "$dir" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime "$m" . >"$log" 2>&1); then
        rm -f "$log"; break
      fi
      after=$(crashers)
      grep -v '^fuzz: elapsed' "$log" | tail -40; rm -f "$log"
      if [ "$before" != "$after" ] || [ "$attempt" = 2 ]; then
        echo "FAIL fuzz $f"; exit 1
      fi
      echo "fuzz $f: the engine failed without a crasher; retrying once"
    done
    n=$((n+1))
  done
done
echo "fuzz: $n targets ran"

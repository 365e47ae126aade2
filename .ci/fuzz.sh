#!/usr/bin/env bash
# Runs every Fuzz* target in the module for the given time each (default 3s).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-3s}
n=0
for dir in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./...); do
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u); do
    echo "fuzz $f in ${dir#$PWD/} for $t"
    (cd "$dir" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" . >/dev/null) || { echo "FAIL fuzz $f"; exit 1; }
    n=$((n+1))
  done
done
echo "fuzz: $n targets ran"

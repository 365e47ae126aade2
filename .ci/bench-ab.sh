#!/usr/bin/env bash
# bench-ab.sh BASE ROUNDS SCENARIOS DURATION OUT
# Runs the esscd of git revision BASE and the one just built (bin/esscd)
# alternately, ROUNDS times (base first in odd rounds, head first in even),
# with the same esscbench, on the embedded default
# and, when ESSC_TEST_REDIS_URL and ESSC_TEST_DATABASE_URL are set, on Redis +
# PostgreSQL; then compares the two builds' best ratios with `esscbench
# check` (the base's reports as the baseline, 15 % tolerance). Alternating
# cancels the machine's slow and fast phases out of the comparison, which a
# single run against a committed baseline cannot (docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 rounds=$2 scenarios=$3 duration=$4 out=$5
rev=$(git rev-parse --short "$base")
rm -rf "$out" && mkdir -p "$out/base"
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT
git worktree add --detach -q "$tree" "$rev"
(cd "$tree" && go build -o "$OLDPWD/$out/base/" ./cmd/esscd)
echo "base: $rev ($out/base/esscd); head: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes') (bin/esscd)"
backends=(embedded)
if [ -n "${ESSC_TEST_REDIS_URL:-}" ] && [ -n "${ESSC_TEST_DATABASE_URL:-}" ]; then backends+=(redis-postgres); fi
for i in $(seq "$rounds"); do
  for backend in "${backends[@]}"; do
    extra=()
    if [ "$backend" = redis-postgres ]; then
      extra=(--spawn-redis "$ESSC_TEST_REDIS_URL" --spawn-database "$ESSC_TEST_DATABASE_URL")
    fi
    order=(base head)
    if [ $((i % 2)) -eq 0 ]; then order=(head base); fi # the second run of a pair may pay for the first's clean-up
    for build in "${order[@]}"; do
      bin=bin/esscd
      [ "$build" = base ] && bin=$out/base/esscd
      echo "round $i, $backend, $build"
      bin/esscbench run --spawn --esscd "$bin" "${extra[@]}" --scenarios "$scenarios" --duration "$duration" \
        --workers 64 --label "$backend" --json "$out/$build-$backend-$i.json" 2>>"$out/esscbench.log" |
        grep -E '^ +[a-z_-]+ +[0-9]+ ' | head -20
    done
  done
done
bin/esscbench baseline -o "$out/base.json" -note "bench-ab base $rev" "$out"/base-*.json
echo "head against base $rev (best of $rounds alternating rounds each):"
bin/esscbench check --baseline "$out/base.json" --tolerance 0.15 "$out"/head-*.json

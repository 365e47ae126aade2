#!/usr/bin/env bash
# db-floor.sh: what one round trip costs the databases on this machine, the
# floor under every PostgreSQL statement and Redis command a login sends
# (docs/PERFORMANCE.md, "What this machine allows"). Needs a local
# PostgreSQL and Redis (ESSC_TEST_DATABASE_URL, ESSC_TEST_REDIS_URL), their
# processes' /proc entries (same host) and pgbench / redis-benchmark.
# Bounded: 5 s of pgbench, 200,000 Redis commands, loopback only; the
# throwaway schema and keys are removed.
set -euo pipefail
db=${ESSC_TEST_DATABASE_URL:?set ESSC_TEST_DATABASE_URL}
rd=${ESSC_TEST_REDIS_URL:?set ESSC_TEST_REDIS_URL}
for u in "$db" "$rd"; do
  case "$u" in *://127.0.0.1[:/]*|*://localhost[:/]*|*://127.0.0.1|*://localhost|*@127.0.0.1[:/]*|*@localhost[:/]*|*"[::1]"*) ;;
    *) echo "db-floor: loopback targets only ($u)" >&2; exit 2 ;; esac
done
case "$rd" in redis://*@*|rediss://*) echo "db-floor: a plain redis://host[:port][/db] URL without credentials, please" >&2; exit 2 ;; esac
pgbench=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)
[ -x "$pgbench" ] || { echo "db-floor: pgbench not found" >&2; exit 2; }

# ticks: user+system CPU (clock ticks) of the pids given, plus, for the
# first (the postmaster), its reaped children's (backends that exited).
ticks() {
  local tot=0 first=1 f
  for p in "$@"; do
    read -ra f < <(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    tot=$((tot + f[11] + f[12]))
    if [ $first = 1 ]; then tot=$((tot + f[13] + f[14])); first=0; fi
  done
  echo $tot
}
hz=$(getconf CLK_TCK)

schema=essc_floor_$$
psql "$db" -qc "CREATE SCHEMA $schema"
trap 'psql "$db" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE"' EXIT
export PGOPTIONS="-c search_path=$schema"
"$pgbench" -i -s 10 -q "$db" >/dev/null 2>&1
pm=$(pgrep -o -u postgres postgres)
pgs() { ticks "$pm" $(pgrep -u postgres postgres | grep -vx "$pm"); }
a=$(pgs)
out=$("$pgbench" -n -S -M prepared -c 16 -j 2 -T 5 "$db" 2>&1)
b=$(pgs)
n=$(grep -o 'actually processed: [0-9]*' <<<"$out" | grep -o '[0-9]*$')
echo "PostgreSQL: $n primary-key SELECTs (pgbench -S -M prepared, 16 connections, 5 s): $(( (b - a) * 1000000 / hz / n )) µs of server CPU each"

host=$(sed -E 's|^redis://([^/:]*)(:([0-9]+))?.*|\1|' <<<"$rd"); port=$(sed -E 's|^redis://[^/:]*:([0-9]+).*|\1|;t;s|.*|6379|' <<<"$rd")
dbn=$(sed -E 's|.*/([0-9]+)$|\1|;t;s|.*|0|' <<<"$rd")
rpid=$(redis-cli -h "$host" -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
a=$(ticks "$rpid")
redis-benchmark -h "$host" -p "$port" --dbnum "$dbn" -n 200000 -c 64 -t get,set -q >/dev/null
b=$(ticks "$rpid")
redis-cli -h "$host" -p "$port" -n "$dbn" del 'key:__rand_int__' >/dev/null
echo "Redis: 400,000 GET and SET, one per round trip (redis-benchmark, 64 connections): $(( (b - a) * 1000000 / hz / 400000 )) µs of server CPU each"

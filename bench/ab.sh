#!/usr/bin/env bash
# A/B of the scheduler's fire lateness: revision BASE (a git worktree, built into its own
# target directory) against the working tree, interleaved, REPEAT times, for 1k and 10k jobs on
# SQLite and on one throwaway PostgreSQL (a database per side, since migrations differ); with
# IDLE=1, also the idle figures (RSS, wakeups) at 1k jobs on both, interleaved the same way.
# Usage: bench/ab.sh BASE [REPEAT, default 2]
#        AB_BASE_DIR=DIR bench/ab.sh BASE ...   (BASE already checked out and built in DIR, with
#            its own target/: nothing is built for it)
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev="${1:?usage: bench/ab.sh BASE_REVISION [REPEAT]}"
repeat="${2:-2}"
head_dir=$(pwd)
head_target="${CARGO_TARGET_DIR:-$head_dir/target}"
if [ -n "${AB_BASE_DIR:-}" ]; then
    base_dir="$AB_BASE_DIR"
    base_target="$base_dir/target"
    cleanup=:
else
    base_dir=$(mktemp -d /tmp/tickler-ab-base.XXXXXX)
    git worktree add -f -q "$base_dir" "$base_rev"
    base_target="${CARGO_TARGET_DIR:-$head_dir/target}-ab-base"
    cleanup='git -C "$head_dir" worktree remove -f "$base_dir"'
fi
(cd "$base_dir" && CARGO_TARGET_DIR="$base_target" cargo bench --bench scheduler --no-run >/dev/null 2>&1)
CARGO_TARGET_DIR="$head_target" cargo bench --bench scheduler --no-run >/dev/null 2>&1

. bench/pg.sh
start_pg
trap 'stop_pg; eval "$cleanup"' EXIT
pg="$PG_BASE"
"$pg_bin/psql" -q "$pg/postgres" -c "CREATE DATABASE bench_base" -c "CREATE DATABASE bench_head"

run() { # label, source dir, target dir, arguments of the benchmark
    local label=$1 src=$2 target=$3
    shift 3
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo bench --quiet --bench scheduler -- "$@" 2>/dev/null |
        grep -E '^(lateness|idle)' | sed "s/^/$label /")
}
for _ in $(seq "$repeat"); do
    for n in 1000 10000; do
        run base "$base_dir" "$base_target" lateness --jobs "$n"
        run head "$head_dir" "$head_target" lateness --jobs "$n"
        run base "$base_dir" "$base_target" lateness --jobs "$n" --database "$pg/bench_base"
        run head "$head_dir" "$head_target" lateness --jobs "$n" --database "$pg/bench_head"
    done
done
if [ "${IDLE:-0}" = 1 ]; then
    for _ in $(seq "$repeat"); do
        run base "$base_dir" "$base_target" idle --jobs 1000 --seconds 30
        run head "$head_dir" "$head_target" idle --jobs 1000 --seconds 30
        run base "$base_dir" "$base_target" idle --jobs 1000 --seconds 30 --database "$pg/bench_base"
        run head "$head_dir" "$head_target" idle --jobs 1000 --seconds 30 --database "$pg/bench_head"
    done
fi

#!/usr/bin/env bash
# A/B of the scheduler's fire lateness: revision BASE (a git worktree, built into its own
# target directory) against the working tree, interleaved, REPEAT times, for 1k and 10k jobs on
# SQLite and on one throwaway PostgreSQL (a database per side, since migrations differ).
# Usage: bench/ab.sh BASE [REPEAT, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev="${1:?usage: bench/ab.sh BASE_REVISION [REPEAT]}"
repeat="${2:-2}"
head_dir=$(pwd)
base_dir=$(mktemp -d /tmp/tickler-ab-base.XXXXXX)
git worktree add -f -q "$base_dir" "$base_rev"
base_target="${CARGO_TARGET_DIR:-$head_dir/target}-ab-base"
head_target="${CARGO_TARGET_DIR:-$head_dir/target}"
(cd "$base_dir" && CARGO_TARGET_DIR="$base_target" cargo bench --bench scheduler --no-run >/dev/null 2>&1)
CARGO_TARGET_DIR="$head_target" cargo bench --bench scheduler --no-run >/dev/null 2>&1

. bench/pg.sh
start_pg
trap 'stop_pg; git -C "$head_dir" worktree remove -f "$base_dir"' EXIT
pg="$PG_BASE"
"$pg_bin/psql" -q "$pg/postgres" -c "CREATE DATABASE bench_base" -c "CREATE DATABASE bench_head"

run() { # label, source dir, target dir, arguments of the benchmark
    local label=$1 src=$2 target=$3
    shift 3
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo bench --quiet --bench scheduler -- "$@" 2>/dev/null |
        grep -E '^lateness' | sed "s/^/$label /")
}
for _ in $(seq "$repeat"); do
    for n in 1000 10000; do
        run base "$base_dir" "$base_target" lateness --jobs "$n"
        run head "$head_dir" "$head_target" lateness --jobs "$n"
        run base "$base_dir" "$base_target" lateness --jobs "$n" --database "$pg/bench_base"
        run head "$head_dir" "$head_target" lateness --jobs "$n" --database "$pg/bench_head"
    done
done

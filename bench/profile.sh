#!/usr/bin/env bash
# The share of tickler's CPU samples spent under named functions, in the reminders benchmark's
# measured runs alone (perf's control fifo, `TICKLER_BENCH_PERF_CTL`), per binary: a figure
# this host's noise does not hide, unlike whole-run times (a VM without hardware counters).
# Samples of tokio's worker threads and of sqlx's SQLite connection threads (where SQLite
# runs), with their call stacks (DWARF); a sample counts for a function when the function is
# anywhere on its stack.
# Usage: bench/profile.sh LABEL=BINARY [LABEL=BINARY...] -- FUNCTION[,FUNCTION...] [benchmark arguments...]
#   e.g. bench/profile.sh base=/tmp/ab/base head=/tmp/ab/head -- ClientCodec::encode,split_marked \
#        --backend postgres --settings 32:32:2000 --no-plans
# Needs `perf` (Debian's linux-perf). With `--backend postgres`, a throwaway cluster (bench/pg.sh)
# unless TICKLER_BENCH_POSTGRES_URL is set. Each run is bounded by `timeout 900`; run it with
# nothing else building.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    bins+=("$1")
    shift
done
[ $# -gt 1 ] && [ ${#bins[@]} -gt 0 ] || {
    echo "usage: bench/profile.sh LABEL=BIN [LABEL=BIN...] -- FUNCTION[,FUNCTION...] [ARGS...]" >&2
    exit 2
}
shift
functions="$1"
shift
. bench/pg.sh
bench_pg_url
dir=$(mktemp -d)
trap 'rm -rf "$dir"; [ -z "${TICKLER_BENCH_POSTGRES_URL:-}" ] && stop_pg' EXIT
mkfifo "$dir/ctl"
for side in "${bins[@]}"; do
    label="${side%%=*}" bin="${side#*=}"
    TICKLER_BENCH_POSTGRES_URL="$pg_url" TICKLER_BENCH_PERF_CTL="$dir/ctl" timeout 900 \
        perf record -q -F 400 --call-graph dwarf,16384 -D -1 --control "fifo:$dir/ctl" \
        -o "$dir/data" -- "$bin" --bench "$@" 2>/dev/null |
        awk '/^(sqlite|postgres) +(plain|quickack)/ { if (seen[$0]++) print }' | sed "s/^/$label /"
    timeout 900 perf script -i "$dir/data" --comm tokio-rt-worker,sqlx-sqlite-wor 2>/dev/null |
        python3 -c '
import sys
label, wanted = sys.argv[1], sys.argv[2].split(",")
hits, samples, stack = dict.fromkeys(wanted, 0), 0, []
def end():
    global samples
    if stack:
        samples += 1
        for w in wanted:
            hits[w] += any(w in f for f in stack)
for line in sys.stdin:
    if not line.strip():
        end(); stack = []
    elif line[0] in " \t":
        stack.append(line.split(None, 1)[-1])
end()
for w in wanted:
    print("%s %6.2f%% %s" % (label, 100 * hits[w] / max(samples, 1), w))
print("%s samples %d" % (label, samples))
' "$label" "$functions"
done

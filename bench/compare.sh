#!/usr/bin/env bash
# tickler against APScheduler 3.x, side by side, on this machine (issue 17's proof):
# N jobs due at the same second, the first fire after start-up and the next one 15 s later,
# p99 lateness of the start of each job body. Columns: APScheduler 3.x (in-memory job store,
# default thread pool: no database), tickler on SQLite and on PostgreSQL (each run's ledger row
# committed before the body starts), and the floor (tokio tasks sleeping until the same second,
# no database). The runs are interleaved (APScheduler, SQLite, PostgreSQL, floor for one size,
# then the next size, then the next round), so a slow minute of the machine falls on all of them.
#
#   bench/compare.sh [--large] [--rounds R]
#
# 1k and 10k jobs; --large adds 100k. R rounds (default 2); each cell is the range over rounds.
# APScheduler is installed with pip into a virtual environment under target/compare-venv.
# PostgreSQL: TICKLER_BENCH_POSTGRES_URL, or a throwaway cluster started here (bench/pg.sh).
# Each run is bounded: 10 minutes and 8 GiB of address space (ulimit -v).
set -euo pipefail
cd "$(dirname "$0")/.."
args="$*"
sizes=(1000 10000)
rounds=2
while [ $# -gt 0 ]; do
    case "$1" in
    --large) sizes+=(100000) ;;
    --rounds)
        rounds="${2:-}"
        if ! [[ "$rounds" =~ ^[1-9][0-9]?$ ]]; then
            echo "bench/compare.sh: --rounds wants a whole number from 1 to 99, found '$rounds'" >&2
            exit 2
        fi
        shift
        ;;
    *) echo "usage: bench/compare.sh [--large] [--rounds R]" >&2; exit 2 ;;
    esac
    shift
done

venv=target/compare-venv
if ! "$venv/bin/python" -c 'import apscheduler' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'APScheduler>=3.10,<4'
fi
aps_version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("APScheduler"))')
cargo bench --bench scheduler --no-run >/dev/null 2>&1 || cargo bench --bench scheduler --no-run

. bench/pg.sh
bench_pg_url

lines=$(mktemp)
bounded() { timeout 600 bash -c 'ulimit -v 8388608; exec "$@"' bounded "$@"; }
tickler_bench() { bounded cargo bench --quiet --bench scheduler -- "$@" 2>/dev/null | grep -E '^(lateness|shortfall) ' || true; }
for round in $(seq "$rounds"); do
    for n in "${sizes[@]}"; do
        echo "round $round/$rounds, $n jobs" >&2
        bounded "$venv/bin/python" bench/apscheduler_lateness.py "$n" --deadline 300 |
            tee -a "$lines" >&2 || true
        tickler_bench lateness --jobs "$n" | tee -a "$lines" >&2
        tickler_bench lateness --jobs "$n" --database "$pg_url" | tee -a "$lines" >&2
        tickler_bench floor --jobs "$n" | tee -a "$lines" >&2
    done
done

echo
echo "bench/compare.sh${args:+ $args} on $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches bench || echo " with uncommitted changes"), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "APScheduler $aps_version (Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')), PostgreSQL $(psql --version 2>/dev/null | awk '{print $3}' || echo '?')"
python3 - "$lines" "$rounds" <<'EOF'
import re, sys
from collections import defaultdict
rows = defaultdict(list)  # (backend, jobs, fire) -> [(p99, fired, total)]
for line in open(sys.argv[1]):
    m = re.match(r"lateness\s+backend=(\S+)\s+jobs=(\d+)\s+fire=(\S+)\s+fired=(\d+)/(\d+)\s+p50=\S+\s+p99=([\d.]+|nan)", line)
    if m:
        b, n, fire, fired, total, p99 = m.groups()
        rows[(b, int(n), fire)].append((float(p99), int(fired), int(total)))

def cell(key):
    v = rows.get(key)
    if not v:
        return "not run", None
    p = [x[0] for x in v]
    lo, hi = min(p), max(p)
    fired = min(x[1] for x in v)
    total = v[0][2]
    text = f"{lo:,.1f} ms" if lo == hi else f"{lo:,.1f}-{hi:,.1f} ms"
    if fired < total:
        text += f" ({fired}/{total} fired)"
    return text, (lo + hi) / 2

def ratio(aps, other):
    if aps is None or other is None or other == 0:
        return ""
    return f"{aps / other:,.1f}x"

print()
print(f"p99 lateness of the job body, {sys.argv[2]} round(s), range over rounds; ratio = APScheduler / tickler")
print()
print("| jobs | fire | APScheduler 3.x (no database) | tickler SQLite | ratio | tickler PostgreSQL | ratio | floor (tokio sleep_until) |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in sorted({k[1] for k in rows}):
    for fire in ("first", "steady"):
        aps, a = cell(("apscheduler", n, fire))
        sq, s = cell(("sqlite", n, fire))
        pg, g = cell(("postgres", n, fire))
        fl, _ = cell(("floor", n, fire))
        print(f"| {n:,} | {fire} | {aps} | {sq} | {ratio(a, s)} | {pg} | {ratio(a, g)} | {fl} |")
rss = defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"peak_rss\s+backend=apscheduler\s+jobs=(\d+)\s+rss=([\d.]+)MiB\s+ready=([\d.]+)s", line)
    if m:
        rss[int(m.group(1))].append((float(m.group(2)), float(m.group(3))))
if rss:
    print()
    print("APScheduler's peak RSS and time to add and start its jobs: " + "; ".join(
        f"{n:,} jobs {max(r for r, _ in v):.0f} MiB, {max(t for _, t in v):.2f} s"
        for n, v in sorted(rss.items())))
EOF
if grep -q '^shortfall ' "$lines"; then
    echo
    echo "Fires that fell short (rows of the slot by status when the benchmark stopped waiting, 120 s):"
    grep '^shortfall ' "$lines"
fi
rm -f "$lines"

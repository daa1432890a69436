#!/usr/bin/env bash
# Counts the system calls and context switches of the reminders benchmark's measured runs
# alone (not the seeding), with perf's control fifo (`TICKLER_BENCH_PERF_CTL`), per binary, and
# prints them per message. The counts include the SMTP sink (a child process): compare binaries
# whose sink is the same. Needs `perf` (Debian's linux-perf) and tracepoints (root).
# Usage: bench/syscalls.sh LABEL=BINARY [LABEL=BINARY...] -- [benchmark arguments...]
#   e.g. bench/syscalls.sh base=/tmp/ab/base head=/tmp/ab/head -- --backend sqlite --settings 32:32:2000 --no-plans
# Each run is bounded by `timeout 900`; run it with nothing else building.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    bins+=("$1")
    shift
done
[ $# -gt 0 ] && shift
[ ${#bins[@]} -gt 0 ] || {
    echo "usage: bench/syscalls.sh LABEL=BIN [LABEL=BIN...] -- [ARGS...]" >&2
    exit 2
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/ctl"
events=context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait
events=$events,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom
events=$events,syscalls:sys_enter_pread64,syscalls:sys_enter_pwrite64
events=$events,syscalls:sys_enter_getrandom
for side in "${bins[@]}"; do
    label="${side%%=*}" bin="${side#*=}"
    TICKLER_BENCH_PERF_CTL="$dir/ctl" timeout 900 perf stat -x, -o "$dir/stat" -D -1 \
        --control "fifo:$dir/ctl" -e "$events" -- "$bin" --bench "$@" >"$dir/out" 2>/dev/null
    # Messages: the `messages` column of each measured run (printed twice: as it goes, whole).
    messages=$(awk '/^(sqlite|postgres) +(plain|quickack)/ { if (seen[$0]++) n += $6 } END { print n }' "$dir/out")
    awk -F, -v label="$label" -v n="$messages" '
        /^[0-9]/ { sub(/^syscalls:sys_enter_/, "", $3); printf "%s %-16s %10d %8.2f per message\n", label, $3, $1, $1 / n }
    ' "$dir/stat"
    echo "$label messages $messages"
done

#!/usr/bin/env bash
# The instructions each part of sending a reminder takes, counted by callgrind (every thread's),
# per binary: figures this VM's noise does not move, unlike its timings.
# - `--bench messages` (the default): the invoice's context, the template's render, the email's
#   building (benches/messages.rs), each less the setup alone.
# - `--bench journal`: on the embedded SQLite, the selection of the pages of invoices the
#   messages are made from and the claim of a page of messages (each less the setup), and the
#   journal's commits of their attempts and ends (less the claim) (benches/journal.rs).
# Usage: bench/instructions.sh [--bench messages|journal] LABEL=BINARY [LABEL=BINARY...]
#   BINARY: `cargo bench --bench NAME --no-run` at a revision, copied aside.
#   e.g. bench/instructions.sh base=/tmp/ab/messages-base head=/tmp/ab/messages-head
# Needs valgrind (Debian's valgrind). Each run does 2,000 messages and is bounded by
# `timeout 600`.
set -euo pipefail
bench=messages
if [ "${1:-}" = "--bench" ]; then
    bench="${2:?--bench messages|journal}"
    shift 2
fi
case "$bench" in
messages) parts="context:none render:none email:none" ;;
journal) parts="select:none claim:none journal:claim" ;;
*)
    echo "--bench: messages or journal, not $bench" >&2
    exit 2
    ;;
esac
[ $# -gt 0 ] || {
    echo "usage: bench/instructions.sh [--bench messages|journal] LABEL=BIN [LABEL=BIN...]" >&2
    exit 2
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
n=2000
refs() { # BINARY PART COUNT: the instructions of one run
    timeout 600 valgrind --tool=callgrind --callgrind-out-file="$dir/out" "$1" --bench "$2" "$3" \
        2>&1 >/dev/null | sed -n 's/.*refs: *//p' | tr -d ,
}
printf '%-8s %-8s %14s\n' label part 'instr/message'
for side in "$@"; do
    label="${side%%=*}" bin="${side#*=}"
    declare -A count=()
    for pair in $parts; do
        part="${pair%%:*}" less="${pair#*:}"
        [ -n "${count[$less]:-}" ] || count[$less]=$(refs "$bin" "$less" "$n")
        count[$part]=$(refs "$bin" "$part" "$n")
        printf '%-8s %-8s %14d\n' "$label" "$part" $(((count[$part] - count[$less]) / n))
    done
    unset count
done

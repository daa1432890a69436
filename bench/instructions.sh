#!/usr/bin/env bash
# The instructions each part of making a reminder's message takes (the `messages` benchmark:
# the invoice's context, the template's render, the email's building), counted by callgrind,
# per binary: figures this VM's noise does not move, unlike its timings.
# Usage: bench/instructions.sh LABEL=BINARY [LABEL=BINARY...]
#   BINARY: `cargo bench --bench messages --no-run` at a revision, copied aside.
#   e.g. bench/instructions.sh base=/tmp/ab/messages-base head=/tmp/ab/messages-head
# Needs valgrind (Debian's valgrind). Each run does 2,000 messages and is bounded by
# `timeout 600`.
set -euo pipefail
[ $# -gt 0 ] || {
    echo "usage: bench/instructions.sh LABEL=BIN [LABEL=BIN...]" >&2
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
    setup=$(refs "$bin" none "$n")
    for part in context render email; do
        all=$(refs "$bin" "$part" "$n")
        printf '%-8s %-8s %14d\n' "$label" "$part" $(((all - setup) / n))
    done
done

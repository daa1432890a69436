#!/bin/sh
# Regenerates deploy/completions and deploy/man from the CLI, after a command or option
# changed (a test fails while they are stale). The .deb and install.sh ship these files.
set -eu
cd "$(dirname "$0")/.."
run() { cargo run --quiet -- "$@"; }
mkdir -p deploy/completions
run completions bash > deploy/completions/tickler.bash
run completions zsh > deploy/completions/_tickler
run completions fish > deploy/completions/tickler.fish
rm -rf deploy/man
run man deploy/man
echo "regenerated deploy/completions and deploy/man"

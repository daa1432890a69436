#!/bin/sh
# Installs tickler from a release build on a systemd distribution without the .deb (Fedora,
# Arch, ...), as the package does: the binary, the unit, the system user, the config,
# templates and holiday files under /etc/tickler (never overwriting the admin's), completions
# and man pages.
# It enables and starts nothing.
#
#   cargo build --release && sudo deploy/install.sh            install or upgrade
#   sudo deploy/install.sh --uninstall                         remove (keeps /etc/tickler and
#                                                              /var/lib/tickler)
#
# PREFIX (default /usr/local) is where the binary, man pages and completions go; DESTDIR
# stages everything under another root (packaging, tests) and skips the user and systemctl.
# TICKLER_BIN names the binary to install (default target/release/tickler).
set -eu
cd "$(dirname "$0")/.."

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
BIN="${TICKLER_BIN:-target/release/tickler}"
unit_dir="$DESTDIR/etc/systemd/system"
etc="$DESTDIR/etc/tickler"

fail() { echo "install.sh: $*" >&2; exit 1; }

if [ "${1:-}" = --uninstall ]; then
    [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 \
        && systemctl disable --now tickler.service >/dev/null 2>&1 || true
    rm -f "$DESTDIR$PREFIX/bin/tickler" "$unit_dir/tickler.service" \
        "$DESTDIR/usr/lib/sysusers.d/tickler.conf" \
        "$DESTDIR$PREFIX/share/bash-completion/completions/tickler" \
        "$DESTDIR$PREFIX/share/zsh/site-functions/_tickler" \
        "$DESTDIR$PREFIX/share/fish/vendor_completions.d/tickler.fish"
    rm -f "$DESTDIR$PREFIX"/share/man/man1/tickler.1 "$DESTDIR$PREFIX"/share/man/man1/tickler-*.1
    [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload || true
    echo "tickler removed; /etc/tickler and /var/lib/tickler are kept (remove them by hand)"
    exit 0
fi
[ -n "${1:-}" ] && fail "unknown argument \`$1\`; use no argument to install, or --uninstall"
[ -x "$BIN" ] || fail "no binary at $BIN: run \`cargo build --release\` first, or set TICKLER_BIN"

install -D -m 0755 "$BIN" "$DESTDIR$PREFIX/bin/tickler"
# The unit names /usr/bin/tickler; point it at this PREFIX.
install -d "$unit_dir"
sed "s|/usr/bin/tickler|$PREFIX/bin/tickler|g" systemd/tickler.service > "$unit_dir/tickler.service"
chmod 0644 "$unit_dir/tickler.service"
install -D -m 0644 systemd/tickler.sysusers.conf "$DESTDIR/usr/lib/sysusers.d/tickler.conf"

# The config, templates and holiday files are the admin's once installed: an upgrade leaves
# them and puts the shipped version next to a changed one as `.new`.
install -d -m 0755 "$etc" "$etc/templates" "$etc/holidays"
put_conf() { # SOURCE TARGET
    if [ ! -e "$2" ]; then
        install -m 0644 "$1" "$2"
    elif ! cmp -s "$1" "$2"; then
        install -m 0644 "$1" "$2.new"
        echo "kept $2 (yours); the shipped one is $2.new"
    fi
}
put_conf config.toml "$etc/config.toml"
for t in templates/*.j2; do
    put_conf "$t" "$etc/templates/$(basename "$t")"
done
for h in holidays/*.toml; do
    put_conf "$h" "$etc/holidays/$(basename "$h")"
done

install -D -m 0644 deploy/completions/tickler.bash "$DESTDIR$PREFIX/share/bash-completion/completions/tickler"
install -D -m 0644 deploy/completions/_tickler "$DESTDIR$PREFIX/share/zsh/site-functions/_tickler"
install -D -m 0644 deploy/completions/tickler.fish "$DESTDIR$PREFIX/share/fish/vendor_completions.d/tickler.fish"
install -d "$DESTDIR$PREFIX/share/man/man1"
install -m 0644 deploy/man/*.1 "$DESTDIR$PREFIX/share/man/man1/"

if [ -z "$DESTDIR" ]; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/tickler.conf
    elif ! getent passwd tickler >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/tickler --no-create-home \
            --shell /usr/sbin/nologin tickler
    fi
    command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload || true
fi
echo "tickler installed in $DESTDIR$PREFIX; edit /etc/tickler/config.toml, then: systemctl enable --now tickler"

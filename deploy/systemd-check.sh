#!/bin/bash
# The service drill under a real systemd: builds the .deb, makes a Debian bookworm root with
# mmdebstrap, boots systemd as PID 1 in it with systemd-nspawn, installs the .deb with apt and
# walks an operator's day, printing one PASS or FAIL line per step:
#
#   install        the unit is installed, neither enabled nor started
#   start          `systemctl enable --now` reaches READY (active), LimitNOFILE applied
#   hostname       tickler_instances records the container's host name, not `localhost`
#   reload-ok      `systemctl reload` of a valid config succeeds and is taken
#   reload-broken  `systemctl reload` of a broken config fails; the old schedule keeps running
#   journal        the plain `journalctl -u tickler` view of a run names its job
#   kill-9         kill -9 of the daemon: systemd ends the job's whole tree (`sh -c "sleep
#                  300; ..."`), restarts the service, and the run is `abandoned`
#   stop           `systemctl stop` lets a running job have shutdown_grace, then ends it
#                  (`interrupted`), well within TimeoutStopSec
#   upgrade        reinstalling the package (postinst with $2 set) restarts a running service
#                  and keeps it enabled
#   purge          `apt purge` removes the wants link and /etc/tickler/env; a reinstall comes
#                  back disabled
#
#   sudo deploy/systemd-check.sh          (root; the network must reach Debian's mirrors)
#
# It installs what it needs when missing (cargo-deb from crates.io; mmdebstrap and
# systemd-container with apt). The bookworm root is cached as a tarball in
# $TICKLER_CHECK_CACHE (default /var/tmp/tickler-check); each run unpacks a fresh copy and
# removes it, and the container, at the end. TICKLER_CHECK_DEB=PATH skips the build and uses
# that package; TICKLER_CHECK_DROPIN="$(printf '[Service]\nKillMode=process')" tries the
# steps with a drop-in. Every wait has a deadline and the whole script
# runs under `timeout`. It exits 0 when every step passed. Not run in CI (it needs root, a
# Debian mirror and several minutes).
set -euo pipefail

LIMIT="${TICKLER_CHECK_TIMEOUT:-2400}"
if [ -z "${TICKLER_CHECK_UNDER_TIMEOUT:-}" ]; then
    TICKLER_CHECK_UNDER_TIMEOUT=1 exec timeout --kill-after=30 "$LIMIT" "$0" "$@"
fi
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "systemd-check.sh: run it as root (it boots a container)" >&2; exit 1; }

CACHE="${TICKLER_CHECK_CACHE:-/var/tmp/tickler-check}"
WORK="$(mktemp -d /var/tmp/tickler-check.XXXXXX)"
ROOT="$WORK/root"
NSPAWN_PID=""
LEADER=""
FAILED=0

log() { echo "--- $*" >&2; }

cleanup() {
    set +e
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # SIGTERM asks the container's systemd to power off; SIGKILL if it does not in time.
        kill -TERM "$NSPAWN_PID"
        for _ in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID"
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    # Only our own directory, and only once nothing is mounted below it.
    if [ -d "$WORK" ] && ! grep -q " $WORK/" /proc/self/mounts; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

result() { # NAME OK DETAIL
    if [ "$2" = 0 ]; then
        printf 'PASS %-14s %s\n' "$1" "$3"
    else
        printf 'FAIL %-14s %s\n' "$1" "$3"
        FAILED=$((FAILED + 1))
    fi
}

# Runs a command inside the booted container (its mount, pid, network... namespaces).
ct() {
    nsenter --target "$LEADER" --mount --uts --ipc --net --pid --cgroup -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root "$@"
}
ctsh() { ct sh -c "$1"; }

# Polls `sh -c CHECK` in the container every 0.5 s until it succeeds; 1 after SECONDS.
wait_ct() { # SECONDS CHECK
    local end=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$end" ]; do
        ctsh "$2" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

sql() { ct sqlite3 -batch /var/lib/tickler/tickler.db "$1"; }
main_pid() { ct systemctl show -P MainPID tickler.service; }

# --- tools and the package -------------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb"
    cargo install --locked cargo-deb
fi
if [ -n "${TICKLER_CHECK_DEB:-}" ]; then
    DEB="$TICKLER_CHECK_DEB" # a package built before, to go over the steps again quickly
else
    log "building the .deb"
    cargo deb >&2
    DEB="$(ls -t target/debian/tickler_*.deb | head -n1)"
fi
log "package: $DEB"

# --- the Debian root and the boot ------------------------------------------------------
mkdir -p "$CACHE"
# A directory left by an earlier version of this script (mmdebstrap guesses the format from the
# name, and `.part` made it write a directory) is not a cache.
[ -d "$CACHE/bookworm.tar" ] && rm -rf "$CACHE/bookworm.tar"
if [ ! -s "$CACHE/bookworm.tar" ]; then
    log "making a Debian bookworm root with mmdebstrap"
    rm -rf "$CACHE/bookworm.tar.part"
    mmdebstrap --variant=minbase --format=tar \
        --include=systemd,systemd-sysv,dbus,procps,sqlite3,adduser \
        bookworm "$CACHE/bookworm.tar.part" >&2
    mv "$CACHE/bookworm.tar.part" "$CACHE/bookworm.tar"
fi
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$CACHE/bookworm.tar"
cp "$DEB" "$ROOT/root/tickler.deb"
echo tickler-drill >"$ROOT/etc/hostname"

log "booting systemd in systemd-nspawn"
systemd-nspawn --quiet --register=no --keep-unit --boot --console=passive \
    --machine=tickler-drill --directory="$ROOT" >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
end=$((SECONDS + 60))
while [ -z "$LEADER" ] && [ "$SECONDS" -lt "$end" ]; do
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    # The container's PID 1: a `systemd` that is pid 1 in its own namespace, below nspawn.
    for p in $(pgrep -x systemd || true); do
        nspid="$(awk '/^NSpid:/ { print $NF }' "/proc/$p/status" 2>/dev/null || true)"
        parent="$(ps -o ppid= -p "$p" | tr -d ' ')"
        grandparent="$(ps -o ppid= -p "$parent" 2>/dev/null | tr -d ' ')"
        if [ "$nspid" = 1 ] && { [ "$parent" = "$NSPAWN_PID" ] || [ "$grandparent" = "$NSPAWN_PID" ]; }; then
            LEADER=$p
        fi
    done
    [ -n "$LEADER" ] || sleep 0.5
done
if [ -z "$LEADER" ]; then
    echo "FAIL boot           systemd did not start in the container:" >&2
    cat "$WORK/console.log" >&2
    exit 1
fi
end=$((SECONDS + 90))
state=""
while [ "$SECONDS" -lt "$end" ]; do
    state="$(ct systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running | degraded) break ;; esac
    sleep 0.5
done
case "$state" in
running | degraded) log "container up ($state): $(ct systemctl --version | head -n1)" ;;
*)
    echo "FAIL boot           the container's systemd did not finish booting ($state)" >&2
    exit 1
    ;;
esac

# From here on a failed check is a FAIL line, not the end of the drill.
set +e

# --- install ---------------------------------------------------------------------------
ctsh "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/tickler.deb" >"$WORK/apt.log" 2>&1 || {
    cat "$WORK/apt.log" >&2
    result install 1 "apt-get install failed"
    exit 1
}
enabled="$(ct systemctl is-enabled tickler 2>/dev/null || true)"
active="$(ct systemctl is-active tickler 2>/dev/null || true)"
[ "$enabled" = disabled ] && [ "$active" = inactive ]
result install $? "is-enabled: $enabled, is-active: $active"

# The drill's config: a noop every 2 s, a shell job whose grandchild sleeps 300 s, a short
# grace; a secret in /etc/tickler/env, as an admin would put the database password there.
write_config() { # EXTRA_JOBS
    ctsh "cat > /etc/tickler/config.toml" <<EOF
[daemon]
timezone = "UTC"
shutdown_grace = "4s"
heartbeat_interval = "5s"

[[job]]
name = "tick"
kind = "noop"
every = "2s"

[[job]]
name = "sleeper"
kind = "command"
shell = true
command = ["sleep 300; echo done"]
every = "3s"
$1
EOF
}
write_config ""
ctsh "printf 'TICKLER_DRILL_SECRET=hunter2\n' > /etc/tickler/env && chmod 0600 /etc/tickler/env"

# TICKLER_CHECK_DROPIN: a drop-in for the unit, to see how a local override (e.g.
# `[Service]` `KillMode=process`) fares in the same steps.
if [ -n "${TICKLER_CHECK_DROPIN:-}" ]; then
    ctsh "mkdir -p /etc/systemd/system/tickler.service.d && cat > /etc/systemd/system/tickler.service.d/drill.conf && systemctl daemon-reload" <<<"$TICKLER_CHECK_DROPIN"
    log "drop-in: $(echo "$TICKLER_CHECK_DROPIN" | tr '\n' ' ')"
fi

# --- start -----------------------------------------------------------------------------
ct systemctl enable --now tickler >"$WORK/enable.log" 2>&1 || true
active="$(ct systemctl is-active tickler || true)"
status="$(ct systemctl show -P StatusText tickler)"
nofile="$(ct systemctl show -P LimitNOFILE tickler)"
pid="$(main_pid)"
limits="$(ctsh "grep 'Max open files' /proc/$pid/limits" | awk '{print $4"/"$5}')"
[ "$active" = active ] && [ "$(ct systemctl is-enabled tickler)" = enabled ] &&
    [ "$status" = "running 2 job(s)" ] && [ "$nofile" = 8192 ] && [ "$limits" = 8192/8192 ]
result start $? "is-active: $active, status: \"$status\", LimitNOFILE: $nofile ($limits)"

# --- hostname --------------------------------------------------------------------------
host="$(ct hostname)"
recorded="$(sql "SELECT hostname FROM tickler_instances WHERE pid = $pid" || true)"
[ -n "$host" ] && [ "$recorded" = "$host" ] && [ "$recorded" != localhost ]
result hostname $? "container: $host, tickler_instances: ${recorded:-none}"

# --- reload ----------------------------------------------------------------------------
write_config $'[[job]]\nname = "tock"\nkind = "noop"\nevery = "1h"\n'
ct systemctl reload tickler >"$WORK/reload.log" 2>&1
rc=$?
wait_ct 15 "systemctl show -P StatusText tickler | grep -qx 'running 3 job(s); config reloaded'"
taken=$?
[ "$rc" = 0 ] && [ "$taken" = 0 ] && [ "$(main_pid)" = "$pid" ]
result reload-ok $? "systemctl reload: exit $rc; status: \"$(ct systemctl show -P StatusText tickler)\""

ctsh "sed -i 's/every = \"1h\"/every = \"1 fortnight\"/' /etc/tickler/config.toml"
before="$(sql "SELECT COUNT(*) FROM job_execution_logs WHERE job_name = 'tick' AND status = 'succeeded'")"
ct systemctl reload tickler >"$WORK/reload-broken.log" 2>&1
rc=$?
# The old schedule goes on: `tick` runs again after the refused reload.
wait_ct 15 "test \$(sqlite3 /var/lib/tickler/tickler.db \"SELECT COUNT(*) FROM job_execution_logs WHERE job_name = 'tick' AND status = 'succeeded'\") -gt $before"
ticking=$?
active="$(ct systemctl is-active tickler || true)"
why="$(ctsh "journalctl -u tickler -n 20 --no-pager -o cat" | grep -m1 "1 fortnight" || true)"
[ "$rc" != 0 ] && [ "$ticking" = 0 ] && [ "$active" = active ] && [ "$(main_pid)" = "$pid" ]
result reload-broken $? "systemctl reload: exit $rc; still $active, same pid, tick still runs; journal: ${why:-nothing}"
write_config ""
ct systemctl reload tickler

# --- journal ---------------------------------------------------------------------------
line="$(ctsh "journalctl -u tickler --no-pager" | grep -m1 "run finished job=tick status=succeeded" || true)"
[ -n "$line" ]
result journal $? "${line:-no 'run finished job=tick' line in journalctl -u tickler}"

# --- kill -9 ---------------------------------------------------------------------------
wait_ct 20 "pgrep -f -x 'sleep 300' >/dev/null"
run="$(sql "SELECT id FROM job_execution_logs WHERE job_name = 'sleeper' AND status = 'running'")"
old_sleep="$(ct pgrep -f -x 'sleep 300' | tr '\n' ' ')"
old="$(main_pid)"
ct kill -9 "$old"
wait_ct 40 "p=\$(systemctl show -P MainPID tickler); [ \"\$p\" != 0 ] && [ \"\$p\" != $old ] && systemctl is-active -q tickler"
restarted=$?
left=""
for p in $old_sleep; do
    ctsh "ps -o pid=,args= -p $p" >/dev/null 2>&1 && left="$left $p"
done
wait_ct 15 "test \"\$(sqlite3 /var/lib/tickler/tickler.db \"SELECT status FROM job_execution_logs WHERE id = '$run'\")\" = abandoned"
abandoned=$?
# Who ended it: systemd says so in the journal.
killed_by="$(ctsh "journalctl -u tickler --no-pager -o cat" | grep -m1 -E "Killing process [0-9]+ \(sleep\)" || true)"
[ -n "$run" ] && [ -n "$old_sleep" ] && [ "$restarted" = 0 ] && [ -z "$left" ] && [ "$abandoned" = 0 ]
result kill-9 $? "old sleep 300 pid(s) ${old_sleep:-none} left:${left:- none}; restarted: $([ $restarted = 0 ] && echo yes || echo no); run $run: $(sql "SELECT status FROM job_execution_logs WHERE id = '$run'"); journal: ${killed_by:-no kill logged}"

# --- stop within grace -----------------------------------------------------------------
wait_ct 20 "pgrep -f -x 'sleep 300' >/dev/null && sqlite3 /var/lib/tickler/tickler.db \"SELECT 1 FROM job_execution_logs WHERE job_name = 'sleeper' AND status = 'running'\" | grep -q 1"
run="$(sql "SELECT id FROM job_execution_logs WHERE job_name = 'sleeper' AND status = 'running'")"
sleeping="$(ct pgrep -f -x 'sleep 300' | tr '\n' ' ')"
t0=$(date +%s%N)
ct systemctl stop --no-block tickler
sleep 2
# During the grace the job is still running: systemd signalled the daemon only.
during=""
for p in $sleeping; do ctsh "ps -p $p" >/dev/null 2>&1 && during="$during $p"; done
wait_ct 60 "case \$(systemctl show -P ActiveState tickler) in inactive | failed) true ;; *) false ;; esac"
stopped=$?
took_ms=$((($(date +%s%N) - t0) / 1000000))
took="$((took_ms / 1000)).$((took_ms % 1000 / 100))"
after=""
for p in $sleeping; do ctsh "ps -p $p" >/dev/null 2>&1 && after="$after $p"; done
state="$(ct systemctl show -P ActiveState tickler)"
result_status="$(sql "SELECT status FROM job_execution_logs WHERE id = '$run'")"
[ -n "$run" ] && [ -n "$during" ] && [ "$stopped" = 0 ] && [ -z "$after" ] &&
    [ "$state" = inactive ] && [ "$result_status" = interrupted ] &&
    [ "$took_ms" -lt 15000 ]
result stop $? "stopped in ${took}s (grace 4s, TimeoutStopSec 60s); job alive 2s in:${during:- no}; left after:${after:- none}; $state; run: $result_status"

# --- upgrade ---------------------------------------------------------------------------
ct systemctl start tickler
before="$(main_pid)"
ctsh "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /root/tickler.deb" >"$WORK/upgrade.log" 2>&1
wait_ct 30 "p=\$(systemctl show -P MainPID tickler); [ \"\$p\" != 0 ] && [ \"\$p\" != $before ] && systemctl is-active -q tickler"
restarted=$?
enabled="$(ct systemctl is-enabled tickler || true)"
[ "$restarted" = 0 ] && [ "$enabled" = enabled ]
result upgrade $? "main pid $before -> $(main_pid), $(ct systemctl is-active tickler || true), $enabled"

# --- purge -----------------------------------------------------------------------------
ctsh "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tickler" >"$WORK/purge.log" 2>&1
link=/etc/systemd/system/multi-user.target.wants/tickler.service
link_left="$(ctsh "test -L $link && echo yes || echo no")"
env_left="$(ctsh "test -e /etc/tickler/env && echo yes || echo no")"
etc_left="$(ctsh "test -e /etc/tickler && echo yes || echo no")"
ctsh "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/tickler.deb" >"$WORK/reinstall.log" 2>&1
enabled="$(ct systemctl is-enabled tickler 2>/dev/null || true)"
active="$(ct systemctl is-active tickler 2>/dev/null || true)"
[ "$link_left" = no ] && [ "$env_left" = no ] && [ "$enabled" = disabled ] && [ "$active" = inactive ]
result purge $? "wants link left: $link_left, /etc/tickler/env left: $env_left (/etc/tickler: $etc_left); reinstalled: $enabled, $active"

echo "systemd-check: $((10 - FAILED)) passed, $FAILED failed ($(ct systemctl --version | head -n1), Debian $(ct cat /etc/debian_version))"
[ "$FAILED" = 0 ]

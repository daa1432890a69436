"""Issue 17's 100k-job figures apart from fire lateness (that one is
`cargo bench --bench scheduler -- lateness --jobs 100000`, also run by `bench/compare.sh --large`):

- `tickler check`, `tickler list` and `list --format json`: wall time and peak RSS on a config of N
  jobs;
- `tickler run`: start-up to ready (the READY=1 it sends to systemd, caught on a NOTIFY_SOCKET of
  our own), then, after 5 s, RSS, CPU time and wakeups (context switches of all its threads)
  over S seconds, as `cargo bench --bench scheduler -- idle` counts them.

Half the jobs are yearly crons and half daily intervals, none due during the measurement; the
task queue is on, as shipped. Every step is bounded (timeouts, `ulimit -v` 8 GiB); the daemon is
stopped with SIGTERM by its pid.

Usage: python3 bench/large.py BINARY [--jobs N] [--seconds S] [--database URL] [--distinct-crons]
                                [--timeline] [--metrics]
(default 100000 jobs, 90 s: three 30 s heartbeats, one of them with the look for the claims of
stopped processes, so a window holds one whole cycle; a SQLite file in a temporary directory)

`--timeline` also prints, during the window, each 10 ms in which a thread of the daemon was
switched, with the thread's name and count: where an idle daemon's wakeups go, beat by beat.
`--metrics` turns `[http]` on and, after the window, times three scrapes of `/metrics` (wall time
and the daemon's CPU for each) and prints the exposition's size, the daemon's peak RSS during the
three scrapes (`peak`: its high-water mark, reset just before them through
`/proc/PID/clear_refs`), and its RSS just after the third scrape and 2 s later.
"""

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def limit():
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def timed(cmd):
    """Wall seconds and peak RSS (MiB) of a command run to its end (killed after 300 s)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit)
        watchdog = threading.Timer(300, p.kill)
        watchdog.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        watchdog.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {err.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def start(binary, config, d, log, recv_timeout):
    """`tickler run` on `config`, bounded by `limit`, with a NOTIFY_SOCKET of our own in `d` on
    which its READY=1 arrives: (the process, the socket)."""
    notify = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify)
    sock.settimeout(recv_timeout)
    env = dict(os.environ, NOTIFY_SOCKET=notify, TICKLER_LOG=log)
    daemon = subprocess.Popen([binary, "run", "--config", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env, preexec_fn=limit)
    return daemon, sock


def stop(daemon):
    """SIGTERM to the daemon by its pid; SIGKILL if it has not exited within 60 s."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def thread_switches(pid):
    """Context switches of each thread of `pid`: {tid: (name, switches)}."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/status") as f:
                n = sum(int(l.split()[1]) for l in f
                        if l.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")))
            out[task] = (name, n)
        except FileNotFoundError:
            pass
    return out


def timeline(pid, seconds):
    """Prints each 10 ms of `seconds` in which a thread of `pid` was switched."""
    start = time.monotonic()
    before = thread_switches(pid)
    while time.monotonic() - start < seconds:
        time.sleep(0.01)
        now = thread_switches(pid)
        moved = [f"{name}[{tid}]+{n - before.get(tid, (name, 0))[1]}"
                 for tid, (name, n) in sorted(now.items()) if n != before.get(tid, (name, 0))[1]]
        if moved:
            print(f"timeline  {time.monotonic() - start:7.3f}s " + " ".join(moved), flush=True)
        before = now


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))


def proc_numbers(pid):
    rss_kb = status_kb(pid, "VmRSS")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    switches = sum(n for _, n in thread_switches(pid).values())
    return rss_kb, cpu, switches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=90)
    ap.add_argument("--database")
    ap.add_argument("--timeline", action="store_true",
                    help="print each thread's switches, 10 ms at a time, during the window")
    ap.add_argument("--metrics", action="store_true",
                    help="turn [http] on (loopback) and, after the idle window, time three "
                         "scrapes of /metrics and the daemon's CPU for them")
    ap.add_argument("--distinct-crons", action="store_true",
                    help="every cron job its own expression (a yearly minute of its own), "
                         "the worst case for tickler's sharing of parsed patterns")
    args = ap.parse_args()
    n = args.jobs
    with tempfile.TemporaryDirectory() as d:
        url = args.database or f"sqlite://{d}/large.db"
        backend = "postgres" if url.startswith("postgres") else "sqlite"
        if args.distinct_crons:
            backend += ",distinct"
        lines = [f'[daemon]\ndatabase_url = "{url}"\nstate_dir = "{d}"\n\n']
        if args.metrics:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            lines.append(f'[http]\nlisten = "127.0.0.1:{port}"\n\n')
        for i in range(n):
            if i % 2 == 1:
                trigger = 'every = "1d"'
            elif args.distinct_crons:
                k = i // 2
                trigger = (f'schedule = "{k % 60} {k // 60 % 24} {k // 1440 % 28 + 1} '
                           f'{k // 40320 % 12 + 1} *"')
            else:
                trigger = 'schedule = "0 3 1 1 *"'
            lines.append(f'[[job]]\nname = "job-{i}"\nkind = "noop"\n{trigger}\n\n')
        config = os.path.join(d, "config.toml")
        with open(config, "w") as f:
            f.write("".join(lines))

        for verb in (["check"], ["list"], ["list", "--format", "json"]):
            wall, peak = timed([args.binary, *verb, "--config", config])
            name = "list-json" if len(verb) > 1 else verb[0]
            print(f"cli       backend={backend:<8} jobs={n:<6} {name:<5} wall={wall:.2f}s  "
                  f"peak_rss={peak:.1f}MiB")

        t0 = time.monotonic()
        daemon, sock = start(args.binary, config, d, log="warn", recv_timeout=1.0)
        try:
            ready = None
            deadline = t0 + 120
            while ready is None and time.monotonic() < deadline:
                if daemon.poll() is not None:
                    sys.exit(f"the daemon exited during start-up ({daemon.returncode})")
                try:
                    msg = sock.recv(4096).decode()
                except socket.timeout:
                    continue
                if "READY=1" in msg:
                    ready = time.monotonic() - t0
            if ready is None:
                sys.exit("the daemon was not ready within 120 s")
            time.sleep(5)
            _, cpu0, sw0 = proc_numbers(daemon.pid)
            if args.timeline:
                timeline(daemon.pid, args.seconds)
            else:
                time.sleep(args.seconds)
            rss_kb, cpu1, sw1 = proc_numbers(daemon.pid)
            if daemon.poll() is not None:
                sys.exit("the daemon exited during the measurement")
            if args.metrics:
                scrapes = []
                # From here, VmHWM is the peak of the scrapes alone (not start-up's).
                with open(f"/proc/{daemon.pid}/clear_refs", "w") as f:
                    f.write("5")
                for _ in range(3):
                    _, c0, _ = proc_numbers(daemon.pid)
                    t = time.monotonic()
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                timeout=120) as r:
                        size = len(r.read())
                    wall = time.monotonic() - t
                    _, c1, _ = proc_numbers(daemon.pid)
                    scrapes.append(f"{wall:.2f}s/{c1 - c0:.2f}s")
                rss_after, _, _ = proc_numbers(daemon.pid)
                peak_kb = status_kb(daemon.pid, "VmHWM")
                # And as an idle daemon holds it between scrapes.
                time.sleep(2)
                rss_2s, _, _ = proc_numbers(daemon.pid)
                print(f"metrics   backend={backend:<8} jobs={n:<6} wall/cpu={' '.join(scrapes)}  "
                      f"size={size / 1e6:.1f}MB  peak={peak_kb / 1024:.1f}MiB  rss_after={rss_after / 1024:.1f}MiB  "
                      f"rss_2s={rss_2s / 1024:.1f}MiB")
            print(
                f"large     backend={backend:<8} jobs={n:<6} ready={ready:.2f}s  "
                f"rss={rss_kb / 1024:.1f}MiB  cpu={cpu1 - cpu0:.3f}s  "
                f"wakeups={(sw1 - sw0) / args.seconds:.2f}/s"
            )
        finally:
            stop(daemon)


if __name__ == "__main__":
    main()

"""A daemon started after a crash that left N slots `pending` (claimed ahead by a daemon killed
before their second came): how long until it is ready, and until it has adopted and settled every
slot (run, or recorded `missed` under the job's catch-up policy).

The slots are written straight into a SQLite file as a killed daemon leaves them: one `pending`
row per job for today's 00:00 UTC slot, owned by an instance that is not registered (its process
is gone). The config has N `noop` jobs, `every = "1d"`, so each row is the job's latest slot.

Usage: python3 bench/adopt.py BINARY [--jobs N]   (default 100000; SQLite only)

Every wait is bounded (300 s), memory too (`ulimit -v` 8 GiB); the daemon is stopped with SIGTERM
by its pid.
"""

import argparse
import datetime
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

from large import limit, start, stop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--jobs", type=int, default=100_000)
    args = ap.parse_args()
    n = args.jobs
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "adopt.db")
        lines = [f'[daemon]\ndatabase_url = "sqlite://{db}"\nstate_dir = "{d}"\n\n']
        for i in range(n):
            lines.append(f'[[job]]\nname = "job-{i}"\nkind = "noop"\nevery = "1d"\n\n')
        config = os.path.join(d, "config.toml")
        with open(config, "w") as f:
            f.write("".join(lines))
        subprocess.run([args.binary, "migrate", "--config", config], check=True,
                       stdout=subprocess.DEVNULL, timeout=300, preexec_fn=limit)
        today = datetime.datetime.now(datetime.timezone.utc).replace(
            hour=0, minute=0, second=0, microsecond=0)
        slot = today.isoformat()
        con = sqlite3.connect(db, timeout=60)
        with con:
            con.executemany(
                "INSERT INTO job_execution_logs (id, job_name, status, scheduled_for, "
                "\"trigger\", instance) VALUES (?, ?, 'pending', ?, 'schedule', 'gone:1:0')",
                ((str(uuid.uuid4()), f"job-{i}", slot) for i in range(n)))

        t0 = time.monotonic()
        daemon, sock = start(args.binary, config, d, log="error", recv_timeout=0.05)
        try:
            ready = settled = None
            deadline = t0 + 300
            while settled is None and time.monotonic() < deadline:
                if daemon.poll() is not None:
                    sys.exit(f"the daemon exited ({daemon.returncode})")
                try:
                    if "READY=1" in sock.recv(4096).decode() and ready is None:
                        ready = time.monotonic() - t0
                except socket.timeout:
                    pass
                left = con.execute("SELECT count(*) FROM job_execution_logs "
                                   "WHERE status IN ('pending', 'running')").fetchone()[0]
                if left == 0:
                    settled = time.monotonic() - t0
            if settled is None:
                sys.exit(f"slots still pending or running after 300 s (ready={ready})")
            statuses = dict(con.execute("SELECT status, count(*) FROM job_execution_logs "
                                        "WHERE scheduled_for = ? GROUP BY status", (slot,)))
            ready_text = f"{ready:.2f}s" if ready is not None else "not seen"
            print(f"adopt     backend=sqlite   jobs={n:<6} ready={ready_text}  "
                  f"settled={settled:.2f}s  slots={statuses}")
        finally:
            stop(daemon)
            con.close()


if __name__ == "__main__":
    main()

"""APScheduler 3.x's side of bench/compare.sh: N jobs due at the same second, as tickler's
`cargo bench --bench scheduler -- lateness --jobs N` has them.

Each job is a no-op on a cron trigger every 15 s (`second='*/15'`), in the in-memory job store
(APScheduler keeps no run history of its own) and the default thread pool executor, as a web
app embeds it. Lateness is the start of the job body minus its scheduled second, for the first
fire after start-up and the next one (15 s later), as tickler's lines. Prints one line per
fire in the same shape as the Rust benchmark:

  lateness  backend=apscheduler jobs=N fire=first fired=F/N  p50=..ms  p99=..ms  max=..ms
  peak_rss  backend=apscheduler jobs=N  rss=..MiB  ready=..s   (peak RSS; ready = jobs added and started)

Usage: python apscheduler_lateness.py N [--deadline SECONDS]
"""

import argparse
import datetime as dt
import resource
import sys
import threading
import time

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

PERIOD = 15


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs", type=int)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args()
    n = args.jobs

    started = {}  # boundary (epoch second) -> list of lateness in seconds
    lock = threading.Lock()

    def noop():
        now = time.time()
        boundary = int(now) - int(now) % PERIOD
        # A job that started after the next boundary belongs to the earlier one: lateness is
        # never near 15 s unless the scheduler is that far behind, which the deadline reports.
        with lock:
            started.setdefault(boundary, []).append(now - boundary)

    t0 = time.monotonic()
    scheduler = BackgroundScheduler(
        timezone=dt.timezone.utc,
        job_defaults={"misfire_grace_time": 3600, "coalesce": False, "max_instances": 1},
    )
    trigger = CronTrigger(second=f"*/{PERIOD}", timezone=dt.timezone.utc)
    for i in range(n):
        scheduler.add_job(noop, trigger, id=f"job-{i}")
    scheduler.start()
    ready = time.monotonic() - t0

    # The first boundary at least 2 s ahead, as tickler's benchmark measures the first fire
    # after its daemon is ready.
    now = time.time()
    first = int(now) - int(now) % PERIOD + PERIOD
    if first - now < 2:
        first += PERIOD
    fires = [("first", first), ("steady", first + PERIOD)]
    deadline = time.monotonic() + args.deadline
    while time.monotonic() < deadline:
        with lock:
            done = len(started.get(fires[-1][1], []))
        if done >= n:
            break
        time.sleep(0.2)
    scheduler.shutdown(wait=False)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for label, boundary in fires:
        with lock:
            late = sorted(x * 1000.0 for x in started.get(boundary, []))
        # Jobs that did not start by the deadline count as not fired (and are not in p99).
        if late:
            pct = lambda p: late[round((len(late) - 1) * p)]
            figures = f"p50={pct(0.5):.1f}ms  p99={pct(0.99):.1f}ms  max={late[-1]:.1f}ms"
        else:
            figures = "p50=nan  p99=nan  max=nan"
        print(
            f"lateness  backend=apscheduler jobs={n:<6} fire={label:<6} "
            f"fired={len(late)}/{n}  {figures}"
        )
    print(f"peak_rss  backend=apscheduler jobs={n:<6} rss={rss:.1f}MiB  ready={ready:.2f}s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

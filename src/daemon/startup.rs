//! What the daemon does besides its timer loop: the open-file limit raised before anything is
//! opened, the task runner started with its environment, memory given back after start-up and
//! reloads, and the maintenance beat (heartbeat, dead owners, pruning the ledger).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio_util::task::TaskTracker;

use super::shared::Shared;
use super::{fdlimit, orphans};
use crate::config::{self, Config};
use crate::store::{Instance, Store};

/// Raises the soft open-file limit before anything is opened, so that a low default (256 or
/// 1024) does not make jobs, the database and the `[http]` listener fail together with `Too
/// many open files`; the listener then sizes itself to what is left (see [`fdlimit`]).
pub(super) fn raise_file_limit() {
    match fdlimit::raise() {
        Ok(fdlimit::FileLimit {
            soft,
            hard,
            raised_from: Some(from),
        }) => {
            // Job processes get the limit the daemon was given, not the raised one.
            crate::jobs::command::set_child_file_limit(from);
            tracing::info!(from, to = soft, hard, "raised the open-file limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "keeping the open-file limit"),
    }
}

/// What tasks run with under `config`.
pub(super) fn task_env(
    config: &Config,
    store: &Store,
    owner: &Arc<str>,
) -> crate::queue::execute::Env {
    crate::queue::execute::Env {
        store: store.clone(),
        queue: config.queue.clone(),
        notifier: config.notifier.clone(),
        timezone: config.daemon.timezone,
        owner: owner.clone(),
        databases: config.databases.clone(),
    }
}

/// Starts the task runner unless `[queue] enabled = false`. Its claim settings are read once;
/// handlers, retries and templates follow reloads.
pub(super) fn start_task_runner(
    config: &Config,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
) -> Option<Arc<crate::queue::runner::Runner>> {
    let q = &config.queue;
    if !q.enabled {
        tracing::info!("the task runner is off (`[queue] enabled = false`)");
        return None;
    }
    let runner = Arc::new(crate::queue::runner::Runner {
        store: shared.store.clone(),
        owner: shared.instance.clone(),
        clock: shared.clock.clone(),
        env: std::sync::Mutex::new(Arc::new(task_env(config, &shared.store, &shared.instance))),
        concurrency: q.concurrency,
        batch: q.batch,
        lease: q.lease,
        poll: q.poll,
    });
    tracker.spawn(runner.clone().run(
        shared.stopping.clone(),
        shared.interrupt.clone(),
        tracker.clone(),
    ));
    Some(runner)
}

/// Hands memory freed after parsing the config and loading the schedule back to the system, so
/// an idle daemon's resident size is what it keeps, not what start-up once used.
pub(super) fn release_freed_memory() {
    give_back_freed_heap();
    release_startup_code();
}

/// Hands the free pages of the allocator's heaps back to the system (`malloc_trim`). glibc
/// serves a buffer of up to the largest size freed so far (at most 32 MiB) from its heaps, not
/// from a mapping of its own, and a heap keeps its pages when the buffer is freed: what a large
/// transient buffer (a `/metrics` exposition) once took stays resident until trimmed.
pub(crate) fn give_back_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Lets go of the executable's pages that only start-up used (argument parsing, migrations,
/// loading the config and templates, TLS set-up): the kernel counts mapped file pages in the
/// resident size, and start-up touches about 15 MiB of code and read-only data the idle daemon
/// never uses again. `MADV_PAGEOUT` reclaims them from this process; what the daemon runs
/// later is read back on first use (from the page cache, or the file). The pages are read-only
/// copies of the file, so nothing is lost; kernels before 5.4 refuse the advice, and nothing
/// changes. Called after start-up, once the daemon settled, and after each reload.
pub(crate) fn release_startup_code() {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(path)) = (fields.next(), fields.next(), fields.nth(3))
        else {
            continue;
        };
        // Code (`r-x`) and read-only data (`r--`); never a writable mapping.
        if !perms.starts_with("r-") || std::path::Path::new(path) != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: advice on a read-only, file-backed mapping of this executable: its pages
        // are read again from the file when next used; no memory is freed or written.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end.saturating_sub(start),
                libc::MADV_PAGEOUT,
            );
        }
    }
}

/// How often this daemon beats: its heartbeat interval, at least a second.
pub(super) fn beat_interval(daemon: &config::DaemonConfig) -> Duration {
    daemon.heartbeat_interval.max(Duration::from_secs(1))
}

/// A daemon whose heartbeat is older than this is considered gone.
pub(super) fn stale_after(daemon: &config::DaemonConfig) -> TimeDelta {
    TimeDelta::from_std((beat_interval(daemon) * 3).max(Duration::from_secs(30)))
        .unwrap_or(TimeDelta::seconds(30))
}

/// The daemon's beat, a task of its own for as long as the timer loop runs: every heartbeat
/// interval (the first at once) it wakes the heartbeat (`pulse`, see [`maintenance`]) and the
/// timer loop (`Shared::beat`) together, on one timerfd: an idle daemon wakes once a beat,
/// where tokio's timers of the heartbeat and of the loop's 30 s clock check woke it three
/// times each (`time::Alarm`). It waits on nothing else, so the loop's wakeups depend neither
/// on the database nor on the heartbeat's task. A beat that comes while the last one still
/// runs waits for it (at most one is kept).
pub(super) async fn beat_clock(
    shared: Arc<Shared>,
    pulse: Arc<tokio::sync::Notify>,
    interval: Duration,
) {
    let mut alarm = crate::time::Alarm::default();
    let mut next = std::time::Instant::now();
    loop {
        alarm.sleep_until(next).await;
        shared.beat.notify_one();
        pulse.notify_one();
        // On the grid while on time; an interval from now after a late wake (a starved or
        // stopped process).
        let now = std::time::Instant::now();
        next += interval;
        if next <= now {
            next = now + interval;
        }
    }
}

/// Heartbeat, orphan detection and history pruning, in the background, one round each time
/// [`beat_clock`] wakes `pulse`.
pub(super) async fn maintenance(
    shared: Arc<Shared>,
    tracker: TaskTracker,
    me: Instance,
    daemon: config::DaemonConfig,
    pulse: Arc<tokio::sync::Notify>,
) {
    let stale = stale_after(&daemon);
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut beats: u64 = 0;
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        // A failed heartbeat is tried again within a second; the beats that come meanwhile
        // are taken by the retries, not kept to run at once after them.
        match retry_at.take() {
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = pulse.notified() => {}
            },
            None => pulse.notified().await,
        }
        let now = shared.clock.now();
        let loop_age = shared.loop_tick.lock().expect("loop tick lock").elapsed();
        let loop_at = TimeDelta::from_std(loop_age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age));
        match shared.store.heartbeat(&me, now, loop_at).await {
            Err(e) => {
                // Soon, so other replicas do not take this one for gone once the database is
                // back; logged once per outage.
                if down_since.is_none() {
                    tracing::warn!(error = %e, "heartbeat failed; retrying every second");
                    down_since = Some(tokio::time::Instant::now());
                }
                retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                continue;
            }
            Ok(()) => {
                *shared.last_beat.lock().expect("beat lock") = std::time::Instant::now();
                if let Some(t) = down_since.take() {
                    tracing::info!(
                        down_s = t.elapsed().as_secs(),
                        "the database is reachable again"
                    );
                    // Other replicas were cut off too: give them time to beat again before
                    // judging their runs orphaned.
                    quiet_until =
                        Some(tokio::time::Instant::now() + stale.to_std().unwrap_or_default());
                }
            }
        }
        beats += 1;
        // By the second beat start-up is over (the task runner, the listener and the first
        // dead-man check ran too): what they touched once goes back as well.
        if beats == 2 {
            release_startup_code();
        }
        // The WAL is checkpointed every tenth beat (5 min by default), away from claims.
        if beats.is_multiple_of(10)
            && let Err(e) = shared.store.checkpoint().await
        {
            tracing::warn!(error = %e, "SQLite checkpoint failed");
        }
        // Other daemons' orphans are looked for every third beat: a stale heartbeat takes
        // three beats anyway, and an idle daemon should stay asleep.
        if beats % 3 != 1 || quiet_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            continue;
        }
        // A `run-job` or daemon of this host that died is known at once by its pid.
        orphans::look(&shared, &tracker, &me, now - stale).await;
        if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_prune = Some(tokio::time::Instant::now());
            let ok_before =
                now - TimeDelta::from_std(daemon.history_retention).unwrap_or(TimeDelta::MAX);
            let failed_before =
                now - TimeDelta::from_std(daemon.failure_retention).unwrap_or(TimeDelta::MAX);
            match shared
                .store
                .prune(ok_before, failed_before.min(ok_before), 1000)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old runs from job_execution_logs"),
                Err(e) => tracing::warn!(error = %e, "pruning old runs failed"),
            }
        }
    }
}

//! The daemon: start-up (lock, migrate, resolve dead owners, catch up), the timer loop that
//! turns due slots into fires (`timer.rs`), reload (SIGHUP) and graceful shutdown (SIGTERM);
//! `startup.rs` holds the maintenance beat and the task runner's start, `manual.rs` the runs
//! outside the schedule (`run-job`).
//!
//! Signals reach the loop as [`Signal`] messages, so tests drive a daemon in-process; `main`
//! only translates Unix signals into them.

use std::sync::Arc;

use chrono::TimeDelta;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError};
use crate::store::{Store, StoreError};
use crate::time::{Clock, SystemClock};

pub mod alerts;
pub mod deadman;
pub mod fdlimit;
pub mod ledger;
pub mod manual;
pub mod metrics;
pub mod orphans;
pub mod overview;
pub mod runner;
pub mod shared;
mod startup;
pub mod systemd;
mod timer;

pub use manual::{dry_run, run_now};
pub use runner::{Fire, RunSummary, run_fire};
pub use shared::Shared;
pub(crate) use startup::give_back_freed_heap;
use startup::{
    beat_clock, beat_interval, maintenance, raise_file_limit, release_freed_memory, stale_after,
    start_task_runner, task_env,
};
use timer::{
    Listed, Scheduler, ahead_wake, claim_ahead, dispatch_due, idle_cap, log_next_of, reload,
};

/// What the outside world tells a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Re-read the config file (SIGHUP).
    Reload,
    /// Stop gracefully (SIGTERM, SIGINT).
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Edge(EdgeError),
}

/// Why an [`Edge`] could not start (its message is the user's to read).
pub type EdgeError = Box<dyn std::error::Error + Send + Sync>;

/// What serves the daemon to the outside while it runs (the `[http]` listener of `http/`,
/// which the caller hands over in [`Options`]): bound during start-up, once the daemon holds
/// its database, so a port in use stops the start; served once the daemon's shared state
/// exists. The daemon does not know what it serves, and `daemon/` imports nothing of `http/`.
pub trait Edge: Send {
    fn bind(&mut self) -> futures_util::future::BoxFuture<'_, Result<(), EdgeError>>;
    fn serve(self: Box<Self>, shared: Arc<Shared>, tracker: TaskTracker);
}

/// How to run a daemon besides its config.
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// Told once migrations ran and the schedule is loaded.
    pub ready: Option<oneshot::Sender<()>>,
    /// The service manager (systemd) to notify of readiness, reloads, stopping and liveness.
    pub service: systemd::ServiceManager,
    /// The `[http]` listener, bound (`http::bind`), or none.
    pub edge: Option<Box<dyn Edge>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock::default()),
            ready: None,
            service: systemd::ServiceManager::default(),
            edge: None,
        }
    }
}

/// Runs the daemon until a [`Signal::Shutdown`] (or the end of `signals`).
pub async fn run(
    config: Config,
    mut signals: mpsc::Receiver<Signal>,
    options: Options,
) -> Result<(), DaemonError> {
    let clock = options.clock;
    let service = options.service;
    raise_file_limit();
    let store = Store::connect(&config.daemon.database_url).await?;
    let _lock = store.lock_for_daemon()?;
    let mut edge = options.edge;
    if let Some(edge) = &mut edge {
        edge.bind().await.map_err(DaemonError::Edge)?;
    }
    store.migrate().await?;
    let instance = orphans::register(&store).await?;
    let start = clock.now();
    tracing::info!(
        instance = %instance.id, database = %config.daemon.database_url, backend = store.backend_name(),
        jobs = config.jobs.len(), config = %config.path.display(), "tickler started"
    );

    let shared = Shared::new(
        &store,
        &instance,
        clock.clone(),
        config.daemon.max_concurrent,
        &config.lanes,
        &config.jobs,
    );

    let last = store.last_slots().await?;
    let mut scheduler = Scheduler::new();
    let mut lines = Listed::default();
    for spec in &config.jobs {
        let next = match last.get(&*spec.name) {
            Some(l) => spec.trigger.next_after(*l, spec.timezone),
            None => spec.trigger.next_after(start, spec.timezone),
        };
        scheduler.set(spec.clone(), next);
        log_next_of(&mut lines, spec, next);
    }
    lines.end_scheduled();
    shared.set_next_fires(scheduler.board_for(&config.jobs));
    let tracker = TaskTracker::new();
    if let Some(edge) = edge {
        // Only `/metrics` reads it: the ledger is not scanned at start-up without `[http]`.
        match store.last_successes().await {
            Ok(known) => shared.metrics.seed_last_success(known),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the last successful runs")
            }
        }
        edge.serve(shared.clone(), tracker.clone());
    }
    // What stopped processes left: abandoned runs, released messages, adopted waiting slots.
    orphans::resolve(
        &shared,
        &tracker,
        &instance,
        start - stale_after(&config.daemon),
        true,
    )
    .await;
    // The beat's interval is the one read at start-up (a reload keeps it), and so is the
    // loop's own cap.
    let interval = beat_interval(&config.daemon);
    let idle = idle_cap(interval);
    let pulse = Arc::new(tokio::sync::Notify::new());
    let beat = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(beat_clock(
        shared.clone(),
        pulse.clone(),
        interval,
    )));
    let background = tokio::spawn(maintenance(
        shared.clone(),
        tracker.clone(),
        instance.clone(),
        config.daemon.clone(),
        pulse,
    ));
    release_freed_memory();
    if let Some(ready) = options.ready {
        let _ = ready.send(());
    }
    service.ready(&format!("running {} job(s)", config.jobs.len()));
    let watchdog_every = service.watchdog_every();
    let mut last_ping = clock.monotonic();

    let runner = start_task_runner(&config, &shared, &tracker);
    let mut config = config;
    let mut prev = (clock.now(), clock.monotonic());
    let mut next_deadline_check = clock.now();
    // The second whose fires were last claimed ahead.
    let mut ahead_for = None;
    let stale = stale_after(&config.daemon);
    loop {
        let now = clock.now();
        let mono = clock.monotonic();
        let elapsed = TimeDelta::from_std(mono.saturating_sub(prev.1)).unwrap_or_default();
        let drift = now - (prev.0 + elapsed);
        if drift > TimeDelta::seconds(2) {
            tracing::warn!(
                forward_s = drift.num_seconds(),
                "the wall clock jumped forward; slots it skipped follow each job's catch-up policy"
            );
        } else if drift < TimeDelta::seconds(-2) {
            tracing::warn!(
                back_s = -drift.num_seconds(),
                "the wall clock stepped back; no slot runs twice"
            );
        }
        if drift.abs() > TimeDelta::seconds(2) {
            // The task runner sleeps on a timer set from the old wall time: it reads it again.
            crate::queue::runner::wake();
        }
        prev = (now, mono);

        dispatch_due(&shared, &mut scheduler, &tracker, now).await;
        if let Some(next) = scheduler.next_wake_and_lead()
            && ahead_wake(next, clock.now(), ahead_for).0
        {
            let at = next.0;
            ahead_for = Some(at);
            claim_ahead(&shared, &mut scheduler, &tracker, at, stale).await;
        }
        *shared.loop_tick.lock().expect("loop tick lock") = std::time::Instant::now();
        if now >= next_deadline_check && alerts::check_deadlines(shared.clone(), &tracker, now) {
            next_deadline_check =
                now + TimeDelta::from_std(alerts::CHECK_EVERY).unwrap_or_default();
        }

        let mut cap = idle;
        // The watchdog is pinged from this loop, so a loop stuck anywhere is restarted.
        if let Some(every) = watchdog_every {
            let mono = clock.monotonic();
            if mono.saturating_sub(last_ping) >= every {
                service.watchdog();
                last_ping = mono;
            }
            cap = cap.min(every);
        }
        let wake = match scheduler.next_wake_and_lead() {
            Some(next) => ahead_wake(next, clock.now(), ahead_for).1,
            None => now + cap,
        };
        tokio::select! {
            _ = clock.sleep_until(wake, cap) => {}
            _ = shared.beat.notified() => {}
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => {
                    service.reloading();
                    match reload(&config, &mut scheduler, &shared, clock.now()) {
                        Some(new) => {
                            if let Some(runner) = &runner {
                                runner.set_env(task_env(&new, &store, &shared.instance));
                            }
                            shared.set_jobs(&new.jobs, scheduler.board_for(&new.jobs));
                            service.ready(&format!("running {} job(s); config reloaded", new.jobs.len()));
                            config = new;
                        }
                        None => service.ready(&format!(
                            "running {} job(s); the last reload was refused (see the log)",
                            config.jobs.len()
                        )),
                    }
                    release_freed_memory();
                }
                Some(Signal::Shutdown) | None => break,
            },
        }
    }

    // Shutdown: no new fires, running ones get the grace period, then are interrupted.
    shared.stopping.cancel();
    tracker.close();
    let in_flight = shared.in_flight();
    service.stopping(&format!("stopping: waiting for {in_flight} running job(s)"));
    tracing::info!(in_flight, grace = ?config.daemon.shutdown_grace, "shutting down: waiting for running jobs");
    if tokio::time::timeout(config.daemon.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace ran out: interrupting the jobs still running");
        shared.interrupt.cancel();
        // Fires waiting for an unreachable database to take their claims stop waiting too.
        shared.ledger.give_up();
        tracker.wait().await;
    }
    // Alert sends waiting to be tried again make their last try now.
    shared.alerts.settled().await;
    shared
        .ledger
        .flush_within(
            config.daemon.shutdown_grace,
            "the database is still unreachable: runs not yet recorded are lost",
        )
        .await;
    background.abort();
    drop(beat);
    if let Err(e) = store.deregister(&instance.id).await {
        tracing::warn!(error = %e, "could not deregister this daemon");
    }
    store.close().await;
    tracing::info!("tickler stopped");
    Ok(())
}

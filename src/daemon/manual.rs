//! Runs outside the schedule: `tickler run-job` (each job once, now, recorded `manual`),
//! `run-job --dry-run` (nothing sent, changed or recorded), and a running daemon's manual runs
//! (the `[http]` trigger: [`start`], then optionally [`wait`] for the run's end).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::runner::{Fire, RunSummary, run_fire};
use super::shared::Shared;
use super::{DaemonError, orphans};
use crate::config::{Config, JobSpec};
use crate::store::{HistoryFilter, RunRow, RunTrigger, Status, Store};
use crate::time::{Clock, SystemClock};

/// `tickler run-job --dry-run`: runs each job's body once with `dry_run` set, outside the
/// ledger, so it reports what it would send and change while sending and changing nothing.
pub async fn dry_run(
    config: &Config,
    names: &[Arc<str>],
) -> Result<
    Vec<(
        Arc<str>,
        Result<crate::jobs::Outcome, crate::jobs::JobError>,
    )>,
    DaemonError,
> {
    let store = Store::connect(&config.daemon.database_url).await?;
    store.migrate().await?;
    let mut results = vec![];
    let jobs = config.jobs_by_name();
    for name in names {
        let Some(spec) = jobs.get(&**name) else {
            continue;
        };
        let now = Utc::now();
        let ctx = crate::jobs::RunContext {
            job_name: spec.name.clone(),
            scheduled_for: now,
            attempt: 1,
            store: store.clone(),
            now,
            timezone: spec.timezone,
            notifier: spec.notifier.clone(),
            dry_run: true,
            task: None,
            instance: Arc::from("dry-run"),
            run_id: None,
            databases: spec.databases.clone(),
            send_window: spec.send_window.clone(),
        };
        let result = match tokio::time::timeout(spec.timeout, spec.job.run(&ctx)).await {
            Ok(r) => r,
            Err(_) => Err(crate::jobs::JobError::fatal(format!(
                "timed out after {}",
                humantime::format_duration(spec.timeout)
            ))),
        };
        results.push((name.clone(), result));
    }
    store.close().await;
    Ok(results)
}

/// Runs jobs now, in this process, recorded with `trigger = 'manual'` (`tickler run-job`).
pub async fn run_now(
    config: &Config,
    names: &[Arc<str>],
) -> Result<Vec<(Arc<str>, Option<RunSummary>)>, DaemonError> {
    let jobs = config.jobs_by_name();
    let fires: Vec<(Arc<JobSpec>, Option<DateTime<Utc>>)> = names
        .iter()
        .filter_map(|name| jobs.get(&**name).map(|spec| (Arc::clone(spec), None)))
        .collect();
    let ran = in_process(config, RunTrigger::Manual, fires).await?;
    Ok(ran
        .into_iter()
        .map(|(spec, _, summary)| (spec.name.clone(), summary))
        .collect())
}

/// `tickler backfill`: runs past slots of `spec` in this process, oldest first, each with its
/// own `scheduled_for` and `trigger = 'backfill'`, under the job's overlap policy (a run of the
/// job on the daemon counts: under `skip` the slot is recorded `skipped`, under `queue` it
/// waits). Returns each slot with how it ended (`None`: not run, e.g. another backfill holds
/// it).
pub async fn backfill(
    config: &Config,
    spec: &Arc<JobSpec>,
    slots: &[DateTime<Utc>],
) -> Result<Vec<(DateTime<Utc>, Option<RunSummary>)>, DaemonError> {
    let fires = slots.iter().map(|s| (spec.clone(), Some(*s))).collect();
    let ran = in_process(config, RunTrigger::Backfill, fires).await?;
    Ok(ran
        .into_iter()
        .map(|(_, slot, summary)| (slot, summary))
        .collect())
}

/// Runs fires one after the other in this process (a CLI command), as a daemon would, with
/// its own instance row, heartbeat and signal handling; `None` as the slot means "now".
async fn in_process(
    config: &Config,
    trigger: RunTrigger,
    fires: Vec<(Arc<JobSpec>, Option<DateTime<Utc>>)>,
) -> Result<Vec<(Arc<JobSpec>, DateTime<Utc>, Option<RunSummary>)>, DaemonError> {
    let store = Store::connect(&config.daemon.database_url).await?;
    store.migrate().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    // A killed `run-job` or daemon of this host: its runs are abandoned (and alerted) and its
    // messages released (below) before this run claims anything.
    let instance = orphans::register(&store).await?;
    let shared = Shared::new(
        &store,
        &instance,
        clock.clone(),
        config.daemon.max_concurrent,
        &config.lanes,
        &config.jobs,
    );
    let resolving = TaskTracker::new();
    orphans::resolve(
        &shared,
        &resolving,
        &instance,
        DateTime::<Utc>::UNIX_EPOCH,
        false,
    )
    .await;
    // A long manual run keeps its row alive for the daemon's orphan check.
    let beat = {
        let (store, me, every) = (
            store.clone(),
            instance.clone(),
            config.daemon.heartbeat_interval,
        );
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
            loop {
                ticker.tick().await;
                let _ = store.heartbeat(&me, Utc::now(), None).await;
            }
        })
    };
    // Ctrl-C or SIGTERM interrupts the runs (a command's process group included) and records
    // them `interrupted`, instead of leaving rows `running`.
    let (interrupt, stopping, ledger) = (
        shared.interrupt.clone(),
        shared.stopping.clone(),
        shared.ledger.clone(),
    );
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("interrupted: stopping the manual runs");
            stopping.cancel();
            interrupt.cancel();
            // A claim waiting for an unreachable database stops waiting.
            ledger.give_up();
        }
    });
    let mut results = vec![];
    for (spec, slot) in fires {
        if shared.stopping.is_cancelled() {
            break;
        }
        if trigger == RunTrigger::Backfill {
            // The overlap policy sees the daemon's runs of the job as another replica's.
            if let Ok(running) = store.running_jobs(&instance.id).await {
                *shared.running_elsewhere.lock().expect("running lock") = running;
            }
        }
        let slot = slot.unwrap_or_else(|| clock.now());
        let fire = Fire::new(spec.clone(), slot, trigger);
        results.push((spec, slot, run_fire(shared.clone(), fire).await));
    }

    resolving.close();
    resolving.wait().await;
    // An alert whose send failed gets its first retry, then one last try, so a manual run
    // does not wait out the whole retry schedule.
    if tokio::time::timeout(Duration::from_secs(10), shared.alerts.settled())
        .await
        .is_err()
    {
        shared.stopping.cancel();
        shared.alerts.settled().await;
    }
    shared
        .ledger
        .flush_within(
            Duration::from_secs(60),
            "the database is unreachable: the end of the run is not recorded",
        )
        .await;
    beat.abort();
    signals.abort();
    let _ = store.deregister(&instance.id).await;
    store.close().await;
    Ok(results)
}

/// A manual run started in a running daemon by [`start`]: its id and slot are known before it
/// runs, so a caller can answer with them at once.
pub struct Started {
    pub id: Uuid,
    pub slot: DateTime<Utc>,
    handle: JoinHandle<Option<RunSummary>>,
}

/// How [`wait`] ended.
#[derive(Debug)]
pub enum Waited {
    /// The run ended: its ledger row, as written.
    Ended(Box<RunRow>),
    /// It is still pending or running after the patience given.
    Running,
    /// It never ran: the daemon began to stop before it started, or its slot was taken.
    NotRun,
    /// The daemon began to stop while the run was still going (it goes on within the
    /// shutdown grace; its row says how it ended).
    Stopping,
}

/// Starts a manual run of `spec` now, among the daemon's fires (the shutdown waits for it as
/// for any other), recorded with `trigger = 'manual'`.
pub fn start(shared: &Arc<Shared>, tracker: &TaskTracker, spec: Arc<JobSpec>) -> Started {
    let id = Uuid::now_v7();
    let slot = shared.clock.now();
    let mut fire = Fire::new(spec, slot, RunTrigger::Manual);
    fire.id = Some(id);
    let shared = shared.clone();
    let handle = tracker.spawn(async move { run_fire(shared, fire).await });
    Started { id, slot, handle }
}

/// Waits up to `patience` for the run `started` to end and reads its ledger row. Woken by
/// the end of each run (and by the end of the run's task, when it never ran), never by a
/// fixed poll; a shutdown of the daemon ends the wait at once.
pub async fn wait(shared: &Shared, started: Started, patience: Duration) -> Waited {
    let deadline = tokio::time::Instant::now() + patience;
    let mut handle = Some(started.handle);
    loop {
        // Listening before reading: an end between the read and the wait still wakes it.
        let ended = shared.run_ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if let Some(row) = ended_row(shared, started.id).await {
            return Waited::Ended(Box::new(row));
        }
        tokio::select! {
            biased;
            _ = shared.stopping.cancelled() => return Waited::Stopping,
            _ = tokio::time::sleep_until(deadline) => return Waited::Running,
            r = async { handle.as_mut().expect("guarded").await }, if handle.is_some() => {
                handle = None;
                if let Ok(None) = r {
                    return Waited::NotRun;
                }
            }
            _ = &mut ended => {}
        }
        // A run's end is handed to the ledger writer before it is written: wait until it is.
        tokio::select! {
            _ = shared.ledger.flush() => {}
            _ = shared.stopping.cancelled() => return Waited::Stopping,
            _ = tokio::time::sleep_until(deadline) => return Waited::Running,
        }
    }
}

/// The ledger row of run `id` once it is no longer `pending` or `running`.
async fn ended_row(shared: &Shared, id: Uuid) -> Option<RunRow> {
    let filter = HistoryFilter {
        job: None,
        status: None,
        limit: 1,
        run: Some(id),
    };
    match shared.store.history(&filter).await {
        Ok(rows) => rows
            .into_iter()
            .find(|r| Status::parse(&r.status).is_some_and(|s| !s.is_open())),
        Err(e) => {
            tracing::warn!(run_id = %id, error = %e, "cannot read the run's row while waiting for its end");
            None
        }
    }
}

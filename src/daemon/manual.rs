//! Runs outside the schedule: `tickler run-job` (each job once, now, recorded `manual`) and
//! `run-job --dry-run` (nothing sent, changed or recorded).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::task::TaskTracker;

use super::runner::{Fire, RunSummary, run_fire};
use super::shared::Shared;
use super::{DaemonError, orphans};
use crate::config::Config;
use crate::store::{RunTrigger, Store};
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
    for name in names {
        let Some(spec) = config.job(name) else {
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
                let _ = store.heartbeat(&me, Utc::now()).await;
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
    for name in names {
        let Some(spec) = config.job(name) else {
            continue;
        };
        let fire = Fire::new(spec.clone(), clock.now(), RunTrigger::Manual);
        results.push((name.clone(), run_fire(shared.clone(), fire).await));
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

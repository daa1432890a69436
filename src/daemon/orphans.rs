//! The claims of processes that died (DESIGN.md invariants 3 and 4), resolved by whichever
//! tickler process finds them: a daemon at start-up and on its heartbeat, and any command
//! that opens the store on the same host (`tickler history` after a killed `run-job`).
//!
//! - A process of this host whose pid is gone is deregistered at once; one of another host is
//!   judged by its heartbeat alone.
//! - Its `running` slots become `abandoned` (and alert like failures); what is left of their
//!   commands' process groups on this host is ended.
//! - Its `pending` slots (waiting to be caught up, queued) are adopted by a daemon and run or
//!   recorded under each job's catch-up policy.
//! - Its messages never handed to a provider are released (`failed`: a later run sends them);
//!   those that may have reached the provider become `unknown`, never resent.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::task::TaskTracker;

use super::runner::{Fire, record_only};
use super::shared::Shared;
use crate::jobs::command::{GroupRecord, end_recorded_groups, process_alive};
use crate::store::claims::Adopted;
use crate::store::{Finish, Instance, Orphan, Status, Store, StoreError};
use crate::time::{Clock, SystemClock};

/// Deregisters the daemons and `run-job` processes of this host whose process is gone (a
/// kill -9, a crash), so their claims are resolved now rather than when their heartbeat goes
/// stale. Processes of other hosts are judged by their heartbeat alone. Returns how many.
/// Registers this process in `tickler_instances` and forgets the tickler processes of its host
/// that are gone, whose claims are resolved next: what a daemon and a `run-job` do first.
pub async fn register(store: &Store) -> Result<Instance, StoreError> {
    let instance = Instance::current()?;
    store.register_instance(&instance).await?;
    forget_dead_processes(store, &instance).await?;
    Ok(instance)
}

pub async fn forget_dead_processes(store: &Store, me: &Instance) -> Result<usize, StoreError> {
    forget_dead_among(store, me, store.instances().await?).await
}

/// [`forget_dead_processes`] among `instances`, as read.
async fn forget_dead_among(
    store: &Store,
    me: &Instance,
    instances: Vec<(String, String, i64)>,
) -> Result<usize, StoreError> {
    let mut forgotten = 0;
    for (id, hostname, pid) in instances {
        if *id != *me.id && hostname == me.hostname && !process_alive(pid) {
            tracing::info!(instance = %id, pid, "a previous tickler process of this host is gone");
            store.deregister(&id).await?;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// What a command does when it opens the store: the tickler processes of this host whose pid
/// is gone are deregistered, and the claims of every deregistered owner resolved at once: runs
/// `abandoned` (alerted, their leftover process groups ended), messages released or
/// `unknown`. Waiting slots stay for a daemon to adopt (only a daemon runs scheduled fires).
/// Owners that are registered are left alone, however old their heartbeat: a command does not
/// judge another host's daemon.
pub async fn resolve_local(
    store: &Store,
    config: &crate::config::Config,
) -> Result<(), StoreError> {
    let me = Instance::current()?;
    forget_dead_processes(store, &me).await?;
    let now = Utc::now();
    let gone = DateTime::<Utc>::UNIX_EPOCH;
    let runs = store.abandon_orphans(&me.id, gone, now).await?;
    let released = store.release_dead_messages(gone, now).await?;
    if released.released + released.unknown > 0 {
        tracing::warn!(
            released = released.released,
            unknown = released.unknown,
            "messages claimed by a stopped tickler process: those never sent go to the next \
             run, those it may have sent are `unknown` and not sent again"
        );
    }
    if runs.is_empty() {
        return Ok(());
    }
    log_abandoned(&runs);
    end_groups(&runs, &me).await;
    // Their failure alerts go out from here (once: each is claimed by its key), with one try
    // each rather than the daemon's retry schedule.
    let alerted: HashSet<&str> = config
        .jobs
        .iter()
        .filter(|s| s.alerts.recipients().is_some())
        .map(|s| &*s.name)
        .collect();
    let alerting = runs.iter().any(|o| alerted.contains(o.job_name.as_str()));
    if alerting {
        store.register_instance(&me).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let shared = Shared::new(store, &me, clock, 1, &Default::default(), &config.jobs);
        shared.stopping.cancel();
        let tracker = TaskTracker::new();
        alert_abandoned(&shared, &tracker, runs, now);
        tracker.close();
        tracker.wait().await;
        shared.alerts.settled().await;
        store.deregister(&me.id).await?;
    }
    Ok(())
}

/// Resolves the claims of owners that are gone or have not beaten since `stale_before`:
/// abandons their running slots (alerting, ending leftover process groups of this host),
/// releases their messages, and, when `adopt`, takes over their pending slots and runs or
/// records them. Errors are logged; the next pass tries again.
pub async fn resolve(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    me: &Instance,
    stale_before: DateTime<Utc>,
    adopt: bool,
) {
    match shared.store.dead_owners(&me.id, stale_before).await {
        Ok(false) => {}
        Ok(true) => resolve_found(shared, tracker, me, stale_before, adopt).await,
        Err(e) => tracing::warn!(error = %e, "could not check for runs of stopped daemons"),
    }
}

/// A daemon's periodic look (every third heartbeat): forgets the processes of this host that
/// are gone, then resolves the claims of stopped owners, if any; one read when there are
/// none (see [`Store::owners`]).
pub async fn look(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    me: &Instance,
    stale_before: DateTime<Utc>,
) {
    let (instances, dead) = match shared.store.owners(&me.id, stale_before).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not check for runs of stopped daemons");
            return;
        }
    };
    let forgotten = match forget_dead_among(&shared.store, me, instances).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not check this host's tickler processes");
            0
        }
    };
    if dead || forgotten > 0 {
        resolve_found(shared, tracker, me, stale_before, true).await;
    }
}

/// [`resolve`] once some claim may need it.
async fn resolve_found(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    me: &Instance,
    stale_before: DateTime<Utc>,
    adopt: bool,
) {
    let now = shared.clock.now();
    match shared
        .store
        .abandon_orphans(&me.id, stale_before, now)
        .await
    {
        Ok(runs) if !runs.is_empty() => {
            log_abandoned(&runs);
            end_groups(&runs, me).await;
            alert_abandoned(shared, tracker, runs, now);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not check for runs of stopped daemons"),
    }
    match shared.store.release_dead_messages(stale_before, now).await {
        Ok(r) if r.released + r.unknown > 0 => tracing::warn!(
            released = r.released,
            unknown = r.unknown,
            "messages claimed by a stopped tickler process: those never sent go to the next \
             run, those it may have sent are `unknown` and not sent again"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not release the messages of stopped processes"),
    }
    if !adopt {
        return;
    }
    match shared.store.adopt_pending(&me.id, stale_before).await {
        Ok(adopted) if !adopted.is_empty() => {
            tracing::warn!(
                slots = adopted.len(),
                "adopted the waiting slots of a stopped daemon; they run or are recorded now"
            );
            run_adopted(shared, tracker, adopted, now).await;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not adopt the waiting slots of stopped daemons")
        }
    }
}

/// How many job names a log line of abandoned runs lists; the rest are counted.
const NAMES_IN_A_LINE: usize = 20;

/// One line for the runs just marked `abandoned`: their count and the first jobs' names (each
/// run's own record and alert name it). A crash under 100,000 running jobs listed them all, a
/// 1.5 MB line that journald cuts into pieces of its `LineMax` (48K by default).
fn log_abandoned(runs: &[Orphan]) {
    let jobs = some_names(runs.iter().map(|o| o.job_name.as_str()), NAMES_IN_A_LINE);
    tracing::warn!(runs = runs.len(), jobs = %jobs, "marked runs of a stopped tickler process `abandoned`");
}

/// The first `most` of `names`, and how many more there are: `a, b … and 3 more`.
fn some_names<'a>(names: impl ExactSizeIterator<Item = &'a str>, most: usize) -> String {
    let more = names.len().saturating_sub(most);
    let mut text = names.take(most).collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(" … and {more} more"));
    }
    text
}

/// Ends what is left of the commands of abandoned runs that ran on this host.
async fn end_groups(runs: &[Orphan], me: &Instance) {
    let groups: Vec<GroupRecord> = runs
        .iter()
        .filter_map(|o| serde_json::from_str(o.process_group.as_deref()?).ok())
        .filter(|g: &GroupRecord| Instance::host_of(&g.instance) == me.hostname)
        .collect();
    end_recorded_groups(groups).await;
}

/// Sends the failure alerts of runs just marked `abandoned`, in the background.
pub fn alert_abandoned(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    runs: Vec<Orphan>,
    now: DateTime<Utc>,
) {
    let runs: Vec<(Orphan, Arc<crate::config::JobSpec>)> = runs
        .into_iter()
        .filter_map(|o| shared.job(&o.job_name).map(|spec| (o, spec)))
        .filter(|(_, spec)| spec.alerts.recipients().is_some())
        .collect();
    if runs.is_empty() {
        return;
    }
    let shared = shared.clone();
    tracker.spawn(async move {
        for (orphan, spec) in runs {
            super::alerts::abandoned(&shared, &spec, &orphan, now).await;
        }
    });
}

/// Runs or records adopted slots under each job's catch-up policy, as if they had just come
/// due; a slot of a job no longer in the config, or disabled, is recorded `missed`.
async fn run_adopted(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    adopted: Vec<Adopted>,
    now: DateTime<Utc>,
) {
    let mut by_job: BTreeMap<String, Vec<Adopted>> = BTreeMap::new();
    for a in adopted {
        by_job.entry(a.job_name.clone()).or_default().push(a);
    }
    let mut fires = vec![];
    let mut missed = super::timer::Listed::default();
    for (name, rows) in by_job {
        let Some(spec) = shared.job(&name).filter(|s| s.enabled) else {
            let why = match shared.job(&name) {
                Some(_) => "missed: its daemon stopped before it ran, and the job is now disabled",
                None => {
                    "missed: its daemon stopped before it ran, and the job is no longer in the config"
                }
            };
            for row in rows {
                if missed.one() {
                    tracing::warn!(job = %name, scheduled_for = %row.scheduled_for, "{why}");
                }
                shared.ledger.finish(Finish {
                    id: row.id,
                    status: Status::Missed,
                    started_at: now,
                    completed_at: now,
                    duration_seconds: 0.0,
                    records_processed: None,
                    error_message: Some(why.into()),
                    metadata: serde_json::json!({}),
                    attempt: 1,
                });
            }
            continue;
        };
        let slots: Vec<DateTime<Utc>> = rows.iter().map(|r| r.scheduled_for).collect();
        let decision = super::timer::decide(&spec, &slots, now);
        let fire_of = |slot: DateTime<Utc>| {
            let row = rows.iter().find(|r| r.scheduled_for == slot)?;
            Some(Fire {
                spec: spec.clone(),
                slot,
                trigger: row.trigger,
                claim: Some(row.id),
                id: None,
            })
        };
        for (slot, why) in decision.missed {
            if let Some(fire) = fire_of(slot) {
                if missed.one() {
                    tracing::warn!(job = %name, scheduled_for = %slot, "{why}");
                }
                record_only(shared, &fire, Status::Missed, why);
            }
        }
        fires.extend(decision.run.into_iter().filter_map(|(s, _)| fire_of(s)));
    }
    missed.end_missed();
    super::timer::start_fires(shared, tracker, fires).await;
}

#[cfg(test)]
mod tests {
    use super::some_names;

    #[test]
    fn a_line_names_the_first_jobs_and_counts_the_rest() {
        let names = ["a", "b", "c"];
        assert_eq!(some_names(names.iter().copied(), 3), "a, b, c");
        assert_eq!(some_names(names.iter().copied(), 2), "a, b … and 1 more");
        let many: Vec<String> = (0..100_000).map(|i| format!("tenant-{i:06}")).collect();
        let line = some_names(many.iter().map(String::as_str), super::NAMES_IN_A_LINE);
        assert!(line.starts_with("tenant-000000, tenant-000001, "), "{line}");
        assert!(line.ends_with("tenant-000019 … and 99980 more"), "{line}");
    }
}

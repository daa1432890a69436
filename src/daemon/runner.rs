//! One fire, from "due" to its final ledger row: overlap policy, jitter, the concurrency bound,
//! the slot claim, attempts under the timeout and retry policy, and interruption at shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::shared::Shared;
use crate::config::{JobSpec, Overlap};
use crate::jobs::{JobError, Outcome, RunContext};
use crate::store::{Finish, NewRun, RunTrigger, Status};

/// A fire started within this of its slot is on time under every catch-up policy.
pub const ON_TIME: Duration = Duration::from_secs(30);

/// At most this many per-item errors are kept in a run's metadata.
const MAX_ITEM_ERRORS: usize = 100;

/// A fire to run.
#[derive(Clone)]
pub struct Fire {
    pub spec: Arc<JobSpec>,
    pub slot: DateTime<Utc>,
    pub trigger: RunTrigger,
    /// The `pending` row this process holds for the fire (it had to wait, or was adopted from
    /// a daemon that died): the fire starts by turning that row `running` instead of
    /// inserting one.
    pub claim: Option<Uuid>,
    /// The id its run takes, chosen before it starts by a caller that answers with it at once
    /// (the `[http]` trigger); a fresh one when `None`.
    pub id: Option<Uuid>,
}

impl Fire {
    /// A fire without a row yet: its slot is claimed when it starts.
    pub fn new(spec: Arc<JobSpec>, slot: DateTime<Utc>, trigger: RunTrigger) -> Fire {
        Fire {
            spec,
            slot,
            trigger,
            claim: None,
            id: None,
        }
    }

    /// The `pending` row that claims this fire's slot while it waits its turn.
    pub fn pending_row(&self, id: Uuid, shared: &Shared) -> NewRun {
        NewRun {
            id,
            job_name: self.spec.name.clone(),
            scheduled_for: self.slot,
            trigger: self.trigger,
            status: Status::Pending,
            started_at: shared.clock.now(),
            instance: shared.instance.clone(),
            error_message: None,
            metadata: None,
            batch: None,
        }
    }
}

/// How a fire ended, for `tickler run-job` and tests.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub id: Uuid,
    pub status: Status,
    pub records: Option<i64>,
    pub error: Option<String>,
    pub attempts: u32,
}

/// Records a fire that does not run: its `pending` row is ended, or a row is inserted.
pub fn record_only(shared: &Shared, fire: &Fire, status: Status, why: String) {
    tracing::info!(job = %fire.spec.name, scheduled_for = %fire.slot, status = status.as_str(), "{why}");
    let now = shared.clock.now();
    shared.metrics.run_ended(&fire.spec.name, status, None, now);
    if let Some(id) = fire.claim {
        shared.ledger.finish(Finish {
            id,
            status,
            started_at: now,
            completed_at: now,
            duration_seconds: 0.0,
            records_processed: None,
            error_message: Some(why),
            metadata: json!({}),
            attempt: 1,
        });
        return;
    }
    shared.ledger.record(NewRun {
        id: Uuid::now_v7(),
        job_name: fire.spec.name.clone(),
        scheduled_for: fire.slot,
        trigger: fire.trigger,
        status,
        started_at: now,
        instance: shared.instance.clone(),
        error_message: Some(why),
        metadata: None,
        batch: None,
    });
}

enum AttemptEnd {
    Done(Result<Outcome, JobError>),
    TimedOut,
    Interrupted,
}

/// A fire holding everything it needs to start: its turn (under `skip` and `queue`) and a
/// concurrency permit. Dropping it gives both back.
pub struct Ready {
    fire: Fire,
    _turn: Option<OwnedSemaphorePermit>,
    _permit: OwnedSemaphorePermit,
    id: Uuid,
    /// Set when the claim came back too late to run under the job's catch-up policy.
    missed: Option<String>,
}

impl Ready {
    /// The ledger row that claims this fire's slot.
    pub fn claim_row(&self, shared: &Shared) -> NewRun {
        NewRun {
            id: self.id,
            job_name: self.fire.spec.name.clone(),
            scheduled_for: self.fire.slot,
            trigger: self.fire.trigger,
            status: Status::Running,
            started_at: shared.clock.now(),
            instance: shared.instance.clone(),
            error_message: None,
            metadata: None,
            batch: None,
        }
    }

    /// The `pending` row that claims this fire's slot ahead of it, in `batch` (see
    /// `timer::claim_ahead`).
    pub fn ahead_row(&self, shared: &Shared, batch: Uuid) -> NewRun {
        NewRun {
            status: Status::Pending,
            batch: Some(batch),
            ..self.claim_row(shared)
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn fire(&self) -> &Fire {
        &self.fire
    }

    /// The same fire, run as `spec` says: a job a reload changed after its slot was claimed
    /// ahead. Its run slot stays the one taken under the old spec (a moved lane counts from
    /// the next fire on).
    pub fn with_spec(self, spec: Arc<JobSpec>) -> Ready {
        Ready {
            fire: Fire { spec, ..self.fire },
            ..self
        }
    }

    /// Gives back the turn and the run slot: the fire, holding the row `id` now.
    pub fn into_held(self) -> Fire {
        Fire {
            claim: Some(self.id),
            ..self.fire
        }
    }

    /// Judges a claim that took from `asked` to now (the database was unreachable meanwhile).
    /// A fire that was on time and is now late is recorded `missed` under `catch_up = "none"`
    /// or past `misfire_grace`; otherwise it runs late (each such fire, as under
    /// `catch_up = "all"`). The slot is claimed either way, so it is recorded and never lost.
    pub fn claimed_at(&mut self, asked: DateTime<Utc>, now: DateTime<Utc>) {
        let spec = &self.fire.spec;
        let delay = now - asked;
        let late = now - self.fire.slot;
        let on_time = chrono::TimeDelta::from_std(ON_TIME).unwrap_or_default();
        if delay <= on_time || late <= on_time || self.fire.trigger.on_request() {
            return;
        }
        let grace =
            chrono::TimeDelta::from_std(spec.misfire_grace).unwrap_or(chrono::TimeDelta::MAX);
        let why = if spec.catch_up == crate::config::CatchUp::None {
            "catch_up = \"none\"".to_string()
        } else if late > grace {
            format!(
                "it is older than misfire_grace ({})",
                humantime::format_duration(spec.misfire_grace)
            )
        } else {
            return;
        };
        self.missed = Some(format!(
            "missed: the database was unreachable for {}s, so the slot was claimed {}s late and \
             {why}",
            delay.num_seconds(),
            late.num_seconds()
        ));
    }

    /// Logs a fire that could not be claimed because the database was unreachable.
    pub fn lost(&self) {
        tracing::error!(
            job = %self.fire.spec.name, scheduled_for = %self.fire.slot,
            "fire not run: its slot could not be claimed before the daemon stopped (the database is unreachable)"
        );
    }
}

/// Counts a fire of a job as running in this process while it lives.
struct Executing<'a> {
    shared: &'a Shared,
    name: Arc<str>,
}

impl<'a> Executing<'a> {
    fn new(shared: &'a Shared, name: &Arc<str>) -> Self {
        *shared
            .executing
            .lock()
            .expect("executing lock")
            .entry(name.clone())
            .or_default() += 1;
        Executing {
            shared,
            name: name.clone(),
        }
    }
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        if let Ok(mut executing) = self.shared.executing.lock()
            && let Some(n) = executing.get_mut(&self.name)
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// The outcome of trying to admit a fire without waiting.
pub enum Admission {
    Ready(Ready),
    /// It must wait (a queue, jitter, the concurrency bound): use [`run_fire`].
    Wait(Fire),
    /// Recorded `skipped`; nothing more to do.
    Skipped,
}

fn overlap_of(fire: &Fire) -> Overlap {
    if fire.trigger == RunTrigger::Manual {
        Overlap::Allow
    } else {
        fire.spec.overlap
    }
}

fn skip(shared: &Shared, fire: &Fire, elsewhere: bool) {
    let why = if elsewhere {
        "skipped: the previous run is still running on another daemon"
    } else {
        "skipped: the previous run is still running (overlap = \"skip\")"
    };
    record_only(shared, fire, Status::Skipped, why.into());
}

/// Admits a fire if nothing makes it wait: the timer loop claims all such fires of a second in
/// one batch.
pub fn admit_now(shared: &Shared, fire: Fire) -> Admission {
    try_admit(shared, fire, false)
}

/// [`admit_now`] for a fire whose second has not come yet (`timer::claim_ahead`): one that
/// would be skipped is given back as `Wait` instead (its previous run may end before the
/// second), as is one that would wait.
pub fn admit_ahead(shared: &Shared, fire: Fire) -> Admission {
    try_admit(shared, fire, true)
}

fn try_admit(shared: &Shared, fire: Fire, ahead: bool) -> Admission {
    if ahead && shared.stopping.is_cancelled() {
        return Admission::Wait(fire);
    }
    if shared.stopping.is_cancelled() {
        return Admission::Skipped;
    }
    let overlap = overlap_of(&fire);
    let jitter = !fire.spec.jitter.is_zero() && !fire.trigger.on_request();
    if overlap == Overlap::Queue && shared.store.has_replicas() || jitter {
        return Admission::Wait(fire);
    }
    let turn = match overlap {
        Overlap::Allow => None,
        Overlap::Skip | Overlap::Queue => {
            match shared.job_turn(&fire.spec.name).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) if ahead => return Admission::Wait(fire),
                Err(_) if overlap == Overlap::Skip && shared.is_executing(&fire.spec.name) => {
                    skip(shared, &fire, false);
                    return Admission::Skipped;
                }
                // The turn is held by a fire still waiting for its claim: see `admit`.
                Err(_) => return Admission::Wait(fire),
            }
        }
    };
    if overlap == Overlap::Skip && shared.is_running_elsewhere(&fire.spec.name) {
        if ahead {
            return Admission::Wait(fire);
        }
        skip(shared, &fire, true);
        return Admission::Skipped;
    }
    match shared.slots(&fire.spec).try_acquire_owned() {
        Ok(permit) => Admission::Ready(Ready {
            id: fire.id.unwrap_or_else(Uuid::now_v7),
            fire,
            _turn: turn,
            _permit: permit,
            missed: None,
        }),
        Err(_) => Admission::Wait(fire),
    }
}

/// Admits a fire, waiting as its overlap policy, jitter and the concurrency bound say.
/// `None` when it was skipped or the daemon began to stop.
async fn admit(shared: &Shared, fire: Fire) -> Option<Ready> {
    if shared.stopping.is_cancelled() {
        return None;
    }
    let overlap = overlap_of(&fire);
    let spec = fire.spec.clone();
    let turn = match overlap {
        Overlap::Allow => None,
        Overlap::Skip => {
            // Skipped only when the previous run is running. A turn held by a fire still
            // waiting for its claim is waited for: that claim may lose the slot to another
            // replica, and a `skipped` row recorded here would then steal this slot from a
            // replica that is free to run it.
            let turn = shared.job_turn(&spec.name);
            let permit = loop {
                if let Ok(permit) = turn.clone().try_acquire_owned() {
                    break permit;
                }
                if shared.is_executing(&spec.name) {
                    skip(shared, &fire, false);
                    return None;
                }
                tokio::select! {
                    p = turn.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return None,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = shared.stopping.cancelled() => return None,
                }
            };
            if shared.is_running_elsewhere(&spec.name) {
                skip(shared, &fire, true);
                return None;
            }
            Some(permit)
        }
        Overlap::Queue => {
            let turn = shared.job_turn(&spec.name);
            let permit = tokio::select! {
                biased;
                _ = shared.stopping.cancelled() => None,
                p = turn.acquire_owned() => p.ok(),
            }?;
            // A run of this job on another replica also holds the queue.
            while shared
                .store
                .running_jobs(&shared.instance)
                .await
                .is_ok_and(|r| r.contains(&*spec.name))
            {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shared.stopping.cancelled() => return None,
                }
            }
            Some(permit)
        }
    };
    if !spec.jitter.is_zero() && !fire.trigger.on_request() {
        let delay = spec.jitter.mul_f64(fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.stopping.cancelled() => return None,
        }
    }
    let permit = tokio::select! {
        biased;
        _ = shared.stopping.cancelled() => None,
        p = shared.slots(&spec).acquire_owned() => p.ok(),
    }?;
    Some(Ready {
        id: fire.id.unwrap_or_else(Uuid::now_v7),
        fire,
        _turn: turn,
        _permit: permit,
        missed: None,
    })
}

/// Runs one fire to its end: admit, claim, execute. Returns `None` when the fire did not run
/// (skipped, slot taken by another process, or shutdown before it started). A fire holding a
/// `pending` row that does not start before a shutdown leaves it pending: the next daemon
/// adopts it.
pub async fn run_fire(shared: Arc<Shared>, fire: Fire) -> Option<RunSummary> {
    // A slot claimed ahead by a daemon that stopped before it came (adopted here) waits for it.
    while !fire.trigger.on_request() && shared.clock.now() < fire.slot {
        tokio::select! {
            _ = shared.clock.sleep_until(fire.slot, crate::time::MAX_SLEEP) => {}
            _ = shared.stopping.cancelled() => return None,
        }
    }
    let mut ready = admit(&shared, fire).await?;
    if shared.stopping.is_cancelled() {
        return None;
    }
    if let Some(id) = ready.fire.claim {
        ready.id = id;
        let now = shared.clock.now();
        return match shared.ledger.start_pending(id, &shared.instance, now).await {
            Some(true) => Some(execute(shared, ready).await),
            Some(false) => {
                let fire = &ready.fire;
                tracing::info!(job = %fire.spec.name, scheduled_for = %fire.slot, "a waiting slot was adopted by another daemon; it runs there");
                None
            }
            None => {
                ready.lost();
                None
            }
        };
    }
    let asked = shared.clock.now();
    match shared.ledger.claim(ready.claim_row(&shared)).await {
        Some(true) => {
            ready.claimed_at(asked, shared.clock.now());
            Some(execute(shared, ready).await)
        }
        Some(false) => {
            let fire = &ready.fire;
            tracing::debug!(job = %fire.spec.name, scheduled_for = %fire.slot, "slot already claimed elsewhere");
            None
        }
        None => {
            ready.lost();
            None
        }
    }
}

/// Runs the body of a claimed fire, with its attempts, and records the end.
pub async fn execute(shared: Arc<Shared>, ready: Ready) -> RunSummary {
    let (fire, id) = (&ready.fire, ready.id);
    let spec = fire.spec.clone();
    // The body starts now, with its ledger row committed; this is the start the ledger keeps.
    let started = shared.clock.now();
    // A claim that came back after the daemon began to stop: no new fire starts (invariant 6).
    let missed = if shared.stopping.is_cancelled() && fire.trigger != RunTrigger::Manual {
        Some((
            Status::Interrupted,
            "interrupted: the daemon began to stop before the run could start".to_string(),
        ))
    } else {
        ready.missed.clone().map(|why| (Status::Missed, why))
    };
    if let Some((status, why)) = &missed {
        let status = *status;
        tracing::warn!(job = %spec.name, run_id = %id, scheduled_for = %fire.slot, status = status.as_str(), "{why}");
        shared.metrics.run_ended(&spec.name, status, None, started);
        shared.ledger.finish(Finish {
            id,
            status,
            started_at: started,
            completed_at: started,
            duration_seconds: 0.0,
            records_processed: None,
            error_message: Some(why.clone()),
            metadata: json!({ "lateness_ms": (started - fire.slot).num_milliseconds() }),
            attempt: 1,
        });
        shared.run_ended.notify_waiters();
        return RunSummary {
            id,
            status,
            records: None,
            error: Some(why.clone()),
            attempts: 0,
        };
    }
    let lateness = (started - fire.slot).num_milliseconds();
    let executing = Executing::new(&shared, &spec.name);
    tracing::info!(
        job = %spec.name, run_id = %id, status = "running", scheduled_for = %fire.slot,
        trigger = fire.trigger.as_str(), lateness_ms = lateness, "run started"
    );
    shared
        .metrics
        .run_started(&spec.name, lateness as f64 / 1000.0);
    let start_ping = super::alerts::ping_start(&spec, id);

    let mut attempt = 1;
    let mut failures: Vec<Value> = vec![];
    let (status, outcome, error) = loop {
        let ctx = RunContext {
            job_name: spec.name.clone(),
            scheduled_for: fire.slot,
            attempt,
            store: shared.store.clone(),
            now: shared.clock.now(),
            timezone: spec.timezone,
            notifier: spec.notifier.clone(),
            dry_run: false,
            task: None,
            instance: shared.instance.clone(),
            run_id: Some(id),
            databases: spec.databases.clone(),
            send_window: spec.send_window.clone(),
        };
        let end = tokio::select! {
            r = tokio::time::timeout(spec.timeout, spec.job.run(&ctx)) => match r {
                Ok(r) => AttemptEnd::Done(r),
                Err(_) => AttemptEnd::TimedOut,
            },
            _ = shared.interrupt.cancelled() => AttemptEnd::Interrupted,
        };
        let (message, retryable, extra, final_status) = match end {
            AttemptEnd::Done(Ok(outcome)) => {
                let status = if outcome.errors.is_empty() {
                    Status::Succeeded
                } else {
                    Status::Partial
                };
                break (status, Some(outcome), None);
            }
            AttemptEnd::Interrupted => {
                let msg = "interrupted: the daemon shut down and the shutdown grace ran out";
                break (Status::Interrupted, None, Some(msg.to_string()));
            }
            AttemptEnd::TimedOut => (
                format!(
                    "timed out after {}",
                    humantime::format_duration(spec.timeout)
                ),
                true,
                Map::new(),
                Status::TimedOut,
            ),
            AttemptEnd::Done(Err(e)) => (
                e.to_string(),
                e.is_retryable(),
                e.metadata().clone(),
                Status::Failed,
            ),
        };
        let mut failure = json!({ "attempt": attempt, "error": message, "at": shared.clock.now() });
        if !extra.is_empty() {
            failure["details"] = Value::Object(extra);
        }
        failures.push(failure);
        if !retryable || attempt >= spec.retry.attempts {
            break (final_status, None, Some(message));
        }
        let delay = spec.retry.delay_before(attempt + 1);
        tracing::warn!(
            job = %spec.name, run_id = %id, attempt, error = %message,
            "attempt failed; retrying in {}", humantime::format_duration(Duration::from_secs(delay.as_secs()))
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.interrupt.cancelled() => {
                let msg = "interrupted between retries: the daemon shut down";
                break (Status::Interrupted, None, Some(msg.to_string()));
            }
        }
        attempt += 1;
        if let Err(e) = shared.store.set_attempt(id, attempt).await {
            tracing::warn!(job = %spec.name, run_id = %id, error = %e, "could not record the retry");
        }
    };

    let completed = shared.clock.now();
    let duration = (completed - started).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let mut metadata = Map::new();
    metadata.insert("lateness_ms".into(), lateness.into());
    let (records, error) = match outcome {
        Some(outcome) => {
            metadata.extend(outcome.metadata);
            let error = match outcome.errors.len() {
                0 => None,
                1 => Some(outcome.errors[0].clone()),
                n => Some(format!(
                    "{} (and {} more item errors)",
                    outcome.errors[0],
                    n - 1
                )),
            };
            if !outcome.errors.is_empty() {
                let kept: Vec<Value> = outcome
                    .errors
                    .iter()
                    .take(MAX_ITEM_ERRORS)
                    .cloned()
                    .map(Value::from)
                    .collect();
                metadata.insert("item_errors".into(), Value::Array(kept));
                metadata.insert("item_error_count".into(), outcome.errors.len().into());
            }
            (Some(outcome.records), error)
        }
        None => (None, error),
    };
    if !failures.is_empty() {
        metadata.insert("failed_attempts".into(), Value::Array(failures));
    }
    shared.ledger.finish(Finish {
        id,
        status,
        started_at: started,
        completed_at: completed,
        duration_seconds: duration,
        records_processed: records,
        error_message: error.clone(),
        metadata: Value::Object(metadata),
        attempt,
    });
    shared.run_ended.notify_waiters();
    shared
        .metrics
        .run_ended(&spec.name, status, Some(duration), completed);
    match status {
        Status::Succeeded | Status::Partial => tracing::info!(
            job = %spec.name, run_id = %id, status = status.as_str(), scheduled_for = %fire.slot,
            duration_s = duration, records = records.unwrap_or(0), "run finished"
        ),
        _ => tracing::error!(
            job = %spec.name, run_id = %id, status = status.as_str(), scheduled_for = %fire.slot,
            duration_s = duration, records = records.unwrap_or(0), attempts = attempt,
            error = error.as_deref().unwrap_or(""), "run failed"
        ),
    }
    // The fire's turn and concurrency permit go back before alerts are sent.
    let slot = fire.slot;
    drop(executing);
    drop(ready);
    let ended = super::alerts::Ended {
        id,
        status,
        slot,
        completed,
        error: error.as_deref(),
        attempts: attempt,
    };
    // Boxed, and only for jobs with alerts: the alert future (HTTP and SMTP clients) is large,
    // and inlined it would make every fire's task that much bigger to spawn.
    if spec.alerts.ping_url.is_some() || spec.alerts.recipients().is_some() {
        Box::pin(super::alerts::run_ended(&shared, &spec, ended, start_ping)).await;
    }
    RunSummary {
        id,
        status,
        records,
        error,
        attempts: attempt,
    }
}

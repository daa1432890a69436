//! The task runner inside each daemon: it claims due tasks with a lease, runs them, writes how
//! they ended, and sleeps until the earliest pending task.
//!
//! - Claims take up to `batch` due tasks in one statement (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, so daemons sharing a queue never claim the same row); at most `concurrency`
//!   run at once.
//! - Finishes are written in batches by one writer, guarded by the lease: a task reclaimed by
//!   another daemon is never finished twice. A task's concurrency slot is freed when its attempt
//!   ends, not when its end is written, so claims do not wait for finish writes; a separate
//!   bound (`UNWRITTEN_PER_SLOT` per slot) holds back claims when the writer falls behind.
//! - Leases of running tasks are renewed; a daemon that dies leaves its tasks to be reclaimed
//!   by any daemon once their lease expires.
//! - Wake-up: an insert by this process (a campaign's next email, `enqueue`), a change by
//!   another process ([`Store::watch_tasks`]: PostgreSQL's NOTIFY on an insert or an update
//!   that makes a task due sooner; on SQLite the kernel's notification of a write to the WAL),
//!   and the time of the earliest pending task or lease to reclaim. Each wake-up reads that
//!   time again, so an earlier task replaces the sleep in progress. Nothing polls.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::execute::{Env, Step, execute};
use super::{TaskRequest, TaskType};
use crate::jobs::command::GroupRecord;
use crate::store::queue::{TaskFinish, TaskRow, task_time};
use crate::store::{Store, StoreError};
use crate::time::{Clock, MAX_SLEEP};

/// Wakes the runners of this process (after an insert they did not make themselves).
pub fn wake() {
    crate::store::queue::tasks_inserted();
}

/// Inserts tasks and wakes the runners (PostgreSQL also notifies other processes).
pub async fn enqueue(
    store: &Store,
    queue: &super::QueueConfig,
    requests: Vec<TaskRequest>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<_> = requests.into_iter().map(|r| r.into_row(queue)).collect();
    store.enqueue_tasks(&rows, now).await?;
    wake();
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// How long an idle runner waits before it reads the queue again with nothing due and
/// nothing reported: inserts and sooner tasks wake it at once ([`Store::watch_tasks`]), and
/// the earliest lease to reclaim is one of the times it wakes at, so this is only a backstop.
const LOOK_AGAIN: TimeDelta = TimeDelta::minutes(5);

/// How many attempts per concurrency slot may have ended without their end written yet.
const UNWRITTEN_PER_SLOT: usize = 4;

/// One attempt that ended (or was interrupted: `step` is `None`). The permit is its place
/// among the ends not yet written; it is freed once the finisher wrote it.
struct Ended {
    task: TaskRow,
    step: Option<Step>,
    _unwritten: OwnedSemaphorePermit,
}

/// A runner's fixed settings and the parts it shares with the daemon.
pub struct Runner {
    pub store: Store,
    pub owner: Arc<str>,
    pub clock: Arc<dyn Clock>,
    /// Replaced on reload: handlers, retries, templates and channels change at once.
    pub env: Mutex<Arc<Env>>,
    pub concurrency: usize,
    pub batch: usize,
    pub lease: Duration,
    pub poll: Duration,
}

impl Runner {
    fn env(&self) -> Arc<Env> {
        self.env.lock().expect("queue env lock").clone()
    }

    pub fn set_env(&self, env: Env) {
        *self.env.lock().expect("queue env lock") = Arc::new(env);
    }

    /// Puts the tasks of a dead lease holder back in the queue, after ending what is left of
    /// their commands on this host and resolving the messages they had claimed (never handed
    /// over: sent by the next attempt; perhaps handed over: `unknown`, not sent again).
    async fn reclaim(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let expired = self.store.expired_tasks(now).await?;
        if expired.is_empty() {
            return Ok(vec![]);
        }
        let host = crate::store::Instance::host_of(&self.owner);
        let mut groups = vec![];
        for (id, owner, group) in &expired {
            let Some(owner) = owner else { continue };
            let record = group
                .as_deref()
                .and_then(|g| serde_json::from_str::<GroupRecord>(g).ok())
                .filter(|g| crate::store::Instance::host_of(&g.instance) == host);
            groups.extend(record);
            let key = [format!("task:{id}")];
            let released = self
                .store
                .release_notifications(owner, &key, "its task's daemon stopped first", now)
                .await?;
            if released.unknown > 0 {
                tracing::warn!(task = %id, "the email of a reclaimed task may have been sent by its stopped daemon: `unknown`, not sent again");
            }
        }
        crate::jobs::command::end_recorded_groups(groups).await;
        let ids: Vec<String> = expired.into_iter().map(|(id, _, _)| id).collect();
        self.store.reclaim_expired(&ids, now).await
    }

    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::seconds(60))
    }

    /// Runs until `stopping`; then waits for the tasks still running (interrupted ones go back
    /// to the queue, uncounted, when `interrupt` fires).
    pub async fn run(
        self: Arc<Self>,
        stopping: CancellationToken,
        interrupt: CancellationToken,
        tracker: TaskTracker,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let unwritten_max = self.concurrency.max(self.batch) * UNWRITTEN_PER_SLOT;
        let unwritten = Arc::new(Semaphore::new(unwritten_max));
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (ended_tx, ended_rx) = mpsc::unbounded_channel::<Ended>();
        let finisher = tokio::spawn(self.clone().finisher(
            ended_rx,
            running.clone(),
            interrupt.clone(),
        ));
        let started = Arc::new(Notify::new());
        let renewer = tokio::spawn(self.clone().renewer(running.clone(), started.clone()));
        let listener = tokio::spawn({
            let (store, poll) = (self.store.clone(), self.poll);
            async move { store.watch_tasks(poll, wake).await }
        });
        let mut woken = crate::store::queue::watch_inserted();
        let mut next_reclaim = self.clock.now();
        tracing::info!(
            concurrency = self.concurrency, batch = self.batch,
            lease = %humantime::format_duration(self.lease), "task runner started"
        );
        'turns: while !stopping.is_cancelled() {
            let free = slots.available_permits().min(unwritten.available_permits());
            if free == 0 {
                tokio::select! {
                    _ = async {
                        drop(slots.acquire().await);
                        drop(unwritten.acquire().await);
                    } => {}
                    _ = stopping.cancelled() => break,
                }
                continue;
            }
            woken.borrow_and_update();
            let now = self.clock.now();
            if now >= next_reclaim {
                next_reclaim = now + LOOK_AGAIN;
                match self.reclaim(now).await {
                    Ok(ids) if !ids.is_empty() => tracing::warn!(
                        tasks = ids.len(), ids = ?ids,
                        "reclaimed tasks whose daemon stopped (their lease expired)"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not reclaim expired tasks"),
                }
            }
            let limit = free.min(self.batch);
            let claimed = match self
                .store
                .claim_tasks(&self.owner, now, self.lease_until(now), limit as i64)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim tasks; trying again in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopping.cancelled() => break,
                    }
                    continue;
                }
            };
            let full = claimed.len() == limit;
            let got_any = !claimed.is_empty();
            let env = self.env();
            // Only this loop takes permits, so the `free` counted above are still there.
            let (Ok(mut slot), Ok(mut place)) = (
                slots.clone().try_acquire_many_owned(limit as u32),
                unwritten.clone().try_acquire_many_owned(limit as u32),
            ) else {
                unreachable!("task runner permits taken outside its loop")
            };
            if got_any {
                started.notify_one();
            }
            for task in claimed {
                let (Some(slot), Some(place)) = (slot.split(1), place.split(1)) else {
                    unreachable!("more tasks claimed than the limit")
                };
                running
                    .lock()
                    .expect("running lock")
                    .insert(task.id.clone());
                let (env, tx, interrupt) = (env.clone(), ended_tx.clone(), interrupt.clone());
                tracker.spawn(async move {
                    let step = tokio::select! {
                        s = execute(&env, &task, now) => Some(s),
                        _ = interrupt.cancelled() => None,
                    };
                    drop(slot);
                    let _ = tx.send(Ended {
                        task,
                        step,
                        _unwritten: place,
                    });
                });
            }
            if full {
                continue;
            }
            let next = match self.store.next_task_time().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the time of the next task");
                    None
                }
            };
            let mut wake_at = next.unwrap_or(now + LOOK_AGAIN).min(next_reclaim);
            if !got_any && wake_at <= now {
                // Due rows another daemon is claiming right now, or a lease that expired (the
                // earliest time counts leases too): reclaim, and look again in a moment.
                wake_at = now + TimeDelta::milliseconds(5);
                next_reclaim = now;
            }
            // A step of the wall clock is noticed by the timer loop (it reads the clock every
            // 30 s), which wakes this runner; so one timer serves an idle daemon.
            let most = LOOK_AGAIN.to_std().unwrap_or(MAX_SLEEP);
            loop {
                tokio::select! {
                    _ = self.clock.sleep_until(wake_at, most) => {
                        if self.clock.now() >= wake_at {
                            break;
                        }
                    }
                    _ = woken.changed() => break,
                    _ = stopping.cancelled() => break 'turns,
                }
            }
        }
        // Shutdown: claim nothing more; wait until every attempt's end is written.
        let _all = unwritten.acquire_many(unwritten_max as u32).await;
        drop(ended_tx);
        let _ = finisher.await;
        renewer.abort();
        listener.abort();
        tracing::info!("task runner stopped");
    }

    /// Writes how attempts ended, in batches; then frees their places. While the database is
    /// unreachable the writes wait for it (as the ledger's do), until `give_up` (the shutdown
    /// grace ran out): a task whose end is not written is reclaimed after its lease.
    async fn finisher(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Ended>,
        running: Arc<Mutex<HashSet<String>>>,
        give_up: CancellationToken,
    ) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 2000 {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let now = self.clock.now();
            let env = self.env();
            let mut finishes = vec![];
            let mut released = vec![];
            for ended in &batch {
                let task = &ended.task;
                match &ended.step {
                    None => released.push(task.id.clone()),
                    Some(Step::Done(result)) => {
                        tracing::debug!(task = %task.id, r#type = %task.task_type, "task completed");
                        finishes.push(completed(task, result));
                    }
                    Some(Step::Failed {
                        error,
                        retryable,
                        result,
                    }) => finishes.push(failed(&env, task, error, *retryable, result, now)),
                    Some(Step::Later(at, result)) => finishes.push(later(task, *at, result)),
                    Some(Step::Campaign(step, result)) => {
                        let finish = completed(task, result);
                        let written =
                            crate::retry::until_done("finishing a campaign task", &give_up, || {
                                self.store
                                    .finish_campaign_task(&self.owner, &finish, step, now)
                            })
                            .await;
                        match written {
                            Some(true) => {
                                tracing::info!(
                                    task = %task.id, r#type = %task.task_type,
                                    campaign = %step.campaign_id, result = %result,
                                    "campaign task completed"
                                );
                                if !step.new_tasks.is_empty() {
                                    wake();
                                }
                            }
                            Some(false) => tracing::warn!(
                                task = %task.id,
                                "a campaign task finished after its lease was taken over; \
                                 its result was not recorded"
                            ),
                            None => {}
                        }
                    }
                }
            }
            if !finishes.is_empty() {
                let held = crate::retry::until_done("recording finished tasks", &give_up, || {
                    self.store.finish_tasks(&self.owner, &finishes, now)
                })
                .await;
                if let Some(held) = held
                    && held < finishes.len() as u64
                {
                    tracing::warn!(
                        lost = finishes.len() as u64 - held,
                        "tasks finished after their lease was taken over; results not recorded"
                    );
                }
                if finishes.iter().any(|f| f.status == "pending") {
                    wake();
                }
            }
            if !released.is_empty() {
                let _ = crate::retry::until_done("releasing interrupted tasks", &give_up, || {
                    self.store.release_tasks(&self.owner, &released, now)
                })
                .await;
                tracing::warn!(
                    tasks = released.len(),
                    "tasks interrupted by the shutdown go back to the queue"
                );
            }
            let mut r = running.lock().expect("running lock");
            for ended in &batch {
                r.remove(&ended.task.id);
            }
        }
    }

    /// Extends the leases of running tasks, three times per lease; sleeps while none runs
    /// (`started` is notified when tasks are claimed).
    async fn renewer(self: Arc<Self>, running: Arc<Mutex<HashSet<String>>>, started: Arc<Notify>) {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        loop {
            if running.lock().expect("running lock").is_empty() {
                started.notified().await;
            }
            tokio::time::sleep(every).await;
            let ids: Vec<String> = running
                .lock()
                .expect("running lock")
                .iter()
                .cloned()
                .collect();
            if ids.is_empty() {
                continue;
            }
            let until = self.lease_until(self.clock.now());
            if let Err(e) = self.store.renew_leases(&self.owner, &ids, until).await {
                tracing::warn!(error = %e, "could not renew task leases");
            }
        }
    }
}

fn completed(task: &TaskRow, result: &Value) -> TaskFinish {
    TaskFinish {
        id: task.id.clone(),
        status: "completed",
        scheduled_for: None,
        error: None,
        retry_count: task.retry_count,
        result: Some(result.to_string()),
    }
}

/// Not yet: the task runs again at `at` (its message's send window opens then), no retry
/// counted.
fn later(task: &TaskRow, at: DateTime<Utc>, result: &Value) -> TaskFinish {
    tracing::info!(
        task = %task.id, r#type = %task.task_type, at = %at,
        "task waits for its message's send window"
    );
    TaskFinish {
        id: task.id.clone(),
        status: "pending",
        scheduled_for: Some(task_time(at)),
        error: Some(format!("waiting for its send window until {at}")),
        retry_count: task.retry_count,
        result: Some(result.to_string()),
    }
}

/// A failed attempt: retried after the type's backoff while retries remain, else `failed`.
fn failed(
    env: &Env,
    task: &TaskRow,
    error: &str,
    retryable: bool,
    result: &Option<Value>,
    now: DateTime<Utc>,
) -> TaskFinish {
    let result = result.as_ref().map(|r| r.to_string());
    if retryable && task.retry_count < task.max_retries {
        let n = task.retry_count + 1;
        let rule = TaskType::parse(&task.task_type)
            .map(|t| env.queue.retry_of(t).clone())
            .unwrap_or_default();
        let next = now + TimeDelta::from_std(rule.delay(n as u32)).unwrap_or_default();
        tracing::warn!(
            task = %task.id, r#type = %task.task_type, error,
            retry = n, of = task.max_retries, at = %next,
            "task failed; it will be retried"
        );
        TaskFinish {
            id: task.id.clone(),
            status: "pending",
            scheduled_for: Some(task_time(next)),
            error: Some(error.to_string()),
            retry_count: n,
            result,
        }
    } else {
        let why = if retryable {
            format!("{error} (after {} retries)", task.retry_count)
        } else {
            error.to_string()
        };
        tracing::error!(task = %task.id, r#type = %task.task_type, error = %why, "task failed");
        TaskFinish {
            id: task.id.clone(),
            status: "failed",
            scheduled_for: None,
            error: Some(why),
            retry_count: task.retry_count,
            result,
        }
    }
}

//! The daemon: the timer loop that turns due slots into fires, plus start-up (lock, migrate,
//! abandon orphans, catch up), reload (SIGHUP) and graceful shutdown (SIGTERM).
//!
//! Signals reach the loop as [`Signal`] messages, so tests drive a daemon in-process; `main`
//! only translates Unix signals into them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{self, CatchUp, Config, ConfigError, JobSpec};
use crate::store::{Instance, NewRun, RunTrigger, Status, Store, StoreError};
use crate::time::{Clock, MAX_SLEEP, SystemClock};

pub mod alerts;
pub mod fdlimit;
pub mod ledger;
pub mod metrics;
pub mod orphans;
pub mod runner;
pub mod shared;
pub mod systemd;

pub use runner::{Fire, RunSummary, run_fire};
pub use shared::Shared;

/// A fire started within this of its slot is on time under every catch-up policy.
pub const ON_TIME: Duration = Duration::from_secs(30);
/// Slots older than `misfire_grace` get one `missed` row each, up to this many per job and
/// outage; past it (a frequent job down for days) the whole older range gets one `missed` row
/// that names where it ends (`metadata.missed_until`), so every slot is still accounted for.
const MISSED_ONE_BY_ONE: usize = 10_000;
/// At most this many slots of one job within its grace are taken in one pass of the loop; the
/// loop goes round again at once for the rest.
const MAX_SLOTS_PER_PASS: usize = 10_000;

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

struct JobState {
    spec: Arc<JobSpec>,
    next: Option<DateTime<Utc>>,
    generation: u64,
}

/// A heap entry: when, the job's generation when it was pushed, and the job.
type Wake = Reverse<(DateTime<Utc>, u64, Arc<str>)>;

struct Scheduler {
    jobs: HashMap<Arc<str>, JobState>,
    heap: BinaryHeap<Wake>,
    generation: u64,
}

impl Scheduler {
    fn new() -> Scheduler {
        Scheduler {
            jobs: HashMap::new(),
            heap: BinaryHeap::new(),
            generation: 0,
        }
    }

    fn set(&mut self, spec: Arc<JobSpec>, next: Option<DateTime<Utc>>) {
        self.generation += 1;
        let next = if spec.enabled { next } else { None };
        if let Some(t) = next {
            self.heap
                .push(Reverse((t, self.generation, spec.name.clone())));
        }
        self.jobs.insert(
            spec.name.clone(),
            JobState {
                spec,
                next,
                generation: self.generation,
            },
        );
    }

    fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pops every job due at `now` (stale heap entries are dropped).
    fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<Arc<str>> {
        let mut due = vec![];
        while let Some(Reverse((t, generation, name))) = self.heap.peek().cloned() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self
                .jobs
                .get(&name)
                .is_some_and(|s| s.generation == generation)
            {
                due.push(name);
            }
        }
        due
    }
}

/// Fires and records decided for one job's due slots.
#[derive(Default)]
struct Decision {
    run: Vec<(DateTime<Utc>, RunTrigger)>,
    missed: Vec<(DateTime<Utc>, String)>,
}

/// Applies the catch-up policy to the due slots of a job (oldest first).
fn decide(spec: &JobSpec, due: &[DateTime<Utc>], now: DateTime<Utc>) -> Decision {
    let grace = TimeDelta::from_std(spec.misfire_grace).unwrap_or(TimeDelta::MAX);
    let on_time_limit = TimeDelta::from_std(ON_TIME).unwrap_or(TimeDelta::MAX);
    let mut d = Decision::default();
    let (on_time, late): (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) =
        due.iter().partition(|s| now - **s <= on_time_limit);
    let latest_in_grace = late.iter().rev().find(|s| now - **s <= grace).copied();
    for slot in &late {
        let in_grace = now - *slot <= grace;
        let run = match spec.catch_up {
            CatchUp::None => false,
            CatchUp::Latest => on_time.is_empty() && Some(*slot) == latest_in_grace,
            CatchUp::All => in_grace,
        };
        if run {
            d.run.push((*slot, RunTrigger::CatchUp));
        } else {
            let why = if !in_grace {
                format!(
                    "missed: the slot is older than misfire_grace ({})",
                    humantime::format_duration(spec.misfire_grace)
                )
            } else {
                match spec.catch_up {
                    CatchUp::None => "missed: catch_up = \"none\"".to_string(),
                    _ => "missed: a later slot ran instead (catch_up = \"latest\")".to_string(),
                }
            };
            d.missed.push((*slot, why));
        }
    }
    d.run
        .extend(on_time.into_iter().map(|s| (s, RunTrigger::Schedule)));
    d
}

/// Raises the soft open-file limit before anything is opened, so that a low default (256 or
/// 1024) does not make jobs, the database and the `[http]` listener fail together with `Too
/// many open files`; the listener then sizes itself to what is left (see [`fdlimit`]).
fn raise_file_limit() {
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
    let instance = Instance::current()?;
    store.register_instance(&instance).await?;
    let start = clock.now();
    orphans::forget_dead_processes(&store, &instance).await?;
    tracing::info!(
        instance = %instance.id, database = %config.daemon.database_url, backend = store.backend_name(),
        jobs = config.jobs.len(), config = %config.path.display(), "tickler started"
    );

    let shared = Shared::new(
        &store,
        &instance,
        clock.clone(),
        config.daemon.max_concurrent,
    );
    shared.set_jobs(&config.jobs);

    let last = store.last_slots().await?;
    let mut scheduler = Scheduler::new();
    for spec in &config.jobs {
        let next = match last.get(&*spec.name) {
            Some(l) => spec.trigger.next_after(*l, spec.timezone),
            None => spec.trigger.next_after(start, spec.timezone),
        };
        scheduler.set(spec.clone(), next);
        log_next(spec, next);
    }
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
        start - stale_after(&config),
        true,
    )
    .await;
    let background = tokio::spawn(maintenance(
        shared.clone(),
        tracker.clone(),
        instance.clone(),
        config.daemon.clone(),
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
        *shared.loop_tick.lock().expect("loop tick lock") = std::time::Instant::now();
        if now >= next_deadline_check && alerts::check_deadlines(shared.clone(), &tracker, now) {
            next_deadline_check =
                now + TimeDelta::from_std(alerts::CHECK_EVERY).unwrap_or_default();
        }

        // The watchdog is pinged from this loop, so a loop stuck anywhere is restarted.
        let mut cap = MAX_SLEEP;
        if let Some(every) = watchdog_every {
            let mono = clock.monotonic();
            if mono.saturating_sub(last_ping) >= every {
                service.watchdog();
                last_ping = mono;
            }
            cap = cap.min(every);
        }
        let wake = scheduler.next_wake().unwrap_or(now + MAX_SLEEP);
        tokio::select! {
            _ = clock.sleep_until(wake, cap) => {}
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => {
                    service.reloading();
                    match reload(&config, &mut scheduler, &shared, clock.now()) {
                        Some(new) => {
                            if let Some(runner) = &runner {
                                runner.set_env(task_env(&new, &store, &shared.instance));
                            }
                            shared.set_jobs(&new.jobs);
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
    let running = shared.concurrency.available_permits();
    let in_flight = config.daemon.max_concurrent.saturating_sub(running);
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
    if tokio::time::timeout(config.daemon.shutdown_grace, shared.ledger.flush())
        .await
        .is_err()
    {
        tracing::error!("the database is still unreachable: runs not yet recorded are lost");
        shared.ledger.give_up();
        shared.ledger.flush().await;
    }
    background.abort();
    if let Err(e) = store.deregister(&instance.id).await {
        tracing::warn!(error = %e, "could not deregister this daemon");
    }
    store.close().await;
    tracing::info!("tickler stopped");
    Ok(())
}

/// What tasks run with under `config`.
fn task_env(config: &Config, store: &Store, owner: &Arc<str>) -> crate::queue::execute::Env {
    crate::queue::execute::Env {
        store: store.clone(),
        queue: config.queue.clone(),
        notifier: config.notifier.clone(),
        timezone: config.daemon.timezone,
        owner: owner.clone(),
    }
}

/// Starts the task runner unless `[queue] enabled = false`. Its claim settings are read once;
/// handlers, retries and templates follow reloads.
fn start_task_runner(
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
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    release_startup_code();
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

/// A daemon whose heartbeat is older than this is considered gone.
fn stale_after(config: &Config) -> TimeDelta {
    let hb = config.daemon.heartbeat_interval.max(Duration::from_secs(1));
    TimeDelta::from_std((hb * 3).max(Duration::from_secs(30))).unwrap_or(TimeDelta::seconds(30))
}

fn log_next(spec: &JobSpec, next: Option<DateTime<Utc>>) {
    match next {
        Some(t) if spec.enabled => tracing::info!(
            job = %spec.name, kind = %spec.kind, trigger = %spec.trigger, timezone = %spec.timezone,
            next = %t.with_timezone(&spec.timezone).to_rfc3339(), "scheduled"
        ),
        _ => tracing::info!(job = %spec.name, enabled = spec.enabled, "not scheduled"),
    }
}

async fn dispatch_due(
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler,
    tracker: &TaskTracker,
    now: DateTime<Utc>,
) {
    let due = scheduler.pop_due(now);
    if due.is_empty() {
        return;
    }
    let mut fires = vec![];
    for name in due {
        let Some(state) = scheduler.jobs.get(&name) else {
            continue;
        };
        let spec = state.spec.clone();
        let (slots, next) = due_slots(shared, &spec, state.next, now);
        let decision = decide(&spec, &slots, now);
        for (slot, why) in decision.missed {
            tracing::warn!(job = %spec.name, scheduled_for = %slot, "{why}");
            runner::record_only(
                shared,
                &Fire::new(spec.clone(), slot, RunTrigger::CatchUp),
                Status::Missed,
                why,
            );
        }
        for (slot, trigger) in decision.run {
            fires.push(Fire::new(spec.clone(), slot, trigger));
        }
        scheduler.set(spec, next);
    }
    start_fires(shared, tracker, fires).await;
}

/// The due slots of a job from `next` up to `now`, oldest first, and the slot after them.
/// Slots older than the job's `misfire_grace` beyond [`MISSED_ONE_BY_ONE`] are recorded here,
/// as one `missed` row for their whole range; at most [`MAX_SLOTS_PER_PASS`] newer ones are
/// returned, and the loop takes the rest at once in its next pass.
fn due_slots(
    shared: &Shared,
    spec: &Arc<JobSpec>,
    mut next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let grace = TimeDelta::from_std(spec.misfire_grace).unwrap_or(TimeDelta::MAX);
    let horizon = now
        .checked_sub_signed(grace)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut slots: Vec<DateTime<Utc>> = vec![];
    while let Some(slot) = next.filter(|s| *s < horizon) {
        if slots.len() == MISSED_ONE_BY_ONE {
            // Too many to write one by one: one row for all slots from the first up to the
            // horizon, then on from the first slot within the grace.
            let first = slots[0];
            let why = format!(
                "missed: every slot from {} up to {} (more than {MISSED_ONE_BY_ONE}) is older \
                 than misfire_grace ({}); this row stands for all of them",
                first.to_rfc3339(),
                horizon.to_rfc3339(),
                humantime::format_duration(spec.misfire_grace)
            );
            tracing::warn!(job = %spec.name, from = %first, until = %horizon, "{why}");
            shared
                .metrics
                .run_ended(&spec.name, Status::Missed, None, now);
            shared.ledger.record(NewRun {
                id: Uuid::now_v7(),
                job_name: spec.name.clone(),
                scheduled_for: first,
                trigger: RunTrigger::CatchUp,
                status: Status::Missed,
                started_at: now,
                instance: shared.instance.clone(),
                error_message: Some(why),
                metadata: Some(serde_json::json!({ "missed_until": horizon })),
            });
            slots.clear();
            next = spec
                .trigger
                .next_after(horizon.max(slot) - TimeDelta::nanoseconds(1), spec.timezone);
            break;
        }
        slots.push(slot);
        next = spec.trigger.next_after(slot, spec.timezone);
    }
    let old = slots.len();
    while let Some(slot) = next.filter(|s| *s <= now) {
        if slots.len() - old >= MAX_SLOTS_PER_PASS {
            break;
        }
        slots.push(slot);
        next = spec.trigger.next_after(slot, spec.timezone);
    }
    (slots, next)
}

/// Starts fires: a single fire that can start at once is claimed `running` in one batch with
/// the others of this second (the fast path of the timer loop). A fire that has to wait (a
/// catch-up backlog, a queue, jitter, the concurrency bound) first gets a `pending` row, all
/// of them in one batch, so that a daemon stopped or killed before they ran leaves them for
/// the next one to adopt (invariant 3). Fires that hold a row already (adopted) keep it.
async fn start_fires(shared: &Arc<Shared>, tracker: &TaskTracker, fires: Vec<Fire>) {
    if fires.is_empty() {
        return;
    }
    // Other replicas' running jobs, read once for the whole batch (only PostgreSQL has them).
    if shared.store.has_replicas()
        && fires
            .iter()
            .any(|f| f.spec.overlap == config::Overlap::Skip)
    {
        // Bounded: the loop must go on while the database is away (the slot claim decides).
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            shared.store.running_jobs(&shared.instance),
        );
        match read.await {
            Ok(Ok(running)) => *shared.running_elsewhere.lock().expect("running lock") = running,
            Ok(Err(e)) => tracing::warn!(error = %e, "could not read runs of other daemons"),
            Err(_) => tracing::warn!("could not read runs of other daemons: no answer in 2s"),
        }
    }
    // Several fires of one job (a catch-up) run one after the other, oldest first.
    // In name order, so claim ids (time-ordered) and slot keys rise together.
    let mut by_job: std::collections::BTreeMap<Arc<str>, Vec<Fire>> = Default::default();
    for fire in fires {
        by_job.entry(fire.spec.name.clone()).or_default().push(fire);
    }
    let mut ready = vec![];
    let mut waiting = vec![];
    for (_, mut fires) in by_job {
        if fires.len() == 1 && fires[0].claim.is_none() {
            match runner::admit_now(shared, fires.pop().expect("one fire")) {
                runner::Admission::Ready(r) => ready.push(r),
                runner::Admission::Wait(fire) => fires.push(fire),
                runner::Admission::Skipped => {}
            }
        }
        if !fires.is_empty() {
            waiting.push(fires);
        }
    }
    if !waiting.is_empty() {
        hold_and_run(shared, tracker, waiting);
    }
    while !ready.is_empty() {
        let ready: Vec<runner::Ready> = ready.drain(..ready.len().min(250)).collect();
        let shared = shared.clone();
        let bodies = tracker.clone();
        tracker.spawn(async move {
            let rows = ready.iter().map(|r| r.claim_row(&shared)).collect();
            let asked = shared.clock.now();
            let Some(claimed) = shared.ledger.claim_many(rows).await else {
                ready.iter().for_each(runner::Ready::lost);
                return;
            };
            let now = shared.clock.now();
            for mut r in ready {
                // A claimed slot always runs (or is recorded `missed`): its row says `running`.
                if claimed.contains(&r.id()) {
                    r.claimed_at(asked, now);
                    bodies.spawn(runner::execute(shared.clone(), r));
                }
            }
        });
    }
}

/// Records a `pending` row for each fire without one (one batch), then runs each job's fires
/// one after the other. A fire whose row another replica inserted first is not run here.
fn hold_and_run(shared: &Arc<Shared>, tracker: &TaskTracker, jobs: Vec<Vec<Fire>>) {
    let shared = shared.clone();
    let bodies = tracker.clone();
    tracker.spawn(async move {
        let mut rows = vec![];
        let mut jobs = jobs;
        for fire in jobs.iter_mut().flatten() {
            if fire.claim.is_none() {
                let id = Uuid::now_v7();
                rows.push(fire.pending_row(id, &shared));
                fire.claim = Some(id);
            }
        }
        let new: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
        let won = if rows.is_empty() {
            HashSet::new()
        } else {
            match shared.ledger.claim_many(rows).await {
                Some(won) => won,
                None => {
                    for fire in jobs.iter().flatten() {
                        if fire.claim.is_some_and(|id| new.contains(&id)) {
                            tracing::error!(
                                job = %fire.spec.name, scheduled_for = %fire.slot,
                                "fire not run: its slot could not be claimed before the daemon \
                                 stopped (the database is unreachable)"
                            );
                        }
                    }
                    HashSet::new()
                }
            }
        };
        for fires in jobs {
            // Adopted fires hold their row already; new ones run if their insert won.
            let fires: Vec<Fire> = fires
                .into_iter()
                .filter(|f| {
                    f.claim
                        .is_some_and(|id| !new.contains(&id) || won.contains(&id))
                })
                .collect();
            if fires.is_empty() {
                continue;
            }
            let shared = shared.clone();
            bodies.spawn(async move {
                for fire in fires {
                    run_fire(shared.clone(), fire).await;
                }
            });
        }
    });
}

/// Re-reads the config; a file that does not validate changes nothing.
fn reload(
    current: &Config,
    scheduler: &mut Scheduler,
    shared: &Arc<Shared>,
    now: DateTime<Utc>,
) -> Option<Config> {
    tracing::info!(config = %current.path.display(), "reloading the config");
    let new = match config::load(&current.path) {
        Ok(new) => new,
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!("reload refused: the running schedule is unchanged");
            return None;
        }
    };
    if new.daemon.database_url != current.daemon.database_url
        || new.daemon.state_dir != current.daemon.state_dir
    {
        tracing::warn!("`database_url` and `state_dir` changes take effect at the next restart");
    }
    let (old, new_d) = (&current.daemon, &new.daemon);
    if old.heartbeat_interval != new_d.heartbeat_interval
        || old.history_retention != new_d.history_retention
        || old.failure_retention != new_d.failure_retention
        || old.shutdown_grace != new_d.shutdown_grace
    {
        tracing::warn!(
            "`heartbeat_interval`, `history_retention`, `failure_retention` and `shutdown_grace` \
             changes take effect at the next restart"
        );
    }
    let http_key = |c: &Config| {
        c.http
            .as_ref()
            .map(|h| (h.listen, h.token.clone(), h.max_connections))
    };
    if http_key(current) != http_key(&new) {
        tracing::warn!("`[http]` changes take effect at the next restart");
    }
    let (old_n, new_n) = (current.daemon.max_concurrent, new.daemon.max_concurrent);
    if new_n > old_n {
        shared.concurrency.add_permits(new_n - old_n);
    } else if new_n < old_n {
        // Permits held by running jobs are taken out as those jobs end.
        let (sem, n) = (shared.concurrency.clone(), (old_n - new_n) as u32);
        tokio::spawn(async move {
            if let Ok(permits) = sem.acquire_many_owned(n).await {
                permits.forget();
            }
        });
    }
    let new_names: HashSet<&str> = new.jobs.iter().map(|j| &*j.name).collect();
    let removed: Vec<Arc<str>> = scheduler
        .jobs
        .keys()
        .filter(|n| !new_names.contains(&***n))
        .cloned()
        .collect();
    for name in removed {
        scheduler.jobs.remove(&name);
        tracing::info!(job = %name, "removed; a run in flight finishes");
    }
    for spec in &new.jobs {
        let keep = scheduler.jobs.get(&spec.name).and_then(|old| {
            (old.spec.trigger == spec.trigger
                && old.spec.timezone == spec.timezone
                && old.spec.enabled)
                .then_some(old.next)
        });
        let next = match keep {
            Some(next) => next,
            None => spec.trigger.next_after(now, spec.timezone),
        };
        scheduler.set(spec.clone(), next);
        log_next(spec, next);
    }
    tracing::info!(jobs = new.jobs.len(), "config reloaded");
    Some(new)
}

/// Heartbeat, orphan detection and history pruning, in the background.
async fn maintenance(
    shared: Arc<Shared>,
    tracker: TaskTracker,
    me: Instance,
    daemon: config::DaemonConfig,
) {
    let interval = daemon.heartbeat_interval.max(Duration::from_secs(1));
    let stale =
        TimeDelta::from_std((interval * 3).max(Duration::from_secs(30))).unwrap_or_default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut beats: u64 = 0;
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        ticker.tick().await;
        let now = shared.clock.now();
        match shared.store.heartbeat(&me, now).await {
            Err(e) => {
                // Soon, so other replicas do not take this one for gone once the database is
                // back; logged once per outage.
                if down_since.is_none() {
                    tracing::warn!(error = %e, "heartbeat failed; retrying every second");
                    down_since = Some(tokio::time::Instant::now());
                }
                ticker.reset_after(Duration::from_secs(1));
                continue;
            }
            Ok(()) => {
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
        if let Err(e) = orphans::forget_dead_processes(&shared.store, &me).await {
            tracing::warn!(error = %e, "could not check this host's tickler processes");
        }
        orphans::resolve(&shared, &tracker, &me, now - stale, true).await;
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
    let instance = Instance::current()?;
    store.register_instance(&instance).await?;
    let shared = Shared::new(
        &store,
        &instance,
        clock.clone(),
        config.daemon.max_concurrent,
    );
    shared.set_jobs(&config.jobs);
    // A killed `run-job` or daemon of this host: its runs are abandoned (and alerted) and its
    // messages released before this run claims anything.
    orphans::forget_dead_processes(&store, &instance).await?;
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
    if tokio::time::timeout(Duration::from_secs(60), shared.ledger.flush())
        .await
        .is_err()
    {
        tracing::error!("the database is unreachable: the end of the run is not recorded");
        shared.ledger.give_up();
        shared.ledger.flush().await;
    }
    beat.abort();
    signals.abort();
    let _ = store.deregister(&instance.id).await;
    store.close().await;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(catch_up: &str, grace: &str) -> Arc<JobSpec> {
        let text = format!(
            "[[job]]\nname = \"j\"\nkind = \"noop\"\nevery = \"1m\"\ncatch_up = \"{catch_up}\"\nmisfire_grace = \"{grace}\"\n"
        );
        config::parse(Path::new("t.toml"), &text).unwrap().jobs[0].clone()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn slots() -> Vec<DateTime<Utc>> {
        // Five slots, 10:00 .. 10:04; "now" is 10:04:05, so only 10:04 is on time.
        (0..5)
            .map(|m| t("2025-01-01T10:00:00Z") + TimeDelta::minutes(m))
            .collect()
    }

    #[test]
    fn catch_up_none_runs_only_on_time_slots() {
        let d = decide(&spec("none", "1h"), &slots(), t("2025-01-01T10:04:05Z"));
        assert_eq!(d.run, [(t("2025-01-01T10:04:00Z"), RunTrigger::Schedule)]);
        assert_eq!(d.missed.len(), 4);
        assert_eq!(d.missed[0].1, "missed: catch_up = \"none\"");
    }

    #[test]
    fn catch_up_latest_coalesces() {
        // With an on-time slot the misses are superseded by it.
        let d = decide(&spec("latest", "1h"), &slots(), t("2025-01-01T10:04:05Z"));
        assert_eq!(d.run, [(t("2025-01-01T10:04:00Z"), RunTrigger::Schedule)]);
        assert_eq!(d.missed.len(), 4);
        // Without one, the latest missed slot within grace runs once.
        let d = decide(&spec("latest", "1h"), &slots(), t("2025-01-01T10:10:00Z"));
        assert_eq!(d.run, [(t("2025-01-01T10:04:00Z"), RunTrigger::CatchUp)]);
        assert_eq!(d.missed.len(), 4);
    }

    #[test]
    fn catch_up_all_runs_each_slot_within_grace() {
        let d = decide(&spec("all", "7m"), &slots(), t("2025-01-01T10:08:30Z"));
        let ran: Vec<_> = d
            .run
            .iter()
            .map(|(s, _)| s.format("%H:%M").to_string())
            .collect();
        assert_eq!(ran, ["10:02", "10:03", "10:04"]);
        assert_eq!(d.missed.len(), 2);
        assert_eq!(
            d.missed[0].1,
            "missed: the slot is older than misfire_grace (7m)"
        );
    }
}

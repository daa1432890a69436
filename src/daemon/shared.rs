//! The state every fire of one daemon (or one `run-job` process) shares: the store and the
//! ledger writer, the pools of run slots (`[daemon] max_concurrent` and each `[lanes]` entry)
//! and each job's turn, the shutdown tokens, the running config's jobs with each one's next
//! fire as the timer has it, metrics and what alerts remember. The runner, alerts, orphans and
//! the `[http]` listener read it; it imports none of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use crate::config::JobSpec;
use crate::store::Store;
use crate::store::audit::Pause;
use crate::time::Clock;

/// What every fire of one daemon (or one `run-job` process) shares.
/// The timer loop wakes at least every [`crate::time::MAX_SLEEP`] (with each beat, or on its own
/// timer); one that has not gone round in this long is stuck (`/healthz`, the console,
/// `tickler status`).
pub const LOOP_STALE: std::time::Duration = std::time::Duration::from_secs(75);

pub struct Shared {
    pub store: Store,
    pub ledger: Ledger,
    pub instance: Arc<str>,
    pub clock: Arc<dyn Clock>,
    /// The run slots of the jobs with no lane (`[daemon] max_concurrent`) and of each lane.
    pools: Mutex<Pools>,
    /// One permit per job name, held by its running fire under `skip` and `queue`.
    pub job_turns: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    /// Fires of each job whose body runs in this process now (a turn may also be held by a
    /// fire still waiting for its claim, which may yet lose the slot to another replica).
    pub(super) executing: Mutex<HashMap<Arc<str>, usize>>,
    /// Jobs running on other replicas, as last read from the ledger.
    pub running_elsewhere: Mutex<HashSet<String>>,
    /// The paused jobs as last read from `job_pauses` (read before each batch of fires; kept
    /// when a read fails, so a pause holds while the database is away).
    pub paused: Mutex<HashMap<String, Pause>>,
    /// Cancelled at shutdown: fires not yet started give up.
    pub stopping: CancellationToken,
    /// Cancelled when the shutdown grace runs out: running fires are interrupted.
    pub interrupt: CancellationToken,
    /// Runs by job and status, durations and lateness, for `/metrics`.
    pub metrics: super::metrics::Metrics,
    /// When the timer loop last went round (for `/healthz`).
    pub loop_tick: Mutex<std::time::Instant>,
    /// When this process's heartbeat (or its registration) last reached the database: other
    /// daemons judge it gone by that beat, so a batch claimed ahead starts only while it is
    /// fresh (`timer::claim_ahead`).
    pub last_beat: Mutex<std::time::Instant>,
    /// The jobs of the running config (replaced on reload), for alerts and `[http]`: in the
    /// config's order, and by name.
    jobs: Mutex<RunningJobs>,
    /// What alerts remember between dead-man checks.
    pub alerts: super::alerts::state::State,
    /// Woken each time a run's end is handed to the ledger writer (before its alerts go out),
    /// so a caller waiting for a run (`POST /jobs/NAME/run?wait=`) reads its row then instead
    /// of polling.
    pub run_ended: tokio::sync::Notify,
    /// Woken at each beat (`startup::beat_clock`): an idle timer loop goes round with it
    /// instead of on a 30 s timer of its own, so an idle daemon wakes once a beat.
    pub beat: tokio::sync::Notify,
}

/// The jobs of the running config: in the config's order, and by name; and each one's next
/// fire, in the same order.
#[derive(Default)]
struct RunningJobs {
    list: Arc<Vec<Arc<JobSpec>>>,
    by_name: HashMap<Arc<str>, Arc<JobSpec>>,
    next_fires: NextFires,
}

/// Each running job's next fire as the timer loop has it, in the config's order: the loop
/// writes a job's cell as it schedules it (one atomic store), a scrape of `/metrics` reads them
/// (it worked 100,000 schedules out again for each scrape before: 0.5-0.8 s of CPU with
/// 50,000 crons of their own). One array, 8 bytes a job. Empty until the timer has scheduled
/// the jobs.
pub type NextFires = Arc<[AtomicI64]>;

/// What a job with no next fire holds (a disabled job, a cron with no fire left).
const NO_FIRE: i64 = i64::MIN;

/// Writes `next` to a job's cell of [`NextFires`].
pub(super) fn publish(cell: &AtomicI64, next: Option<DateTime<Utc>>) {
    cell.store(
        next.map_or(NO_FIRE, |t| t.timestamp_micros()),
        Ordering::Relaxed,
    );
}

/// A cell for a job whose next fire is `next`.
pub(super) fn cell_of(next: Option<DateTime<Utc>>) -> AtomicI64 {
    let cell = AtomicI64::new(NO_FIRE);
    publish(&cell, next);
    cell
}

impl Shared {
    /// Starts the ledger writer on `store` and sets up the shared state of one process, running
    /// `jobs`.
    pub fn new(
        store: &Store,
        instance: &crate::store::Instance,
        clock: Arc<dyn Clock>,
        max_concurrent: usize,
        lanes: &BTreeMap<Arc<str>, usize>,
        jobs: &[Arc<JobSpec>],
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            store: store.clone(),
            ledger: Ledger::start(store.clone()),
            instance: instance.id.clone(),
            clock,
            pools: Mutex::new(Pools {
                default: Pool::new(max_concurrent),
                lanes: lanes
                    .iter()
                    .map(|(k, n)| (k.clone(), Pool::new(*n)))
                    .collect(),
            }),
            job_turns: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashMap::new()),
            running_elsewhere: Mutex::new(HashSet::new()),
            paused: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            interrupt: CancellationToken::new(),
            metrics: Default::default(),
            loop_tick: Mutex::new(std::time::Instant::now()),
            last_beat: Mutex::new(std::time::Instant::now()),
            jobs: Mutex::default(),
            alerts: Default::default(),
            run_ended: tokio::sync::Notify::new(),
            beat: tokio::sync::Notify::new(),
        });
        shared.set_jobs(jobs, NextFires::default());
        shared
    }

    /// Installs the jobs of a (re)loaded config, and the cells the timer publishes their next
    /// fires in (`Scheduler::board_for` the same jobs; empty before the timer has them).
    pub fn set_jobs(&self, jobs: &[Arc<JobSpec>], next_fires: NextFires) {
        self.alerts.know(jobs, self.clock.now());
        let by_name = jobs.iter().map(|j| (j.name.clone(), j.clone())).collect();
        let list = Arc::new(jobs.to_vec());
        *self.jobs.lock().expect("jobs lock") = RunningJobs {
            list,
            by_name,
            next_fires,
        };
    }

    /// Installs the cells of the jobs installed last (at start-up, those given to `new`), once
    /// the timer has scheduled them.
    pub(super) fn set_next_fires(&self, next_fires: NextFires) {
        let mut running = self.jobs.lock().expect("jobs lock");
        debug_assert_eq!(next_fires.len(), running.list.len());
        running.next_fires = next_fires;
    }

    /// Each enabled job's next fire as the timer has it, in the config's order (none before the
    /// timer has scheduled the jobs).
    pub fn next_fires(&self) -> Vec<(Arc<str>, Option<DateTime<Utc>>)> {
        let (list, cells) = {
            let running = self.jobs.lock().expect("jobs lock");
            (running.list.clone(), running.next_fires.clone())
        };
        list.iter()
            .zip(cells.iter())
            .filter(|(job, _)| job.enabled)
            .map(|(job, cell)| {
                let at = cell.load(Ordering::Relaxed);
                let at = (at != NO_FIRE).then(|| DateTime::from_timestamp_micros(at));
                (job.name.clone(), at.flatten())
            })
            .collect()
    }

    /// The run slots a fire of `spec` takes one of: its lane's, or `[daemon] max_concurrent`'s.
    pub fn slots(&self, spec: &JobSpec) -> Arc<Semaphore> {
        let pools = self.pools.lock().expect("pools lock");
        spec.lane
            .as_ref()
            .and_then(|lane| pools.lanes.get(lane))
            .unwrap_or(&pools.default)
            .slots
            .clone()
    }

    /// Resizes the pools to a reloaded config's: a pool grows at once and shrinks as the runs
    /// holding its slots end; a new lane gets its slots, a removed one's runs finish.
    pub fn set_pools(&self, max_concurrent: usize, lanes: &BTreeMap<Arc<str>, usize>) {
        let mut pools = self.pools.lock().expect("pools lock");
        pools.default.resize(max_concurrent);
        pools.lanes.retain(|name, _| lanes.contains_key(name));
        for (name, n) in lanes {
            match pools.lanes.get_mut(name) {
                Some(pool) => pool.resize(*n),
                None => {
                    pools.lanes.insert(name.clone(), Pool::new(*n));
                }
            }
        }
    }

    /// How many runs hold a slot now, over all pools.
    pub fn in_flight(&self) -> usize {
        let pools = self.pools.lock().expect("pools lock");
        pools.lanes.values().map(Pool::in_use).sum::<usize>() + pools.default.in_use()
    }

    /// The jobs of the running config (a reload installs a new list, so an unchanged `Arc`
    /// means no reload came in between).
    pub fn jobs_now(&self) -> Arc<Vec<Arc<JobSpec>>> {
        self.jobs.lock().expect("jobs lock").list.clone()
    }

    /// The job called `name` in the running config (found by name, not by a walk of the list:
    /// the slots adopted after a crash look up each of up to 100,000 jobs).
    pub fn job(&self, name: &str) -> Option<Arc<JobSpec>> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .by_name
            .get(name)
            .cloned()
    }

    pub(super) fn job_turn(&self, name: &Arc<str>) -> Arc<Semaphore> {
        let mut turns = self.job_turns.lock().expect("job turns lock");
        turns
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone()
    }

    pub(super) fn is_executing(&self, name: &str) -> bool {
        self.executing
            .lock()
            .expect("executing lock")
            .get(name)
            .is_some_and(|n| *n > 0)
    }

    /// Reads the paused jobs from the database (waiting at most 2 s) and keeps them; a read
    /// that fails keeps, and returns, the last set read, so a pause holds while the database
    /// is away.
    pub async fn read_paused(&self) -> HashMap<String, Pause> {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(2), self.store.paused_jobs());
        match read.await {
            Ok(Ok(rows)) => {
                let paused: HashMap<String, Pause> =
                    rows.into_iter().map(|p| (p.job_name.clone(), p)).collect();
                *self.paused.lock().expect("paused lock") = paused.clone();
                return paused;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not read the paused jobs"),
            Err(_) => tracing::warn!("could not read the paused jobs: no answer in 2s"),
        }
        self.paused.lock().expect("paused lock").clone()
    }

    pub(super) fn is_running_elsewhere(&self, name: &str) -> bool {
        self.running_elsewhere
            .lock()
            .expect("running lock")
            .contains(name)
    }
}

/// The pools of run slots: the jobs with no lane share `default`.
struct Pools {
    default: Pool,
    lanes: HashMap<Arc<str>, Pool>,
}

/// `size` run slots; a fire holds one while it waits for its claim and runs.
struct Pool {
    slots: Arc<Semaphore>,
    size: usize,
}

impl Pool {
    fn new(size: usize) -> Pool {
        Pool {
            slots: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Grows at once; shrinks as the runs holding its slots give them back (the slots taken
    /// out are forgotten by a task that waits for them).
    fn resize(&mut self, size: usize) {
        if size > self.size {
            self.slots.add_permits(size - self.size);
        } else if size < self.size {
            let (slots, n) = (self.slots.clone(), (self.size - size) as u32);
            tokio::spawn(async move {
                if let Ok(taken) = slots.acquire_many_owned(n).await {
                    taken.forget();
                }
            });
        }
        self.size = size;
    }

    fn in_use(&self) -> usize {
        self.size.saturating_sub(self.slots.available_permits())
    }
}

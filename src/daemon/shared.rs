//! The state every fire of one daemon (or one `run-job` process) shares: the store and the
//! ledger writer, the concurrency bound and each job's turn, the shutdown tokens, the running
//! config's jobs, metrics and what alerts remember. The runner, alerts, orphans and the
//! `[http]` listener read it; it imports none of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use crate::config::JobSpec;
use crate::store::Store;
use crate::time::Clock;

/// What every fire of one daemon (or one `run-job` process) shares.
pub struct Shared {
    pub store: Store,
    pub ledger: Ledger,
    pub instance: Arc<str>,
    pub clock: Arc<dyn Clock>,
    pub concurrency: Arc<Semaphore>,
    /// One permit per job name, held by its running fire under `skip` and `queue`.
    pub job_turns: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    /// Fires of each job whose body runs in this process now (a turn may also be held by a
    /// fire still waiting for its claim, which may yet lose the slot to another replica).
    pub(super) executing: Mutex<HashMap<Arc<str>, usize>>,
    /// Jobs running on other replicas, as last read from the ledger.
    pub running_elsewhere: Mutex<HashSet<String>>,
    /// Cancelled at shutdown: fires not yet started give up.
    pub stopping: CancellationToken,
    /// Cancelled when the shutdown grace runs out: running fires are interrupted.
    pub interrupt: CancellationToken,
    /// Runs by job and status, durations and lateness, for `/metrics`.
    pub metrics: super::metrics::Metrics,
    /// When the timer loop last went round (for `/healthz`).
    pub loop_tick: Mutex<std::time::Instant>,
    /// The jobs of the running config (replaced on reload), for alerts and `[http]`.
    pub jobs: Mutex<Arc<Vec<Arc<JobSpec>>>>,
    /// What alerts remember between dead-man checks.
    pub alerts: super::alerts::state::State,
    /// Woken each time a run's end is handed to the ledger writer (before its alerts go out),
    /// so a caller waiting for a run (`POST /jobs/NAME/run?wait=`) reads its row then instead
    /// of polling.
    pub run_ended: tokio::sync::Notify,
}

impl Shared {
    /// Starts the ledger writer on `store` and sets up the shared state of one process, running
    /// `jobs`.
    pub fn new(
        store: &Store,
        instance: &crate::store::Instance,
        clock: Arc<dyn Clock>,
        max_concurrent: usize,
        jobs: &[Arc<JobSpec>],
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            store: store.clone(),
            ledger: Ledger::start(store.clone()),
            instance: instance.id.clone(),
            clock,
            concurrency: Arc::new(Semaphore::new(max_concurrent)),
            job_turns: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashMap::new()),
            running_elsewhere: Mutex::new(HashSet::new()),
            stopping: CancellationToken::new(),
            interrupt: CancellationToken::new(),
            metrics: Default::default(),
            loop_tick: Mutex::new(std::time::Instant::now()),
            jobs: Mutex::new(Arc::new(vec![])),
            alerts: Default::default(),
            run_ended: tokio::sync::Notify::new(),
        });
        shared.set_jobs(jobs);
        shared
    }

    /// Installs the jobs of a (re)loaded config.
    pub fn set_jobs(&self, jobs: &[Arc<JobSpec>]) {
        self.alerts.know(jobs, self.clock.now());
        *self.jobs.lock().expect("jobs lock") = Arc::new(jobs.to_vec());
    }

    /// The job called `name` in the running config.
    pub fn job(&self, name: &str) -> Option<Arc<JobSpec>> {
        let jobs = self.jobs.lock().expect("jobs lock").clone();
        jobs.iter().find(|j| &*j.name == name).cloned()
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

    pub(super) fn is_running_elsewhere(&self, name: &str) -> bool {
        self.running_elsewhere
            .lock()
            .expect("running lock")
            .contains(name)
    }
}

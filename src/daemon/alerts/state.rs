//! What the alerts of one daemon remember between dead-man checks, kept in the daemon's shared
//! state (so the runner and alerts do not import each other through it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use crate::config::JobSpec;

/// What the alerts of one daemon remember between checks.
#[derive(Default)]
pub struct State {
    /// When this daemon first knew each job: a job that never ran is overdue from there.
    pub(super) known_since: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Each job's overdue window last logged by this process (the log says it once per window).
    pub(super) logged: Mutex<HashMap<String, String>>,
    pub(super) checking: AtomicBool,
    /// Sends being tried again; a shutdown waits for them (they stop waiting at once).
    pub(super) retries: tokio_util::task::TaskTracker,
}

impl State {
    /// Waits for the alert sends being tried again; they stop waiting once `stopping` is
    /// cancelled, and make one last try.
    pub async fn settled(&self) {
        self.retries.close();
        self.retries.wait().await;
    }

    /// When this daemon first knew `job` (a job with a dead-man deadline): `/metrics` counts a
    /// job that has not succeeded since from there, as the dead-man check does.
    pub fn known_since(&self, job: &str) -> Option<DateTime<Utc>> {
        self.known_since
            .lock()
            .expect("alerts lock")
            .get(job)
            .copied()
    }

    /// When this daemon first knew each job with a dead-man deadline (for the overview).
    pub fn known_all(&self) -> HashMap<String, DateTime<Utc>> {
        self.known_since.lock().expect("alerts lock").clone()
    }

    /// Notes the jobs of a (re)loaded config that have a dead-man deadline.
    pub fn know(&self, jobs: &[std::sync::Arc<JobSpec>], now: DateTime<Utc>) {
        let mut known = self.known_since.lock().expect("alerts lock");
        for j in jobs
            .iter()
            .filter(|j| j.alerts.expect_success_within.is_some())
        {
            known.entry(j.name.to_string()).or_insert(now);
        }
    }
}

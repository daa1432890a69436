//! `noop`: does nothing, optionally for a while. A heartbeat job, and the kind the benchmarks
//! and tests use to measure the scheduler rather than the work.

use std::time::Duration;

use serde::Deserialize;

use super::{Job, JobError, Outcome, RunContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopJob {
    /// How long the run takes.
    #[serde(default, with = "crate::time::duration")]
    pub duration: Duration,
}

impl Job for NoopJob {
    /// Serde's checks are all there is.
    type Invalid = std::convert::Infallible;

    async fn run(&self, _ctx: &RunContext) -> Result<Outcome, JobError> {
        if !self.duration.is_zero() {
            tokio::time::sleep(self.duration).await;
        }
        Ok(Outcome::default())
    }
}

//! What alerts read from the ledger: a job's last success, the failures since it, and the
//! first run ever recorded. The ledger is the memory of alerts, so they work the same after a
//! restart and on every replica.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ts;
use super::{Doing, Result, Store, with_pool};

/// Statuses that count as the job doing its work (a `partial` run did, with item errors).
pub(super) const SUCCESS: &str = "('succeeded', 'partial')";
/// Statuses that count as a failed run.
pub(super) const FAILURE: &str = "('failed', 'timed_out', 'abandoned')";

/// A job's ended runs since its last success.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Streak {
    /// The last run that succeeded (or ended `partial`): its id and end.
    pub last_success: Option<(String, DateTime<Utc>)>,
    /// When the first failed run after it ended.
    pub first_failure: Option<DateTime<Utc>>,
    /// How many runs failed after it.
    pub failures: i64,
    /// When the last of them ended.
    pub last_failure: Option<DateTime<Utc>>,
}

impl Store {
    /// The last success of `job` and the failures after it, among the runs that ended by
    /// `until`, leaving out run `except` (the run being judged, whose end may not be written
    /// yet; runs that ended after it do not change what is said about it).
    pub async fn streak(&self, job: &str, except: Uuid, until: DateTime<Utc>) -> Result<Streak> {
        let doing = "reading the job's last runs for alerts";
        let last = self
            .sql(&format!(
                "SELECT id::text, completed_at FROM job_execution_logs
              WHERE job_name = $1 AND completed_at IS NOT NULL AND status IN {SUCCESS}
                AND id <> $2::uuid AND completed_at <= $3::timestamptz
              ORDER BY completed_at DESC LIMIT 1"
            ))
            .into_owned();
        let last_success: Option<(String, DateTime<Utc>)> = with_pool!(self, pool => sqlx::query_as(&last)
                .bind(job)
                .bind(except.to_string())
                .bind(ts(until))
                .fetch_optional(pool)
                .await
                .doing(doing))?;
        let since = last_success
            .as_ref()
            .map(|(_, at)| *at)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let failed = self
            .sql(&format!(
                "SELECT count(*), min(completed_at), max(completed_at) FROM job_execution_logs
              WHERE job_name = $1 AND completed_at IS NOT NULL AND status IN {FAILURE}
                AND completed_at > $2::timestamptz AND id <> $3::uuid
                AND completed_at <= $4::timestamptz"
            ))
            .into_owned();
        type Counted = (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let (failures, first_failure, last_failure): Counted = with_pool!(self, pool => sqlx::query_as(&failed)
                .bind(job)
                .bind(ts(since))
                .bind(except.to_string())
                .bind(ts(until))
                .fetch_one(pool)
                .await
                .doing(doing))?;
        Ok(Streak {
            last_success,
            first_failure,
            failures,
            last_failure,
        })
    }

    /// Whether the last run of `job` that ended by `until`, other than `except`, failed (one
    /// index probe: the check every successful run makes before looking for a streak to call
    /// recovered).
    pub async fn last_outcome_failed(
        &self,
        job: &str,
        except: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let text = self
            .sql(&format!(
                "SELECT status IN {FAILURE} FROM job_execution_logs
                  WHERE job_name = $1 AND completed_at IS NOT NULL AND id <> $2::uuid
                    AND completed_at <= $3::timestamptz
                    AND (status IN {SUCCESS} OR status IN {FAILURE})
                  ORDER BY completed_at DESC LIMIT 1"
            ))
            .into_owned();
        let failed: Option<bool> = with_pool!(self, pool => sqlx::query_scalar(&text)
            .bind(job)
            .bind(except.to_string())
            .bind(ts(until))
            .fetch_optional(pool)
            .await
            .doing("reading the job's last run for alerts"))?;
        Ok(failed.unwrap_or(false))
    }

    /// When the first recorded run of `job` ended: a job that never succeeded is overdue
    /// from there.
    pub async fn first_ended(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        with_pool!(self, pool => sqlx::query_scalar(
            "SELECT completed_at FROM job_execution_logs
              WHERE job_name = $1 AND completed_at IS NOT NULL
              ORDER BY completed_at LIMIT 1",
        )
        .bind(job)
        .fetch_optional(pool)
        .await
        .doing("reading the job's first run for alerts"))
    }
}

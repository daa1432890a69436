//! Operator actions: `job_pauses` (the jobs whose slots are recorded `paused` instead of run)
//! and `audit_log` (who did what, from where and when, for every action of the CLI and the
//! console). A pause and its audit row are one transaction; other actions add their row once
//! they succeeded.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Doing, Result, Store, with_pool};

/// Who acts and from where: `who` is the console user or the shell user of the CLI, `origin`
/// says how (`cli on HOST`, `console 127.0.0.1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub who: String,
    pub origin: String,
}

/// A paused job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Pause {
    pub job_name: String,
    pub reason: String,
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub who: String,
    pub origin: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

/// What an operator did: the `action` column of `audit_log`, one word for each, written
/// alike by the CLI, the console and the HTTP trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Run,
    Backfill,
    TaskCancel,
    TaskRetry,
    TaskRunNow,
    InvoiceMarkPaid,
    ContactBlock,
    ContactUnblock,
    ContactImport,
    CampaignPause,
    CampaignResume,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Run => "run",
            Action::Backfill => "backfill",
            Action::TaskCancel => "task.cancel",
            Action::TaskRetry => "task.retry",
            Action::TaskRunNow => "task.run_now",
            Action::InvoiceMarkPaid => "invoice.mark_paid",
            Action::ContactBlock => "contact.block",
            Action::ContactUnblock => "contact.unblock",
            Action::ContactImport => "contact.import",
            Action::CampaignPause => "campaign.pause",
            Action::CampaignResume => "campaign.resume",
        }
    }
}

/// Which audit rows to read: newest first, `limit` of them, older than the row `before` (for
/// paging), about `target` only when given.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub target: Option<String>,
    pub before: Option<i64>,
    pub limit: i64,
}

pub(crate) const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (at, who, origin, action, target, detail)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// The audit row of an action, written in the action's own transaction: an action is never
/// recorded without its row, nor a row without its action.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub actor: &'a Actor,
    pub action: Action,
    pub target: &'a str,
    pub detail: Option<&'a str>,
}

/// Writes `$audit` (an `Option<Audit>`) on the open transaction `$tx` of `$store`.
macro_rules! write_audit {
    ($store:expr, $tx:expr, $audit:expr, $now:expr, $doing:expr) => {
        if let Some(a) = $audit {
            sqlx::query(&$store.sql($crate::store::audit::INSERT_AUDIT))
                .bind($now)
                .bind(&a.actor.who)
                .bind(&a.actor.origin)
                .bind(a.action.as_str())
                .bind(a.target)
                .bind(a.detail)
                .execute(&mut *$tx)
                .await
                .doing($doing)?;
        }
    };
}
pub(crate) use write_audit;

/// Runs one statement and, when it changed a row, its audit row (if any), in one
/// transaction; the changed-or-not answer is the method's.
macro_rules! audited {
    ($store:expr, $audit:expr, $now:expr, $doing:expr, |q| $statement:expr) => {{
        let begin = $store.begin_statement();
        let doing = $doing;
        with_pool!($store, pool => {
            let mut tx = pool.begin_with(begin).await.doing(doing)?;
            let changed = $statement.execute(&mut *tx).await.doing(doing)?.rows_affected() > 0;
            if changed {
                write_audit!($store, tx, $audit, $now, doing);
            }
            tx.commit().await.doing(doing)?;
            Ok::<bool, super::StoreError>(changed)
        })
    }};
}
pub(crate) use audited;

impl Store {
    /// Records an action that succeeded.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: Action,
        target: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let text = self.sql(INSERT_AUDIT);
        with_pool!(self, pool => sqlx::query(&text)
            .bind(now)
            .bind(&actor.who)
            .bind(&actor.origin)
            .bind(action.as_str())
            .bind(target)
            .bind(detail)
            .execute(pool)
            .await
            .map(|_| ())
            .doing("writing the audit log"))
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let text = self.sql(
            "SELECT id, at, who, origin, action, target, detail FROM audit_log
              WHERE ($1::text IS NULL OR target = $1) AND ($2::int8 IS NULL OR id < $2)
              ORDER BY id DESC LIMIT $3",
        );
        with_pool!(self, pool => sqlx::query_as::<_, AuditRow>(&text)
            .bind(filter.target.as_deref())
            .bind(filter.before)
            .bind(filter.limit)
            .fetch_all(pool)
            .await
            .doing("reading the audit log"))
    }

    /// Pauses `job` (and audits it, in one transaction). False when it was paused already:
    /// its first pause, reason and all, stays.
    pub async fn pause_job(
        &self,
        job: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let pause = self.sql(
            "INSERT INTO job_pauses (job_name, reason, paused_by, paused_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        );
        let detail = (!reason.is_empty()).then_some(reason);
        let audit = Audit {
            actor,
            action: Action::Pause,
            target: job,
            detail,
        };
        audited!(self, Some(audit), now, "pausing a job", |q| sqlx::query(
            &pause
        )
        .bind(job)
        .bind(reason)
        .bind(&actor.who)
        .bind(now))
    }

    /// Resumes `job` (and audits it, in one transaction). False when it was not paused.
    pub async fn resume_job(&self, job: &str, actor: &Actor, now: DateTime<Utc>) -> Result<bool> {
        let resume = self.sql("DELETE FROM job_pauses WHERE job_name = $1");
        let audit = Audit {
            actor,
            action: Action::Resume,
            target: job,
            detail: None,
        };
        audited!(self, Some(audit), now, "resuming a job", |q| {
            sqlx::query(&resume).bind(job)
        })
    }

    /// Every paused job.
    pub async fn paused_jobs(&self) -> Result<Vec<Pause>> {
        with_pool!(self, pool => sqlx::query_as::<_, Pause>(
            "SELECT job_name, reason, paused_by, paused_at FROM job_pauses ORDER BY job_name",
        )
        .fetch_all(pool)
        .await
        .doing("reading paused jobs"))
    }
}

//! The queue's tables: `scheduled_tasks` (claims with leases, finishes, the operator's list,
//! cancel and retry) and the collection campaigns with their invoices. Every change that
//! cancels tasks runs in the same transaction as its cause: a campaign paused or completed, an
//! invoice paid (`payments.rs`).
//!
//! Query text is written once in PostgreSQL notation and adapted by [`Store::sql`]; claims take
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several daemons share one queue.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::audit::{Audit, audited, write_audit};
use super::ts;
use super::{Doing, Result, Store, json_text, with_pool};

/// The nil UUID: the `org_id` of tasks and campaigns of a single-organisation install.
pub const NO_ORG: &str = "00000000-0000-0000-0000-000000000000";

/// A task to insert, `pending`.
#[derive(Debug, Clone, Serialize)]
pub struct NewTask {
    pub id: String,
    pub org_id: String,
    pub campaign_id: Option<String>,
    pub invoice_id: Option<String>,
    pub customer_id: Option<String>,
    pub task_type: String,
    /// JSON text.
    pub task_data: Option<String>,
    /// RFC 3339, as [`ts`] writes it.
    pub scheduled_for: String,
    pub max_retries: i32,
    pub priority: i32,
    /// JSON text.
    pub metadata: Option<String>,
}

/// A task as the runner and `tickler tasks list` read it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TaskRow {
    pub id: String,
    pub org_id: String,
    pub campaign_id: Option<String>,
    pub invoice_id: Option<String>,
    pub customer_id: Option<String>,
    pub task_type: String,
    pub task_data: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    pub status: String,
    pub executed_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub retry_count: i32,
    pub max_retries: i32,
    pub priority: i32,
    pub attempts: i32,
    /// The daemon running it, or the last one that did.
    pub lease_owner: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
}

pub(super) const TASK_COLUMNS: &str = "id::text AS id, org_id::text AS org_id,
    campaign_id::text AS campaign_id, invoice_id::text AS invoice_id,
    customer_id::text AS customer_id, task_type, task_data::text AS task_data, scheduled_for,
    status, executed_at, error_message, retry_count, max_retries, priority, attempts,
    lease_owner, completed_at, result::text AS result";

/// How an attempt ended, as written back by [`Store::finish_tasks`].
#[derive(Debug, Clone, Serialize)]
pub struct TaskFinish {
    pub id: String,
    /// `completed`, `failed`, or `pending` (a retry at `scheduled_for`).
    pub status: &'static str,
    pub scheduled_for: Option<String>,
    pub error: Option<String>,
    pub retry_count: i32,
    /// JSON text.
    pub result: Option<String>,
}

/// What a campaign task changes besides its own row, in one transaction with its finish.
#[derive(Debug, Clone, Default)]
pub struct CampaignStep {
    pub campaign_id: String,
    /// An email went out to this invoice: its membership counts it.
    pub sent: Option<Sent>,
    /// Memberships whose invoice is no longer open end as `paid` (a payment check).
    pub settle_paid: bool,
    /// `paused` or `active`.
    pub set_status: Option<&'static str>,
    /// An escalation of an invoice whose next email is already queued: the tone of that email
    /// and of the invoice's later ones.
    pub retone: Option<Retone>,
    pub new_tasks: Vec<NewTask>,
}

/// A new tone for an invoice of a campaign: its membership and its pending emails take it.
#[derive(Debug, Clone)]
pub struct Retone {
    pub invoice_id: String,
    pub tone: String,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub invoice_id: String,
    /// The tone later emails use (an escalation sets it).
    pub tone: Option<String>,
    /// Max attempts reached: the membership ends.
    pub exhausted: bool,
}

/// A campaign row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub status: String,
    pub days_between_emails: i32,
    pub max_attempts: i32,
    pub stages: String,
    pub escalation_tone: Option<String>,
    pub send_hour: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A campaign with its counts, for `tickler campaign list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CampaignSummary {
    #[sqlx(flatten)]
    pub campaign: CampaignRow,
    pub active: i64,
    pub pending: i64,
}

const CAMPAIGN_COLUMNS: &str = "id::text AS id, org_id::text AS org_id, name, status,
    days_between_emails, max_attempts, stages::text AS stages, escalation_tone, send_hour,
    created_at, completed_at";

/// An invoice in a campaign, with what its emails need.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MemberRow {
    pub invoice_id: String,
    pub number: String,
    pub invoice_status: String,
    pub customer_id: String,
    pub customer_timezone: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub tone: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// A new campaign and its first tasks.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub days_between_emails: i32,
    pub max_attempts: i32,
    pub stages: Vec<String>,
    pub escalation_tone: Option<String>,
    pub send_hour: i32,
    pub invoice_ids: Vec<String>,
    pub tasks: Vec<NewTask>,
}

pub(crate) const INSERT_TASKS: &str = "
INSERT INTO scheduled_tasks (id, org_id, campaign_id, invoice_id, customer_id, task_type,
       task_data, scheduled_for, status, max_retries, priority, metadata, created_at, updated_at)
SELECT (r.value->>'id')::uuid, (r.value->>'org_id')::uuid, (r.value->>'campaign_id')::uuid,
       (r.value->>'invoice_id')::uuid, (r.value->>'customer_id')::uuid, r.value->>'task_type',
       (r.value->>'task_data')::jsonb, (r.value->>'scheduled_for')::timestamptz, 'pending',
       (r.value->>'max_retries')::integer, (r.value->>'priority')::integer,
       (r.value->>'metadata')::jsonb, $2::timestamptz, $2::timestamptz
  FROM ROWS($1)";

/// The claim on PostgreSQL; public so the benchmark explains the very text.
pub const CLAIM_PG: &str = "
WITH due AS (
    SELECT id FROM scheduled_tasks
     WHERE status = 'pending' AND scheduled_for <= $1
     ORDER BY priority DESC, scheduled_for
     LIMIT $4
       FOR UPDATE SKIP LOCKED)
UPDATE scheduled_tasks t
   SET status = 'executing', lease_owner = $2, lease_expires_at = $3, executed_at = $1,
       updated_at = $1, attempts = t.attempts + 1
  FROM due WHERE t.id = due.id
RETURNING t.id::text AS id, t.org_id::text AS org_id, t.campaign_id::text AS campaign_id,
       t.invoice_id::text AS invoice_id, t.customer_id::text AS customer_id, t.task_type,
       t.task_data::text AS task_data, t.scheduled_for, t.status, t.executed_at,
       t.error_message, t.retry_count, t.max_retries, t.priority, t.attempts, t.lease_owner,
       t.completed_at, t.result::text AS result";

// SQLite has one writer at a time, so the claim needs no row locks.
const CLAIM_SQLITE: &str = "
UPDATE scheduled_tasks
   SET status = 'executing', lease_owner = $2, lease_expires_at = $3, executed_at = $1,
       updated_at = $1, attempts = attempts + 1
 WHERE id IN (SELECT id FROM scheduled_tasks
               WHERE status = 'pending' AND scheduled_for <= $1
               ORDER BY priority DESC, scheduled_for
               LIMIT $4)
RETURNING id, org_id, campaign_id, invoice_id, customer_id, task_type, task_data,
       scheduled_for, status, executed_at, error_message, retry_count, max_retries, priority,
       attempts, lease_owner, completed_at, result";

/// Writes finished attempts (`ROWS($1)`: see [`Store::sql`]); public for the benchmark.
pub const FINISH: &str = "
UPDATE scheduled_tasks
   SET status = r.value->>'status',
       scheduled_for = COALESCE((r.value->>'scheduled_for')::timestamptz, scheduled_for),
       error_message = r.value->>'error',
       retry_count = (r.value->>'retry_count')::integer,
       result = COALESCE((r.value->>'result')::jsonb, result),
       completed_at = CASE WHEN r.value->>'status' = 'pending' THEN NULL ELSE $3 END,
       lease_expires_at = NULL, updated_at = $3
  FROM ROWS($1)
 WHERE scheduled_tasks.id = (r.value->>'id')::uuid
   AND scheduled_tasks.status = 'executing' AND scheduled_tasks.lease_owner = $2";

/// The earliest pending task or lease to reclaim; public for the benchmark.
pub const NEXT_TASK: &str = "SELECT min(t) FROM (
      SELECT min(scheduled_for) AS t FROM scheduled_tasks WHERE status = 'pending'
      UNION ALL
      SELECT min(lease_expires_at) FROM scheduled_tasks WHERE status = 'executing') x";

/// Ends the memberships of a campaign (`$1`) whose invoice is no longer open.
const SETTLE_PAID: &str = "
UPDATE campaign_invoices SET status = 'paid', ended_at = $2
 WHERE campaign_id = $1::uuid AND status = 'active'
   AND invoice_id IN (SELECT id FROM invoices WHERE status <> 'open')";

/// Cancels the pending tasks of a campaign's invoices whose membership ended.
pub(super) const CANCEL_ENDED: &str = "
UPDATE scheduled_tasks
   SET status = 'cancelled', updated_at = $2,
       error_message = 'cancelled: the invoice left the campaign (paid, or its emails ended)'
 WHERE status = 'pending' AND campaign_id = $1::uuid AND invoice_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM campaign_invoices m
                    WHERE m.campaign_id = scheduled_tasks.campaign_id
                      AND m.invoice_id = scheduled_tasks.invoice_id AND m.status = 'active')";

/// Completes a campaign with no active invoice left.
pub(super) const COMPLETE_IF_DONE: &str = "
UPDATE campaigns SET status = 'completed', completed_at = $2, updated_at = $2
 WHERE id = $1::uuid AND status <> 'completed'
   AND NOT EXISTS (SELECT 1 FROM campaign_invoices
                    WHERE campaign_id = campaigns.id AND status = 'active')";

/// Cancels every pending task of a campaign (`$3`: the reason); on pause a scheduled
/// `resume_campaign` is kept (`$4`).
pub(super) const CANCEL_CAMPAIGN: &str = "
UPDATE scheduled_tasks SET status = 'cancelled', updated_at = $2, error_message = $3
 WHERE status = 'pending' AND campaign_id = $1::uuid
   AND ($4 = FALSE OR task_type <> 'resume_campaign')";

/// The statement that sets `key` of the data of an invoice's pending campaign tasks of `types`
/// to `$3`: JSON is edited by each engine's own function.
fn retone_pending(store: &Store, key: &str, types: &str) -> String {
    let set = match store {
        Store::Sqlite(_) => format!("json_set(COALESCE(task_data, '{{}}'), '$.{key}', $3)"),
        Store::Postgres(_) => {
            format!(
                "jsonb_set(COALESCE(task_data, '{{}}'::jsonb), '{{{key}}}', to_jsonb($3::text))"
            )
        }
    };
    format!(
        "UPDATE scheduled_tasks SET task_data = {set}, updated_at = $4
          WHERE campaign_id = $1::uuid AND invoice_id = $2::uuid AND status = 'pending'
            AND task_type IN ({types})"
    )
}

/// Settles a campaign inside a transaction: cancels the tasks of ended memberships, completes
/// it when no invoice is left (cancelling all it still had pending). Returns whether it
/// completed.
macro_rules! settle_campaign {
    ($tx:ident, $store:ident, $campaign:expr, $now:expr) => {{
        sqlx::query(&$store.sql($crate::store::queue::CANCEL_ENDED))
            .bind($campaign)
            .bind($now)
            .execute(&mut *$tx)
            .await
            .doing("cancelling the tasks of invoices that left a campaign")?;
        let completed = sqlx::query(&$store.sql($crate::store::queue::COMPLETE_IF_DONE))
            .bind($campaign)
            .bind($now)
            .execute(&mut *$tx)
            .await
            .doing("completing a campaign")?
            .rows_affected()
            == 1;
        if completed {
            sqlx::query(&$store.sql($crate::store::queue::CANCEL_CAMPAIGN))
                .bind($campaign)
                .bind($now)
                .bind("cancelled: the campaign completed")
                .bind(false)
                .execute(&mut *$tx)
                .await
                .doing("cancelling the tasks of a completed campaign")?;
        }
        completed
    }};
}
pub(super) use settle_campaign;

/// Pauses (`$pause`) an active campaign or resumes a paused one inside a transaction; a pause
/// cancels its pending tasks, keeping a queued `resume_campaign` when `$keep_resume`. Returns
/// whether the campaign was in the state to change.
macro_rules! change_status {
    ($tx:ident, $store:ident, $campaign:expr, $pause:expr, $keep_resume:expr, $now:expr) => {{
        let (to, from) = if $pause {
            ("paused", "active")
        } else {
            ("active", "paused")
        };
        let changed = sqlx::query(&$store.sql(
            "UPDATE campaigns SET status = $2, updated_at = $4
              WHERE id = $1::uuid AND status = $3",
        ))
        .bind($campaign)
        .bind(to)
        .bind(from)
        .bind($now)
        .execute(&mut *$tx)
        .await
        .doing("changing a campaign's status")?
        .rows_affected()
            == 1;
        if changed && $pause {
            sqlx::query(&$store.sql($crate::store::queue::CANCEL_CAMPAIGN))
                .bind($campaign)
                .bind($now)
                .bind("cancelled: the campaign was paused")
                .bind($keep_resume)
                .execute(&mut *$tx)
                .await
                .doing("cancelling the tasks of a paused campaign")?;
        }
        changed
    }};
}

/// Inserts tasks inside a transaction, in chunks.
macro_rules! insert_tasks {
    ($tx:ident, $store:ident, $tasks:expr, $now:expr) => {{
        let text = $store.sql($crate::store::queue::INSERT_TASKS);
        for chunk in $tasks.chunks(2000) {
            sqlx::query(&text)
                .bind(json_text(chunk))
                .bind($now)
                .execute(&mut *$tx)
                .await
                .doing("inserting tasks")?;
        }
    }};
}
pub(crate) use insert_tasks;

/// Bumped by every insert of tasks in this process, so that its task runners look again at
/// once (PostgreSQL also notifies other processes: [`Store::watch_tasks`]).
static INSERTED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Tells this process's task runners that tasks were inserted.
pub fn tasks_inserted() {
    INSERTED.send_modify(|n| *n = n.wrapping_add(1));
}

/// What a task runner waits on for [`tasks_inserted`].
pub fn watch_inserted() -> tokio::sync::watch::Receiver<u64> {
    INSERTED.subscribe()
}

/// `values` as the JSON array of objects `[{key: value}, ...]` that `ROWS($n)` reads.
fn keyed(key: &str, values: &[String]) -> String {
    let rows: Vec<Value> = values
        .iter()
        .map(|v| serde_json::json!({ key: v }))
        .collect();
    json_text(&rows)
}

/// A filter for `tickler tasks list`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub campaign_id: Option<String>,
    pub limit: i64,
}

impl Store {
    /// Inserts pending tasks in one transaction.
    pub async fn enqueue_tasks(&self, tasks: &[NewTask], now: DateTime<Utc>) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let begin = self.begin_statement();
        let store = self;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("inserting tasks")?;
            insert_tasks!(tx, store, tasks, now);
            tx.commit().await.doing("inserting tasks")?;
        });
        Ok(())
    }

    /// Claims up to `limit` due tasks for `owner` until `lease_until`, highest priority and
    /// earliest first. On PostgreSQL, rows another daemon is claiming are skipped, not waited on.
    pub async fn claim_tasks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<TaskRow>> {
        let mut rows = match self {
            Store::Postgres(s) => sqlx::query_as::<_, TaskRow>(CLAIM_PG)
                .bind(now)
                .bind(owner)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(s.pool())
                .await
                .doing("claiming due tasks")?,
            Store::Sqlite(s) => sqlx::query_as::<_, TaskRow>(CLAIM_SQLITE)
                .bind(now)
                .bind(owner)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(s.pool())
                .await
                .doing("claiming due tasks")?,
        };
        rows.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.scheduled_for.cmp(&b.scheduled_for))
        });
        Ok(rows)
    }

    /// Writes how attempts ended, for tasks `owner` still holds; returns how many it held.
    pub async fn finish_tasks(
        &self,
        owner: &str,
        finishes: &[TaskFinish],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let text = self.sql(FINISH);
        let mut done = 0;
        for chunk in finishes.chunks(2000) {
            done += with_pool!(self, pool => sqlx::query(&text)
                .bind(json_text(chunk))
                .bind(owner)
                .bind(now)
                .execute(pool)
                .await
                .doing("recording finished tasks")?
                .rows_affected());
        }
        Ok(done)
    }

    /// Extends the leases `owner` holds on `ids` (tasks still running).
    pub async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.update_held(
            "lease_expires_at = $3",
            owner,
            ids,
            until,
            "renewing task leases",
        )
        .await
    }

    /// `UPDATE scheduled_tasks SET {set}` on the tasks of `ids` that `owner` still runs; `$3`
    /// in `set` is `at`. Returns how many it held.
    async fn update_held(
        &self,
        set: &str,
        owner: &str,
        ids: &[String],
        at: DateTime<Utc>,
        doing: &'static str,
    ) -> Result<u64> {
        let text = format!(
            "UPDATE scheduled_tasks SET {set}
              WHERE lease_owner = $2 AND status = 'executing'
                AND id IN (SELECT (r.value->>'id')::uuid FROM ROWS($1))"
        );
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query(&text)
            .bind(keyed("id", ids))
            .bind(owner)
            .bind(at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .doing(doing))
    }

    /// Tasks whose lease expired (their daemon died or stalled): id, lease owner, and the
    /// process group of their last attempt (JSON, see `jobs::command`), to be ended before
    /// [`Store::reclaim_expired`] makes them runnable again.
    pub async fn expired_tasks(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>> {
        let text = self.sql(
            "SELECT id::text, lease_owner, process_group FROM scheduled_tasks
              WHERE status = 'executing' AND lease_expires_at < $1",
        );
        with_pool!(self, pool => sqlx::query_as(&text)
            .bind(now)
            .fetch_all(pool)
            .await
            .doing("reading tasks of a stopped daemon"))
    }

    /// Puts tasks `ids` whose lease expired (their daemon died or stalled) back in the queue,
    /// due now. This counts as a failed attempt: a task that keeps killing its daemon ends
    /// `failed` after its retries. Returns the ids reclaimed (a task whose lease was renewed
    /// meanwhile is not).
    pub async fn reclaim_expired(&self, ids: &[String], now: DateTime<Utc>) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let text = self.sql(
            "UPDATE scheduled_tasks
                SET status = CASE WHEN retry_count + 1 > max_retries THEN 'failed'
                                  ELSE 'pending' END,
                    retry_count = retry_count + 1, scheduled_for = $1, updated_at = $1,
                    completed_at = CASE WHEN retry_count + 1 > max_retries THEN $1 END,
                    error_message = 'the daemon running it stopped (lease of ' || lease_owner
                                    || ' expired)',
                    lease_owner = NULL, lease_expires_at = NULL, process_group = NULL
              WHERE status = 'executing' AND lease_expires_at < $1
                AND id IN (SELECT (r.value->>'id')::uuid FROM ROWS($2))
             RETURNING id::text",
        );
        let rows: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
        with_pool!(self, pool => sqlx::query_scalar::<_, String>(&text)
            .bind(now)
            .bind(json_text(&rows))
            .fetch_all(pool)
            .await
            .doing("reclaiming tasks of a stopped daemon"))
    }

    /// Gives tasks back to the queue without counting an attempt (shutdown ran out of grace).
    pub async fn release_tasks(
        &self,
        owner: &str,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.update_held(
            "status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
             attempts = attempts - 1, updated_at = $3,
             error_message = 'interrupted by a shutdown; runs again'",
            owner,
            ids,
            now,
            "releasing interrupted tasks",
        )
        .await
    }

    /// When the runner must look again: the earliest pending task, or the earliest lease to
    /// reclaim.
    pub async fn next_task_time(&self) -> Result<Option<DateTime<Utc>>> {
        with_pool!(self, pool => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(NEXT_TASK)
            .fetch_one(pool)
            .await
            .doing("reading the time of the next task"))
    }

    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let text = format!("SELECT {TASK_COLUMNS} FROM scheduled_tasks WHERE id = $1::uuid");
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, TaskRow>(&text)
            .bind(id)
            .fetch_optional(pool)
            .await
            .doing("reading a task"))
    }

    /// Tasks in `scheduled_for` order (finished ones most recent first).
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>> {
        let order = match filter.status.as_deref() {
            Some("pending") | Some("executing") => "scheduled_for, id",
            _ => "COALESCE(completed_at, scheduled_for) DESC, id",
        };
        let text = format!(
            "SELECT {TASK_COLUMNS} FROM scheduled_tasks
              WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR campaign_id = $2::uuid)
              ORDER BY {order} LIMIT $3"
        );
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, TaskRow>(&text)
            .bind(&filter.status)
            .bind(&filter.campaign_id)
            .bind(filter.limit)
            .fetch_all(pool)
            .await
            .doing("listing tasks"))
    }

    /// Counts of tasks by status.
    pub async fn task_counts(&self) -> Result<Vec<(String, i64)>> {
        let text = "SELECT status, count(*) FROM scheduled_tasks GROUP BY status ORDER BY status";
        with_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(text)
            .fetch_all(pool)
            .await
            .doing("counting tasks"))
    }

    /// The earliest other pending task of a campaign's invoice.
    pub async fn next_campaign_task(
        &self,
        campaign_id: &str,
        invoice_id: &str,
        except: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        let text = self.sql(
            "SELECT min(scheduled_for) FROM scheduled_tasks
              WHERE status = 'pending' AND campaign_id = $1::uuid AND invoice_id = $2::uuid
                AND id <> $3::uuid",
        );
        with_pool!(self, pool => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(&text)
            .bind(campaign_id)
            .bind(invoice_id)
            .bind(except)
            .fetch_one(pool)
            .await
            .doing("reading a campaign's next task"))
    }

    /// Cancels a pending task; returns its status when it was not pending.
    pub async fn cancel_task(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Option<Audit<'_>>,
    ) -> Result<Option<String>> {
        self.change_task(
            "UPDATE scheduled_tasks SET status = 'cancelled', updated_at = $2,
                    error_message = 'cancelled by an operator (`tickler audit` says who)'
              WHERE id = $1::uuid AND status = 'pending'",
            id,
            now,
            "cancelling a task",
            audit,
        )
        .await
    }

    /// Puts a failed or cancelled task back in the queue, due now, with its retries reset.
    /// Returns its status when it was neither. PostgreSQL's trigger notifies the runners (a
    /// task back to `pending`), and SQLite's watch sees the commit.
    pub async fn retry_task(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Option<Audit<'_>>,
    ) -> Result<Option<String>> {
        self.change_task(
            "UPDATE scheduled_tasks SET status = 'pending', scheduled_for = $2, updated_at = $2,
                    retry_count = 0, completed_at = NULL
              WHERE id = $1::uuid AND status IN ('failed', 'cancelled')",
            id,
            now,
            "retrying a task",
            audit,
        )
        .await
    }

    /// Makes a pending task due now (`tickler tasks run-now`); one already due keeps its time.
    /// Returns its status when it was not pending. Moved earlier, it wakes the runners:
    /// PostgreSQL's trigger notifies them and SQLite's trigger bumps the count its watch reads
    /// (migrations 0006).
    pub async fn run_task_now(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Option<Audit<'_>>,
    ) -> Result<Option<String>> {
        self.change_task(
            "UPDATE scheduled_tasks
                SET scheduled_for = CASE WHEN scheduled_for > $2 THEN $2 ELSE scheduled_for END,
                    updated_at = $2
              WHERE id = $1::uuid AND status = 'pending'",
            id,
            now,
            "making a task due now",
            audit,
        )
        .await
    }

    /// Runs `text` (binding the task `id` as `$1` and `now` as `$2`), which changes the task
    /// only from the statuses it allows. `None` when it changed; else the task's status, or
    /// `missing` when there is no such task.
    async fn change_task(
        &self,
        text: &str,
        id: &str,
        now: DateTime<Utc>,
        doing: &'static str,
        audit: Option<Audit<'_>>,
    ) -> Result<Option<String>> {
        let text = self.sql(text);
        let changed = audited!(self, audit, now, doing, |q| sqlx::query(&text)
            .bind(id)
            .bind(now))?;
        if changed {
            return Ok(None);
        }
        Ok(Some(
            self.task(id)
                .await?
                .map(|t| t.status)
                .unwrap_or_else(|| "missing".into()),
        ))
    }

    /// Finishes a campaign task together with what it changes: the membership of the invoice
    /// it emailed, paid invoices settled, the campaign paused or resumed, its next tasks, and
    /// the cancellations that follow. Nothing is written if `owner` lost the task's lease.
    /// Returns false in that case.
    pub async fn finish_campaign_task(
        &self,
        owner: &str,
        finish: &TaskFinish,
        step: &CampaignStep,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let begin = self.begin_statement();
        let store = self;
        let campaign = step.campaign_id.as_str();
        let finish_text = self.sql(FINISH);
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("finishing a campaign task")?;
            let held = sqlx::query(&finish_text)
                .bind(json_text(std::slice::from_ref(finish)))
                .bind(owner)
                .bind(now)
                .execute(&mut *tx)
                .await
                .doing("finishing a campaign task")?
                .rows_affected()
                == 1;
            if !held {
                tx.rollback().await.doing("finishing a campaign task")?;
                return Ok(false);
            }
            if let Some(sent) = &step.sent {
                sqlx::query(&store.sql(
                    "UPDATE campaign_invoices
                        SET attempts = attempts + 1, last_sent_at = $3,
                            tone = COALESCE($4, tone),
                            status = CASE WHEN $5 THEN 'exhausted' ELSE status END,
                            ended_at = CASE WHEN $5 THEN $3 ELSE ended_at END
                      WHERE campaign_id = $1::uuid AND invoice_id = $2::uuid",
                ))
                .bind(campaign)
                .bind(&sent.invoice_id)
                .bind(now)
                .bind(&sent.tone)
                .bind(sent.exhausted)
                .execute(&mut *tx)
                .await
                .doing("recording a campaign email")?;
            }
            if let Some(r) = &step.retone {
                sqlx::query(&store.sql(
                    "UPDATE campaign_invoices SET tone = $3
                      WHERE campaign_id = $1::uuid AND invoice_id = $2::uuid",
                ))
                .bind(campaign)
                .bind(&r.invoice_id)
                .bind(&r.tone)
                .execute(&mut *tx)
                .await
                .doing("changing the tone of a campaign's invoice")?;
                for (key, types) in [("tone", "'send_email', 'follow_up'"), ("newTone", "'escalate'")] {
                    sqlx::query(&store.sql(&retone_pending(store, key, types)))
                        .bind(campaign)
                        .bind(&r.invoice_id)
                        .bind(&r.tone)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .doing("changing the tone of an invoice's pending emails")?;
                }
            }
            if step.settle_paid {
                sqlx::query(&store.sql(SETTLE_PAID))
                    .bind(campaign)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .doing("settling paid invoices of a campaign")?;
            }
            if let Some(status) = step.set_status {
                change_status!(tx, store, campaign, status == "paused", true, now);
            }
            insert_tasks!(tx, store, step.new_tasks, now);
            settle_campaign!(tx, store, campaign, now);
            tx.commit().await.doing("finishing a campaign task")?;
        });
        Ok(true)
    }

    /// Creates a campaign, its memberships and its first tasks in one transaction.
    pub async fn create_campaign(&self, c: &NewCampaign, now: DateTime<Utc>) -> Result<()> {
        let begin = self.begin_statement();
        let store = self;
        let stages = serde_json::to_string(&c.stages).unwrap_or_else(|_| "[]".into());
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("creating a campaign")?;
            sqlx::query(&store.sql(
                "INSERT INTO campaigns (id, org_id, name, status, days_between_emails,
                        max_attempts, stages, escalation_tone, send_hour, created_at, updated_at)
                 VALUES ($1::uuid, $2::uuid, $3, 'active', $4, $5, $6::jsonb, $7, $8, $9, $9)",
            ))
            .bind(&c.id)
            .bind(&c.org_id)
            .bind(&c.name)
            .bind(c.days_between_emails)
            .bind(c.max_attempts)
            .bind(&stages)
            .bind(&c.escalation_tone)
            .bind(c.send_hour)
            .bind(now)
            .execute(&mut *tx)
            .await
            .doing("creating a campaign")?;
            sqlx::query(&store.sql(
                "INSERT INTO campaign_invoices (campaign_id, invoice_id)
                 SELECT $1::uuid, (r.value->>'id')::uuid FROM ROWS($2)",
            ))
            .bind(&c.id)
            .bind(keyed("id", &c.invoice_ids))
            .execute(&mut *tx)
            .await
            .doing("adding invoices to a campaign")?;
            insert_tasks!(tx, store, c.tasks, now);
            tx.commit().await.doing("creating a campaign")?;
        });
        Ok(())
    }

    /// A campaign by id or by name.
    pub async fn campaign(&self, id_or_name: &str) -> Result<Option<CampaignRow>> {
        let by_id = uuid::Uuid::parse_str(id_or_name).is_ok();
        let text = format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE {} = $1 ORDER BY created_at LIMIT 1",
            if by_id { "id::text" } else { "name" }
        );
        let text = self.sql(&text);
        let key = if by_id {
            id_or_name.to_ascii_lowercase()
        } else {
            id_or_name.to_string()
        };
        with_pool!(self, pool => sqlx::query_as::<_, CampaignRow>(&text)
            .bind(&key)
            .fetch_optional(pool)
            .await
            .doing("reading a campaign"))
    }

    /// Every campaign, with its counts of active invoices and pending tasks.
    pub async fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        let text = format!(
            "SELECT {CAMPAIGN_COLUMNS},
                    (SELECT count(*) FROM campaign_invoices m
                      WHERE m.campaign_id = campaigns.id AND m.status = 'active') AS active,
                    (SELECT count(*) FROM scheduled_tasks t
                      WHERE t.campaign_id = campaigns.id AND t.status = 'pending') AS pending
               FROM campaigns ORDER BY created_at, name"
        );
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, CampaignSummary>(&text)
            .fetch_all(pool)
            .await
            .doing("listing campaigns"))
    }

    /// The invoices of a campaign, with their customers' zones.
    pub async fn campaign_members(&self, campaign_id: &str) -> Result<Vec<MemberRow>> {
        let text = self.sql(
            "SELECT m.invoice_id::text AS invoice_id, i.number, i.status AS invoice_status,
                    c.id::text AS customer_id, c.timezone AS customer_timezone, m.status,
                    m.attempts, m.tone, m.last_sent_at
               FROM campaign_invoices m
               JOIN invoices i ON i.id = m.invoice_id
               JOIN customers c ON c.id = i.customer_id
              WHERE m.campaign_id = $1::uuid
              ORDER BY i.due_date, i.number",
        );
        with_pool!(self, pool => sqlx::query_as::<_, MemberRow>(&text)
            .bind(campaign_id)
            .fetch_all(pool)
            .await
            .doing("reading a campaign's invoices"))
    }

    /// Pauses an active campaign (cancelling its pending tasks) or resumes a paused one
    /// (inserting `resume_tasks`), in one transaction. Returns false when the campaign was not
    /// in the expected state.
    pub async fn set_campaign_status(
        &self,
        campaign_id: &str,
        pause: bool,
        resume_tasks: &[NewTask],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let begin = self.begin_statement();
        let store = self;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing("changing a campaign's status")?;
            if !change_status!(tx, store, campaign_id, pause, false, now) {
                tx.rollback().await.doing("changing a campaign's status")?;
                return Ok(false);
            }
            if !pause {
                insert_tasks!(tx, store, resume_tasks, now);
            }
            tx.commit().await.doing("changing a campaign's status")?;
        });
        Ok(true)
    }
}

/// Formats a time for [`NewTask::scheduled_for`].
pub fn task_time(t: DateTime<Utc>) -> String {
    ts(t)
}

/// An invoice a campaign may take: open, with its customer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignCandidate {
    pub id: String,
    pub number: String,
    pub status: String,
    pub customer_id: String,
    /// The active campaign it is already in, if any.
    pub in_campaign: Option<String>,
}

impl Store {
    /// Invoices by number (`numbers`), or every open invoice due on or before `due_by`.
    pub async fn campaign_candidates(
        &self,
        numbers: Option<&[String]>,
        due_by: chrono::NaiveDate,
    ) -> Result<Vec<CampaignCandidate>> {
        let select =
            "SELECT i.id::text AS id, i.number, i.status, i.customer_id::text AS customer_id,
                    (SELECT c.name FROM campaign_invoices m JOIN campaigns c ON c.id = m.campaign_id
                      WHERE m.invoice_id = i.id AND m.status = 'active' AND c.status <> 'completed'
                      LIMIT 1) AS in_campaign
               FROM invoices i";
        let text = format!(
            "{select}
              WHERE CASE WHEN $3 THEN i.number IN (SELECT r.value->>'n' FROM ROWS($1))
                         ELSE i.status = 'open' AND i.due_date <= $2 END
              ORDER BY CASE WHEN $3 THEN NULL ELSE i.due_date END, i.number"
        );
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, CampaignCandidate>(&text)
            .bind(keyed("n", numbers.unwrap_or_default()))
            .bind(due_by)
            .bind(numbers.is_some())
            .fetch_all(pool)
            .await
            .doing("reading the invoices of a new campaign"))
    }
}

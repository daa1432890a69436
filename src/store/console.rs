//! What the operator console (`http::console`) and `tickler status` read: each statement is
//! paged (`LIMIT` with a keyset on an indexed order) or bounded by the names it is given, so a
//! page costs the same with 10 jobs or 10,000 and 1,000,000 ledger rows. The per-job figures
//! of a page of jobs are one statement for the whole page.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Doing, Result, Store, health, json_text, ts, with_pool};

/// What the overview shows of one job's runs.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct JobFigures {
    pub job: String,
    /// The newest row of the job (by slot): its id, status and timing.
    pub last_id: Option<String>,
    pub last_status: Option<String>,
    pub last_scheduled_for: Option<DateTime<Utc>>,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_duration_seconds: Option<f64>,
    /// The newest row's metadata (its `lateness_ms`).
    #[serde(skip)]
    pub last_metadata: Option<String>,
    /// When its newest successful (or `partial`) run ended.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed runs since that success (or ever, without one).
    pub failure_streak: i64,
    /// When its first run (by slot) ended: a job that never succeeded is overdue from there.
    pub first_ended: Option<DateTime<Utc>>,
}

/// A campaign's invoice as the console lists it, with its next pending email.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MemberLine {
    pub invoice_id: String,
    pub number: String,
    pub due_date: NaiveDate,
    pub invoice_status: String,
    pub status: String,
    pub attempts: i64,
    pub tone: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub next_email: Option<DateTime<Utc>>,
}

/// A ledger row as the console lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunLine {
    pub id: String,
    pub status: String,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub records_processed: Option<i64>,
    pub error_message: Option<String>,
    pub trigger: String,
    pub attempt: i64,
    #[serde(skip)]
    pub metadata: Option<String>,
}

/// A message of `notification_log` as the console lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MessageLine {
    pub id: String,
    pub job_name: Option<String>,
    pub channel: String,
    pub recipient: String,
    pub template: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub run_id: Option<String>,
}

/// A filter of the message log; `before` is the keyset `(created_at, id)` of the last row of
/// the previous page.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<String>,
    pub channel: Option<String>,
    pub job: Option<String>,
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// A count of open tasks of one type and status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TaskCount {
    pub task_type: String,
    pub status: String,
    pub count: i64,
}

/// Open invoices at one escalation level, in one currency.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InvoiceLevel {
    pub escalation_level: i64,
    pub currency: String,
    pub open: i64,
    pub overdue: i64,
    pub outstanding_minor: i64,
}

/// An open invoice as the console lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OpenInvoice {
    pub id: String,
    pub number: String,
    pub customer_name: String,
    pub amount_minor: i64,
    pub paid_minor: i64,
    pub currency: String,
    pub due_date: NaiveDate,
    pub escalation_level: i64,
}

const RUN_COLUMNS: &str = "id::text AS id, status, scheduled_for, started_at, completed_at,
    duration_seconds, records_processed, error_message, \"trigger\", attempt::bigint AS attempt,
    metadata::text AS metadata";

const MESSAGE_COLUMNS: &str = "id::text AS id, job_name, channel, recipient, template, status,
    error, attempts::bigint AS attempts, created_at, sent_at, run_id::text AS run_id";

impl Store {
    /// The overview's figures of the jobs named, in one statement: per job, three probes of
    /// the `job_execution_logs_job` index (newest row, newest success, failures after it).
    pub async fn job_figures(&self, names: &[String]) -> Result<Vec<JobFigures>> {
        if names.is_empty() {
            return Ok(vec![]);
        }
        let success = health::SUCCESS;
        let failure = health::FAILURE;
        let text = format!(
            "SELECT r.value->>'n' AS job, l.id::text AS last_id, l.status AS last_status,
                    l.scheduled_for AS last_scheduled_for, l.started_at AS last_started_at,
                    l.duration_seconds AS last_duration_seconds,
                    l.metadata::text AS last_metadata,
                    (SELECT s.completed_at FROM job_execution_logs s
                      WHERE s.job_name = r.value->>'n' AND s.status IN {success}
                      ORDER BY s.scheduled_for DESC LIMIT 1) AS last_success,
                    (SELECT count(*) FROM job_execution_logs f
                      WHERE f.job_name = r.value->>'n' AND f.status IN {failure}
                        AND f.scheduled_for > COALESCE(
                            (SELECT s.scheduled_for FROM job_execution_logs s
                              WHERE s.job_name = r.value->>'n' AND s.status IN {success}
                              ORDER BY s.scheduled_for DESC LIMIT 1), $2::timestamptz)
                    ) AS failure_streak,
                    (SELECT e.completed_at FROM job_execution_logs e
                      WHERE e.job_name = r.value->>'n' AND e.completed_at IS NOT NULL
                      ORDER BY e.scheduled_for LIMIT 1) AS first_ended
               FROM ROWS($1)
               LEFT JOIN job_execution_logs l ON l.id = (
                    SELECT x.id FROM job_execution_logs x WHERE x.job_name = r.value->>'n'
                     ORDER BY x.scheduled_for DESC LIMIT 1)"
        );
        let text = self.sql(&text);
        let rows: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({ "n": n }))
            .collect();
        with_pool!(self, pool => sqlx::query_as::<_, JobFigures>(&text)
            .bind(json_text(&rows))
            .bind(ts(DateTime::<Utc>::UNIX_EPOCH))
            .fetch_all(pool)
            .await
            .doing("reading the overview's figures of jobs"))
    }

    /// A page of a job's runs, newest slot first, after the keyset `before`
    /// (`scheduled_for`, `id`) of the previous page (index `job_execution_logs_job`).
    pub async fn job_runs(
        &self,
        job: &str,
        status: Option<&str>,
        before: Option<(DateTime<Utc>, String)>,
        limit: i64,
    ) -> Result<Vec<RunLine>> {
        let text = format!(
            "SELECT {RUN_COLUMNS} FROM job_execution_logs
              WHERE job_name = $1 AND ($2::text IS NULL OR status = $2)
                AND scheduled_for <= $3::timestamptz
                AND (scheduled_for < $3::timestamptz OR id::text < $4)
              ORDER BY scheduled_for DESC, id DESC LIMIT $5"
        );
        let text = self.sql(&text);
        let (at, id) = keyset(before);
        with_pool!(self, pool => sqlx::query_as::<_, RunLine>(&text)
            .bind(job)
            .bind(status)
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("reading a job's runs"))
    }

    /// The messages a run sent (index `notification_log_run`), oldest first, at most `limit`.
    pub async fn messages_of_run(&self, run_id: &str, limit: i64) -> Result<Vec<MessageLine>> {
        let text = format!(
            "SELECT {MESSAGE_COLUMNS} FROM notification_log WHERE run_id = $1::uuid
              ORDER BY created_at, id LIMIT $2"
        );
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, MessageLine>(&text)
            .bind(run_id)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("reading a run's messages"))
    }

    /// A page of the message log, newest first (index `notification_log_created`).
    pub async fn message_log(&self, filter: &MessageFilter) -> Result<Vec<MessageLine>> {
        let text = format!(
            "SELECT {MESSAGE_COLUMNS} FROM notification_log
              WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)
                AND ($3::text IS NULL OR job_name = $3)
                AND created_at <= $4::timestamptz
                AND (created_at < $4::timestamptz OR id::text < $5)
              ORDER BY created_at DESC, id DESC LIMIT $6"
        );
        let text = self.sql(&text);
        let (at, id) = keyset(filter.before.clone());
        with_pool!(self, pool => sqlx::query_as::<_, MessageLine>(&text)
            .bind(&filter.status)
            .bind(&filter.channel)
            .bind(&filter.job)
            .bind(at)
            .bind(id)
            .bind(filter.limit)
            .fetch_all(pool)
            .await
            .doing("reading the message log"))
    }

    /// Messages created since `since` by status (index `notification_log_created`): the
    /// overview's "today".
    pub async fn message_counts_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        let text = self.sql(
            "SELECT status, count(*) FROM notification_log
              WHERE created_at >= $1::timestamptz GROUP BY status ORDER BY status",
        );
        with_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(&text)
            .bind(ts(since))
            .fetch_all(pool)
            .await
            .doing("counting today's messages"))
    }

    /// Open tasks (pending, executing, failed) by type and status ([`OPEN_TASK_COUNTS`]).
    pub async fn open_task_counts(&self) -> Result<Vec<TaskCount>> {
        with_pool!(self, pool => sqlx::query_as::<_, TaskCount>(OPEN_TASK_COUNTS)
            .fetch_all(pool)
            .await
            .doing("counting open tasks"))
    }

    /// A page of open tasks of one status (`pending`, `executing` or `failed`; and type), due
    /// first for the first two, newest first for failed ones, after the keyset `after`
    /// (`scheduled_for`, `id`) of the previous page's last row ([`task_page_sql`]). An
    /// `OFFSET` made page 800 of 40,000 pending tasks take 170 ms on PostgreSQL, which fetched
    /// every skipped row.
    pub async fn task_page(
        &self,
        status: &str,
        task_type: Option<&str>,
        after: Option<(DateTime<Utc>, String)>,
        limit: i64,
    ) -> Result<Vec<crate::store::queue::TaskRow>> {
        let (at, id) = match after {
            Some((at, id)) => (ts(at), id),
            None if due_first(status) => (START_OF_TIME.to_string(), String::new()),
            None => keyset(None),
        };
        let text = task_page_sql(status);
        let text = self.sql(&text);
        with_pool!(self, pool => sqlx::query_as::<_, crate::store::queue::TaskRow>(&text)
            .bind(status)
            .bind(task_type)
            .bind(&at)
            .bind(&id)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("listing tasks"))
    }

    /// Open invoices by escalation level and currency; `overdue` counts those due before
    /// `today` (index `invoices_open_due`).
    pub async fn invoice_levels(&self, today: NaiveDate) -> Result<Vec<InvoiceLevel>> {
        let text = self.sql(
            "SELECT escalation_level::bigint AS escalation_level, currency,
                    count(*) AS open,
                    sum(CASE WHEN due_date < $1 THEN 1 ELSE 0 END)::bigint AS overdue,
                    sum(amount_minor - paid_minor)::bigint AS outstanding_minor
               FROM invoices WHERE status = 'open'
              GROUP BY escalation_level, currency ORDER BY escalation_level, currency",
        );
        with_pool!(self, pool => sqlx::query_as::<_, InvoiceLevel>(&text)
            .bind(today)
            .fetch_all(pool)
            .await
            .doing("counting open invoices"))
    }

    /// A page of open invoices in `(due_date, id)` order after the keyset `after` (index
    /// `invoices_open_due`), optionally only those due before `overdue_before`.
    pub async fn open_invoice_page(
        &self,
        overdue_before: Option<NaiveDate>,
        after: Option<(NaiveDate, String)>,
        limit: i64,
    ) -> Result<Vec<OpenInvoice>> {
        let text = self.sql(
            "SELECT i.id::text AS id, i.number, c.name AS customer_name, i.amount_minor,
                    i.paid_minor, i.currency, i.due_date,
                    i.escalation_level::bigint AS escalation_level
               FROM invoices i JOIN customers c ON c.id = i.customer_id
              WHERE i.status = 'open' AND ($1::date IS NULL OR i.due_date < $1::date)
                AND ($2::date IS NULL OR i.due_date > $2::date
                     OR (i.due_date = $2::date AND i.id::text > $3))
              ORDER BY i.due_date, i.id LIMIT $4",
        );
        let (at, id) = match after {
            Some((at, id)) => (Some(at), id),
            None => (None, String::new()),
        };
        with_pool!(self, pool => sqlx::query_as::<_, OpenInvoice>(&text)
            .bind(overdue_before)
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("listing open invoices"))
    }

    /// A page of a campaign's invoices in `(due_date, number)` order after the keyset `after`,
    /// each with its next pending email (index `scheduled_tasks_invoice`): a campaign of
    /// 10,000 invoices shows its members page by page, each with its own next email.
    pub async fn campaign_member_page(
        &self,
        campaign_id: &str,
        after: Option<(NaiveDate, String)>,
        limit: i64,
    ) -> Result<Vec<MemberLine>> {
        let text = self.sql(
            "SELECT m.invoice_id::text AS invoice_id, i.number, i.due_date,
                    i.status AS invoice_status, m.status, m.attempts::bigint AS attempts, m.tone,
                    m.last_sent_at,
                    (SELECT min(t.scheduled_for) FROM scheduled_tasks t
                      WHERE t.invoice_id = m.invoice_id AND t.campaign_id = m.campaign_id
                        AND t.status = 'pending') AS next_email
               FROM campaign_invoices m
               JOIN invoices i ON i.id = m.invoice_id
              WHERE m.campaign_id = $1::uuid
                AND ($2::date IS NULL OR i.due_date > $2::date
                     OR (i.due_date = $2::date AND i.number > $3))
              ORDER BY i.due_date, i.number LIMIT $4",
        );
        let (at, number) = match after {
            Some((at, number)) => (Some(at), number),
            None => (None, String::new()),
        };
        with_pool!(self, pool => sqlx::query_as::<_, MemberLine>(&text)
            .bind(campaign_id)
            .bind(at)
            .bind(number)
            .bind(limit)
            .fetch_all(pool)
            .await
            .doing("listing a campaign's invoices"))
    }
}

/// The bounds of a newest-first keyset page: an upper bound is always given (the end of
/// time for the first page), so the engines search the index's range instead of reading it
/// from the top and filtering.
fn keyset(before: Option<(DateTime<Utc>, String)>) -> (String, String) {
    match before {
        Some((at, id)) => (ts(at), id),
        None => (END_OF_TIME.to_string(), String::new()),
    }
}

/// Earlier than any instant tickler stores, as [`ts`] writes them.
const START_OF_TIME: &str = "0001-01-01T00:00:00+00:00";

/// The open tasks by type and status: pending and failed ones from the index of those, in its
/// order (`scheduled_tasks_waiting_types` on `(status, task_type)`), executing ones (at most
/// each daemon's `[queue] concurrency`) through `scheduled_tasks_leases`. Public for the
/// console's benchmark.
pub const OPEN_TASK_COUNTS: &str = "
SELECT task_type, status, count(*) AS count FROM scheduled_tasks
 WHERE status IN ('pending', 'failed') GROUP BY status, task_type
UNION ALL
SELECT task_type, status, count(*) AS count FROM scheduled_tasks
 WHERE status = 'executing' GROUP BY status, task_type
 ORDER BY task_type, status";

/// The statement of [`Store::task_page`] for `status`, before its adaptation to the backend;
/// public for the console's benchmark. A page of pending or failed tasks is a range of
/// `scheduled_tasks_waiting` on `(status, scheduled_for, id, task_type)`, however deep (its
/// `IN` list is repeated word for word, as SQLite uses a partial index only then); executing
/// tasks, a few hundred at most, are read through `scheduled_tasks_leases` and sorted. That
/// index leaves them out so that a claim writes no entry to it (migration 0017).
pub fn task_page_sql(status: &str) -> String {
    let open = if status == "executing" {
        "status = 'executing'"
    } else {
        "status IN ('pending', 'failed')" // `scheduled_tasks_waiting`'s predicate, word for word
    };
    let (order, bound) = if due_first(status) {
        (
            "scheduled_for, id",
            "scheduled_for >= $3::timestamptz
                 AND (scheduled_for > $3::timestamptz OR id::text > $4)",
        )
    } else {
        (
            "scheduled_for DESC, id DESC",
            "scheduled_for <= $3::timestamptz
                 AND (scheduled_for < $3::timestamptz OR id::text < $4)",
        )
    };
    format!(
        "SELECT {} FROM scheduled_tasks
          WHERE status = $1 AND ($2::text IS NULL OR task_type = $2)
            AND {open} AND {bound}
          ORDER BY {order} LIMIT $5",
        super::queue::TASK_COLUMNS
    )
}

/// Whether a task page of `status` lists its tasks due first (pending and executing ones),
/// or newest first (failed ones).
fn due_first(status: &str) -> bool {
    matches!(status, "pending" | "executing")
}

/// Later than any instant tickler stores, as [`ts`] writes them.
const END_OF_TIME: &str = "9999-12-31T23:59:59+00:00";

/// The `lateness_ms` a run's metadata records (how long after its slot it started).
pub fn lateness_ms(metadata: Option<&str>) -> Option<i64> {
    let v: Value = serde_json::from_str(metadata?).ok()?;
    v.get("lateness_ms")?.as_i64()
}

//! The run ledger (`job_execution_logs`): slots claimed by inserting their row, runs ended,
//! retries counted, the history read back and old rows pruned. One SQL text per statement,
//! adapted to the database in use by [`Store::sql`] and run through `with_pool!`; only the bulk
//! insert and update of runs on the claim path differ in kind (typed arrays and `UNNEST` on
//! PostgreSQL, a JSON array and `json_each` on SQLite, each the fastest its engine has), and
//! those methods have both arms here, side by side.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{PgPool, Row, SqlitePool};
use uuid::Uuid;

use super::{Doing, Finish, HistoryFilter, NewRun, Result, RunRow, Store, health, ts, with_pool};

impl Store {
    /// Inserts the rows whose slot is still free; returns the ids actually inserted.
    pub async fn insert_runs(&self, runs: &[NewRun]) -> Result<HashSet<Uuid>> {
        if runs.is_empty() {
            return Ok(HashSet::new());
        }
        match self {
            Store::Sqlite(s) => insert_runs_sqlite(s.pool(), runs).await,
            Store::Postgres(s) => insert_runs_postgres(s.pool(), runs).await,
        }
    }

    /// Records the end of runs still open (or abandoned meanwhile by another daemon, whose
    /// judgement a late end overrides).
    pub async fn finish_runs(&self, finishes: &[Finish]) -> Result<()> {
        if finishes.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => finish_runs_sqlite(s.pool(), finishes).await,
            Store::Postgres(s) => finish_runs_postgres(s.pool(), finishes).await,
        }
    }

    pub async fn set_attempt(&self, id: Uuid, attempt: u32) -> Result<()> {
        let text = self.sql("UPDATE job_execution_logs SET attempt = $1 WHERE id = $2::uuid");
        with_pool!(self, pool => sqlx::query(&text)
            .bind(attempt as i64)
            .bind(id.to_string())
            .execute(pool)
            .await
            .map(|_| ())
            .doing("recording a retry"))?;
        Ok(())
    }

    /// The latest slot recorded for each job (manual runs and backfills excluded).
    pub async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let rows: Vec<(String, DateTime<Utc>)> = with_pool!(self, pool => sqlx::query_as(
            "SELECT job_name, MAX(scheduled_for) AS last FROM job_execution_logs
              WHERE \"trigger\" NOT IN ('manual', 'backfill') GROUP BY job_name",
        )
        .fetch_all(pool)
        .await
        .doing("reading the last slot of each job"))?;
        Ok(rows.into_iter().collect())
    }

    /// Names of jobs with a row `running` on an instance other than `except_instance`.
    pub async fn running_jobs(&self, except_instance: &str) -> Result<HashSet<String>> {
        let rows: Vec<String> = with_pool!(self, pool => sqlx::query_scalar(
            "SELECT DISTINCT job_name FROM job_execution_logs
              WHERE status = 'running' AND COALESCE(instance, '') <> $1",
        )
        .bind(except_instance)
        .fetch_all(pool)
        .await
        .doing("reading running jobs"))?;
        Ok(rows.into_iter().collect())
    }

    /// What the ledger says of `job`'s slots from `from` to `to` (both included): each slot
    /// with a row, its statuses (its own row's and its backfills', oldest first), for
    /// `tickler backfill`. Manual runs are no slot's.
    pub async fn slot_statuses(
        &self,
        job: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<DateTime<Utc>, Vec<String>>> {
        let text = self.sql(
            "SELECT scheduled_for, status FROM job_execution_logs
              WHERE job_name = $1 AND scheduled_for >= $2 AND scheduled_for <= $3
                AND \"trigger\" <> 'manual'
              ORDER BY scheduled_for, started_at",
        );
        let rows: Vec<(DateTime<Utc>, String)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(job)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await
            .doing("reading the slots of a job"))?;
        let mut out: HashMap<DateTime<Utc>, Vec<String>> = HashMap::new();
        for (slot, status) in rows {
            out.entry(slot).or_default().push(status);
        }
        Ok(out)
    }

    /// When each job last succeeded (read once at start for `/metrics`).
    pub async fn last_successes(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        with_pool!(self, pool => sqlx::query_as::<_, (String, DateTime<Utc>)>(
            &format!(
                "SELECT job_name, max(completed_at) FROM job_execution_logs
                  WHERE status IN {} AND completed_at IS NOT NULL GROUP BY job_name",
                health::SUCCESS
            ),
        )
        .fetch_all(pool)
        .await
        .doing("reading the last successful runs"))
    }

    /// Runs, newest first; one run when `filter.run` names it. That lookup is a statement of
    /// its own that searches the primary key: folded into the list's text as
    /// `($4 IS NULL OR id = $4)`, SQLite cannot use an index for it and read the ledger in
    /// `started_at` order (3.6 s with 1,000,000 rows, `benches/console.rs`).
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<RunRow>> {
        let text = match filter.run {
            Some(_) => format!(
                "SELECT {HISTORY_COLUMNS} FROM job_execution_logs
                  WHERE id = $4::uuid AND ($1::text IS NULL OR job_name = $1)
                    AND ($2::text IS NULL OR status = $2) LIMIT $3"
            ),
            None => format!(
                "SELECT {HISTORY_COLUMNS} FROM job_execution_logs
                  WHERE ($1::text IS NULL OR job_name = $1) AND ($2::text IS NULL OR status = $2)
                  ORDER BY started_at DESC NULLS LAST, scheduled_for DESC LIMIT $3"
            ),
        };
        let text = self.sql(&text);
        let rows: Vec<RunRecord> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(&filter.job)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.limit)
            .bind(filter.run.map(|id| id.to_string()))
            .fetch_all(pool)
            .await
            .doing("reading the run history"))?;
        Ok(rows.into_iter().map(RunRecord::into_run).collect())
    }

    /// Deletes finished rows completed before the cut-offs, at most `batch` rows per statement.
    pub async fn prune(
        &self,
        ok_before: DateTime<Utc>,
        failed_before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64> {
        let mut total = 0;
        loop {
            let done = with_pool!(self, pool => sqlx::query(
                "DELETE FROM job_execution_logs WHERE id IN (
                    SELECT id FROM job_execution_logs
                     WHERE status <> 'running' AND (
                        (status IN ('succeeded', 'skipped') AND started_at < $1)
                        OR started_at < $2)
                     LIMIT $3)",
            )
            .bind(ok_before)
            .bind(failed_before)
            .bind(batch)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .doing("pruning old runs"))?;
            total += done;
            if done < batch as u64 {
                return Ok(total);
            }
        }
    }
}

/// The columns [`Store::history`] reads into a [`RunRecord`].
const HISTORY_COLUMNS: &str = "id::text AS id, job_name, status, started_at, completed_at,
    duration_seconds, records_processed, error_message, metadata::text AS metadata,
    scheduled_for, \"trigger\", attempt::bigint AS attempt, instance";

/// A ledger row as both databases return it to [`Store::history`]'s text.
#[derive(sqlx::FromRow)]
struct RunRecord {
    id: String,
    job_name: String,
    status: String,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    duration_seconds: Option<f64>,
    records_processed: Option<i64>,
    error_message: Option<String>,
    metadata: Option<String>,
    scheduled_for: DateTime<Utc>,
    trigger: String,
    attempt: i64,
    instance: Option<String>,
}

impl RunRecord {
    fn into_run(self) -> RunRow {
        RunRow {
            id: self.id,
            job_name: self.job_name,
            status: self.status,
            started_at: self.started_at,
            completed_at: self.completed_at,
            duration_seconds: self.duration_seconds,
            records_processed: self.records_processed,
            error_message: self.error_message,
            metadata: self.metadata.and_then(|m| serde_json::from_str(&m).ok()),
            scheduled_for: self.scheduled_for,
            trigger: self.trigger,
            attempt: self.attempt,
            instance: self.instance,
            messages: None,
        }
    }
}

async fn insert_runs_sqlite(pool: &SqlitePool, runs: &[NewRun]) -> Result<HashSet<Uuid>> {
    // The whole batch is one JSON parameter that SQLite unpacks with json_each: one
    // statement, prepared once, instead of a round trip or a fresh statement per row.
    // In slot-key order, so the unique index is walked once rather than hit at random.
    let mut ordered: Vec<&NewRun> = runs.iter().collect();
    ordered.sort_unstable_by(|a, b| {
        (&a.job_name, a.scheduled_for).cmp(&(&b.job_name, b.scheduled_for))
    });
    let batch: Vec<Value> = ordered
        .iter()
        .map(|r| {
            let done = (!r.status.is_open()).then(|| ts(r.started_at));
            json!([
                r.id.to_string(),
                &*r.job_name,
                r.status.as_str(),
                ts(r.started_at),
                done,
                ts(r.scheduled_for),
                r.trigger.as_str(),
                &*r.instance,
                r.error_message,
                r.metadata.as_ref().map(|m| m.to_string()),
                r.batch.map(|b| b.to_string()),
            ])
        })
        .collect();
    let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .doing("claiming slots")?;
    let done = sqlx::query(
        "INSERT INTO job_execution_logs (id, job_name, status, started_at, completed_at,
             duration_seconds, scheduled_for, \"trigger\", attempt, instance, error_message,
             metadata, batch_id)
         SELECT v->>0, v->>1, v->>2, v->>3, v->>4, CASE WHEN v->>4 IS NULL THEN NULL ELSE 0.0 END,
                v->>5, v->>6, 1, v->>7, v->>8, v->>9, v->>10
           FROM (SELECT value AS v FROM json_each(?)) WHERE true
         ON CONFLICT DO NOTHING",
    )
    .bind(Value::Array(batch).to_string())
    .execute(&mut *tx)
    .await
    .doing("claiming slots")?;
    // Usually every row went in. Otherwise ask which, in one row: streaming back thousands
    // of RETURNING rows costs more than the insert itself.
    let inserted = if done.rows_affected() == runs.len() as u64 {
        runs.iter().map(|r| r.id).collect()
    } else {
        let present: String = sqlx::query_scalar(
            "SELECT json_group_array(id) FROM job_execution_logs
              WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .fetch_one(&mut *tx)
        .await
        .doing("claiming slots")?;
        serde_json::from_str::<Vec<String>>(&present)
            .unwrap_or_default()
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect()
    };
    tx.commit().await.doing("claiming slots")?;
    Ok(inserted)
}

async fn finish_runs_sqlite(pool: &SqlitePool, finishes: &[Finish]) -> Result<()> {
    let batch: Vec<Value> = finishes
        .iter()
        .map(|f| {
            json!([
                f.id.to_string(),
                f.status.as_str(),
                ts(f.started_at),
                ts(f.completed_at),
                f.duration_seconds,
                f.records_processed,
                f.error_message,
                f.metadata.to_string(),
                f.attempt,
            ])
        })
        .collect();
    // Unpacked into an indexed temporary table first, so the update looks each row up by
    // its id (a join straight on json_each is planned as a scan of the ledger).
    let doing = "recording finished runs";
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.doing(doing)?;
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS finished (id TEXT PRIMARY KEY, status TEXT,
             started_at TEXT, completed_at TEXT, duration_seconds REAL,
             records_processed INTEGER, error_message TEXT, metadata TEXT, attempt INTEGER)",
    )
    .execute(&mut *tx)
    .await
    .doing(doing)?;
    sqlx::query(
        "INSERT OR REPLACE INTO temp.finished
         SELECT v->>0, v->>1, v->>2, v->>3, v->>4, v->>5, v->>6, v->>7, v->>8
           FROM (SELECT value AS v FROM json_each(?))",
    )
    .bind(Value::Array(batch).to_string())
    .execute(&mut *tx)
    .await
    .doing(doing)?;
    sqlx::query(
        "UPDATE job_execution_logs AS l
            SET status = f.status, started_at = f.started_at, completed_at = f.completed_at,
                duration_seconds = f.duration_seconds, records_processed = f.records_processed,
                error_message = f.error_message, metadata = f.metadata, attempt = f.attempt
           FROM temp.finished AS f WHERE l.id = f.id AND l.status IN ('pending', 'running', 'abandoned')",
    )
    .execute(&mut *tx)
    .await
    .doing(doing)?;
    sqlx::query("DELETE FROM temp.finished")
        .execute(&mut *tx)
        .await
        .doing(doing)?;
    tx.commit().await.doing(doing)
}

async fn insert_runs_postgres(pool: &PgPool, runs: &[NewRun]) -> Result<HashSet<Uuid>> {
    // One statement for the whole batch: the slot index decides which rows go in.
    let mut ids = Vec::with_capacity(runs.len());
    let mut names = Vec::with_capacity(runs.len());
    let mut statuses = Vec::with_capacity(runs.len());
    let mut started = Vec::with_capacity(runs.len());
    let mut completed: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(runs.len());
    let mut slots = Vec::with_capacity(runs.len());
    let mut triggers = Vec::with_capacity(runs.len());
    let mut instances = Vec::with_capacity(runs.len());
    let mut errors = Vec::with_capacity(runs.len());
    let mut metadata: Vec<Option<Json<&serde_json::Value>>> = Vec::with_capacity(runs.len());
    let mut batches: Vec<Option<Uuid>> = Vec::with_capacity(runs.len());
    for r in runs {
        ids.push(r.id);
        names.push(&*r.job_name);
        statuses.push(r.status.as_str());
        started.push(r.started_at);
        completed.push((!r.status.is_open()).then_some(r.started_at));
        slots.push(r.scheduled_for);
        triggers.push(r.trigger.as_str());
        instances.push(&*r.instance);
        errors.push(r.error_message.as_deref());
        metadata.push(r.metadata.as_ref().map(Json));
        batches.push(r.batch);
    }
    // The answer lists our ids present after the statement: the rows it inserted, and rows
    // an earlier attempt of the same batch committed before its reply was lost.
    let rows = sqlx::query(
        "WITH ins AS (
         INSERT INTO job_execution_logs (id, job_name, status, started_at, completed_at,
             duration_seconds, scheduled_for, \"trigger\", attempt, instance, error_message,
             metadata, batch_id)
         SELECT id, job_name, status, started_at, completed_at,
                CASE WHEN completed_at IS NULL THEN NULL ELSE 0 END, scheduled_for, trg, 1,
                instance, error_message, metadata, batch_id
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                       $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[],
                       $9::text[], $10::jsonb[], $11::uuid[])
             AS t(id, job_name, status, started_at, completed_at, scheduled_for, trg,
                  instance, error_message, metadata, batch_id)
         ON CONFLICT DO NOTHING
         RETURNING id)
         SELECT id FROM ins
         UNION ALL
         SELECT id FROM job_execution_logs WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&statuses)
    .bind(&started)
    .bind(&completed)
    .bind(&slots)
    .bind(&triggers)
    .bind(&instances)
    .bind(&errors)
    .bind(&metadata)
    .bind(&batches)
    .fetch_all(pool)
    .await
    .doing("claiming slots")?;
    Ok(rows.iter().map(|r| r.get::<Uuid, _>("id")).collect())
}

async fn finish_runs_postgres(pool: &PgPool, finishes: &[Finish]) -> Result<()> {
    let ids: Vec<Uuid> = finishes.iter().map(|f| f.id).collect();
    let statuses: Vec<&str> = finishes.iter().map(|f| f.status.as_str()).collect();
    let started: Vec<DateTime<Utc>> = finishes.iter().map(|f| f.started_at).collect();
    let completed: Vec<DateTime<Utc>> = finishes.iter().map(|f| f.completed_at).collect();
    let durations: Vec<f64> = finishes.iter().map(|f| f.duration_seconds).collect();
    let records: Vec<Option<i64>> = finishes.iter().map(|f| f.records_processed).collect();
    let errors: Vec<Option<&str>> = finishes
        .iter()
        .map(|f| f.error_message.as_deref())
        .collect();
    let metadata: Vec<Json<&serde_json::Value>> =
        finishes.iter().map(|f| Json(&f.metadata)).collect();
    let attempts: Vec<i32> = finishes.iter().map(|f| f.attempt as i32).collect();
    sqlx::query(
        "UPDATE job_execution_logs AS l
            SET status = t.status, started_at = t.started_at, completed_at = t.completed_at,
                duration_seconds = t.duration_seconds, records_processed = t.records,
                error_message = t.error_message, metadata = t.metadata, attempt = t.attempt
           FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::float8[], $5::int8[],
                       $6::text[], $7::jsonb[], $8::int4[], $9::timestamptz[])
             AS t(id, status, completed_at, duration_seconds, records, error_message,
                  metadata, attempt, started_at)
          WHERE l.id = t.id AND l.status IN ('pending', 'running', 'abandoned')",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&completed)
    .bind(&durations)
    .bind(&records)
    .bind(&errors)
    .bind(&metadata)
    .bind(&attempts)
    .bind(&started)
    .execute(pool)
    .await
    .doing("recording finished runs")?;
    Ok(())
}

//! The PostgreSQL backend: native `uuid`, `timestamptz` and `jsonb`, and the engine through
//! which several replicas coordinate: each claims a slot by inserting its ledger row, and only
//! the replica whose insert succeeded runs it.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Connection, PgPool, Row};
use uuid::Uuid;

use super::{
    Backend, Doing, Finish, HistoryFilter, Instance, NewRun, Orphan, Result, RunRow, StoreError,
};
use crate::secret::DatabaseUrl;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections for the `sql` job kind, apart from the ledger's (so long job SQL cannot
    /// starve slot claims and heartbeats), opened on first use.
    jobs: PgPool,
    url: String,
}

impl PgStore {
    pub async fn connect(url: &DatabaseUrl) -> Result<PgStore> {
        let redacted = url.redacted();
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|source| StoreError::Connect {
                url: redacted.clone(),
                source,
            })?
            .application_name("tickler");
        let jobs = PgPoolOptions::new()
            .max_connections(4)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.clone());
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            // While PostgreSQL is away (a restart, a failover), a query fails after this and
            // its caller's retry logs the outage, instead of each waiting in silence.
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: redacted.clone(),
                source,
            })?;
        Ok(PgStore {
            pool,
            jobs,
            url: redacted,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool of job-supplied SQL, apart from the ledger's.
    pub fn jobs_pool(&self) -> &PgPool {
        &self.jobs
    }

    pub async fn close(&self) {
        self.jobs.close().await;
        self.pool.close().await;
    }

    /// Runs until dropped: calls `changed` for each `NOTIFY tickler_tasks` (any process
    /// inserting a task, or making a pending one due sooner), and after a lost connection,
    /// since notifications sent meanwhile are lost too. An idle LISTEN connection sends and
    /// receives nothing.
    pub async fn listen_tasks(&self, changed: fn()) {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for new tasks; trying again in 5s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen("tickler_tasks").await {
                tracing::warn!(error = %e, "cannot LISTEN for new tasks; trying again in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            // Whatever was notified while nothing listened.
            changed();
            loop {
                match listener.recv().await {
                    Ok(_) => changed(),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                        changed();
                        break;
                    }
                }
            }
        }
    }
}

fn row_to_run(r: &sqlx::postgres::PgRow) -> RunRow {
    RunRow {
        id: r.get::<Uuid, _>("id").to_string(),
        job_name: r.get("job_name"),
        status: r.get("status"),
        started_at: r.get("started_at"),
        completed_at: r.get("completed_at"),
        duration_seconds: r.get("duration_seconds"),
        records_processed: r.get("records_processed"),
        error_message: r.get("error_message"),
        metadata: r
            .get::<Option<Json<serde_json::Value>>, _>("metadata")
            .map(|j| j.0),
        scheduled_for: r.get("scheduled_for"),
        trigger: r.get("trigger"),
        attempt: r.get::<i32, _>("attempt") as i64,
        instance: r.get("instance"),
        messages: None,
    }
}

impl Backend for PgStore {
    shared_backend_methods!();

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: self.url.clone(),
                source,
            })
    }

    async fn insert_runs(&self, runs: &[NewRun]) -> Result<HashSet<Uuid>> {
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
        }
        // The answer lists our ids present after the statement: the rows it inserted, and rows
        // an earlier attempt of the same batch committed before its reply was lost.
        let rows = sqlx::query(
            "WITH ins AS (
             INSERT INTO job_execution_logs (id, job_name, status, started_at, completed_at,
                 duration_seconds, scheduled_for, \"trigger\", attempt, instance, error_message,
                 metadata)
             SELECT id, job_name, status, started_at, completed_at,
                    CASE WHEN completed_at IS NULL THEN NULL ELSE 0 END, scheduled_for, trg, 1,
                    instance, error_message, metadata
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                           $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[],
                           $9::text[], $10::jsonb[])
                 AS t(id, job_name, status, started_at, completed_at, scheduled_for, trg,
                      instance, error_message, metadata)
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
        .fetch_all(&self.pool)
        .await
        .doing("claiming slots")?;
        Ok(rows.iter().map(|r| r.get::<Uuid, _>("id")).collect())
    }

    async fn finish_runs(&self, finishes: &[Finish]) -> Result<()> {
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
        .execute(&self.pool)
        .await
        .doing("recording finished runs")?;
        Ok(())
    }

    async fn set_attempt(&self, id: Uuid, attempt: u32) -> Result<()> {
        sqlx::query("UPDATE job_execution_logs SET attempt = $1 WHERE id = $2")
            .bind(attempt as i32)
            .bind(id)
            .execute(&self.pool)
            .await
            .doing("recording a retry")?;
        Ok(())
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT * FROM job_execution_logs
              WHERE ($1::text IS NULL OR job_name = $1) AND ($2::text IS NULL OR status = $2)
                AND ($4::uuid IS NULL OR id = $4)
              ORDER BY started_at DESC NULLS LAST, scheduled_for DESC LIMIT $3",
        )
        .bind(&filter.job)
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.limit)
        .bind(filter.run)
        .fetch_all(&self.pool)
        .await
        .doing("reading the run history")?;
        Ok(rows.iter().map(row_to_run).collect())
    }

    async fn execute(&self, statements: &[String], transaction: bool) -> Result<u64> {
        let mut conn = self.jobs.acquire().await.doing("running the job's SQL")?;
        let mut total = 0;
        if transaction {
            let mut tx = conn.begin().await.doing("running the job's SQL")?;
            for s in statements {
                total += sqlx::query(s.as_str())
                    .execute(&mut *tx)
                    .await
                    .doing("running the job's SQL")?
                    .rows_affected();
            }
            tx.commit().await.doing("running the job's SQL")?;
        } else {
            for s in statements {
                total += sqlx::query(s.as_str())
                    .execute(&mut *conn)
                    .await
                    .doing("running the job's SQL")?
                    .rows_affected();
            }
        }
        Ok(total)
    }
}

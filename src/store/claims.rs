//! Claims and their owners (DESIGN.md invariants 3 and 4): every claim (a slot in
//! `job_execution_logs`, a message in `notification_log`, a task in `scheduled_tasks`) names the
//! process holding it, a row of `tickler_instances` whose heartbeat says whether it lives. When
//! an owner dies, any live process resolves its claims here: waiting slots are adopted and run
//! or recorded, running slots become `abandoned`, messages never handed to a provider are
//! released (`failed`, sent by a later run) and messages that may have reached the provider
//! become `unknown` (never resent).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::ts;
use super::{Doing, Instance, Orphan, Result, RunTrigger, Store, with_pool};

/// The owners that count as alive: registered, with a heartbeat since `$N`.
const LIVE: &str = "SELECT id FROM tickler_instances WHERE heartbeat_at >= ";

/// 1 when some claim may need resolving (see [`Store::dead_owners`]), else 0; binds `$1` (this
/// process) and `$2` (the stale time).
fn dead_owners_expr() -> String {
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM job_execution_logs
                       WHERE status = 'running' AND COALESCE(instance, '') <> $1
                         AND COALESCE(instance, '') NOT IN ({LIVE} $2::timestamptz))
                  OR EXISTS (SELECT 1 FROM job_execution_logs
                       WHERE status = 'pending' AND COALESCE(instance, '') <> $1
                         AND COALESCE(instance, '') NOT IN ({LIVE} $2::timestamptz))
                  OR EXISTS (SELECT 1 FROM notification_log
                       WHERE status = 'sending'
                         AND COALESCE(owner, '') NOT IN ({LIVE} $2::timestamptz))
                  OR EXISTS (SELECT 1 FROM tickler_instances
                       WHERE id <> $1 AND heartbeat_at < $2::timestamptz)
                  THEN 1 ELSE 0 END"
    )
}

/// A `pending` slot of a dead owner, now held by the adopting daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub id: Uuid,
    pub job_name: String,
    pub scheduled_for: DateTime<Utc>,
    pub trigger: RunTrigger,
}

/// What became of the messages of dead owners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Never handed to a provider: `failed`, so a later run sends them.
    pub released: u64,
    /// Perhaps handed over: `unknown`, never resent.
    pub unknown: u64,
}

impl Released {
    /// Counts the new statuses of released rows.
    pub(crate) fn count(statuses: &[String]) -> Released {
        let unknown = statuses.iter().filter(|s| *s == "unknown").count() as u64;
        Released {
            released: statuses.len() as u64 - unknown,
            unknown,
        }
    }
}

/// A registered process as `tickler status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct DaemonRow {
    pub hostname: String,
    pub pid: i64,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// When its timer loop last turned, as of its last heartbeat; `None` for `run-job` and
    /// `backfill` processes.
    pub loop_tick_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn register_instance(&self, instance: &Instance) -> Result<()> {
        self.heartbeat(instance, instance.started_at, None).await
    }

    /// Records that `instance` is alive, and when its timer loop last turned (`None` for a
    /// process without one), registering it again if its row was removed (an upsert: a daemon
    /// whose row another one deleted after an outage comes back).
    pub async fn heartbeat(
        &self,
        i: &Instance,
        now: DateTime<Utc>,
        loop_tick_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        with_pool!(self, own, pool => sqlx::query(
            "INSERT INTO tickler_instances
                    (id, hostname, pid, version, started_at, heartbeat_at, loop_tick_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                                            loop_tick_at = excluded.loop_tick_at",
        )
        .bind(&*i.id)
        .bind(&i.hostname)
        .bind(i.pid as i32)
        .bind(&i.version)
        .bind(i.started_at)
        .bind(now)
        .bind(loop_tick_at)
        .execute(pool)
        .await
        .map(|_| ())
        .doing("writing the heartbeat"))?;
        Ok(())
    }

    pub async fn deregister(&self, instance: &str) -> Result<()> {
        with_pool!(self, pool => sqlx::query("DELETE FROM tickler_instances WHERE id = $1")
            .bind(instance)
            .execute(pool)
            .await
            .map(|_| ())
            .doing("deregistering this daemon"))?;
        Ok(())
    }

    /// Every registered process with its heartbeat and loop tick, oldest first: what `tickler
    /// status` and the console show of the daemons on this database.
    pub async fn daemons(&self) -> Result<Vec<DaemonRow>> {
        with_pool!(self, pool => sqlx::query_as::<_, DaemonRow>(
            "SELECT hostname, CAST(pid AS BIGINT) AS pid, version, started_at, heartbeat_at,
                    loop_tick_at
               FROM tickler_instances ORDER BY started_at, id",
        )
        .fetch_all(pool)
        .await
        .doing("listing daemons"))
    }

    /// Every registered daemon (and `run-job` process): id, hostname, pid.
    pub async fn instances(&self) -> Result<Vec<(String, String, i64)>> {
        with_pool!(self, pool => sqlx::query_as(
            "SELECT id, hostname, CAST(pid AS BIGINT) FROM tickler_instances",
        )
        .fetch_all(pool)
        .await
        .doing("listing daemons"))
    }

    /// Marks `abandoned` every running row whose owner is not `me` and has not beaten its
    /// heartbeat since `stale_before` (or is gone), and forgets such owners. Returns the rows
    /// changed.
    pub async fn abandon_orphans(
        &self,
        me: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Orphan>> {
        let rows: Vec<(String, String, DateTime<Utc>, Option<String>)> = with_pool!(self, pool => sqlx::query_as(
                "UPDATE job_execution_logs
                    SET status = 'abandoned', completed_at = $1,
                        error_message = 'the daemon running it (' || COALESCE(instance, '?') ||
                            ') stopped without finishing it'
                  WHERE (status = 'running'
                         OR status = 'pending' AND batch_id IN (SELECT id FROM fire_batches))
                    AND COALESCE(instance, '') <> $2
                    AND COALESCE(instance, '') NOT IN
                        (SELECT id FROM tickler_instances WHERE heartbeat_at >= $3)
                  RETURNING CAST(id AS TEXT) AS id, job_name, scheduled_for,
                            metadata->>'process_group' AS process_group",
            )
            .bind(now)
            .bind(me)
            .bind(stale_before)
            .fetch_all(pool)
            .await
            .doing("abandoning orphaned runs"))?;
        // The started batches of those owners have no pending row left to speak for.
        with_pool!(self, pool => sqlx::query(
            "DELETE FROM fire_batches WHERE instance <> $1
                AND instance NOT IN (SELECT id FROM tickler_instances WHERE heartbeat_at >= $2)",
        )
        .bind(me)
        .bind(stale_before)
        .execute(pool)
        .await
        .map(|_| ())
        .doing("abandoning orphaned runs"))?;
        with_pool!(self, pool => sqlx::query(
            "DELETE FROM tickler_instances WHERE id <> $1 AND heartbeat_at < $2",
        )
        .bind(me)
        .bind(stale_before)
        .execute(pool)
        .await
        .map(|_| ())
        .doing("removing stopped daemons"))?;
        Ok(rows
            .into_iter()
            .map(|(id, job_name, scheduled_for, process_group)| Orphan {
                id,
                job_name,
                scheduled_for,
                process_group,
            })
            .collect())
    }

    /// Whether any claim may need resolving: an open slot or a message `sending` whose owner
    /// is gone or has not beaten since `stale_before`, or a stale registration. One cheap read
    /// (each part walks a partial index of open rows), so an idle daemon's periodic check
    /// costs one query, not four.
    pub async fn dead_owners(&self, me: &str, stale_before: DateTime<Utc>) -> Result<bool> {
        let query = format!("SELECT {}", dead_owners_expr());
        let text = self.sql(&query);
        let found: i32 = with_pool!(self, pool => sqlx::query_scalar(&text)
            .bind(me)
            .bind(ts(stale_before))
            .fetch_one(pool)
            .await
            .doing("looking for the claims of stopped processes"))?;
        Ok(found == 1)
    }

    /// [`Store::instances`] and [`Store::dead_owners`] in one read: a daemon's periodic look
    /// for the claims of stopped processes, one round trip. `me` is registered (its heartbeat
    /// was just written), so there is a row to carry the answer; without one, `true`.
    pub async fn owners(
        &self,
        me: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<(Vec<(String, String, i64)>, bool)> {
        let query = format!(
            "SELECT id, hostname, CAST(pid AS BIGINT), {} FROM tickler_instances",
            dead_owners_expr()
        );
        let text = self.sql(&query);
        let rows: Vec<(String, String, i64, i32)> = with_pool!(self, own, pool => sqlx::query_as(&text)
            .bind(me)
            .bind(ts(stale_before))
            .fetch_all(pool)
            .await
            .doing("looking for the claims of stopped processes"))?;
        let dead = rows.first().is_none_or(|r| r.3 == 1);
        Ok((
            rows.into_iter()
                .map(|(id, host, pid, _)| (id, host, pid))
                .collect(),
            dead,
        ))
    }

    /// Starts a `pending` slot this instance holds: `true` only if the row was still pending
    /// and still ours (another daemon may have adopted it meanwhile; then it is not run here).
    pub async fn start_run(&self, id: Uuid, instance: &str, at: DateTime<Utc>) -> Result<bool> {
        let text = self.sql(
            "UPDATE job_execution_logs SET status = 'running', started_at = $1::timestamptz
              WHERE id = $2::uuid AND status = 'pending' AND instance = $3",
        );
        let done = with_pool!(self, pool => sqlx::query(&text)
            .bind(ts(at))
            .bind(id.to_string())
            .bind(instance)
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
            .doing("starting a waiting run"))?;
        Ok(done == 1)
    }

    /// Starts a batch of slots claimed ahead (`pending` rows of `batch`, see migration 0015):
    /// one row in `fire_batches` stands for all of them, so their bodies may start once it is
    /// committed; from then on a pending row of the batch counts as running (abandoned, never
    /// adopted, should this daemon die). Returns the ids of the batch no longer this
    /// instance's, adopted by another daemon meanwhile: those run there, not here.
    pub async fn start_batch(
        &self,
        batch: Uuid,
        instance: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        let doing = "starting a batch of claimed slots";
        let begin = self.begin_statement();
        let insert = self.sql(
            "INSERT INTO fire_batches (id, instance, started_at)
             VALUES ($1::uuid, $2, $3::timestamptz)",
        );
        let lost = self.sql(
            "SELECT CAST(id AS TEXT) FROM job_execution_logs
              WHERE batch_id = $1::uuid AND status = 'pending' AND instance <> $2",
        );
        let lost: Vec<String> = with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing(doing)?;
            sqlx::query(&insert)
                .bind(batch.to_string())
                .bind(instance)
                .bind(ts(at))
                .execute(&mut *tx)
                .await
                .doing(doing)?;
            let lost = sqlx::query_scalar(&lost)
                .bind(batch.to_string())
                .bind(instance)
                .fetch_all(&mut *tx)
                .await
                .doing(doing)?;
            tx.commit().await.doing(doing)?;
            lost
        });
        Ok(lost
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect())
    }

    /// Turns the still-pending rows of a started batch `running` (those already ended keep
    /// their end) and forgets the batch: its rows now speak for themselves.
    pub async fn batch_running(&self, batch: Uuid, at: DateTime<Utc>) -> Result<()> {
        let doing = "recording a started batch of runs";
        let begin = self.begin_statement();
        let update = self.sql(
            "UPDATE job_execution_logs SET status = 'running', started_at = $2::timestamptz
              WHERE batch_id = $1::uuid AND status = 'pending'",
        );
        let forget = self.sql("DELETE FROM fire_batches WHERE id = $1::uuid");
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await.doing(doing)?;
            sqlx::query(&update)
                .bind(batch.to_string())
                .bind(ts(at))
                .execute(&mut *tx)
                .await
                .doing(doing)?;
            sqlx::query(&forget)
                .bind(batch.to_string())
                .execute(&mut *tx)
                .await
                .doing(doing)?;
            tx.commit().await.doing(doing)?;
        });
        Ok(())
    }

    /// Takes over the `pending` slots of owners that are gone or have not beaten since
    /// `stale_before`: they become `me`'s, to run or record under each job's catch-up policy.
    pub async fn adopt_pending(
        &self,
        me: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<Adopted>> {
        let query = format!(
            "UPDATE job_execution_logs SET instance = $1
              WHERE status = 'pending' AND COALESCE(instance, '') <> $1
                AND COALESCE(instance, '') NOT IN ({LIVE} $2::timestamptz)
                AND (batch_id IS NULL OR batch_id NOT IN (SELECT id FROM fire_batches))
              RETURNING id::text AS id, job_name, scheduled_for, \"trigger\""
        );
        let text = self.sql(&query);
        let rows: Vec<(String, String, DateTime<Utc>, String)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(me)
            .bind(ts(stale_before))
            .fetch_all(pool)
            .await
            .doing("adopting the waiting slots of a stopped daemon"))?;
        let mut adopted: Vec<Adopted> = rows
            .into_iter()
            .filter_map(|(id, job_name, scheduled_for, trigger)| {
                Some(Adopted {
                    id: Uuid::parse_str(&id).ok()?,
                    job_name,
                    scheduled_for,
                    trigger: match trigger.as_str() {
                        "schedule" => RunTrigger::Schedule,
                        _ => RunTrigger::CatchUp,
                    },
                })
            })
            .collect();
        adopted.sort_by(|a, b| (&a.job_name, a.scheduled_for).cmp(&(&b.job_name, b.scheduled_for)));
        Ok(adopted)
    }

    /// Resolves the `sending` messages of owners that are gone or have not beaten since
    /// `stale_before`: never attempted ones are released (`failed`), attempted ones become
    /// `unknown`. Rows claimed before owners were recorded (no owner) count as attempted.
    pub async fn release_dead_messages(
        &self,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Released> {
        let query = format!(
            "UPDATE notification_log
                SET status = CASE WHEN attempted_at IS NULL AND owner IS NOT NULL
                                  THEN 'failed' ELSE 'unknown' END,
                    error = CASE WHEN attempted_at IS NULL AND owner IS NOT NULL
                        THEN 'not attempted: the process that claimed it (' || owner ||
                             ') stopped first; a later run sends it'
                        ELSE 'the process sending it (' || COALESCE(owner, '?') ||
                             ') stopped before it recorded the outcome; it may have been sent, \
                              so it is not sent again' END,
                    updated_at = $2::timestamptz
              WHERE status = 'sending'
                AND COALESCE(owner, '') NOT IN ({LIVE} $1::timestamptz)
              RETURNING status"
        );
        let text = self.sql(&query);
        let statuses: Vec<String> = with_pool!(self, pool => sqlx::query_scalar(&text)
            .bind(ts(stale_before))
            .bind(ts(now))
            .fetch_all(pool)
            .await
            .doing("releasing the messages of a stopped process"))?;
        Ok(Released::count(&statuses))
    }

    /// How many messages are `sending` and `unknown` (for `/metrics`).
    pub async fn open_message_counts(&self) -> Result<Vec<(String, i64)>> {
        with_pool!(self, pool => sqlx::query_as(
            "SELECT status, CAST(count(*) AS BIGINT) FROM notification_log
              WHERE status IN ('sending', 'unknown') GROUP BY status",
        )
        .fetch_all(pool)
        .await
        .doing("counting messages"))
    }

    /// The messages of each of `runs` by status (for `tickler history`).
    pub async fn run_messages(
        &self,
        runs: &[String],
    ) -> Result<HashMap<String, BTreeMap<String, i64>>> {
        if runs.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Value> = runs
            .iter()
            .map(|id| serde_json::json!({ "id": id }))
            .collect();
        let text = self.sql(
            "SELECT run_id::text, status, CAST(count(*) AS BIGINT) FROM notification_log
              WHERE run_id IN (SELECT (r.value->>'id')::uuid FROM ROWS($1))
              GROUP BY run_id, status",
        );
        let rows: Vec<(String, String, i64)> = with_pool!(self, pool => sqlx::query_as(&text)
            .bind(serde_json::to_string(&ids).unwrap_or_default())
            .fetch_all(pool)
            .await
            .doing("counting the messages of runs"))?;
        let mut out: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
        for (run, status, n) in rows {
            out.entry(run).or_default().insert(status, n);
        }
        Ok(out)
    }

    /// Records, in a running row's metadata, the process group its command started, so that
    /// whoever finds the run orphaned on this host can end what is left of it.
    pub async fn record_run_group(&self, id: Uuid, group: &Value) -> Result<()> {
        let text = self.sql(
            "UPDATE job_execution_logs SET metadata = $1::jsonb
              WHERE id = $2::uuid AND status = 'running'",
        );
        with_pool!(self, pool => sqlx::query(&text)
            .bind(serde_json::json!({ "process_group": group }).to_string())
            .bind(id.to_string())
            .execute(pool)
            .await
            .map(|_| ())
            .doing("recording a run's process group"))
    }

    /// Records the process group of a task's attempt, while `owner` holds its lease.
    pub async fn record_task_group(&self, id: &str, owner: &str, group: &Value) -> Result<()> {
        let text = self.sql(
            "UPDATE scheduled_tasks SET process_group = $1
              WHERE id = $2::uuid AND status = 'executing' AND lease_owner = $3",
        );
        with_pool!(self, pool => sqlx::query(&text)
            .bind(group.to_string())
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await
            .map(|_| ())
            .doing("recording a task's process group"))
    }
}

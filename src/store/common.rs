//! The queries whose text and parameter types are the same on SQLite and PostgreSQL (both take
//! `$N` placeholders), written once and expanded into each backend's `Backend` impl.

/// Expands to the shared `Backend` methods; the impl it is used in provides `self.pool`.
macro_rules! shared_backend_methods {
    () => {
        async fn heartbeat(&self, i: &Instance, now: DateTime<Utc>) -> Result<()> {
            // An upsert: a daemon whose row another one deleted (after an outage) comes back.
            sqlx::query(
                "INSERT INTO tickler_instances (id, hostname, pid, version, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind(&*i.id)
            .bind(&i.hostname)
            .bind(i.pid as i32)
            .bind(&i.version)
            .bind(i.started_at)
            .bind(now)
            .execute(&self.pool)
            .await
            .doing("writing the heartbeat")?;
            Ok(())
        }

        async fn deregister(&self, instance: &str) -> Result<()> {
            sqlx::query("DELETE FROM tickler_instances WHERE id = $1")
                .bind(instance)
                .execute(&self.pool)
                .await
                .doing("deregistering this daemon")?;
            Ok(())
        }

        async fn instances(&self) -> Result<Vec<(String, String, i64)>> {
            sqlx::query_as("SELECT id, hostname, CAST(pid AS BIGINT) FROM tickler_instances")
                .fetch_all(&self.pool)
                .await
                .doing("listing daemons")
        }

        async fn abandon_orphans(
            &self,
            me: &str,
            stale_before: DateTime<Utc>,
            now: DateTime<Utc>,
        ) -> Result<Vec<Orphan>> {
            let rows = sqlx::query(
                "UPDATE job_execution_logs
                    SET status = 'abandoned', completed_at = $1,
                        error_message = 'the daemon running it (' || COALESCE(instance, '?') ||
                            ') stopped without finishing it'
                  WHERE status = 'running' AND COALESCE(instance, '') <> $2
                    AND COALESCE(instance, '') NOT IN
                        (SELECT id FROM tickler_instances WHERE heartbeat_at >= $3)
                  RETURNING CAST(id AS TEXT) AS id, job_name, scheduled_for,
                            metadata->>'process_group' AS process_group",
            )
            .bind(now)
            .bind(me)
            .bind(stale_before)
            .fetch_all(&self.pool)
            .await
            .doing("abandoning orphaned runs")?;
            sqlx::query("DELETE FROM tickler_instances WHERE id <> $1 AND heartbeat_at < $2")
                .bind(me)
                .bind(stale_before)
                .execute(&self.pool)
                .await
                .doing("removing stopped daemons")?;
            Ok(rows
                .iter()
                .map(|r| Orphan {
                    id: r.get("id"),
                    job_name: r.get("job_name"),
                    scheduled_for: r.get("scheduled_for"),
                    process_group: r.get("process_group"),
                })
                .collect())
        }

        async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>> {
            let rows = sqlx::query(
                "SELECT job_name, MAX(scheduled_for) AS last FROM job_execution_logs
                  WHERE \"trigger\" <> 'manual' GROUP BY job_name",
            )
            .fetch_all(&self.pool)
            .await
            .doing("reading the last slot of each job")?;
            Ok(rows.iter().map(|r| (r.get("job_name"), r.get("last"))).collect())
        }

        async fn running_jobs(&self, except_instance: &str) -> Result<HashSet<String>> {
            let rows = sqlx::query(
                "SELECT DISTINCT job_name FROM job_execution_logs
                  WHERE status = 'running' AND COALESCE(instance, '') <> $1",
            )
            .bind(except_instance)
            .fetch_all(&self.pool)
            .await
            .doing("reading running jobs")?;
            Ok(rows.iter().map(|r| r.get("job_name")).collect())
        }

        async fn prune(
            &self,
            ok_before: DateTime<Utc>,
            failed_before: DateTime<Utc>,
            batch: i64,
        ) -> Result<u64> {
            let mut total = 0;
            loop {
                let done = sqlx::query(
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
                .execute(&self.pool)
                .await
                .doing("pruning old runs")?;
                total += done.rows_affected();
                if done.rows_affected() < batch as u64 {
                    return Ok(total);
                }
            }
        }
    };
}

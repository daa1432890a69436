//! The embedded SQLite backend: one file in the state directory, WAL mode, one daemon at a time
//! (a lock file next to the database refuses a second one). Timestamps are RFC 3339 text,
//! ids are UUID text and metadata is JSON text, so `sqlite3` shows them as they are.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqlitePool};
use uuid::Uuid;

use super::{
    Backend, DaemonLock, Doing, Finish, HistoryFilter, Instance, NewRun, Orphan, Result, RunRow,
    StoreError,
};

/// The errors a concurrent migration of the same file produces; others are final.
fn is_migration_race(e: &sqlx::migrate::MigrateError) -> bool {
    let text = e.to_string();
    text.contains("already exists")
        || text.contains("database is locked")
        || text.contains("UNIQUE")
}

/// Timestamps as sqlx writes them for `DateTime<Utc>`, so rows written in bulk (as JSON) and
/// rows written by binds compare and sort alike.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

// Every write transaction starts with BEGIN IMMEDIATE: a deferred one that reads first fails
// at once with SQLITE_BUSY when another connection wrote meanwhile, instead of waiting.

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Connections for the `sql` job kind, apart from the ledger's, opened on first use.
    jobs: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    pub async fn connect(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::StateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Connect {
                url: url.clone(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Checkpoints run from the heartbeat (`checkpoint`), not inside a commit of the
            // claim path; this only bounds the WAL if heartbeats stop.
            .pragma("wal_autocheckpoint", "20000");
        let jobs = SqlitePoolOptions::new()
            .max_connections(2)
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.clone());
        // A SQLite connection is a file handle that cannot go stale: no ping (a round trip to
        // its worker thread) before each use.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { url, source })?;
        Ok(SqliteStore {
            pool,
            jobs,
            path: path.to_path_buf(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The pool of job-supplied SQL, apart from the ledger's.
    pub fn jobs_pool(&self) -> &SqlitePool {
        &self.jobs
    }

    pub async fn close(&self) {
        self.jobs.close().await;
        self.pool.close().await;
    }

    /// Copies the WAL back into the database without blocking writers.
    pub async fn checkpoint(&self) -> Result<()> {
        checkpoint_on(&self.pool).await
    }

    pub(crate) fn lock_for_daemon(&self) -> Result<DaemonLock> {
        DaemonLock::acquire(&self.path)
    }

    /// Runs until dropped, calling `changed` after each commit that inserted a task or made one
    /// due sooner, by any connection or process (the CLI, the user's application, `sqlite3`),
    /// so the task runner looks at once without polling. See [`watch_loop`] for how, and how
    /// writes still being committed are never missed. When the kernel's file-change
    /// notifications cannot be had, the count of queue changes is read every `fallback_poll`.
    pub async fn watch_changes(&self, fallback_poll: Duration, changed: fn()) {
        let mut files = match WalEvents::new(&self.path) {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(
                    error = %e, db = %self.path.display(),
                    poll = %humantime::format_duration(fallback_poll),
                    "cannot watch the database's directory for writes (inotify); looking for \
                     tasks inserted by other processes every `[queue] poll` instead"
                );
                None
            }
        };
        loop {
            let options = self.pool.connect_options();
            let conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .doing("opening the task watch connection");
            let error = match conn {
                Ok(mut conn) => watch_loop(&mut conn, &mut files, fallback_poll, changed).await,
                Err(e) => e,
            };
            tracing::warn!(error = %error, "lost the task watch; reopening it in 5s");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// How long the watch lets a commit finish writing before it looks: a commit is several writes
/// (each frame's header and page), and one look should cover them all.
const SETTLE: Duration = Duration::from_millis(2);
/// The fewest time between two looks while commits keep coming, so a busy database is looked
/// at 100 times a second at most, however many commits it takes.
const MIN_GAP: Duration = Duration::from_millis(10);
/// While commits keep coming (a look after every `CHECKPOINT_LOOKS` at least, no more often
/// than `CHECKPOINT_EVERY`), the watch checkpoints the WAL, so that no commit on the claim path
/// has to (`wal_autocheckpoint` is set high for that reason). An idle daemon's few commits are
/// left to the heartbeat's own checkpoint (every tenth beat).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
const CHECKPOINT_LOOKS: u32 = 10;

/// Waits for writes to the WAL (or, without `files`, for `poll`), then reads the count of queue
/// changes and calls `changed` if it moved; checkpoints while commits go on. Returns the error
/// that ended it (the connection is gone or broken).
///
/// A commit writes its frames to the WAL (the writes the kernel reports) and only then
/// publishes them in the shared-memory index (no notification: it is a memory map). Read
/// right after the notification, the count could still be the old one, and with nothing
/// written after it the change would wait for the next commit. So the count is read inside
/// `BEGIN IMMEDIATE`, which waits for the writer lock: the writer that wrote what was reported
/// has then finished (committed or rolled back), and what it committed is visible.
async fn watch_loop(
    conn: &mut sqlx::SqliteConnection,
    files: &mut Option<WalEvents>,
    poll: Duration,
    changed: fn(),
) -> StoreError {
    let mut count = match settled_queue_changes(conn).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    // Whatever was committed while nothing watched, up to the count just read: the runner
    // looks after it. (Called before the read, a task inserted between the runner's look and
    // the read moved no count the loop below would see, and waited for the 5-minute backstop.)
    changed();
    let mut last_look = tokio::time::Instant::now();
    let mut looks: u32 = 0;
    let mut last_checkpoint = tokio::time::Instant::now();
    loop {
        match files {
            Some(events) => match events.next().await {
                Ok(()) => {
                    tokio::time::sleep(SETTLE.max(MIN_GAP.saturating_sub(last_look.elapsed())))
                        .await;
                    // One look covers every write reported so far.
                    if let Err(e) = events.drain() {
                        stop_watching(files, &e, poll);
                        changed();
                    }
                }
                Err(e) => {
                    stop_watching(files, &e, poll);
                    changed();
                }
            },
            None => tokio::time::sleep(poll).await,
        }
        last_look = tokio::time::Instant::now();
        let before = count;
        count = match settled_queue_changes(conn).await {
            Ok(v) => v,
            // A writer held its lock past the busy timeout: its commit (if any) writes to the
            // WAL again, which is reported; without notifications the next poll looks again.
            Err(e) if is_busy(&e) => continue,
            Err(e) => return e,
        };
        if count != before {
            changed();
        }
        looks += 1;
        if looks >= CHECKPOINT_LOOKS && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            looks = 0;
            last_checkpoint = tokio::time::Instant::now();
            if let Err(e) = checkpoint_on(&mut *conn).await {
                tracing::warn!(error = %e, "SQLite checkpoint failed");
            }
        }
    }
}

/// Falls back to polling when the file-change notifications broke.
fn stop_watching(files: &mut Option<WalEvents>, e: &std::io::Error, poll: Duration) {
    tracing::warn!(
        error = %e, poll = %humantime::format_duration(poll),
        "the database's file-change notifications stopped; looking for tasks inserted by other \
         processes every `[queue] poll` instead"
    );
    *files = None;
}

/// Whether the database was locked by a writer for longer than the busy timeout.
fn is_busy(e: &StoreError) -> bool {
    matches!(e, StoreError::Query { source: sqlx::Error::Database(db), .. }
        if db.code().is_some_and(|c| c.parse::<i32>().is_ok_and(|c| c & 0xff == 5)))
}

/// The count of queue changes (`tickler_counters.queue_changes`, kept by triggers: migration
/// 0006), read once no writer is in the middle of a commit (see [`watch_loop`]).
async fn settled_queue_changes(conn: &mut sqlx::SqliteConnection) -> Result<i64> {
    use sqlx::Executor;
    let doing = "reading the count of queue changes";
    let rows = conn
        .fetch_all(sqlx::raw_sql(
            "BEGIN IMMEDIATE;
             SELECT coalesce((SELECT value FROM tickler_counters WHERE name = 'queue_changes'), 0);
             ROLLBACK",
        ))
        .await;
    match rows {
        Ok(rows) => match rows.first() {
            Some(row) => row.try_get::<i64, _>(0).doing(doing),
            None => Err(StoreError::Query {
                doing,
                source: sqlx::Error::RowNotFound,
            }),
        },
        Err(source) => {
            // A failure after BEGIN leaves the transaction open; one before it, nothing.
            let _ = conn.execute(sqlx::raw_sql("ROLLBACK")).await;
            Err(StoreError::Query { doing, source })
        }
    }
}

/// Writes to the database's WAL file as the kernel reports them (inotify). The file is
/// watched for writes; its directory only for a file of that name appearing, because the WAL
/// is deleted when the last connection to the database closes and created again by the next
/// writer (a new file, which the file's old watch does not follow). Writes to other files of
/// the directory are not reported at all. The shared-memory index (`-shm`) is a memory map and
/// reports nothing; reads report nothing either, so an idle database is silent.
struct WalEvents {
    stream: inotify::EventStream<[u8; 1024]>,
    dir: inotify::WatchDescriptor,
    wal_path: PathBuf,
    wal_name: std::ffi::OsString,
}

impl WalEvents {
    fn new(db: &Path) -> std::io::Result<WalEvents> {
        use inotify::WatchMask;
        // SQLite names the WAL after the database's real path, symbolic links resolved.
        let db = std::fs::canonicalize(db)?;
        let (Some(parent), Some(name)) = (db.parent(), db.file_name()) else {
            return Err(std::io::Error::other("the database path has no directory"));
        };
        let mut wal_name = name.to_os_string();
        wal_name.push("-wal");
        let stream = inotify::Inotify::init()?.into_event_stream([0; 1024])?;
        let dir = stream
            .watches()
            .add(parent, WatchMask::CREATE | WatchMask::MOVED_TO)?;
        let events = WalEvents {
            stream,
            dir,
            wal_path: parent.join(&wal_name),
            wal_name,
        };
        events.watch_wal()?;
        Ok(events)
    }

    /// Watches the WAL file now at its path, if there is one.
    fn watch_wal(&self) -> std::io::Result<()> {
        match self
            .stream
            .watches()
            .add(&self.wal_path, inotify::WatchMask::MODIFY)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// Waits for a write to the WAL, a new WAL, or a sign that writes may have gone unreported
    /// (the kernel's queue overflowed).
    async fn next(&mut self) -> std::io::Result<()> {
        use futures_util::StreamExt;
        loop {
            let event = self
                .stream
                .next()
                .await
                .ok_or_else(|| std::io::Error::other("the inotify stream ended"))??;
            if self.take(event)? {
                return Ok(());
            }
        }
    }

    /// Takes the events already queued, without waiting: one look will cover them all.
    fn drain(&mut self) -> std::io::Result<()> {
        use futures_util::{FutureExt, StreamExt};
        while let Some(Some(event)) = self.stream.next().now_or_never() {
            self.take(event?)?;
        }
        Ok(())
    }

    /// Whether `event` calls for a look at the database; follows a new WAL file.
    fn take(&self, event: inotify::EventOwned) -> std::io::Result<bool> {
        use inotify::EventMask;
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            return Ok(true);
        }
        if event.wd != self.dir {
            // The WAL's watch: a write, or its end (the file was deleted).
            return Ok(event.mask.contains(EventMask::MODIFY));
        }
        if event.mask.contains(EventMask::IGNORED) {
            return Err(std::io::Error::other(
                "the database's directory was removed or unmounted",
            ));
        }
        if event.name.as_deref() == Some(self.wal_name.as_os_str()) {
            // A new WAL, perhaps written already: watch it, and look.
            self.watch_wal()?;
            return Ok(true);
        }
        Ok(false)
    }
}

async fn checkpoint_on<'e>(on: impl sqlx::SqliteExecutor<'e>) -> Result<()> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(on)
        .await
        .doing("checkpointing the WAL")?;
    Ok(())
}

fn row_to_run(r: &sqlx::sqlite::SqliteRow) -> RunRow {
    RunRow {
        id: r.get("id"),
        job_name: r.get("job_name"),
        status: r.get("status"),
        started_at: r.get("started_at"),
        completed_at: r.get("completed_at"),
        duration_seconds: r.get("duration_seconds"),
        records_processed: r.get("records_processed"),
        error_message: r.get("error_message"),
        metadata: r
            .get::<Option<String>, _>("metadata")
            .and_then(|m| serde_json::from_str(&m).ok()),
        scheduled_for: r.get("scheduled_for"),
        trigger: r.get("trigger"),
        attempt: r.get("attempt"),
        instance: r.get("instance"),
        messages: None,
    }
}

impl Backend for SqliteStore {
    shared_backend_methods!();

    async fn migrate(&self) -> Result<()> {
        // SQLite has no advisory lock: when two processes (the daemon and a `tickler history`)
        // migrate at once, the loser's attempt fails on the winner's tables. Looking again
        // finds the migration applied.
        let mut tries = 0;
        loop {
            match sqlx::migrate!("migrations/sqlite").run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 5 && is_migration_race(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(source) => {
                    let url = format!("sqlite://{}", self.path.display());
                    return Err(StoreError::Migrate { url, source });
                }
            }
        }
    }

    async fn insert_runs(&self, runs: &[NewRun]) -> Result<HashSet<Uuid>> {
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
                ])
            })
            .collect();
        let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .doing("claiming slots")?;
        let done = sqlx::query(
            "INSERT INTO job_execution_logs (id, job_name, status, started_at, completed_at,
                 duration_seconds, scheduled_for, \"trigger\", attempt, instance, error_message,
                 metadata)
             SELECT v->>0, v->>1, v->>2, v->>3, v->>4, CASE WHEN v->>4 IS NULL THEN NULL ELSE 0.0 END,
                    v->>5, v->>6, 1, v->>7, v->>8, v->>9
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

    async fn finish_runs(&self, finishes: &[Finish]) -> Result<()> {
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.doing(doing)?;
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

    async fn set_attempt(&self, id: Uuid, attempt: u32) -> Result<()> {
        sqlx::query("UPDATE job_execution_logs SET attempt = ? WHERE id = ?")
            .bind(attempt as i64)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .doing("recording a retry")?;
        Ok(())
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT * FROM job_execution_logs
              WHERE (?1 IS NULL OR job_name = ?1) AND (?2 IS NULL OR status = ?2)
                AND (?4 IS NULL OR id = ?4)
              ORDER BY started_at DESC, scheduled_for DESC LIMIT ?3",
        )
        .bind(&filter.job)
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.limit)
        .bind(filter.run.map(|id| id.to_string()))
        .fetch_all(&self.pool)
        .await
        .doing("reading the run history")?;
        Ok(rows.iter().map(row_to_run).collect())
    }

    async fn execute(&self, statements: &[String], transaction: bool) -> Result<u64> {
        // SQLite reports a stale change count for DDL, so count with total_changes() instead.
        const CHANGES: &str = "SELECT total_changes()";
        let doing = "running the job's SQL";
        let mut conn = self.jobs.acquire().await.doing(doing)?;
        let before: i64 = sqlx::query_scalar(CHANGES)
            .fetch_one(&mut *conn)
            .await
            .doing(doing)?;
        if transaction {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.doing(doing)?;
            for s in statements {
                sqlx::query(s.as_str())
                    .execute(&mut *tx)
                    .await
                    .doing(doing)?;
            }
            tx.commit().await.doing(doing)?;
        } else {
            for s in statements {
                sqlx::query(s.as_str())
                    .execute(&mut *conn)
                    .await
                    .doing(doing)?;
            }
        }
        let after: i64 = sqlx::query_scalar(CHANGES)
            .fetch_one(&mut *conn)
            .await
            .doing(doing)?;
        Ok((after - before).max(0) as u64)
    }
}

//! The embedded SQLite backend: one file in the state directory, WAL mode, one daemon at a time
//! (a lock file next to the database refuses a second one). Timestamps are RFC 3339 text,
//! ids are UUID text and metadata is JSON text, so `sqlite3` shows them as they are.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqlitePool};

use super::{DaemonLock, Doing, Result, StoreError};

// Every write transaction starts with BEGIN IMMEDIATE: a deferred one that reads first fails
// at once with SQLITE_BUSY when another connection wrote meanwhile, instead of waiting.

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Connections for the `sql` job kind, apart from the ledger's, opened on first use.
    jobs: SqlitePool,
    /// The one connection of the writes of messages (see [`SqliteStore::journal_pool`]).
    journal: SqlitePool,
    /// The connection of the daemon's periodic work (heartbeat, orphan look, checkpoint),
    /// opened on first use. A pooled connection is pinged on its way back to the pool (by
    /// sqlx, not configurable): one more round trip to its worker thread per statement, which
    /// an idle daemon would pay on every beat (DESIGN.md invariant 8).
    own: std::sync::Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
    path: PathBuf,
}

/// [`SqliteStore::own_connection`] held: forget it after an error, and the next use opens a
/// new one.
pub struct Held<'a>(tokio::sync::MutexGuard<'a, Option<sqlx::SqliteConnection>>);

impl Held<'_> {
    pub fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        self.0.as_mut().expect("a held connection is open")
    }

    /// Passes `done` on, dropping the connection after an error (closed by its worker
    /// thread): a failure may have broken it.
    pub fn keep<T>(&mut self, done: Result<T>) -> Result<T> {
        if done.is_err() {
            *self.0 = None;
        }
        done
    }
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
        // tickler's own connections keep up to 16 MiB of pages each (SQLite's default is
        // 2 MiB): a page of 2,000 reminders joins each invoice to a customer and a
        // subscription anywhere in their tables, and with 2 MiB those pages were read again
        // from the file for every page of invoices (the selection's CPU per message 27-28 µs,
        // 18.5-19.8 with 16 MiB, `cargo bench --bench reminders -- --phases`). Filled only as
        // pages are read: an idle daemon holds a few. Job-supplied SQL keeps the default.
        let options = options.pragma("cache_size", "-16384");
        // A SQLite connection is a file handle that cannot go stale: no ping (a round trip to
        // its worker thread) before each use.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(300));
        let journal = pool
            .clone()
            .max_connections(1)
            .connect_lazy_with(options.clone());
        // Opening sets the journal mode, which another process creating or migrating the file
        // at this moment holds up with SQLITE_BUSY at once (no busy wait applies to it): a CLI
        // command run as a fresh daemon starts. Tried again for up to ~10 s.
        let mut tries = 0u64;
        let pool = loop {
            match pool.clone().connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(e) if tries < 20 && e.to_string().contains("database is locked") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(source) => return Err(StoreError::Connect { url, source }),
            }
        };
        Ok(SqliteStore {
            pool,
            jobs,
            journal,
            own: Default::default(),
            path: path.to_path_buf(),
        })
    }

    pub(super) async fn migrate(&self) -> Result<()> {
        // SQLite has no advisory lock: when two processes (the daemon and a `tickler history`)
        // migrate at once, both read the list of applied migrations, one applies the next and
        // the other, trying it too, fails on its effects ("already exists", "no such index"
        // for an index the winner dropped...). A migration commits with its row in
        // `_sqlx_migrations`, so a failure while that list grew is such a race, whatever its
        // text: look again, and the winner's migrations are found applied. Each such retry
        // needs another applied migration, so they are bounded by their number. A failure
        // without progress is final, but for a write lock held past the busy timeout.
        let mut locked = 0;
        loop {
            let before = self.applied_migration().await;
            match sqlx::migrate!("migrations/sqlite").run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if self.applied_migration().await > before => {}
                Err(MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _))
                    if locked < 10 && is_busy_error(&e) =>
                {
                    locked += 1;
                    tokio::time::sleep(Duration::from_millis(100 * locked)).await;
                }
                Err(source) => {
                    let url = format!("sqlite://{}", self.path.display());
                    return Err(StoreError::Migrate { url, source });
                }
            }
        }
    }

    /// The newest migration applied, `None` before the first (or when it cannot be read).
    async fn applied_migration(&self) -> Option<i64> {
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .ok()
            .flatten()
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The pool of job-supplied SQL, apart from the ledger's.
    pub fn jobs_pool(&self) -> &SqlitePool {
        &self.jobs
    }

    /// The writes of messages to `notification_log` (claims, then attempts and ends, a
    /// commit every few sends) on a connection of their own. A connection's page cache is
    /// emptied when it starts a transaction after another connection committed (WAL mode):
    /// spread over the pool, the journal, which commits most, found the cache of each
    /// connection emptied by its own last commit on another and read the pages again from
    /// the file (5.3 file reads per message, 2.3 with the journal on its own connection:
    /// `bench/syscalls.sh`, README, stop 31).
    pub fn journal_pool(&self) -> &SqlitePool {
        &self.journal
    }

    /// The connection of the periodic work, opened if need be (see `own`).
    pub async fn own_connection(&self) -> Result<Held<'_>> {
        let mut held = self.own.lock().await;
        if held.is_none() {
            let options = self.pool.connect_options();
            *held = Some(
                sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .doing("opening the connection of the heartbeat")?,
            );
        }
        Ok(Held(held))
    }

    pub async fn close(&self) {
        if let Some(conn) = self.own.lock().await.take() {
            let _ = conn.close().await;
        }
        self.jobs.close().await;
        self.journal.close().await;
        self.pool.close().await;
    }

    /// Copies the WAL back into the database without blocking writers.
    pub async fn checkpoint(&self) -> Result<()> {
        let mut held = self.own_connection().await?;
        let done = checkpoint_on(held.conn()).await;
        held.keep(done)
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
            // The watch's read waits for the writer lock by design (see `watch_loop`): behind
            // another process's long write, over sqlx's 1 s "slow statement" warning. Its one
            // statement is not logged; a wait past the busy timeout is handled in the loop.
            let options = (*self.pool.connect_options())
                .clone()
                .disable_statement_logging();
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
/// While commits keep coming (`CHECKPOINT_LOOKS` looks in a row, each within `CHECKPOINT_EVERY`
/// of the one before, and no more often than `CHECKPOINT_EVERY`), the watch checkpoints the
/// WAL, so that no commit on the claim path has to (`wal_autocheckpoint` is set high for that
/// reason). An idle daemon's few commits are left to the heartbeat's own checkpoint (every
/// tenth beat).
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
        let previous = last_look;
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
        // Looks further apart than `CHECKPOINT_EVERY` are an idle database's: its few frames
        // are left to the heartbeat's checkpoint (each checkpoint waits on two fsyncs).
        looks = if last_look.duration_since(previous) > CHECKPOINT_EVERY {
            0
        } else {
            looks + 1
        };
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
    matches!(e, StoreError::Query { source, .. } if is_busy_error(source))
}

/// SQLITE_BUSY, or one of its extended codes.
fn is_busy_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded SQLite is built as `.cargo/config.toml` asks (`LIBSQLITE3_FLAGS`): without
    /// memory statistics, whose global mutex every allocation and free took (the connections'
    /// threads and tokio's, freeing rows, waited on each other: 10.6 futex calls a reminder,
    /// 3.2 without), and without the memory management that puts every connection's pages
    /// under one global mutex. A build that lost them (run from outside the repository, or
    /// with `LIBSQLITE3_FLAGS` set in the environment, which overrides the file) fails here
    /// instead of slowing down unseen.
    #[tokio::test]
    async fn the_embedded_sqlite_has_no_global_memory_mutexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&dir.path().join("t.db"))
            .await
            .unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "memory statistics are on: {options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "memory management is on: {options:?}"
        );
    }
}

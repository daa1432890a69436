//! The store: the run ledger and everything tickler keeps, on SQLite (embedded default) or
//! PostgreSQL (production, several replicas), chosen by the URL scheme.
//!
//! One mechanism reaches both: [`Store`], a cheap, cloneable handle whose methods (one file per
//! concern: `ledger`, `claims`, `health`, `queue`, `billing`, `user`) hold one SQL text each,
//! written for PostgreSQL and adapted to SQLite by [`Store::sql`] (casts dropped, `ROWS($n)`
//! for a JSON array of rows), run on the pool in use through `with_pool!`. Where the engines
//! differ in kind (bulk claims, migrations, locks, change notifications), the method has one arm
//! per backend, side by side, here in `store/`: the rest of tickler never names a backend. The
//! contract is tested once against both databases (`tests/it/store_*.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::secret::DatabaseUrl;

pub mod audit;
pub mod billing;
pub mod claims;
pub mod console;
pub mod contacts;
pub mod health;
mod ledger;
mod now;
pub mod payments;
mod postgres;
pub mod queue;
mod sqlite;
pub mod user;

pub use now::NowComparedAsText;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the store, each saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use `sqlite://PATH` or `postgres://USER@HOST/DB`")]
    UnsupportedUrl(String),
    #[error("cannot open the database `{url}`: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create the state directory `{path}`: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot apply migrations to `{url}`: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "another tickler daemon{holder} is using the SQLite database `{db}` (its lock `{lock}` is \
         held); SQLite allows one daemon: stop the other one, or use PostgreSQL to run several"
    )]
    Locked {
        db: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("cannot lock the SQLite database `{db}`: {source}")]
    LockIo { db: PathBuf, source: std::io::Error },
    #[error(
        "cannot read this machine's host name with `gethostname`: {0}; tickler names its \
         processes after it to tell them from replicas on other hosts: set one with \
         `hostnamectl hostname NAME`"
    )]
    Hostname(#[source] std::io::Error),
    #[error(
        "`{column}` holds `{found}`, which is not an instant: `cleanup` compares the column with \
         its cut-off as a time; keep times there as text (`YYYY-MM-DD HH:MM:SS` or RFC 3339) \
         or unix seconds, or name another `column`"
    )]
    NotInstants { column: String, found: String },
    #[error(
        "`{column}` is a `{ty}` column: `cleanup` reads instants from `timestamp with time zone`, \
         `timestamp` (as UTC), `date` (midnight UTC) or unix seconds (an integer or numeric \
         column); name another `column`"
    )]
    NotInstantType { column: String, ty: String },
    #[error("the SQLite file `{0}` does not exist")]
    NoDatabaseFile(String),
    /// A column compared bare with `:now` on SQLite holds instants in another form than
    /// `:now`'s text (see `store/now.rs`).
    #[error(transparent)]
    NowComparedAsText(Box<NowComparedAsText>),
    /// PostgreSQL has no comparison of `:now` (a `timestamptz`) with what the SQL compares it
    /// with: a `text` column, most often.
    #[error(
        "PostgreSQL refuses the comparison with `:now`, a `timestamptz`: {source}; compare it \
         with a `timestamptz`, `timestamp` or `date` column, or cast the column, e.g. \
         `starts_at::timestamptz`"
    )]
    NowType { source: sqlx::Error },
    #[error("there is no column `{column}`: check `table` and `column` of the rule")]
    NoColumn { column: String },
    #[error(
        "`on_sent` statement {statement} names `:{name}`, which is not a column of the query's \
         rows (they have: {columns}); select it in `query`, or fix the name"
    )]
    NoRowColumn {
        statement: usize,
        name: String,
        columns: String,
    },
    #[error("database error while {doing}: {source}")]
    Query {
        doing: &'static str,
        source: sqlx::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Formats a timestamp as sqlx writes a bound `DateTime<Utc>` on SQLite, so rows written in
/// bulk (as JSON) and rows written by binds compare and sort alike on both backends.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// Rows as the JSON array that `ROWS($n)` reads (`json_each` / `jsonb_array_elements`).
fn json_text<T: serde::Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())
}

impl crate::retry::Transient for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

impl StoreError {
    /// Whether the database was away or busy (a restart, a failover, a full pool, a lock), so
    /// the same statement may succeed later; not a statement the database refuses outright.
    pub fn is_transient(&self) -> bool {
        let StoreError::Query { source, .. } = self else {
            return matches!(self, StoreError::Connect { .. });
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => transient_code(
                db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some(),
                &db.code().unwrap_or_default(),
            ),
            _ => false,
        }
    }
}

/// Whether a database error code says the database was away or busy. Each backend's codes
/// are read by its own rules: a PostgreSQL SQLSTATE such as 22021 (a NUL byte in text) is
/// all digits, and read as a SQLite code it would pass for BUSY.
fn transient_code(sqlite: bool, code: &str) -> bool {
    if sqlite {
        // BUSY (5), LOCKED (6), IOERR (10), FULL (13), CANTOPEN (14), and their extended codes.
        matches!(
            code.parse::<i32>().map(|c| c & 0xff),
            Ok(5 | 6 | 10 | 13 | 14)
        )
    } else {
        // Connection exceptions (08), shutdown and crash (57P0x), insufficient resources (53),
        // serialization failure (40001) and deadlock (40P01).
        code.starts_with("08")
            || code.starts_with("57P0")
            || code.starts_with("53")
            || matches!(code, "40001" | "40P01")
    }
}

/// Adds "while doing X" to a sqlx error.
pub(crate) trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T>;
}

impl<T> Doing<T> for std::result::Result<T, sqlx::Error> {
    fn doing(self, doing: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Query { doing, source })
    }
}

/// Statuses of a run, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Due and claimed by `instance`, waiting its turn (a catch-up backlog, a queue, jitter,
    /// the concurrency bound); adopted by another daemon if its owner dies.
    Pending,
    Running,
    Succeeded,
    Partial,
    Failed,
    TimedOut,
    Skipped,
    Missed,
    /// The job was paused (`tickler pause`) when the slot came: recorded, not run.
    Paused,
    Abandoned,
    Interrupted,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Pending,
        Status::Running,
        Status::Succeeded,
        Status::Partial,
        Status::Failed,
        Status::TimedOut,
        Status::Skipped,
        Status::Missed,
        Status::Paused,
        Status::Abandoned,
        Status::Interrupted,
    ];

    /// A claim still held by its instance (`pending` or `running`): no end recorded yet.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Running)
    }

    /// The job did its work (`partial`: with item errors). `store::health` queries the same
    /// list.
    pub fn is_success(self) -> bool {
        matches!(self, Status::Succeeded | Status::Partial)
    }

    /// A run that failed: what `on_failure` alerts are for. `store::health` queries the same
    /// list.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::TimedOut | Status::Abandoned)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Skipped => "skipped",
            Status::Missed => "missed",
            Status::Paused => "paused",
            Status::Abandoned => "abandoned",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTrigger {
    Schedule,
    CatchUp,
    Manual,
    /// `tickler backfill`: a past slot run again, or for the first time, on request.
    Backfill,
}

impl RunTrigger {
    /// Asked for by an operator, not due by the trigger: never late (no `missed`, no jitter).
    pub fn on_request(self) -> bool {
        matches!(self, RunTrigger::Manual | RunTrigger::Backfill)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::CatchUp => "catch_up",
            RunTrigger::Manual => "manual",
            RunTrigger::Backfill => "backfill",
        }
    }
}

/// A row to insert into the ledger; the slot is claimed only if this insert succeeds.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// A time-ordered (v7) UUID: new rows append to the id index instead of landing on a
    /// random page, which halves the cost of a claim on SQLite.
    pub id: Uuid,
    pub job_name: Arc<str>,
    pub scheduled_for: DateTime<Utc>,
    pub trigger: RunTrigger,
    /// `running` for a run about to start, `pending` for one that waits its turn; `skipped`
    /// or `missed` for a fire recorded only.
    pub status: Status,
    pub started_at: DateTime<Utc>,
    pub instance: Arc<str>,
    pub error_message: Option<String>,
    pub metadata: Option<Value>,
    /// The claimed-ahead batch a `pending` row belongs to (see `fire_batches`), if any.
    pub batch: Option<Uuid>,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: Uuid,
    pub status: Status,
    /// When the job body started: after the claim was committed.
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub records_processed: Option<i64>,
    pub error_message: Option<String>,
    pub metadata: Value,
    pub attempt: u32,
}

/// A ledger row as read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub job_name: String,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub records_processed: Option<i64>,
    pub error_message: Option<String>,
    pub metadata: Option<Value>,
    pub scheduled_for: DateTime<Utc>,
    pub trigger: String,
    pub attempt: i64,
    pub instance: Option<String>,
    /// Its messages in `notification_log` by status (filled in by `tickler history`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<std::collections::BTreeMap<String, i64>>,
}

/// A run marked `abandoned` because the daemon running it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub id: String,
    pub job_name: String,
    pub scheduled_for: DateTime<Utc>,
    /// The process group its command started (JSON, see `jobs::command`), to be ended.
    pub process_group: Option<String>,
}

/// A filter for `tickler history`.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub job: Option<String>,
    pub status: Option<Status>,
    pub limit: i64,
    /// One run, by id (what an alert links to).
    pub run: Option<Uuid>,
}

/// A running daemon, as recorded in `tickler_instances`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: Arc<str>,
    /// This machine's host name: a daemon checks the pids of registered processes with the
    /// same host name locally and judges the others by their heartbeat alone, so two hosts
    /// must never share one (as they did when every instance fell back to `localhost`).
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
}

impl Instance {
    /// The host of the process an instance id names (ids are `host:pid:random`).
    pub fn host_of(id: &str) -> &str {
        id.rsplitn(3, ':').nth(2).unwrap_or_default()
    }

    /// The pid of the process an instance id names.
    pub fn pid_of(id: &str) -> Option<i64> {
        id.rsplit(':').nth(1)?.parse().ok()
    }

    /// This process, named after the host it runs on. The host name comes from
    /// `gethostname(2)`, which no sandboxing of `/proc` hides (the unit's `ProcSubset=pid`
    /// hides `/proc/sys/kernel/hostname`); when it cannot be had, that is an error rather than
    /// a made-up name that replicas on other hosts might share.
    pub fn current() -> Result<Instance> {
        let hostname = hostname()?;
        let pid = std::process::id();
        let id = format!(
            "{hostname}:{pid}:{}",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Instance {
            id: Arc::from(id),
            hostname,
            pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: Utc::now(),
        })
    }
}

/// The kernel's host name of this machine (its UTS namespace), via `gethostname(2)`.
pub(crate) fn hostname() -> Result<String> {
    // POSIX leaves HOST_NAME_MAX open; Linux's is 64. A larger buffer and a check for the
    // terminating NUL catch a truncated name on any system.
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return Err(StoreError::Hostname(std::io::Error::last_os_error()));
    }
    let name = std::ffi::CStr::from_bytes_until_nul(&buf)
        .map_err(|_| StoreError::Hostname(std::io::ErrorKind::InvalidData.into()))?;
    parse_hostname(name.to_bytes())
}

/// A host name as the kernel returned it, refused when empty (no name to tell hosts apart).
fn parse_hostname(raw: &[u8]) -> Result<String> {
    let name = String::from_utf8_lossy(raw).trim().to_string();
    if name.is_empty() {
        return Err(StoreError::Hostname(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the host name is empty",
        )));
    }
    Ok(name)
}

/// A handle on the database in use.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the database named by `url`, creating an SQLite file and its directory if needed.
    /// Migrations are not applied here: call [`Store::migrate`].
    pub async fn connect(url: &DatabaseUrl) -> Result<Store> {
        let raw = url.expose();
        if url.is_postgres() {
            Ok(Store::Postgres(PgStore::connect(url).await?))
        } else if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or(raw.strip_prefix("sqlite:"))
        {
            Ok(Store::Sqlite(SqliteStore::connect(Path::new(path)).await?))
        } else {
            Err(StoreError::UnsupportedUrl(url.redacted()))
        }
    }

    /// Opens an application's database (`[databases]`): small pools, and an SQLite file that
    /// must exist already (a mistyped path would otherwise become an empty database).
    pub async fn connect_user(url: &DatabaseUrl) -> Result<Store> {
        let raw = url.expose();
        if url.is_postgres() {
            Ok(Store::Postgres(PgStore::connect_sized(url, 2, 2).await?))
        } else if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or(raw.strip_prefix("sqlite:"))
        {
            if !Path::new(path).is_file() {
                return Err(StoreError::NoDatabaseFile(path.to_string()));
            }
            Ok(Store::Sqlite(SqliteStore::connect(Path::new(path)).await?))
        } else {
            Err(StoreError::UnsupportedUrl(url.redacted()))
        }
    }

    /// Whether several daemons may share this database (PostgreSQL): then other replicas'
    /// runs count for overlap, and claims race with theirs.
    pub fn has_replicas(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// How slot claims are best batched on this database: rows per transaction, and how many
    /// such transactions may be in flight at once. SQLite has one writer, so its chunks go one
    /// after the other; PostgreSQL takes smaller ones in parallel.
    pub fn claim_batching(&self) -> (usize, usize) {
        match self {
            Store::Sqlite(_) => (1000, 1),
            Store::Postgres(_) => (250, 4),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// On SQLite, takes the single-daemon lock for as long as the guard lives. PostgreSQL
    /// allows several daemons, which coordinate through the ledger.
    pub fn lock_for_daemon(&self) -> Result<Option<DaemonLock>> {
        match self {
            Store::Sqlite(s) => s.lock_for_daemon().map(Some),
            Store::Postgres(_) => Ok(None),
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
            Store::Postgres(s) => s.migrate().await,
        }
    }
    /// SQLite: moves the WAL into the database file off the claim path. PostgreSQL: nothing.
    pub async fn checkpoint(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.checkpoint().await,
            Store::Postgres(_) => Ok(()),
        }
    }
    /// Runs until dropped, calling `changed` whenever another connection or process may have
    /// added a task or made one due sooner, so the task runner needs no short poll (invariant
    /// 8). PostgreSQL: `LISTEN tickler_tasks` (triggers notify on insert and on updates that
    /// make a task due sooner). SQLite: the kernel's notifications of writes to the WAL, then
    /// the count of queue changes its triggers keep; every `fallback_poll` when notifications
    /// cannot be had.
    pub async fn watch_tasks(&self, fallback_poll: Duration, changed: fn()) {
        match self {
            Store::Sqlite(s) => s.watch_changes(fallback_poll, changed).await,
            Store::Postgres(s) => s.listen_tasks(changed).await,
        }
    }
    /// A trivial query: the database answers.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ())
            .doing("reaching the database"))
    }
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool of the backend in use (with `jobs`: the pool of
/// the user's SQL). The body is compiled once per backend, so one query text (adapted by
/// [`Store::sql`]) serves both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        with_pool!($store, pool, $pool => $body)
    };
    ($store:expr, jobs, $pool:ident => $body:expr) => {
        with_pool!($store, jobs_pool, $pool => $body)
    };
    // The daemon's periodic statements: on SQLite, its connection of their own (see
    // `SqliteStore::own_connection`), forgotten after an error; on PostgreSQL, the pool.
    ($store:expr, own, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(s) => match s.own_connection().await {
                Ok(mut held) => {
                    let $pool = held.conn();
                    let done = $body;
                    held.keep(done)
                }
                Err(e) => Err(e),
            },
            $crate::store::Store::Postgres(s) => {
                let $pool = s.pool();
                $body
            }
        }
    };
    ($store:expr, $which:ident, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(s) => {
                let $pool = s.$which();
                $body
            }
            $crate::store::Store::Postgres(s) => {
                let $pool = s.$which();
                $body
            }
        }
    };
}
pub(crate) use with_pool;

impl Store {
    /// Adapts query text written for PostgreSQL to the backend in use. Two notations cover
    /// what differs: `::type` casts (PostgreSQL needs them on text from JSON and binds; SQLite
    /// drops them, its columns already hold text, integers and reals), and `ROWS($n)`, the
    /// rows of a JSON array of objects bound as text, read as `r.value->>'key'` on both.
    pub fn sql<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        adapt(matches!(self, Store::Postgres(_)), text)
    }

    /// Write transactions on SQLite take the write lock first (see `sqlite.rs`).
    pub(crate) fn begin_statement(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "BEGIN IMMEDIATE",
            Store::Postgres(_) => "BEGIN",
        }
    }
}

fn adapt(postgres: bool, text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("::") && !text.contains("ROWS(") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("ROWS(") {
            let end = after.find(')').unwrap_or(after.len());
            let param = &after[..end];
            if postgres {
                out.push_str(&format!("jsonb_array_elements({param}::jsonb) AS r(value)"));
            } else {
                // Each row's object read once, by a subquery SQLite does not flatten into the
                // statement (it has an OFFSET): `r.value` of `json_each` itself is made again,
                // the object turned back into text, at every `r.value->>'key'` (45k of a
                // claim's 85k instructions a message); from the subquery's row every read
                // takes the same text, whose parse SQLite's JSON cache keeps.
                out.push_str(&format!(
                    "(SELECT value FROM json_each({param}) LIMIT -1 OFFSET 0) AS r"
                ));
            }
            rest = &after[(end + 1).min(after.len())..];
        } else if !postgres && rest.starts_with("::") {
            let after = &rest[2..];
            let end = after
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(after.len());
            rest = &after[end..];
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out.into()
}

/// Holds the SQLite single-daemon lock; released when dropped or when the process dies.
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
}

impl DaemonLock {
    /// Locks `<db>.lock` next to the database file, writing our pid into it.
    pub(crate) fn acquire(db: &Path) -> Result<DaemonLock> {
        use std::io::{Read, Seek, Write};
        let mut lock_path = db.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let io = |source| StoreError::LockIo {
            db: db.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                writeln!(file, "{}", std::process::id()).map_err(io)?;
                Ok(DaemonLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                Err(StoreError::Locked {
                    db: db.to_path_buf(),
                    lock: lock_path,
                    holder,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod transient_tests {
    use super::transient_code;

    #[test]
    fn error_codes_are_read_by_their_own_backend() {
        // PostgreSQL: away or busy...
        for code in ["08006", "57P01", "57P03", "53300", "40001", "40P01"] {
            assert!(transient_code(false, code), "{code}");
        }
        // ...and refused: a NUL byte in text (22021 & 0xff is SQLite's BUSY), no privilege
        // (42501), a unique violation, a rolled-back constraint (40002).
        for code in ["22021", "42501", "23505", "40002", "22P05"] {
            assert!(!transient_code(false, code), "{code}");
        }
        // SQLite: BUSY, BUSY_SNAPSHOT (517), LOCKED, IOERR, FULL, CANTOPEN...
        for code in ["5", "517", "6", "10", "13", "14"] {
            assert!(transient_code(true, code), "{code}");
        }
        // ...and refused: CONSTRAINT_COMMITHOOK (531, not PostgreSQL's class 53), CONSTRAINT.
        for code in ["531", "19", "2067"] {
            assert!(!transient_code(true, code), "{code}");
        }
    }
}

#[cfg(test)]
mod dialect_tests {
    use super::adapt;

    #[test]
    fn postgres_text_is_adapted_for_sqlite() {
        let q = "SELECT i.id::text, (r.value->>'n')::bigint FROM ROWS($1) WHERE x = $2::uuid";
        assert_eq!(
            adapt(false, q),
            "SELECT i.id, (r.value->>'n') FROM (SELECT value FROM json_each($1) LIMIT -1 \
             OFFSET 0) AS r WHERE x = $2"
        );
        assert_eq!(
            adapt(true, q),
            "SELECT i.id::text, (r.value->>'n')::bigint FROM jsonb_array_elements($1::jsonb) \
             AS r(value) WHERE x = $2::uuid"
        );
    }
}

#[cfg(test)]
mod hostname_tests {
    use super::{Instance, parse_hostname};

    /// The name comes from the kernel, as `/proc/sys/kernel/hostname` (readable here, unlike
    /// under the unit's `ProcSubset=pid`) shows it, and names the instance id.
    #[test]
    fn the_instance_is_named_after_the_kernel_host_name() {
        let me = Instance::current().unwrap();
        if let Ok(proc) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(me.hostname, proc.trim());
        }
        assert!(me.id.starts_with(&format!("{}:{}:", me.hostname, me.pid)));
    }

    #[test]
    fn an_empty_host_name_is_an_error_that_says_what_to_do() {
        assert_eq!(parse_hostname(b"db-2\n").unwrap(), "db-2");
        assert_eq!(
            parse_hostname(b"").unwrap_err().to_string(),
            "cannot read this machine's host name with `gethostname`: the host name is empty; \
             tickler names its processes after it to tell them from replicas on other hosts: \
             set one with `hostnamectl hostname NAME`"
        );
    }
}

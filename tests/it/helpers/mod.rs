//! Test helpers: a project directory with a config, a real PostgreSQL (from
//! `TICKLER_TEST_POSTGRES_URL`, or a throwaway cluster started with initdb/pg_ctl), an
//! in-process daemon driven by a manual clock, and waiting for a condition with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tickler::config::{self, Config};
use tickler::daemon::{self, Options, Signal};
use tickler::store::{HistoryFilter, RunRow, Store};
use tickler::time::{Clock, ManualClock};
use tokio::sync::{mpsc, oneshot};

pub mod browser;
pub mod smtp;
pub mod tenants;

pub const BIN: &str = env!("CARGO_BIN_EXE_tickler");

/// Waits until `check` returns `Some`, polling; panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the in-process daemon's log lines to the test's captured output, so a failing test
/// shows what the daemon did (`TICKLER_LOG` filters them; `info` by default).
pub fn capture_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TICKLER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// A temporary project: a directory holding `config.toml` and the SQLite state.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub database_url: String,
}

impl Project {
    /// A project on SQLite in its own directory.
    pub fn sqlite() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = format!("sqlite://{}/tickler.db", dir.path().display());
        Project { dir, database_url }
    }

    /// A project on a fresh PostgreSQL database, or `None` when no PostgreSQL can be had
    /// (and `TICKLER_REQUIRE_POSTGRES` is not set).
    pub async fn postgres() -> Option<Project> {
        let url = postgres_database().await?;
        Some(Project {
            dir: tempfile::tempdir().expect("tempdir"),
            database_url: url,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Writes `config.toml`: a `[daemon]` section pointing at this project's database, then
    /// `body` (more daemon keys first, then jobs).
    pub fn write_config(&self, daemon_extra: &str, body: &str) -> PathBuf {
        let text = format!(
            "[daemon]\ndatabase_url = \"{}\"\nstate_dir = \"{}\"\ntimezone = \"UTC\"\n{daemon_extra}\n{body}",
            self.database_url,
            self.dir.path().display()
        );
        std::fs::write(self.config_path(), text).expect("write config");
        self.config_path()
    }

    pub fn config(&self) -> Config {
        config::load(&self.config_path()).expect("valid test config")
    }

    pub async fn store(&self) -> Store {
        let store = Store::connect(&tickler::secret::DatabaseUrl::new(
            self.database_url.clone(),
        ))
        .await
        .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// `tickler run` on this project's config, to be given its stdio and environment and spawned.
    pub fn daemon_command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.args(["run", "--config"])
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("TICKLER_DATABASE_URL");
        c
    }

    /// `tickler run` on this project, its log appended to `daemon.log` in the project.
    pub fn spawn_logged_daemon(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("daemon.log"))
            .expect("daemon log");
        self.daemon_command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tickler run")
    }

    /// What this project's daemons logged to `daemon.log` so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs the tickler binary in this project.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("TICKLER_DATABASE_URL")
            .output()
            .expect("run tickler")
    }

    /// `tickler tasks enqueue` of a `custom` task for `handler`, due now; returns its id.
    pub fn enqueue_custom(&self, handler: &str) -> String {
        let data = format!(r#"{{"handler": "{handler}"}}"#);
        let out = self.cli(&[
            "tasks", "enqueue", "--type", "custom", "--in", "0s", "--data", &data,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).split_whitespace().nth(2).unwrap().to_string()
    }
}

/// [`wait_for`] for tests without a runtime: polls `check` every 20 ms until it gives a value,
/// and fails the test with `what` after `deadline`.
pub fn wait_for_blocking<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to a child process.
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// The lines of a file a test's handlers append to (none when it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A daemon running in this process.
pub struct TestDaemon {
    pub signals: mpsc::Sender<Signal>,
    pub task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    pub clock: Arc<ManualClock>,
}

impl TestDaemon {
    /// Starts a daemon on `config` with a manual clock reading `start`; returns once ready.
    pub async fn start(config: Config, start: DateTime<Utc>) -> TestDaemon {
        Self::start_with_clock(config, Arc::new(ManualClock::new(start))).await
    }

    pub async fn start_with_clock(config: Config, clock: Arc<ManualClock>) -> TestDaemon {
        capture_logs();
        let (tx, rx) = mpsc::channel(8);
        let (ready_tx, ready_rx) = oneshot::channel();
        let options = Options {
            clock: clock.clone() as Arc<dyn Clock>,
            ready: Some(ready_tx),
            edge: tickler::http::edge(&config),
            ..Options::default()
        };
        let task = tokio::spawn(daemon::run(config, rx, options));
        if ready_rx.await.is_err() {
            let result = task.await.expect("daemon task");
            panic!("daemon failed to start: {result:?}");
        }
        TestDaemon {
            signals: tx,
            task,
            clock,
        }
    }

    /// Sends SIGHUP's equivalent and returns once the daemon has taken it (the test runtime
    /// is single-threaded and a reload has no await point, so taken means applied).
    pub async fn reload(&self) {
        self.signals.send(Signal::Reload).await.unwrap();
        wait_for(
            "the daemon to take the reload",
            Duration::from_secs(10),
            || async { (self.signals.capacity() == self.signals.max_capacity()).then_some(()) },
        )
        .await;
    }

    pub async fn stop(self) {
        let _ = self.signals.send(Signal::Shutdown).await;
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("daemon stops within 60 s")
            .expect("daemon task");
        result.expect("daemon exits cleanly");
    }
}

/// All ledger rows of `job`, oldest slot first.
pub async fn runs(store: &Store, job: &str) -> Vec<RunRow> {
    let mut rows = store
        .history(&HistoryFilter {
            job: Some(job.into()),
            status: None,
            limit: 100_000,
            run: None,
        })
        .await
        .unwrap();
    rows.sort_by_key(|r| (r.scheduled_for, r.started_at));
    rows
}

/// Statuses of a job's rows, oldest slot first.
pub async fn statuses(store: &Store, job: &str) -> Vec<String> {
    runs(store, job)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect()
}

/// Waits until `job` has `n` rows none of which is open (`pending` or `running`).
pub async fn wait_settled(store: &Store, job: &str, n: usize) -> Vec<RunRow> {
    wait_for(
        &format!("{n} finished runs of `{job}`"),
        Duration::from_secs(30),
        || async {
            let rows = runs(store, job).await;
            let open = |r: &RunRow| r.status == "running" || r.status == "pending";
            (rows.len() == n && !rows.iter().any(open)).then_some(rows)
        },
    )
    .await
}

// ---- PostgreSQL ----

struct Cluster {
    url: String,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

fn pg_bin(name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join(name).is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir.join(name));
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

extern "C" fn stop_cluster() {
    if let (Some(dir), Some(pg_ctl)) = (DATA_DIR.get(), pg_bin("pg_ctl")) {
        let _ = pg_command(&pg_ctl)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(dir)
            .output();
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// Creates a cluster in a new temporary directory; returns (base directory, data directory).
fn init_cluster() -> Result<(PathBuf, PathBuf), String> {
    let initdb = pg_bin("initdb").ok_or("no `initdb` on PATH or under /usr/lib/postgresql")?;
    let base = tempfile::Builder::new()
        .prefix("tickler-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = base.join("data");
    std::fs::create_dir(&data).map_err(|e| e.to_string())?;
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&base)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("cannot chown the cluster directory to `postgres`".into());
        }
    }
    let out = pg_command(&initdb)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((base, data))
}

/// Starts the cluster in `data` on `port` and waits until it accepts connections.
fn pg_start(data: &Path, port: u16) -> Result<(), String> {
    let pg_ctl = pg_bin("pg_ctl").ok_or("no `pg_ctl`")?;
    let opts = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300",
        data.display()
    );
    let out = pg_command(&pg_ctl)
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(data)
        .arg("-l")
        .arg(data.join("log"))
        .arg("-o")
        .arg(opts)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let log = std::fs::read_to_string(data.join("log")).unwrap_or_default();
        return Err(format!(
            "pg_ctl start failed: {}{log}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn pg_stop(data: &Path, mode: &str) {
    if let Some(pg_ctl) = pg_bin("pg_ctl") {
        let _ = pg_command(&pg_ctl)
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(data)
            .output();
    }
}

/// A loopback port free now, for a listener a test starts next.
pub fn free_port() -> u16 {
    try_free_port().expect("a free loopback port")
}

/// Ports are handed out from 20000-31999, below Linux's ephemeral range (32768-60999 by
/// default): a port the kernel picked there for `bind(0)` could be taken by any outgoing
/// connection (the tests' own to PostgreSQL, SMTP, HTTP) before the test's listener bound it,
/// which failed a CI run with "Address already in use". Each port is handed out once in this
/// process; processes running tests side by side start at different places.
pub fn try_free_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (u64::from(std::process::id()) * 7_919 % u64::from(SPAN)) as u32;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(format!("no free loopback port in {LOW}-{}", LOW + SPAN - 1))
}

fn start_cluster() -> Result<Cluster, String> {
    let (_, data) = init_cluster()?;
    let port = try_free_port()?;
    DATA_DIR.set(data.clone()).ok();
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(stop_cluster);
    }
    pg_start(&data, port)?;
    Ok(Cluster {
        url: format!("postgres://postgres@127.0.0.1:{port}"),
    })
}

/// A PostgreSQL cluster of one test's own, which the test may stop and start again (the
/// shared cluster serves every other test). Removed when dropped.
pub struct PrivateCluster {
    base: PathBuf,
    data: PathBuf,
    port: u16,
    /// The URL of its `postgres` database.
    pub url: String,
}

impl PrivateCluster {
    /// `None` when PostgreSQL's binaries are missing (and `TICKLER_REQUIRE_POSTGRES` is unset).
    pub fn start() -> Option<PrivateCluster> {
        let started = init_cluster().and_then(|(base, data)| {
            let port = try_free_port()?;
            pg_start(&data, port)?;
            Ok(PrivateCluster {
                url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                base,
                data,
                port,
            })
        });
        match started {
            Ok(c) => Some(c),
            Err(e) if std::env::var_os("TICKLER_REQUIRE_POSTGRES").is_some() => {
                panic!("TICKLER_REQUIRE_POSTGRES is set but no PostgreSQL cluster: {e}")
            }
            Err(e) => {
                eprintln!("\n*** SKIPPING a PostgreSQL restart test: {e} ***\n");
                None
            }
        }
    }

    /// A project on a cluster of its own (shared, so a blocking task can stop and start it).
    pub async fn project() -> Option<(Arc<PrivateCluster>, Project)> {
        let pg = Arc::new(tokio::task::spawn_blocking(Self::start).await.unwrap()?);
        let p = Project {
            dir: tempfile::tempdir().expect("tempdir"),
            database_url: pg.url.clone(),
        };
        Some((pg, p))
    }

    /// Stops the server, closing every client connection (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        pg_stop(&self.data, "fast");
    }

    /// Starts it again on the same port.
    pub fn start_again(&self) {
        pg_start(&self.data, self.port).expect("restart the private cluster");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        pg_stop(&self.data, "immediate");
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn cluster() -> Option<&'static Cluster> {
    CLUSTER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("TICKLER_TEST_POSTGRES_URL") {
                let base = url
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(url);
                return Some(Cluster { url: base });
            }
            match start_cluster() {
                Ok(c) => Some(c),
                Err(e) => {
                    if std::env::var_os("TICKLER_REQUIRE_POSTGRES").is_some() {
                        panic!("TICKLER_REQUIRE_POSTGRES is set but no PostgreSQL: {e}");
                    }
                    eprintln!("\n*** SKIPPING PostgreSQL tests: {e} ***\n");
                    None
                }
            }
        })
        .as_ref()
}

/// A new, empty database on the test cluster; its URL.
pub async fn postgres_database() -> Option<String> {
    let cluster = tokio::task::spawn_blocking(cluster).await.unwrap()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = format!("{}/postgres", cluster.url);
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to test cluster");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    Some(format!("{}/{name}", cluster.url))
}

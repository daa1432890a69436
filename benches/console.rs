//! The operator console's pages (issue 16 item 8): with 10,000 jobs and 1,000,000 ledger rows
//! each page answers within 100 ms, on SQLite and on PostgreSQL; and the plans of the
//! statements behind the pages use indexes.
//!
//! `cargo bench --bench console [-- OPTIONS]`; `bench/run.sh console [OPTIONS]` runs it with a
//! throwaway PostgreSQL too.
//!
//! Per backend, in a temporary directory:
//! 1. a config of 10,000 `noop` jobs (yearly crons, Feb-29 crons and 365-day intervals in six
//!    zones, so none fires during the run), `[http]` and `[http.console]` on free loopback
//!    ports, and a users file written by the real `tickler console add-user`;
//! 2. `tickler migrate` (the real migrations), then set-based seeding (a recursive CTE on
//!    SQLite, `generate_series` on PostgreSQL): 1,000,000 `job_execution_logs` rows (100,000
//!    of them for `job-00000`, 300 each for 3,000 more jobs; succeeded, failed, skipped,
//!    partial, timed out, paused), 100,000 `scheduled_tasks` (40,000 pending in the future,
//!    1,000 executing, 10,000 failed, the rest finished), 100,000 `notification_log` rows
//!    over 35 days, 10,000 customers and invoices, 5,000 payments, 3 campaigns of 1,000
//!    invoices, 10,000 `audit_log` rows and 20 paused jobs. PostgreSQL is `VACUUM ANALYZE`d
//!    (its autovacuum would be within a minute); SQLite is not (tickler never runs `ANALYZE`);
//! 3. the release daemon `tickler run`; once the console answers, an operator logs in over
//!    HTTP (the login form's CSRF token and cookie), then each page is fetched `--warmup`
//!    times, then `--repeat` times timed: the whole request, headers to the last body byte,
//!    as an operator waits for it. One line per page, and the daemon's RSS;
//! 4. the plans of the statements behind the pages with the parameters the pages send
//!    (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL), with a `FULL SCAN` flag on
//!    a scan of a big table. The statement texts are copied from `src/store/` (console.rs,
//!    ledger.rs, queue.rs, payments.rs, audit.rs): keep them in step.
//!
//! Options: `--backend sqlite|postgres|both` (default both; PostgreSQL only with
//! `TICKLER_BENCH_POSTGRES_URL`), `--repeat K` (30), `--warmup N` (3), `--no-plans`,
//! `--keep` (leave the daemon's directory and print it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use tickler::secret::DatabaseUrl;
use tickler::store::console::{OPEN_TASK_COUNTS, task_page_sql};
use tickler::store::{Store, ts};

mod common;
use common::{arg, pg_url_with_db};

const BIN: &str = env!("CARGO_BIN_EXE_tickler");
const PG_DB: &str = "tickler_bench_console";
const JOBS: usize = 10_000;
/// `job-00000`'s rows; the others' come from `HISTORY_JOBS` jobs of `PER_JOB` rows.
const LONG: i64 = 100_000;
const HISTORY_JOBS: i64 = 3_000;
const PER_JOB: i64 = 300;
const TASKS: i64 = 100_000;
const MESSAGES: i64 = 100_000;
const INVOICES: i64 = 10_000;
const PAYMENTS: i64 = 5_000;
const AUDIT: i64 = 10_000;
const CAMPAIGN_MEMBERS: i64 = 1_000;
const TARGET_MS: f64 = 100.0;
const PASSWORD: &str = "bench-operator-password";
const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Africa/Johannesburg",
    "Australia/Sydney",
];
/// Tables of which a full scan costs in proportion to the history.
const BIG: [&str; 6] = [
    "job_execution_logs",
    "scheduled_tasks",
    "notification_log",
    "invoices",
    "audit_log",
    "payments",
];
/// Partial indexes of big tables that stay small however big the table: a scan of one is not
/// a scan of its table. `scheduled_tasks_leases` holds the executing tasks alone, at most each
/// daemon's `[queue] concurrency`.
const SMALL_INDEXES: [&str; 1] = ["scheduled_tasks_leases"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = arg(&args, "--backend").unwrap_or_else(|| "both".into());
    let repeat: usize = arg(&args, "--repeat")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let warmup: usize = arg(&args, "--warmup")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let plans = !args.iter().any(|a| a == "--no-plans");
    let keep = args.iter().any(|a| a == "--keep");
    assert!(
        Path::new(BIN).is_file(),
        "the release binary {BIN} is missing"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "console: {JOBS} jobs, 1,000,000 ledger rows ({LONG} of job-00000), {TASKS} tasks, \
         {MESSAGES} messages, {INVOICES} invoices, {AUDIT} audit rows; {repeat} timed requests \
         per page after {warmup}; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut lines = vec![];
    if backend == "sqlite" || backend == "both" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/console.db", dir.path().display());
        lines.extend(rt.block_on(one_backend(
            "sqlite",
            &url,
            dir.path(),
            repeat,
            warmup,
            plans,
        )));
        if keep {
            println!("kept {}", dir.keep().display());
        }
    }
    if backend == "postgres" || backend == "both" {
        match std::env::var("TICKLER_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin) => {
                let dir = tempfile::tempdir().unwrap();
                let url = rt.block_on(fresh_pg_database(&admin));
                lines.extend(rt.block_on(one_backend(
                    "postgres",
                    &url,
                    dir.path(),
                    repeat,
                    warmup,
                    plans,
                )));
                if keep {
                    println!("kept {}", dir.keep().display());
                }
            }
            None => println!(
                "\npostgres: skipped (TICKLER_BENCH_POSTGRES_URL is not set; bench/run.sh sets it)"
            ),
        }
    }
    println!("\n-- summary");
    for l in &lines {
        println!("{l}");
    }
}

// ---------------------------------------------------------------------------------------------
// One backend

/// What the pages are fetched with: ids read from the seeded database.
struct Picks {
    /// `job-00000`'s run 90,000 rows deep (`before`, `before_id` of a deep page).
    deep: (DateTime<Utc>, String),
    /// A run of `job-00000` that sent messages.
    run: String,
    campaign: String,
    /// The keysets of the queue's deep pages: the last row of page 799 of pending tasks
    /// (39,950 rows in) and of page 199 of failed ones (9,950 in).
    pending_deep: (DateTime<Utc>, String),
    failed_deep: (DateTime<Utc>, String),
}

async fn one_backend(
    backend: &'static str,
    url: &str,
    dir: &Path,
    repeat: usize,
    warmup: usize,
    plans: bool,
) -> Vec<String> {
    println!("\n=== {backend} ===");
    let config = write_config(dir, url);
    tickler_cmd(
        &config,
        &["console", "add-user", "bench", "--role", "operator"],
        Some(PASSWORD),
    );
    tickler_cmd(&config, &["migrate"], None);
    let store = Store::connect(&DatabaseUrl::new(url)).await.unwrap();
    let now = Utc::now();
    let t = Instant::now();
    seed(&store, now).await;
    if let Store::Postgres(pg) = &store {
        // What autovacuum does to tables this size within a minute of the import: statistics,
        // and the visibility map that lets index-only scans skip the heap.
        sqlx::query("VACUUM ANALYZE")
            .execute(pg.pool())
            .await
            .unwrap();
    }
    println!(
        "seeded in {:.1}s (not measured); ledger rows: {}",
        t.elapsed().as_secs_f64(),
        count(&store, "job_execution_logs").await
    );
    let picks = picks(&store).await;

    let mut daemon = Daemon::start(dir, &config);
    let base = format!("http://127.0.0.1:{}", daemon.console_port);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    wait_console(&http, &base, &mut daemon).await;
    println!(
        "daemon pid {} answered /login {:.1}s after its start",
        daemon.child.id(),
        started.elapsed().as_secs_f64()
    );
    let session = login(&http, &base).await;

    let pages = pages(&picks);
    let mut lines = vec![];
    let mut over = 0;
    for (label, path) in &pages {
        for _ in 0..warmup {
            fetch(&http, &base, &session, path).await;
        }
        let mut ms: Vec<f64> = (0..repeat).map(|_| 0.0).collect();
        for m in ms.iter_mut() {
            *m = fetch(&http, &base, &session, path).await;
        }
        daemon.check_alive();
        ms.sort_by(f64::total_cmp);
        let (p50, p99, max) = (pct(&ms, 0.50), pct(&ms, 0.99), ms[ms.len() - 1]);
        if max > TARGET_MS {
            over += 1;
        }
        let line = format!(
            "console {backend:<8} {label:<22} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  max {max:>6.1} ms  \
             (target {TARGET_MS:.0} ms){}",
            if max > TARGET_MS { "  OVER" } else { "" }
        );
        println!("{line}  GET {path}");
        lines.push(line);
    }
    let rss = daemon.rss_kib();
    let line = format!(
        "console {backend:<8} daemon RSS {:.1} MiB after {} requests; pages over target: {over}",
        rss as f64 / 1024.0,
        pages.len() * (repeat + warmup) + 1
    );
    println!("{line}");
    lines.push(line);
    daemon.stop();
    if plans {
        print_plans(&store, &picks, now).await;
    }
    store.close().await;
    lines
}

fn pages(p: &Picks) -> Vec<(&'static str, String)> {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    vec![
        ("overview", "/".into()),
        ("overview-page-50", "/?page=50".into()),
        ("overview-filter", "/?name=job-01&state=enabled".into()),
        ("job-long", "/jobs/job-00000".into()),
        (
            "job-long-deep",
            format!(
                "/jobs/job-00000?before={}&before_id={}",
                enc(&p.deep.0.to_rfc3339()),
                p.deep.1
            ),
        ),
        ("job-long-failed", "/jobs/job-00000?status=failed".into()),
        ("job-short", "/jobs/job-00042".into()),
        ("run", format!("/runs/{}", p.run)),
        ("queue-pending", "/queue?status=pending".into()),
        (
            "queue-pending-p800",
            format!(
                "/queue?status=pending&after={}&after_id={}",
                enc(&p.pending_deep.0.to_rfc3339()),
                p.pending_deep.1
            ),
        ),
        ("queue-executing", "/queue?status=executing".into()),
        ("queue-failed", "/queue?status=failed".into()),
        (
            "queue-failed-p200",
            format!(
                "/queue?status=failed&after={}&after_id={}",
                enc(&p.failed_deep.0.to_rfc3339()),
                p.failed_deep.1
            ),
        ),
        ("campaigns", "/campaigns".into()),
        ("campaign", format!("/campaigns?id={}", p.campaign)),
        ("messages", "/messages".into()),
        ("messages-failed", "/messages?status=failed".into()),
        ("messages-sms", "/messages?channel=sms".into()),
        ("invoices", "/invoices".into()),
        ("invoices-overdue", "/invoices?overdue=1".into()),
        ("audit", "/audit".into()),
        ("audit-target", "/audit?target=job-00042".into()),
    ]
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One GET, timed to the body's last byte; panics on anything but 200.
async fn fetch(http: &reqwest::Client, base: &str, session: &str, path: &str) -> f64 {
    let t = Instant::now();
    let r = http
        .get(format!("{base}{path}"))
        .header("cookie", format!("tickler_console={session}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    let body = r.bytes().await.unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    ms
}

async fn wait_console(http: &reqwest::Client, base: &str, daemon: &mut Daemon) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        daemon.check_alive();
        if let Ok(r) = http.get(format!("{base}/login")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the console did not answer within 180 s: {}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logs in as a browser does: the form's token and its cookie, then the session cookie.
async fn login(http: &reqwest::Client, base: &str) -> String {
    let form = http.get(format!("{base}/login")).send().await.unwrap();
    let pre = cookie(form.headers(), "tickler_login").expect("a login cookie");
    let html = form.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", format!("tickler_login={pre}"))
        .form(&[("user", "bench"), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the login failed");
    cookie(r.headers(), "tickler_console").expect("a session cookie")
}

fn cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let (k, rest) = v.to_str().ok()?.split_once('=')?;
            (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
        })
}

// ---------------------------------------------------------------------------------------------
// Config and the binary

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (http, console) = (free_port(), free_port());
    let mut text = format!(
        "[daemon]\ndatabase_url = \"{url}\"\nstate_dir = \"{}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [http.console]\nlisten = \"127.0.0.1:{console}\"\nusers_file = \"users.toml\"\n\
         secure_cookie = false\n\n",
        state.display()
    );
    for i in 0..JOBS {
        let zone = ZONES[i % ZONES.len()];
        // Yearly, leap-day and 365-day triggers: none is due during the run; the seeded
        // history ends an hour ago, after each one's previous fire, so none catches up.
        let trigger = match i % 3 {
            0 => format!("schedule = \"{} {} 1 1 *\"", i % 60, i % 24),
            1 => format!("schedule = \"{} 4 29 2 *\"", i % 60),
            _ => "every = \"365d\"".to_string(),
        };
        // (Not on the leap-day crons: 8 years can pass between their fires.)
        let extra = if i % 10 == 0 && i % 3 != 1 {
            "expect_success_within = \"400d\"\n"
        } else {
            ""
        };
        let enabled = if i % 50 == 49 {
            "enabled = false\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "[[job]]\nname = \"job-{i:05}\"\nkind = \"noop\"\n{trigger}\ntimezone = \"{zone}\"\n\
             description = \"bench job {i}\"\n{extra}{enabled}\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `tickler --config CONFIG ARGS`, with `stdin` on its standard input; panics unless it
/// succeeds.
fn tickler_cmd(config: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(config.parent().unwrap())
        .env("TICKLER_LOG", "warn")
        .env_remove("TICKLER_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start tickler");
    if let Some(text) = stdin {
        writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tickler {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(2000)])
    );
}

struct Daemon {
    child: Child,
    log: PathBuf,
    console_port: u16,
}

impl Daemon {
    fn start(dir: &Path, config: &Path) -> Daemon {
        let text = std::fs::read_to_string(config).unwrap();
        let console_port = text
            .split("[http.console]\nlisten = \"127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|p| p.parse().ok())
            .expect("the console's port in the config");
        let log = dir.join("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .current_dir(dir)
            .env("TICKLER_LOG", "warn")
            .env_remove("TICKLER_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start the daemon");
        Daemon {
            child,
            log,
            console_port,
        }
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the daemon exited early ({status}): {}", self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then SIGKILL after 30 s.
    fn stop(mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our live child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                println!("the daemon did not stop within 30 s; killed");
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log_tail();
        if !log.trim().is_empty() {
            println!("daemon log (warn and above), last lines:\n{log}");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn fresh_pg_database(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}"));
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {PG_DB}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    pg_url_with_db(admin, PG_DB)
}

// ---------------------------------------------------------------------------------------------
// Seeding: set-based, into the tables the real migrations made

async fn exec(store: &Store, text: &str) {
    let t = Instant::now();
    match store {
        Store::Sqlite(s) => sqlx::raw_sql(text).execute(s.pool()).await.map(|_| ()),
        Store::Postgres(s) => sqlx::raw_sql(text).execute(s.pool()).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("seeding failed: {e}\n{text}"));
    let first = text
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!("  {first}: {:.1}s", t.elapsed().as_secs_f64());
}

async fn count(store: &Store, table: &str) -> i64 {
    let q = format!("SELECT count(*) FROM {table}");
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(&q).fetch_one(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_scalar(&q).fetch_one(s.pool()).await.unwrap(),
    }
}

/// The SQL dialect's pieces the seeding statements differ by.
struct Dialect {
    pg: bool,
    /// `now`, truncated to the hour, as a literal.
    base: String,
}

impl Dialect {
    /// `N` rows numbered `k` from 0: the head of a statement (`WITH ... SELECT`) whose rows
    /// come `FROM n`.
    fn rows(&self, n: i64) -> String {
        if self.pg {
            format!(
                "WITH n AS (SELECT k FROM generate_series(0, {}) AS k)",
                n - 1
            )
        } else {
            format!(
                "WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k < {})",
                n - 1
            )
        }
    }
    /// A uuid unique to (`tag`, the integer expression `e`).
    fn id(&self, tag: u32, e: &str) -> String {
        if self.pg {
            format!("('{tag:08x}-0000-4000-8000-' || lpad(to_hex({e}), 12, '0'))::uuid")
        } else {
            format!("printf('{tag:08x}-0000-4000-8000-%012x', {e})")
        }
    }
    /// `base` moved by `secs` seconds (an expression), as the column's type.
    fn at(&self, secs: &str) -> String {
        if self.pg {
            format!(
                "({} + ({secs})::float8 * interval '1 second')",
                self.base_pg()
            )
        } else {
            format!(
                "strftime('%Y-%m-%dT%H:%M:%S+00:00', '{}', ({secs}) || ' seconds')",
                self.base_lite()
            )
        }
    }
    /// Like `at`, with milliseconds (started and completed times).
    fn at_ms(&self, secs: &str) -> String {
        if self.pg {
            self.at(secs)
        } else {
            format!(
                "strftime('%Y-%m-%dT%H:%M:%f+00:00', '{}', ({secs}) || ' seconds')",
                self.base_lite()
            )
        }
    }
    fn date(&self, days: &str) -> String {
        if self.pg {
            format!("(({})::date + ({days})::int)", self.base_pg())
        } else {
            format!("date('{}', ({days}) || ' days')", self.base_lite())
        }
    }
    fn base_pg(&self) -> String {
        format!("'{}'::timestamptz", self.base)
    }
    fn base_lite(&self) -> String {
        self.base.replace('T', " ").replace("+00:00", "")
    }
    fn json(&self, e: &str) -> String {
        if self.pg {
            format!("({e})::jsonb")
        } else {
            e.to_string()
        }
    }
    fn concat_num(&self, e: &str) -> String {
        if self.pg {
            format!("({e})::text")
        } else {
            format!("({e})")
        }
    }
    fn pad5(&self, e: &str) -> String {
        if self.pg {
            format!("lpad(({e})::text, 5, '0')")
        } else {
            format!("printf('%05d', {e})")
        }
    }
}

/// The ledger status of row `k` (hash `h`): mostly successes.
const STATUS: &str = "CASE WHEN h < 80 THEN 'succeeded' WHEN h < 88 THEN 'failed'
    WHEN h < 93 THEN 'skipped' WHEN h < 96 THEN 'partial' WHEN h < 98 THEN 'timed_out'
    ELSE 'paused' END";

async fn seed(store: &Store, now: DateTime<Utc>) {
    let base = now
        .with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let d = Dialect {
        pg: matches!(store, Store::Postgres(_)),
        base: ts(base),
    };
    // The ledger: job-00000 hourly for 100,000 hours; 3,000 jobs every 6 h for 300 slots.
    // Both end an hour before `base`.
    let ledger = |n: i64, job: &str, slot_s: &str, tag: u32| {
        let lateness = "(5 + (k * 13) % 900)";
        format!(
            "{rows}, r AS (SELECT k, (k * 37 + k / 7) % 100 AS h, {slot} AS slot_s FROM n)
             INSERT INTO job_execution_logs (id, job_name, status, started_at, completed_at,
                 duration_seconds, records_processed, error_message, metadata, scheduled_for,
                 \"trigger\", attempt, instance)
             SELECT {id}, {job}, {STATUS},
                    {started}, {completed},
                    CASE WHEN h >= 88 AND h < 93 OR h >= 98 THEN NULL
                         ELSE ((k * 17) % 600) / 10.0 + 0.05 END,
                    CASE WHEN h < 80 THEN (k * 7) % 500 END,
                    CASE WHEN h >= 80 AND h < 88 THEN 'exit status 1: connection refused by db-' || {kk}
                         WHEN h >= 96 AND h < 98 THEN 'timed out after 10m' END,
                    {meta},
                    {slot_at}, CASE WHEN k % 50 = 7 THEN 'manual' ELSE 'schedule' END, 1,
                    'bench-instance'
               FROM r",
            rows = d.rows(n),
            slot = slot_s,
            id = d.id(tag, "k"),
            job = job,
            started = d.at_ms(&format!("slot_s + {lateness} / 1000.0")),
            completed = d.at_ms(&format!(
                "slot_s + {lateness} / 1000.0 + CASE WHEN h >= 88 AND h < 93 OR h >= 98 THEN 0 \
                 ELSE ((k * 17) % 600) / 10.0 + 0.05 END"
            )),
            kk = d.concat_num("k % 7"),
            meta = d.json(&format!(
                "'{{\"lateness_ms\": ' || {} || '}}'",
                d.concat_num(lateness)
            )),
            slot_at = d.at("slot_s"),
        )
    };
    exec(store, &ledger(LONG, "'job-00000'", "-3600 - k * 3600", 1)).await;
    let job = format!("'job-' || {}", d.pad5(&format!("1 + k / {PER_JOB}")));
    exec(
        store,
        &ledger(
            HISTORY_JOBS * PER_JOB,
            &job,
            &format!("-3600 - (k % {PER_JOB}) * 21600 - (k / {PER_JOB}) % 3600"),
            2,
        ),
    )
    .await;

    // Customers and invoices: 70 % open (due from 60 days ago to 60 days ahead), 25 % paid,
    // 5 % void; overdue ones at escalation levels 0-3.
    exec(
        store,
        &format!(
            "{rows} INSERT INTO customers (id, name, email, phone, timezone, created_at)
             SELECT {id}, 'Customer ' || {kk}, 'customer-' || {kk} || '@example.com',
                    '+2782' || {pad}, CASE k % 3 WHEN 0 THEN 'Africa/Johannesburg'
                    WHEN 1 THEN 'Europe/London' ELSE NULL END, {at}
               FROM n",
            rows = d.rows(INVOICES),
            id = d.id(3, "k"),
            kk = d.concat_num("k"),
            pad = d.pad5("k"),
            at = d.at("-86400 * 400"),
        ),
    )
    .await;
    exec(
        store,
        &format!(
            "{rows} INSERT INTO invoices (id, number, customer_id, amount_minor, currency,
                 issued_at, due_date, status, paid_at, escalation_level, created_at, updated_at,
                 paid_minor)
             SELECT {id}, 'INV-' || {pad}, {cust}, 10000 + (k * 131) % 90000,
                    CASE k % 3 WHEN 0 THEN 'ZAR' WHEN 1 THEN 'USD' ELSE 'EUR' END,
                    {issued}, {due},
                    CASE WHEN k % 20 < 14 THEN 'open' WHEN k % 20 < 19 THEN 'paid' ELSE 'void' END,
                    CASE WHEN k % 20 >= 14 AND k % 20 < 19 THEN {issued} END,
                    CASE WHEN k % 20 < 14 AND k % 120 < 60 THEN k % 4 ELSE 0 END,
                    {issued}, {issued},
                    CASE WHEN k % 20 >= 14 AND k % 20 < 19 THEN 10000 + (k * 131) % 90000
                         WHEN k % 20 < 14 AND k % 9 = 0 THEN 5000 ELSE 0 END
               FROM n",
            rows = d.rows(INVOICES),
            id = d.id(4, "k"),
            pad = d.pad5("k"),
            cust = d.id(3, "k"),
            issued = d.at("-86400 * (90 - k % 120)"),
            due = d.date("k % 120 - 60"),
        ),
    )
    .await;
    exec(
        store,
        &format!(
            "{rows} INSERT INTO payments (id, provider, event_id, invoice_ref, invoice_id,
                 amount_minor, currency, paid_at, reference, outcome, created_at)
             SELECT {id}, CASE k % 2 WHEN 0 THEN 'paystack' ELSE 'stripe' END,
                    'evt_' || {kk}, 'number:INV-' || {pad}, {inv}, 5000, 'ZAR', {at},
                    'ref-' || {kk}, CASE WHEN k % 10 = 0 THEN 'partial' ELSE 'paid' END, {at}
               FROM n",
            rows = d.rows(PAYMENTS),
            id = d.id(5, "k"),
            kk = d.concat_num("k"),
            pad = d.pad5("k * 2"),
            inv = d.id(4, "k * 2"),
            at = d.at("-600 * k"),
        ),
    )
    .await;

    // Three campaigns of 1,000 open invoices each.
    exec(
        store,
        &format!(
            "{rows} INSERT INTO campaigns (id, name, status, days_between_emails, max_attempts,
                 stages, send_hour, created_at, updated_at)
             SELECT {id}, 'collections-' || {kk}, CASE k WHEN 2 THEN 'paused' ELSE 'active' END,
                    3, 5, {stages}, 9, {at}, {at}
               FROM n",
            rows = d.rows(3),
            id = d.id(6, "k"),
            kk = d.concat_num("k"),
            stages = d.json("'[\"friendly\", \"firm\", \"final\"]'"),
            at = d.at("-86400 * (30 - k)"),
        ),
    )
    .await;
    exec(
        store,
        &format!(
            "{rows} INSERT INTO campaign_invoices (campaign_id, invoice_id, status, attempts,
                 last_sent_at)
             SELECT {camp}, {inv}, CASE WHEN k % 10 = 0 THEN 'paid' ELSE 'active' END, k % 4,
                    {at}
               FROM n",
            rows = d.rows(3 * CAMPAIGN_MEMBERS),
            camp = d.id(6, &format!("k / {CAMPAIGN_MEMBERS}")),
            // Open invoices: k % 20 < 14.
            inv = d.id(4, "(k / 14) * 20 + k % 14"),
            at = d.at("-3600 * (k % 200)"),
        ),
    )
    .await;

    // The queue: 40 % pending (from a day ahead on), 1 % executing elsewhere (lease an hour
    // ahead), 10 % failed, 44 % completed, 5 % cancelled.
    let status = "CASE WHEN k % 100 < 40 THEN 'pending' WHEN k % 100 < 41 THEN 'executing'
        WHEN k % 100 < 51 THEN 'failed' WHEN k % 100 < 95 THEN 'completed' ELSE 'cancelled' END";
    exec(
        store,
        &format!(
            "{rows}, t AS (SELECT k, {status} AS status FROM n)
             INSERT INTO scheduled_tasks (id, campaign_id, invoice_id, customer_id, task_type,
                 task_data, scheduled_for, status, executed_at, error_message, retry_count,
                 created_at, updated_at, attempts, lease_owner, lease_expires_at, completed_at)
             SELECT {id},
                    CASE WHEN k % 4 = 1 THEN {camp} END,
                    CASE WHEN k % 4 = 1 THEN {member} ELSE {inv} END, {cust},
                    CASE k % 4 WHEN 0 THEN 'send_email' WHEN 1 THEN 'campaign_email'
                         WHEN 2 THEN 'webhook' ELSE 'sms_reminder' END,
                    {data},
                    CASE WHEN status IN ('pending', 'executing') THEN {ahead} ELSE {past} END,
                    status,
                    CASE WHEN status <> 'pending' THEN {past} END,
                    CASE WHEN status = 'failed' THEN 'provider answered 503 after 3 retries' END,
                    CASE WHEN status = 'failed' THEN 3 ELSE 0 END,
                    {past}, {past},
                    CASE WHEN status = 'pending' THEN 0 ELSE 1 END,
                    CASE WHEN status = 'executing' THEN 'bench-elsewhere' END,
                    CASE WHEN status = 'executing' THEN {lease} END,
                    CASE WHEN status IN ('failed', 'completed', 'cancelled') THEN {past} END
               FROM t",
            rows = d.rows(TASKS),
            id = d.id(7, "k"),
            camp = d.id(6, "k % 3"),
            member = d.id(4, "((k % 1000) / 14) * 20 + (k % 1000) % 14"),
            inv = d.id(4, &format!("k % {INVOICES}")),
            cust = d.id(3, &format!("k % {INVOICES}")),
            data = d.json("'{\"template\": \"reminder\"}'"),
            ahead = d.at("86400 + k * 30"),
            past = d.at("-30 * k"),
            lease = d.at("3600"),
        ),
    )
    .await;

    // The message log: one every 30 s back from now (35 days); 10 messages for each of
    // job-00000's newest 500 runs.
    exec(
        store,
        &format!(
            "{rows} INSERT INTO notification_log (id, dedup_key, job_name, channel, recipient,
                 template, invoice_id, status, error, attempts, created_at, updated_at, sent_at,
                 run_id)
             SELECT {id}, 'bench-' || {kk},
                    CASE WHEN k < 5000 THEN 'job-00000' ELSE 'job-' || {job} END,
                    CASE WHEN k % 10 < 7 THEN 'email' WHEN k % 10 < 9 THEN 'sms' ELSE 'whatsapp' END,
                    'customer-' || {cust} || '@example.com', 'reminder_7d', {inv},
                    CASE WHEN k % 100 < 90 THEN 'sent' WHEN k % 100 < 95 THEN 'failed'
                         WHEN k % 100 < 98 THEN 'skipped' ELSE 'suppressed' END,
                    CASE WHEN k % 100 >= 90 AND k % 100 < 95 THEN 'smtp 550 mailbox unavailable' END,
                    1, {at}, {at}, CASE WHEN k % 100 < 90 THEN {at} END,
                    CASE WHEN k < 5000 THEN {run} END
               FROM n",
            rows = d.rows(MESSAGES),
            id = d.id(8, "k"),
            kk = d.concat_num("k"),
            job = d.pad5("1 + k % 50"),
            cust = d.concat_num(&format!("k % {INVOICES}")),
            inv = d.id(4, &format!("k % {INVOICES}")),
            at = d.at("-30 * k"),
            run = d.id(1, "k / 10"),
        ),
    )
    .await;

    // The audit log: one every 5 minutes back from now, on 200 jobs and some tasks.
    exec(
        store,
        &format!(
            "{rows} INSERT INTO audit_log (at, who, origin, action, target, detail)
             SELECT {at}, CASE WHEN k % 3 = 0 THEN 'ana' ELSE 'bench' END,
                    CASE WHEN k % 2 = 0 THEN 'console 10.0.0.7' ELSE 'cli' END,
                    CASE k % 4 WHEN 0 THEN 'pause' WHEN 1 THEN 'resume' WHEN 2 THEN 'run-now'
                         ELSE 'retry' END,
                    CASE WHEN k % 4 = 3 THEN {task} ELSE 'job-' || {job} END,
                    CASE WHEN k % 4 = 0 THEN 'maintenance window' END
               FROM n ORDER BY k DESC",
            rows = d.rows(AUDIT),
            at = d.at("-300 * k"),
            task = d.concat_num(&d.id(7, "k")),
            job = d.pad5("k % 200"),
        ),
    )
    .await;
    exec(
        store,
        &format!(
            "{rows} INSERT INTO job_pauses (job_name, reason, paused_by, paused_at)
             SELECT 'job-' || {job}, 'bench', 'ana', {at} FROM n",
            rows = d.rows(20),
            job = d.pad5("k * 500 + 3"),
            at = d.at("-7200"),
        ),
    )
    .await;
}

async fn picks(store: &Store) -> Picks {
    let deep = "SELECT scheduled_for, id::text FROM job_execution_logs WHERE job_name = 'job-00000'
                 ORDER BY scheduled_for DESC, id DESC LIMIT 1 OFFSET 90000";
    let run = "SELECT run_id::text FROM notification_log WHERE run_id IS NOT NULL
                ORDER BY created_at DESC LIMIT 1";
    let camp = "SELECT id::text FROM campaigns ORDER BY created_at LIMIT 1";
    let pending = "SELECT scheduled_for, id::text FROM scheduled_tasks WHERE status = 'pending'
                    ORDER BY scheduled_for, id LIMIT 1 OFFSET 39949";
    let failed = "SELECT scheduled_for, id::text FROM scheduled_tasks WHERE status = 'failed'
                   ORDER BY scheduled_for DESC, id DESC LIMIT 1 OFFSET 9949";
    let (deep, run, camp) = (store.sql(deep), store.sql(run), store.sql(camp));
    let (pending, failed) = (store.sql(pending), store.sql(failed));
    match store {
        Store::Sqlite(s) => Picks {
            deep: sqlx::query_as(&deep).fetch_one(s.pool()).await.unwrap(),
            run: sqlx::query_scalar(&run).fetch_one(s.pool()).await.unwrap(),
            campaign: sqlx::query_scalar(&camp).fetch_one(s.pool()).await.unwrap(),
            pending_deep: sqlx::query_as(&pending).fetch_one(s.pool()).await.unwrap(),
            failed_deep: sqlx::query_as(&failed).fetch_one(s.pool()).await.unwrap(),
        },
        Store::Postgres(s) => Picks {
            deep: sqlx::query_as(&deep).fetch_one(s.pool()).await.unwrap(),
            run: sqlx::query_scalar(&run).fetch_one(s.pool()).await.unwrap(),
            campaign: sqlx::query_scalar(&camp).fetch_one(s.pool()).await.unwrap(),
            pending_deep: sqlx::query_as(&pending).fetch_one(s.pool()).await.unwrap(),
            failed_deep: sqlx::query_as(&failed).fetch_one(s.pool()).await.unwrap(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Plans

#[derive(Clone)]
enum P {
    Text(Option<String>),
    Int(Option<i64>),
    Date(Option<NaiveDate>),
}

fn t(s: &str) -> P {
    P::Text(Some(s.to_string()))
}

const RUN_COLUMNS: &str = "id::text AS id, status, scheduled_for, started_at, completed_at,
    duration_seconds, records_processed, error_message, \"trigger\", attempt::bigint AS attempt,
    metadata::text AS metadata";
const MESSAGE_COLUMNS: &str = "id::text AS id, job_name, channel, recipient, template, status,
    error, attempts::bigint AS attempts, created_at, sent_at, run_id::text AS run_id";
const END_OF_TIME: &str = "9999-12-31T23:59:59+00:00";

/// The statements behind the pages (copied from `src/store/`), with the pages' parameters.
fn statements(p: &Picks, now: DateTime<Utc>) -> Vec<(String, String, String, Vec<P>)> {
    let names: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({ "n": format!("job-{i:05}") }))
        .collect();
    let success = "('succeeded', 'partial')";
    let failure = "('failed', 'timed_out', 'abandoned', 'interrupted')";
    let figures = format!(
        "SELECT r.value->>'n' AS job, l.id::text AS last_id, l.status AS last_status,
                l.scheduled_for AS last_scheduled_for, l.started_at AS last_started_at,
                l.duration_seconds AS last_duration_seconds, l.metadata::text AS last_metadata,
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
    let job_runs = format!(
        "SELECT {RUN_COLUMNS} FROM job_execution_logs
          WHERE job_name = $1 AND ($2::text IS NULL OR status = $2)
            AND scheduled_for <= $3::timestamptz
            AND (scheduled_for < $3::timestamptz OR id::text < $4)
          ORDER BY scheduled_for DESC, id DESC LIMIT $5"
    );
    let history = "SELECT id::text AS id, job_name, status, started_at, completed_at,
                duration_seconds, records_processed, error_message,
                metadata::text AS metadata, scheduled_for, \"trigger\",
                attempt::bigint AS attempt, instance
           FROM job_execution_logs
          WHERE id = $4::uuid AND ($1::text IS NULL OR job_name = $1)
            AND ($2::text IS NULL OR status = $2) LIMIT $3";
    let of_run = format!(
        "SELECT {MESSAGE_COLUMNS} FROM notification_log WHERE run_id = $1::uuid
          ORDER BY created_at, id LIMIT $2"
    );
    let message_log = format!(
        "SELECT {MESSAGE_COLUMNS} FROM notification_log
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)
            AND ($3::text IS NULL OR job_name = $3)
            AND created_at <= $4::timestamptz
            AND (created_at < $4::timestamptz OR id::text < $5)
          ORDER BY created_at DESC, id DESC LIMIT $6"
    );
    let counts_since = "SELECT status, count(*) FROM notification_log
          WHERE created_at >= $1::timestamptz GROUP BY status ORDER BY status";
    let campaigns = "SELECT id, name,
                (SELECT count(*) FROM campaign_invoices m
                  WHERE m.campaign_id = campaigns.id AND m.status = 'active') AS active,
                (SELECT count(*) FROM scheduled_tasks t
                  WHERE t.campaign_id = campaigns.id AND t.status = 'pending') AS pending
           FROM campaigns ORDER BY created_at, name";
    let campaign = "SELECT * FROM campaigns WHERE id::text = $1 ORDER BY created_at LIMIT 1";
    let members = "SELECT m.invoice_id::text AS invoice_id, i.number, i.due_date,
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
          ORDER BY i.due_date, i.number LIMIT $4";
    let daemons = "SELECT hostname, CAST(pid AS BIGINT) AS pid, version, started_at, heartbeat_at,
                loop_tick_at
           FROM tickler_instances ORDER BY started_at, id";
    let levels = "SELECT escalation_level::bigint AS escalation_level, currency,
                count(*) AS open,
                sum(CASE WHEN due_date < $1 THEN 1 ELSE 0 END)::bigint AS overdue,
                sum(amount_minor - paid_minor)::bigint AS outstanding_minor
           FROM invoices WHERE status = 'open'
          GROUP BY escalation_level, currency ORDER BY escalation_level, currency";
    let open_invoices =
        "SELECT i.id::text AS id, i.number, c.name AS customer_name, i.amount_minor,
                i.paid_minor, i.currency, i.due_date,
                i.escalation_level::bigint AS escalation_level
           FROM invoices i JOIN customers c ON c.id = i.customer_id
          WHERE i.status = 'open' AND ($1::date IS NULL OR i.due_date < $1::date)
            AND ($2::date IS NULL OR i.due_date > $2::date
                 OR (i.due_date = $2::date AND i.id::text > $3))
          ORDER BY i.due_date, i.id LIMIT $4";
    let payments = "SELECT p.id::text AS id, p.provider, p.event_id, p.invoice_ref, i.number,
                p.amount_minor, p.currency, p.paid_at, p.reference, p.outcome, p.detail,
                p.created_at
           FROM payments p LEFT JOIN invoices i ON i.id = p.invoice_id
          WHERE $1::text IS NULL OR i.number = $1
          ORDER BY p.created_at DESC, p.id DESC LIMIT $2";
    let audit = "SELECT id, at, who, origin, action, target, detail FROM audit_log
          WHERE ($1::text IS NULL OR target = $1) AND ($2::int8 IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3";
    let paused = "SELECT job_name, reason, paused_by, paused_at FROM job_pauses ORDER BY job_name";

    let midnight = ts(now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc());
    let today = now.date_naive();
    let none = P::Text(None);
    let s = |x: &str| x.to_string();
    vec![
        (s("/, /jobs/*"), s("paused_jobs"), paused.into(), vec![]),
        (s("/"), s("daemons"), daemons.into(), vec![]),
        (
            s("/ (100 jobs), /jobs/*"),
            s("job_figures"),
            figures,
            vec![
                t(&serde_json::to_string(&names).unwrap()),
                t(&ts(DateTime::<Utc>::UNIX_EPOCH)),
            ],
        ),
        (
            s("/, /queue"),
            s("open_task_counts"),
            OPEN_TASK_COUNTS.into(),
            vec![],
        ),
        (
            s("/"),
            s("message_counts_since"),
            counts_since.into(),
            vec![t(&midnight)],
        ),
        (
            s("/jobs/job-00000"),
            s("job_runs"),
            job_runs.clone(),
            vec![
                t("job-00000"),
                none.clone(),
                t(END_OF_TIME),
                t(""),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/jobs/job-00000?before= (deep)"),
            s("job_runs"),
            job_runs.clone(),
            vec![
                t("job-00000"),
                none.clone(),
                t(&ts(p.deep.0)),
                t(&p.deep.1),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/jobs/job-00000?status=failed"),
            s("job_runs"),
            job_runs,
            vec![
                t("job-00000"),
                t("failed"),
                t(END_OF_TIME),
                t(""),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/runs/ID"),
            s("history (run)"),
            history.into(),
            vec![none.clone(), none.clone(), P::Int(Some(1)), t(&p.run)],
        ),
        (
            s("/runs/ID"),
            s("messages_of_run"),
            of_run,
            vec![t(&p.run), P::Int(Some(200))],
        ),
        (
            s("/queue?status=pending"),
            s("task_page"),
            task_page_sql("pending"),
            vec![
                t("pending"),
                none.clone(),
                t("0001-01-01T00:00:00+00:00"),
                t(""),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/queue?status=pending&after= (page 800)"),
            s("task_page"),
            task_page_sql("pending"),
            vec![
                t("pending"),
                none.clone(),
                t(&ts(p.pending_deep.0)),
                t(&p.pending_deep.1),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/queue?status=failed&after= (page 200)"),
            s("task_page"),
            task_page_sql("failed"),
            vec![
                t("failed"),
                none.clone(),
                t(&ts(p.failed_deep.0)),
                t(&p.failed_deep.1),
                P::Int(Some(50)),
            ],
        ),
        (s("/campaigns"), s("campaigns"), campaigns.into(), vec![]),
        (
            s("/campaigns?id="),
            s("campaign"),
            campaign.into(),
            vec![t(&p.campaign)],
        ),
        (
            s("/campaigns?id="),
            s("campaign_member_page"),
            members.into(),
            vec![t(&p.campaign), P::Date(None), t(""), P::Int(Some(201))],
        ),
        (
            s("/messages"),
            s("message_log"),
            message_log.clone(),
            vec![
                none.clone(),
                none.clone(),
                none.clone(),
                t(END_OF_TIME),
                t(""),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/messages?status=failed"),
            s("message_log"),
            message_log.clone(),
            vec![
                t("failed"),
                none.clone(),
                none.clone(),
                t(END_OF_TIME),
                t(""),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/messages?channel=sms"),
            s("message_log"),
            message_log,
            vec![
                none.clone(),
                t("sms"),
                none.clone(),
                t(END_OF_TIME),
                t(""),
                P::Int(Some(50)),
            ],
        ),
        (
            s("/invoices"),
            s("invoice_levels"),
            levels.into(),
            vec![P::Date(Some(today))],
        ),
        (
            s("/invoices"),
            s("open_invoice_page"),
            open_invoices.into(),
            vec![P::Date(None), P::Date(None), t(""), P::Int(Some(50))],
        ),
        (
            s("/invoices?overdue=1"),
            s("open_invoice_page"),
            open_invoices.into(),
            vec![P::Date(Some(today)), P::Date(None), t(""), P::Int(Some(50))],
        ),
        (
            s("/invoices"),
            s("payments"),
            payments.into(),
            vec![none.clone(), P::Int(Some(20))],
        ),
        (
            s("/audit"),
            s("audit_log"),
            audit.into(),
            vec![none.clone(), P::Int(None), P::Int(Some(50))],
        ),
        (
            s("/audit?target=job-00042"),
            s("audit_log"),
            audit.into(),
            vec![t("job-00042"), P::Int(None), P::Int(Some(50))],
        ),
    ]
}

macro_rules! bind_all {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                P::Text(v) => q.bind(v.clone()),
                P::Int(v) => q.bind(*v),
                P::Date(v) => q.bind(*v),
            };
        }
        q
    }};
}

async fn print_plans(store: &Store, picks: &Picks, now: DateTime<Utc>) {
    let pg = matches!(store, Store::Postgres(_));
    println!(
        "\n-- plans ({}), the statements behind the pages with their parameters",
        if pg { "EXPLAIN" } else { "EXPLAIN QUERY PLAN" }
    );
    let mut full = vec![];
    for (page, name, text, params) in statements(picks, now) {
        let text = store.sql(&text).into_owned();
        let explain = if pg {
            format!("EXPLAIN {text}")
        } else {
            format!("EXPLAIN QUERY PLAN {text}")
        };
        let lines: Vec<String> = match store {
            Store::Sqlite(s) => {
                let rows: Vec<(i64, i64, i64, String)> =
                    bind_all!(sqlx::query_as(&explain), &params)
                        .fetch_all(s.pool())
                        .await
                        .unwrap_or_else(|e| panic!("plan of {name}: {e}"));
                // Indent by depth in the plan's tree.
                let mut depth: std::collections::HashMap<i64, usize> = Default::default();
                rows.into_iter()
                    .map(|(id, parent, _, detail)| {
                        let d = depth.get(&parent).map_or(0, |d| d + 1);
                        depth.insert(id, d);
                        format!("{}{detail}", "  ".repeat(d))
                    })
                    .collect()
            }
            Store::Postgres(s) => bind_all!(sqlx::query_scalar(&explain), &params)
                .fetch_all(s.pool())
                .await
                .unwrap_or_else(|e| panic!("plan of {name}: {e}")),
        };
        let scans = scans(&lines, &text, pg);
        println!("\n[{name}]  ({page})");
        for l in &lines {
            println!("    {l}");
        }
        for scan in scans {
            println!("    ^ {scan}");
            full.push(format!("{name} ({page}): {scan}"));
        }
    }
    if full.is_empty() {
        println!("\nno scan of a big table");
    } else {
        println!("\nscans of big tables:\n  {}", full.join("\n  "));
    }
}

/// The scans of big tables in a plan: `SCAN t` on SQLite (with a covering index or not,
/// rows are read in the table's or index's order rather than searched), `Seq Scan on t` on
/// PostgreSQL. Under a `LIMIT` without a sort the scan stops after the rows it needs
/// (`ordered scan`); otherwise it reads every row (`FULL SCAN`).
fn scans(lines: &[String], text: &str, pg: bool) -> Vec<String> {
    let sorted = lines.iter().any(|l| {
        let l = l.trim().trim_start_matches("-> ");
        l.starts_with("USE TEMP B-TREE FOR ORDER BY")
            || l.starts_with("Sort ")
            || l.starts_with("Incremental Sort")
    });
    let limited = text.contains("LIMIT $");
    let mut out = vec![];
    for l in lines {
        let l = l.trim().trim_start_matches("-> ");
        let table = if pg {
            l.split("Seq Scan on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
        } else {
            l.strip_prefix("SCAN ")
                .and_then(|r| r.split_whitespace().next())
                .map(|name| match name {
                    "l" | "s" | "f" | "x" => "job_execution_logs",
                    "t" => "scheduled_tasks",
                    "i" => "invoices",
                    "p" => "payments",
                    other => other,
                })
        };
        let bounded = SMALL_INDEXES
            .iter()
            .any(|i| l.contains(&format!("USING INDEX {i}")));
        if let Some(table) = table.filter(|t| BIG.contains(t) && !bounded) {
            let kind = if limited && !sorted {
                "ordered scan (stops after LIMIT matching rows)"
            } else {
                "FULL SCAN"
            };
            out.push(format!("{kind} of {table}"));
        }
    }
    out
}

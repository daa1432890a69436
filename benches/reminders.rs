//! `invoice_reminders` throughput (issue "billing", Performance): with 100,000 open invoices of
//! which 20,000 are due for a reminder, the time for one run of the job to select, render, send
//! to a local SMTP sink and record them, on SQLite and on PostgreSQL. Targets: >= 2,000
//! messages/s end to end and <= 150 µs of this process's CPU per message.
//!
//! `cargo bench --bench reminders [-- OPTIONS]`; `bench/run.sh` runs it with PostgreSQL too.
//!
//! - SQLite always, on a fresh file in a temporary directory.
//! - PostgreSQL when `TICKLER_BENCH_POSTGRES_URL` is set: the database `tickler_bench_reminders`
//!   next to the one named by the URL is dropped and created again, so runs are repeatable.
//! - The SMTP sink is this binary re-executed with `TICKLER_BENCH_SINK=1`: a separate process,
//!   so its CPU is not counted (it is reported apart, as is PostgreSQL's). Two run side by side:
//!   `plain`, a server as any (its kernel delays ACKs, as Linux does by default), and
//!   `quickack`, which acknowledges every segment at once (TCP_QUICKACK). lettre 0.11.23 writes
//!   a message's body and its final `.` in two writes on a socket without TCP_NODELAY, so
//!   against a plain server each message waits for the delayed ACK (~40 ms); the `quickack`
//!   sink shows what the rest of the pipeline does without that stall.
//!
//! The job runs as the daemon runs it: built from a config text by `config::parse`, started on
//! a tokio task of a multi-threaded runtime, `job.run(&ctx)` with a hand-made `RunContext`.
//! Between two measured runs only `notification_log` is emptied: the job reads `invoices` and
//! writes `notification_log` alone. On SQLite each run starts with an empty WAL and ends with
//! a checkpoint of what it wrote, counted in its CPU (not in its time: a daemon checkpoints
//! while it sends), so no run pays for copying back the seeding's pages or another run's.
//!
//! Columns: `seconds` and `msg/s` from the start of `job.run` to its end; `cpu µs/msg`
//! (`user`, `sys`) this process's CPU over the run (getrusage RUSAGE_SELF: the job, tokio,
//! lettre, and on SQLite the database engine, which runs in-process); `sink µs` and `pg µs`
//! the CPU of the sink processes and of every `postgres` process; `conns` the SMTP connections
//! the sink accepted; `other µs` the host's busy CPU (`/proc/stat`) left over, a sign of
//! another program competing for the cores. `/proc/stat` samples by clock tick, so on a mostly
//! idle host (the `plain` runs) it undercounts and `other` goes negative; it means something
//! when the cores are busy. `sqlite µs` is the part of `cpu µs/msg` spent in sqlx's SQLite
//! threads, where the database engine runs and the rows are read (PostgreSQL's engine is in
//! `pg µs`, outside this process): `cpu µs/msg` less it is tickler's own work.
//!
//! Options:
//! - `--settings C:P:B[:q],...`: runs with email `concurrency` C, `pool_size` P and the job's
//!   `batch_size` B, against the plain sink, or the quickack one with `:q` (default
//!   `32:32:500,64:64:500,8:8:500:q,16:16:500:q,32:32:500:q,16:16:2000:q`).
//! - `--backend sqlite|postgres|both` (default: both, PostgreSQL only with the URL).
//! - `--phases C:P:B[:q]`: also times the pipeline's parts apart (select, context, render,
//!   claim+finish, SMTP) with this setting, reproducing what the job and `Notifier::deliver` do;
//!   each part's CPU with its system part apart (against the job's `sys µs`: what running the
//!   parts together adds).
//! - `--no-plans`: skips the query plans.
//! - `--sink-without-chunking`: the sinks do not offer CHUNKING (RFC 3030), so messages go by
//!   DATA, two round trips each; by default they offer it, as Postfix does, and a message goes
//!   in one BDAT chunk, one round trip.
//! - `TICKLER_BENCH_PERF_CTL=FIFO`: profiles the measured runs alone, e.g. `mkfifo /tmp/ctl;
//!   perf record -D -1 --control fifo:/tmp/ctl -g -- BENCH --bench ...` with the variable set.
//! - `--extra-index`: an experiment from before the migrations indexed `(due_date, id)`: adds
//!   `invoices_open_due_id ON invoices (due_date, id) WHERE status = 'open'` after seeding.

use std::io::{BufRead, BufReader as StdBufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveDate, Utc};
use futures_util::StreamExt;
use tickler::billing::messages::{invoice_context, invoice_messages};
use tickler::config;
use tickler::jobs::RunContext;
use tickler::notify::{ChannelKind, Rendered};
use tickler::secret::DatabaseUrl;
use tickler::store::Store;
use tickler::store::billing::{
    Cursor, ESCALATION_WHERE, INVOICE_VIEW, NotificationAttempt, NotificationClaim,
    NotificationEnd, REMINDER_WHERE,
};

mod common;
use common::{arg, host_busy, pg_url_with_db, postgres_cpu, proc_cpu, threads_cpu};

const CUSTOMERS: usize = 10_000;
const INVOICES: usize = 100_000;
/// Invoices due in a reminder window: today + 0..=7 days, 2,500 a day.
const DUE: usize = 20_000;
/// Invoices due later than the windows (+8..=+60 days); the rest are overdue (-1..=-60).
const LATER: usize = 60_000;
const PG_DB: &str = "tickler_bench_reminders";
/// `--extra-index`.
static EXTRA_INDEX: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const SINK_ENV: &str = "TICKLER_BENCH_SINK";
/// The phase that times lettre's building alone: also inside the SMTP phase, so not summed.
const BUILD_ALONE: &str = "lettre build alone (Email::wire_bytes; in SMTP below)";

#[derive(Debug, Clone, Copy)]
struct Setting {
    concurrency: usize,
    pool_size: u32,
    batch: i64,
    /// Against the sink that does not delay its ACKs.
    quickack: bool,
}

fn parse_settings(text: &str) -> Vec<Setting> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let parts: Vec<&str> = s.trim().split(':').collect();
            let n = |i: usize| -> i64 {
                parts
                    .get(i)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| {
                        panic!("bad setting `{s}`: write CONCURRENCY:POOL:BATCH[:q]")
                    })
            };
            Setting {
                concurrency: n(0) as usize,
                pool_size: n(1) as u32,
                batch: n(2),
                quickack: parts.get(3) == Some(&"q"),
            }
        })
        .collect()
}

fn main() {
    if std::env::var_os(SINK_ENV).is_some() {
        sink_main();
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let settings = parse_settings(&arg(&args, "--settings").unwrap_or_else(|| {
        "32:32:500,64:64:500,8:8:500:q,16:16:500:q,32:32:500:q,16:16:2000:q".into()
    }));
    let backend = arg(&args, "--backend").unwrap_or_else(|| "both".into());
    let phases = arg(&args, "--phases").map(|p| parse_settings(&p)[0]);
    let plans = !args.iter().any(|a| a == "--no-plans");
    EXTRA_INDEX.store(args.iter().any(|a| a == "--extra-index"), Ordering::Relaxed);
    let chunking = !args.iter().any(|a| a == "--sink-without-chunking");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sinks = Sinks {
        plain: Sink::start(false, chunking),
        quickack: Sink::start(true, chunking),
    };
    println!(
        "reminders: {INVOICES} open invoices, {DUE} due in the windows 7d (2..=7 days), 1d, 0d; \
         SMTP sinks ({}): plain pid {} on 127.0.0.1:{}, quickack pid {} on 127.0.0.1:{}; {} cores",
        if chunking {
            "offering CHUNKING"
        } else {
            "without CHUNKING"
        },
        sinks.plain.child.id(),
        sinks.plain.port,
        sinks.quickack.child.id(),
        sinks.quickack.port,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = vec![];
    let dir = tempfile::tempdir().unwrap();
    if backend == "sqlite" || backend == "both" {
        let url = format!("sqlite://{}/reminders.db", dir.path().display());
        rows.extend(rt.block_on(backend_runs(
            "sqlite",
            &url,
            dir.path(),
            &sinks,
            &settings,
            phases,
            plans,
        )));
    }
    if backend == "postgres" || backend == "both" {
        match std::env::var("TICKLER_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin) => {
                let url = rt.block_on(fresh_pg_database(&admin));
                rows.extend(rt.block_on(backend_runs(
                    "postgres",
                    &url,
                    dir.path(),
                    &sinks,
                    &settings,
                    phases,
                    plans,
                )));
            }
            None => println!(
                "\npostgres: skipped (TICKLER_BENCH_POSTGRES_URL is not set; bench/run.sh sets it)"
            ),
        }
    }
    let mut sink_totals = vec![];
    for (name, sink) in [("plain", &sinks.plain), ("quickack", &sinks.quickack)] {
        let (m, c) = sink.counts();
        sink_totals.push(format!("{name} {m} messages over {c} connections"));
    }
    println!("\n{}", Row::header());
    for r in &rows {
        println!("{}", r.line());
    }
    let ok = rows
        .iter()
        .all(|r| r.rate >= 2000.0 && r.cpu_us_per_msg <= 150.0);
    println!(
        "targets (>= 2000 msg/s, <= 150 µs CPU/msg): {}",
        if ok {
            "met by every run"
        } else {
            "NOT met by every run (see above)"
        }
    );
    println!("sink totals: {}", sink_totals.join("; "));
    sinks.plain.stop();
    sinks.quickack.stop();
}

// ---------------------------------------------------------------------------------------------
// Measurement

struct Row {
    backend: &'static str,
    setting: Setting,
    messages: i64,
    seconds: f64,
    rate: f64,
    cpu_us_per_msg: f64,
    user_us_per_msg: f64,
    sys_us_per_msg: f64,
    sink_us_per_msg: f64,
    pg_us_per_msg: Option<f64>,
    /// The host's busy CPU not accounted to this process, the sinks or PostgreSQL: another
    /// program competing for the cores (or kernel threads), which makes a run less clean.
    other_us_per_msg: f64,
    connections: u64,
    /// On SQLite, the part of `cpu_us_per_msg` spent in sqlx's SQLite threads, where the
    /// database engine runs (PostgreSQL's is `pg_us_per_msg`, outside this process).
    sqlite_us_per_msg: Option<f64>,
}

impl Row {
    fn header() -> String {
        format!(
            "{:<8} {:<8} {:>4} {:>4} {:>5} {:>8} {:>8} {:>9} {:>12} {:>9} {:>9} {:>10} {:>9} {:>6} {:>9} {:>10}",
            "backend",
            "sink",
            "conc",
            "pool",
            "batch",
            "messages",
            "seconds",
            "msg/s",
            "cpu µs/msg",
            "user µs",
            "sys µs",
            "sink µs",
            "pg µs",
            "conns",
            "other µs",
            "sqlite µs"
        )
    }
    fn line(&self) -> String {
        format!(
            "{:<8} {:<8} {:>4} {:>4} {:>5} {:>8} {:>8.2} {:>9.0} {:>12.1} {:>9.1} {:>9.1} {:>10.1} {:>9} {:>6} {:>9.1} {:>10}",
            self.backend,
            if self.setting.quickack {
                "quickack"
            } else {
                "plain"
            },
            self.setting.concurrency,
            self.setting.pool_size,
            self.setting.batch,
            self.messages,
            self.seconds,
            self.rate,
            self.cpu_us_per_msg,
            self.user_us_per_msg,
            self.sys_us_per_msg,
            self.sink_us_per_msg,
            self.pg_us_per_msg
                .map_or("-".to_string(), |v| format!("{v:.1}")),
            self.connections,
            self.other_us_per_msg,
            self.sqlite_us_per_msg
                .map_or("-".to_string(), |v| format!("{v:.1}"))
        )
    }
}

/// User and system CPU of this process so far, in µs.
fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(r.ru_utime), us(r.ru_stime))
}

/// The names sqlx gives the threads where SQLite runs (`sqlx-sqlite-worker-N`), as `/proc`
/// cuts them.
const SQLITE_THREADS: &str = "sqlx-sqlite-wor";

fn pid_cpu(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| proc_cpu(&s))
        .unwrap_or(0.0)
}

fn config_text(url: &str, state: &Path, port: u16, s: Setting) -> String {
    format!(
        r#"[daemon]
database_url = "{url}"
state_dir = "{state}"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "Bench <bench@example.com>"
pool_size = {pool}
concurrency = {conc}

[templates]
vars = {{ company = "Bench Co", support_email = "s@example.com" }}

[[job]]
name = "reminders"
kind = "invoice_reminders"
every = "1d"
offsets = ["7d", "1d", "0d"]
channels = ["email"]
batch_size = {batch}
"#,
        state = state.display(),
        pool = s.pool_size,
        conc = s.concurrency,
        batch = s.batch,
    )
}

#[allow(clippy::too_many_arguments)]
async fn backend_runs(
    backend: &'static str,
    url: &str,
    state: &Path,
    sinks: &Sinks,
    settings: &[Setting],
    phases: Option<Setting>,
    plans: bool,
) -> Vec<Row> {
    println!("\n=== {backend} ===");
    let store = Store::connect(&DatabaseUrl::new(url)).await.unwrap();
    store.migrate().await.unwrap();
    let today = Utc::now().date_naive();
    let t0 = Instant::now();
    common::seed(&store, today, CUSTOMERS, INVOICES, due_offset).await;
    if EXTRA_INDEX.load(Ordering::Relaxed) {
        let ddl =
            "CREATE INDEX invoices_open_due_id ON invoices (due_date, id) WHERE status = 'open'";
        match &store {
            Store::Sqlite(s) => sqlx::query(ddl).execute(s.pool()).await.map(|_| ()),
            Store::Postgres(s) => sqlx::query(ddl).execute(s.pool()).await.map(|_| ()),
        }
        .unwrap();
        println!("experiment: {ddl}");
    }
    if let Store::Postgres(pg) = &store {
        // A daemon's database has statistics (autovacuum analyzes a table this size within a
        // minute of the import); tickler never runs ANALYZE on SQLite, so neither does this.
        sqlx::query("ANALYZE").execute(pg.pool()).await.unwrap();
    }
    println!(
        "seeded {CUSTOMERS} customers, {CUSTOMERS} subscriptions, {INVOICES} open invoices in \
         {:.1}s (not measured)",
        t0.elapsed().as_secs_f64()
    );
    if plans {
        print_plans(&store, today, settings[0].batch).await;
    }
    let mut rows = vec![];
    for s in settings {
        rows.push(measure(backend, url, state, &store, sinks, *s).await);
    }
    if let Some(s) = phases {
        phase_breakdown(backend, url, state, &store, sinks, s).await;
    }
    store.close().await;
    rows
}

async fn clear_log(store: &Store) {
    match store {
        Store::Sqlite(s) => {
            sqlx::query("DELETE FROM notification_log")
                .execute(s.pool())
                .await
                .unwrap();
        }
        Store::Postgres(s) => {
            sqlx::query("TRUNCATE notification_log")
                .execute(s.pool())
                .await
                .unwrap();
        }
    }
}

async fn sent_rows(store: &Store) -> i64 {
    let q = "SELECT COUNT(*) FROM notification_log WHERE status = 'sent'";
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(q).fetch_one(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_scalar(q).fetch_one(s.pool()).await.unwrap(),
    }
}

/// With `TICKLER_BENCH_PERF_CTL=FIFO` (a `perf record -D -1 --control fifo:FIFO`), the
/// profile covers the measured runs alone, not the seeding or the sink's start.
fn perf_control(command: &str) {
    if let Some(fifo) = std::env::var_os("TICKLER_BENCH_PERF_CTL") {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap_or_else(|e| panic!("TICKLER_BENCH_PERF_CTL: {e}"));
        writeln!(f, "{command}").unwrap_or_else(|e| panic!("TICKLER_BENCH_PERF_CTL: {e}"));
    }
}

async fn measure(
    backend: &'static str,
    url: &str,
    state: &Path,
    store: &Store,
    sinks: &Sinks,
    s: Setting,
) -> Row {
    let sink = sinks.get(s.quickack);
    clear_log(store).await;
    // SQLite: the run starts with an empty WAL, as a daemon's does after its periodic
    // checkpoint, so that no run pays for copying back the seeding's pages or an earlier
    // run's (a checkpoint would otherwise fall into whichever run grows the WAL past
    // `wal_autocheckpoint`). The run's own pages are copied back at its end, below.
    if let Store::Sqlite(lite) = store {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(lite.pool())
            .await
            .unwrap();
    }
    let path = state.join("config.toml");
    let text = config_text(url, state, sink.port, s);
    let config = config::parse(&path, &text).unwrap_or_else(|e| panic!("config: {e}"));
    let spec = config.job("reminders").unwrap().clone();
    let now = Utc::now();
    let ctx = RunContext {
        job_name: spec.name.clone(),
        scheduled_for: now,
        attempt: 1,
        store: store.clone(),
        now,
        timezone: chrono_tz::Tz::UTC,
        notifier: spec.notifier.clone(),
        dry_run: false,
        task: None,
        instance: std::sync::Arc::from("bench"),
        run_id: None,
        databases: spec.databases.clone(),
        send_window: spec.send_window.clone(),
    };
    let (sink0, conn0) = sink.counts();
    let sinks_cpu = || pid_cpu(sinks.plain.child.id()) + pid_cpu(sinks.quickack.child.id());
    let sink_cpu0 = sinks_cpu();
    let pg0 = postgres_cpu();
    let sqlite0 = threads_cpu(SQLITE_THREADS);
    let host0 = host_busy();
    let (u0, s0) = self_cpu();
    perf_control("enable");
    let t0 = Instant::now();
    // As the daemon runs it: on a task of the multi-threaded runtime.
    let job = spec.job.clone();
    let outcome = tokio::spawn(async move { job.run(&ctx).await })
        .await
        .unwrap();
    let seconds = t0.elapsed().as_secs_f64();
    // The checkpoint of the pages this run wrote counts in its CPU, not in its time: a
    // daemon checkpoints from its task watch while messages go out (`store::sqlite`).
    store.checkpoint().await.unwrap();
    perf_control("disable");
    let (u1, s1) = self_cpu();
    let host1 = host_busy();
    let sqlite1 = threads_cpu(SQLITE_THREADS);
    let pg1 = postgres_cpu();
    let sink_cpu1 = sinks_cpu();
    let (sink1, conn1) = sink.counts();

    let outcome = outcome.unwrap_or_else(|e| panic!("{backend}: the job failed: {e}"));
    let sent = sent_rows(store).await;
    let received = sink1 - sink0;
    let messages = outcome.records;
    println!(
        "run {backend} sink={} concurrency={} pool_size={} batch_size={}: records={} sent_rows={sent} \
         sink_received={received} smtp_connections={} errors={} metadata={}",
        if s.quickack { "quickack" } else { "plain" },
        s.concurrency,
        s.pool_size,
        s.batch,
        outcome.records,
        conn1 - conn0,
        outcome.errors.len(),
        serde_json::Value::Object(outcome.metadata.clone())
    );
    if messages != DUE as i64 || sent != DUE as i64 || received != DUE as u64 {
        for e in outcome.errors.iter().take(5) {
            eprintln!("  error: {e}");
        }
        panic!(
            "{backend}: expected {DUE} messages everywhere; the job counted {messages}, \
             notification_log has {sent} `sent` rows, the sink received {received}"
        );
    }
    let n = messages as f64;
    let row = Row {
        backend,
        setting: s,
        messages,
        seconds,
        rate: n / seconds,
        cpu_us_per_msg: ((u1 - u0) + (s1 - s0)) / n,
        user_us_per_msg: (u1 - u0) / n,
        sys_us_per_msg: (s1 - s0) / n,
        sink_us_per_msg: (sink_cpu1 - sink_cpu0) / n,
        pg_us_per_msg: (backend == "postgres").then(|| (pg1 - pg0) / n),
        other_us_per_msg: ((host1 - host0)
            - ((u1 - u0) + (s1 - s0))
            - (sink_cpu1 - sink_cpu0)
            - (pg1 - pg0))
            / n,
        connections: conn1 - conn0,
        sqlite_us_per_msg: (backend == "sqlite").then(|| (sqlite1 - sqlite0) / n),
    };
    println!("{}\n{}", Row::header(), row.line());
    row
}

// ---------------------------------------------------------------------------------------------
// Data

async fn fresh_pg_database(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TICKLER_BENCH_POSTGRES_URL: {e}"));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {PG_DB}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!("\npostgres {version}: database {PG_DB} created afresh");
    conn.close().await.ok();
    pg_url_with_db(admin, PG_DB)
}

/// Days from today of invoice `j`'s due date: 20,000 in the windows (0..=7, 2,500 a day),
/// 60,000 later (8..=60), 20,000 overdue (-1..=-60).
fn due_offset(j: usize) -> i64 {
    if j < DUE {
        (j % 8) as i64
    } else if j < DUE + LATER {
        8 + (j % 53) as i64
    } else {
        -1 - (j % 60) as i64
    }
}

// ---------------------------------------------------------------------------------------------
// Query plans

enum Bind {
    Date(NaiveDate),
    Int(i32),
    Big(i64),
    Text(String),
    NullTs,
}

impl Bind {
    fn literal(&self) -> String {
        match self {
            Bind::Date(d) => format!("'{d}'"),
            Bind::Int(i) => i.to_string(),
            Bind::Big(i) => i.to_string(),
            Bind::Text(t) => format!("'{t}'"),
            Bind::NullTs => "NULL".into(),
        }
    }
}

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Date(d) => q.bind(*d),
                Bind::Int(i) => q.bind(*i),
                Bind::Big(i) => q.bind(*i),
                Bind::Text(t) => q.bind(t.clone()),
                Bind::NullTs => q.bind(None::<DateTime<Utc>>),
            };
        }
        q
    }};
}

async fn print_plans(store: &Store, today: NaiveDate, batch: i64) {
    let nil = uuid::Uuid::nil().to_string();
    let start = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
    let queries: Vec<(String, String, Vec<Bind>)> = vec![
        (
            format!(
                "open_invoices_due, window 7d, first page: due_date BETWEEN {} AND {}",
                today + Days::new(2),
                today + Days::new(7)
            ),
            format!("{INVOICE_VIEW}{REMINDER_WHERE}"),
            vec![
                Bind::Date(today + Days::new(2)),
                Bind::Date(today + Days::new(7)),
                Bind::Date(start),
                Bind::Text(nil.clone()),
                Bind::Big(batch),
            ],
        ),
        (
            format!(
                "escalation_candidates, level 1 after 3 days, first page: due_date <= {}, level 0",
                today - Days::new(3)
            ),
            format!("{INVOICE_VIEW}{ESCALATION_WHERE}"),
            vec![
                Bind::Date(today - Days::new(3)),
                Bind::Int(0),
                Bind::NullTs,
                Bind::Date(start),
                Bind::Text(nil.clone()),
                Bind::Big(batch),
            ],
        ),
    ];
    for (label, text, binds) in queries {
        let text = store.sql(&text).into_owned();
        match store {
            Store::Sqlite(s) => {
                println!("\n-- plan (sqlite, EXPLAIN QUERY PLAN): {label}");
                let explain = format!("EXPLAIN QUERY PLAN {text}");
                let rows = bind_all!(sqlx::query(&explain), &binds)
                    .fetch_all(s.pool())
                    .await
                    .unwrap();
                use sqlx::Row;
                let mut depth: std::collections::HashMap<i64, usize> = Default::default();
                for r in rows {
                    let id: i64 = r.get(0);
                    let parent: i64 = r.get(1);
                    let detail: String = r.get(3);
                    let d = depth.get(&parent).map_or(0, |d| d + 1);
                    depth.insert(id, d);
                    println!("{}{detail}", "  ".repeat(d + 1));
                }
            }
            Store::Postgres(s) => {
                println!("\n-- plan (postgres, EXPLAIN with the values bound): {label}");
                let explain = format!("EXPLAIN {text}");
                let lines: Vec<String> = bind_all!(sqlx::query_scalar(&explain), &binds)
                    .fetch_all(s.pool())
                    .await
                    .unwrap();
                for l in lines {
                    println!("  {l}");
                }
                // sqlx keeps its statements prepared: after five executions PostgreSQL may use
                // a generic plan, which does not know the values.
                println!(
                    "-- generic plan (postgres, plan_cache_mode = force_generic_plan): {label}"
                );
                let mut conn = s.pool().acquire().await.unwrap();
                use sqlx::Executor;
                conn.execute(format!("PREPARE bench_plan AS {text}").as_str())
                    .await
                    .unwrap();
                conn.execute("SET plan_cache_mode = force_generic_plan")
                    .await
                    .unwrap();
                let literals: Vec<String> = binds.iter().map(|b| b.literal()).collect();
                let explain = format!("EXPLAIN EXECUTE bench_plan({})", literals.join(", "));
                let lines: Vec<String> = sqlx::query_scalar(&explain)
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
                for l in lines {
                    println!("  {l}");
                }
                conn.execute("DEALLOCATE bench_plan; RESET plan_cache_mode")
                    .await
                    .unwrap();
            }
        }
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// Phases: the pipeline's parts timed apart, reproducing `InvoiceRemindersJob::run` and
// `Notifier::deliver` step by step (the job itself interleaves them per page).

struct Phase {
    name: &'static str,
    wall: f64,
    cpu: f64,
    /// The system part of `cpu`.
    sys: f64,
}

async fn timed<T, F: std::future::Future<Output = T>>(
    phases: &mut Vec<Phase>,
    name: &'static str,
    f: F,
) -> T {
    let (u0, s0) = self_cpu();
    let t0 = Instant::now();
    let out = f.await;
    let (u1, s1) = self_cpu();
    phases.push(Phase {
        name,
        wall: t0.elapsed().as_secs_f64(),
        cpu: (u1 - u0) + (s1 - s0),
        sys: s1 - s0,
    });
    out
}

async fn phase_breakdown(
    backend: &'static str,
    url: &str,
    state: &Path,
    store: &Store,
    sinks: &Sinks,
    s: Setting,
) {
    let sink = sinks.get(s.quickack);
    clear_log(store).await;
    let path = state.join("config.toml");
    let config = config::parse(&path, &config_text(url, state, sink.port, s)).unwrap();
    let notifier = config.job("reminders").unwrap().notifier.clone();
    let today = Utc::now().date_naive();
    let windows: [(&str, i64, i64, &str); 3] = [
        ("7d", 2, 7, "friendly"),
        ("1d", 1, 1, "professional"),
        ("0d", 0, 0, "firm"),
    ];
    let mut phases = vec![];

    // 1. Select: every page of every window, as the job reads them.
    let mut page_times = vec![];
    let pages = timed(&mut phases, "select (open_invoices_due pages)", async {
        let mut pages = vec![];
        for (label, lo, hi, template) in windows {
            let mut cursor = Cursor::start();
            loop {
                let t = Instant::now();
                let page = store
                    .open_invoices_due(
                        today + Days::new(lo as u64),
                        today + Days::new(hi as u64),
                        &cursor,
                        s.batch,
                    )
                    .await
                    .unwrap();
                page_times.push((label, page.len(), t.elapsed().as_secs_f64() * 1e3));
                let Some(last) = page.last() else { break };
                cursor = Cursor::after(last);
                let short = (page.len() as i64) < s.batch;
                pages.push((label, hi, template, page));
                if short {
                    break;
                }
            }
        }
        pages
    })
    .await;

    // 2. Context and messages.
    let messages = timed(
        &mut phases,
        "context + messages (invoice_context, invoice_messages)",
        async {
            let mut all = vec![];
            for (label, days, template, page) in &pages {
                let mut messages = vec![];
                for inv in page {
                    let context = invoice_context(inv, today, Some((*label, *days)), None, None);
                    messages.extend(invoice_messages(
                        inv,
                        &[ChannelKind::Email],
                        &format!("reminder:{label}"),
                        template,
                        context,
                    ));
                }
                all.push(messages);
            }
            all
        },
    )
    .await;
    let total: usize = messages.iter().map(|m| m.len()).sum();

    // 3. Render.
    let rendered: Vec<Vec<Rendered>> = timed(&mut phases, "render (Templates::render)", async {
        messages
            .iter()
            .map(|page| {
                page.iter()
                    .map(|m| {
                        notifier
                            .templates
                            .render(&m.template, m.channel, &m.context)
                            .unwrap()
                    })
                    .collect()
            })
            .collect()
    })
    .await;

    // 4. Claim, record the attempts and the ends, as `deliver` does (it records attempts and
    // ends in groups of the messages in flight together; here one group per page).
    let claimant = tickler::notify::Claimant {
        job: "reminders",
        owner: "bench",
        run: None,
    };
    timed(
        &mut phases,
        "claim + attempt + finish (notification_log writes)",
        async {
            for page in &messages {
                let claims: Vec<NotificationClaim> = page.iter().map(|m| m.claim()).collect();
                let claimed = store
                    .claim_notifications(&claimant, &claims, Utc::now())
                    .await
                    .unwrap();
                let attempts: Vec<NotificationAttempt> = page.iter().map(|m| m.attempt()).collect();
                store
                    .journal_notifications("bench", &attempts, &[], Utc::now())
                    .await
                    .unwrap();
                assert_eq!(claimed.len(), page.len());
                let ends: Vec<NotificationEnd> = page
                    .iter()
                    .map(|m| NotificationEnd {
                        key: m.key.clone(),
                        status: "sent",
                        provider_id: Some(format!(
                            "<{}@example.com>",
                            uuid::Uuid::now_v7().simple()
                        )),
                        error: None,
                    })
                    .collect();
                store
                    .journal_notifications("bench", &[], &ends, Utc::now())
                    .await
                    .unwrap();
            }
        },
    )
    .await;

    // 5. SMTP: building and sending the rendered messages through lettre, `concurrency` at
    // once, per page.
    let email_cfg: tickler::notify::email::EmailConfig = toml::from_str(&format!(
        "transport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"Bench <bench@example.com>\"\npool_size = {}\nconcurrency = {}",
        sink.port, s.pool_size, s.concurrency
    ))
    .unwrap();
    let (email, _, concurrency) = tickler::notify::email::Email::build(email_cfg, state).unwrap();
    timed(&mut phases, BUILD_ALONE, async {
        for (page, rendered) in messages.iter().zip(&rendered) {
            for (m, r) in page.iter().zip(rendered) {
                std::hint::black_box(
                    email
                        .wire_bytes(m.recipient.as_deref().unwrap(), r, true)
                        .unwrap(),
                );
            }
        }
    })
    .await;
    let (sink0, conn0) = sink.counts();
    timed(
        &mut phases,
        "SMTP (Email::send: lettre build + SMTP)",
        async {
            for (page, rendered) in messages.iter().zip(&rendered) {
                futures_util::stream::iter(page.iter().zip(rendered))
                    .map(|(m, r)| {
                        let email = &email;
                        async move {
                            email
                                .send(m.recipient.as_deref().unwrap(), r, true)
                                .await
                                .unwrap()
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect::<Vec<_>>()
                    .await;
            }
        },
    )
    .await;
    let (sink1, conn1) = sink.counts();
    assert_eq!(sink1 - sink0, total as u64, "the sink missed messages");

    println!(
        "\n-- phases ({backend}, sink={}, concurrency={} pool_size={} batch_size={}, {total} \
         messages, one after the other; the job overlaps none of them across pages)",
        if s.quickack { "quickack" } else { "plain" },
        s.concurrency,
        s.pool_size,
        s.batch
    );
    println!(
        "{:<58} {:>8} {:>12} {:>12} {:>12}",
        "phase", "wall s", "wall µs/msg", "cpu µs/msg", "sys µs/msg"
    );
    let (mut w, mut c, mut y) = (0.0, 0.0, 0.0);
    for p in &phases {
        if p.name != BUILD_ALONE {
            w += p.wall;
            c += p.cpu;
            y += p.sys;
        }
        println!(
            "{:<58} {:>8.3} {:>12.1} {:>12.1} {:>12.1}",
            p.name,
            p.wall,
            p.wall * 1e6 / total as f64,
            p.cpu / total as f64,
            p.sys / total as f64
        );
    }
    println!(
        "{:<58} {:>8.3} {:>12.1} {:>12.1} {:>12.1}",
        "sum",
        w,
        w * 1e6 / total as f64,
        c / total as f64,
        y / total as f64
    );
    println!("SMTP phase: {} connections", conn1 - conn0);
    let by_window = |label: &str| -> Vec<f64> {
        page_times
            .iter()
            .filter(|(l, n, _)| *l == label && *n > 0)
            .map(|(_, _, ms)| *ms)
            .collect()
    };
    for (label, ..) in windows {
        let t = by_window(label);
        if let (Some(first), Some(last)) = (t.first(), t.last()) {
            println!(
                "select window {label}: {} pages, first {first:.2} ms, last {last:.2} ms, total {:.1} ms",
                t.len(),
                t.iter().sum::<f64>()
            );
        }
    }
    clear_log(store).await;
}

// ---------------------------------------------------------------------------------------------
// SMTP sink: a separate process (this binary with TICKLER_BENCH_SINK=1).

struct Sink {
    child: Child,
    port: u16,
}

struct Sinks {
    plain: Sink,
    quickack: Sink,
}

impl Sinks {
    fn get(&self, quickack: bool) -> &Sink {
        if quickack {
            &self.quickack
        } else {
            &self.plain
        }
    }
}

impl Sink {
    fn start(quickack: bool, chunking: bool) -> Sink {
        let mut command = Command::new(std::env::current_exe().unwrap());
        if quickack {
            command.env("TICKLER_BENCH_SINK_QUICKACK", "1");
        }
        if chunking {
            command.env("TICKLER_BENCH_SINK_CHUNKING", "1");
        }
        let mut child = command
            .env(SINK_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the SMTP sink");
        let mut line = String::new();
        StdBufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the sink printed `{line}`, not its port"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the SMTP sink does not accept connections"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink { child, port }
    }

    /// Messages received and connections accepted so far.
    fn counts(&self) -> (u64, u64) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"XCOUNT\r\n").unwrap();
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while !text.contains("\r\n250 ") || !text.ends_with("\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the sink closed the connection: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let line = text.lines().find(|l| l.starts_with("250 ")).unwrap();
        let nums: Vec<u64> = line[4..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        // This connection counts itself.
        (nums[0], nums[1] - 1)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct SinkStats {
    messages: AtomicU64,
    connections: AtomicU64,
}

/// The `quickack` sink acknowledges every segment at once (TCP_QUICKACK), as a relay
/// would that does not delay its ACKs (see the module's documentation).
static QUICKACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The sinks offer CHUNKING (RFC 3030), as Postfix does since 3.4, unless
/// `--sink-without-chunking`.
static CHUNKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn sink_main() {
    QUICKACK.store(
        std::env::var_os("TICKLER_BENCH_SINK_QUICKACK").is_some(),
        Ordering::Relaxed,
    );
    CHUNKING.store(
        std::env::var_os("TICKLER_BENCH_SINK_CHUNKING").is_some(),
        Ordering::Relaxed,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        let stats = Arc::new(SinkStats::default());
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let stats = stats.clone();
            tokio::spawn(async move {
                let _ = sink_session(sock, &stats).await;
            });
        }
    });
}

async fn sink_session(sock: tokio::net::TcpStream, stats: &SinkStats) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    sock.set_nodelay(true)?;
    let quickack = QUICKACK.load(Ordering::Relaxed);
    let mut ehlo = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n".to_vec();
    if CHUNKING.load(Ordering::Relaxed) {
        ehlo.extend_from_slice(b"250-CHUNKING\r\n");
    }
    ehlo.extend_from_slice(b"250 OK\r\n");
    let mut chunk = Vec::with_capacity(8 * 1024);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // TCP_QUICKACK does not stick: it is set again after every read.
    let ack_now = || {
        if quickack {
            let one: libc::c_int = 1;
            // SAFETY: `fd` is this session's open socket; the option is an int.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    };
    ack_now();
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    // Answers are written when nothing more waits to be read, as Postfix does: pipelined
    // commands get their answers in one write.
    let mut out = Vec::with_capacity(1024);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        ack_now();
        let verb: String = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(|b| b.to_ascii_uppercase() as char)
            .collect();
        match verb.as_str() {
            "EHLO" => out.extend_from_slice(&ehlo),
            "HELO" => out.extend_from_slice(b"250 sink\r\n"),
            "MAIL" | "RCPT" | "RSET" | "NOOP" => out.extend_from_slice(b"250 OK\r\n"),
            "DATA" => {
                out.extend_from_slice(b"354 go ahead\r\n");
                w.write_all(&out).await?;
                out.clear();
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    ack_now();
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                stats.messages.fetch_add(1, Ordering::Relaxed);
                out.extend_from_slice(b"250 OK queued\r\n");
            }
            // `BDAT <size> [LAST]`: the chunk's bytes follow the line.
            "BDAT" => {
                let words = String::from_utf8_lossy(&line).to_string();
                let mut words = words.split_whitespace().skip(1);
                let size: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                chunk.resize(size, 0);
                r.read_exact(&mut chunk).await?;
                if words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST")) {
                    stats.messages.fetch_add(1, Ordering::Relaxed);
                    out.extend_from_slice(b"250 OK queued\r\n");
                } else {
                    out.extend_from_slice(b"250 OK chunk\r\n");
                }
            }
            "QUIT" => {
                out.extend_from_slice(b"221 bye\r\n");
                w.write_all(&out).await?;
                return Ok(());
            }
            "XCOUNT" => {
                let reply = format!(
                    "250 {} {}\r\n",
                    stats.messages.load(Ordering::Relaxed),
                    stats.connections.load(Ordering::Relaxed)
                );
                out.extend_from_slice(reply.as_bytes());
            }
            _ => out.extend_from_slice(b"500 unknown command\r\n"),
        }
        if r.buffer().is_empty() {
            w.write_all(&out).await?;
            out.clear();
        }
    }
}

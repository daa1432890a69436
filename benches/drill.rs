//! The fault drill (issue 12): a `tickler run` daemon of the release build, on a mixed config,
//! killed at random moments, then run to the end; it then counts what was lost, doubled or
//! left behind, on SQLite and on PostgreSQL.
//!
//! The config: `tick` (a command every second, `overlap = "allow"`, `catch_up = "all"`, which
//! writes its slot to a file: a slot run twice shows there), `queued` (every second, 0.9 s
//! long, `overlap = "queue"`: after a restart its backlog waits its turn in `pending` rows), `skipper` (every
//! second, 1.2 s long, `overlap = "skip"`), `reminders` (`invoice_reminders` every 2 s over
//! 3,000 open invoices, through SMTP to a sink of this process that records each recipient).
//!
//! Each round starts the daemon, waits 0.5-4 s, kills it (SIGKILL, every fourth time SIGTERM),
//! and leaves it down 0-3 s. The last round runs until every reminder is sent and the backlog
//! is through, then stops with SIGTERM. One line per database:
//! slots with no row, slots run twice, rows left `running` and `sending`, messages sent twice,
//! messages never sent (no `sent` or `unknown` row, or `sent` but not delivered), and, for
//! information, `unknown` messages (how many of them the sink got) and `pending` rows left for
//! the next daemon.
//!
//! `cargo bench --bench drill -- [--kills N] [--seed S] [--database postgres://...]`
//! (`bench/run.sh drill` runs it on SQLite and on a throwaway PostgreSQL).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/it/helpers/tenants.rs"]
mod tenants;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::arg;
use tenants::seed_tenants;
use tickler::config;
use tickler::store::{HistoryFilter, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_tickler");
const INVOICES: usize = 3000;
const JOBS: [&str; 4] = ["tick", "queued", "skipper", "reminders"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kills: usize = arg(&args, "--kills").map_or(20, |k| k.parse().expect("--kills N"));
    let seed: u64 = arg(&args, "--seed").map_or_else(
        || Utc::now().timestamp() as u64,
        |s| s.parse().expect("--seed S"),
    );
    let database = arg(&args, "--database");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(drill(kills, seed, database));
}

/// An SMTP server that accepts everything and appends each message's recipients to a list
/// before it answers 250, so a message counts as delivered once the sender could know it.
struct Sink {
    port: u16,
    delivered: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delivered: Arc<Mutex<Vec<String>>> = Arc::default();
        let d = delivered.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let d = d.clone();
                tokio::spawn(async move {
                    let _ = session(stream, d).await;
                });
            }
        });
        Sink { port, delivered }
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    delivered: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 drill-sink ESMTP\r\n").await?;
    let mut rcpt: Vec<String> = vec![];
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-drill-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let to = line[8..].trim().trim_matches(|c| c == '<' || c == '>');
            rcpt.push(to.to_string());
            b"250 ok\r\n"
        } else if upper.starts_with("DATA") {
            write.write_all(b"354 go on\r\n").await?;
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
            }
            delivered.lock().unwrap().append(&mut rcpt);
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper.starts_with("RSET") {
            rcpt.clear();
            b"250 ok\r\n"
        } else {
            b"250 ok\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn config_text(dir: &Path, url: &str, smtp: u16) -> String {
    format!(
        "[daemon]\ndatabase_url = \"{url}\"\nstate_dir = \"{dir}\"\ntimezone = \"UTC\"\n\
         shutdown_grace = \"3s\"\n\n\
         [channels.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp}\n\
         tls = \"none\"\nfrom = \"Drill <drill@example.com>\"\nrate_limit = 300\nconcurrency = 8\n\n\
         [templates]\nvars = {{ company = \"Drill Rentals\" }}\n\n\
         [[job]]\nname = \"tick\"\nkind = \"command\"\nshell = true\n\
         command = [\"echo $TICKLER_SCHEDULED_FOR >> {dir}/ran.txt; sleep 0.5\"]\n\
         every = \"1s\"\noverlap = \"allow\"\ncatch_up = \"all\"\nmisfire_grace = \"1h\"\n\n\
         [[job]]\nname = \"queued\"\nkind = \"noop\"\nduration = \"900ms\"\nevery = \"1s\"\n\
         overlap = \"queue\"\ncatch_up = \"all\"\nmisfire_grace = \"1h\"\n\n\
         [[job]]\nname = \"skipper\"\nkind = \"noop\"\nduration = \"1200ms\"\nevery = \"1s\"\n\
         overlap = \"skip\"\n\n\
         [[job]]\nname = \"reminders\"\nkind = \"invoice_reminders\"\nevery = \"2s\"\n\
         offsets = [\"7d\"]\nchannels = [\"email\"]\nbatch_size = 250\noverlap = \"skip\"\n",
        dir = dir.display()
    )
}

/// Open invoices due in 7 days, one tenant (and address) each; the dedup keys of their
/// reminders, with the address.
async fn seed_invoices(store: &Store) -> Vec<(String, String)> {
    seed_tenants(store, INVOICES, "drill.example", "D-")
        .await
        .into_iter()
        .map(|(c, i)| (format!("reminder:7d:{}:email", i.id), c.email.unwrap()))
        .collect()
}

fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.join("config.toml"))
        .current_dir(dir)
        .env_remove("TICKLER_DATABASE_URL")
        .env("TICKLER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tickler run")
}

fn send(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits for `child` to exit, SIGKILL after `limit`.
fn reap(child: &mut Child, limit: Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            send(child, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn drill(kills: usize, seed: u64, database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (backend, url) = match &database {
        Some(base) => {
            let name = format!("drill_{}", uuid::Uuid::new_v4().simple());
            let admin = common::pg_url_with_db(base, "postgres");
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            ("postgres", common::pg_url_with_db(base, &name))
        }
        None => (
            "sqlite",
            format!("sqlite://{}/tickler.db", dir.path().display()),
        ),
    };
    let sink = Sink::start().await;
    std::fs::write(
        dir.path().join("config.toml"),
        config_text(dir.path(), &url, sink.port),
    )
    .unwrap();
    let config = config::load(&dir.path().join("config.toml")).unwrap();
    let store = Store::connect(&config.daemon.database_url).await.unwrap();
    store.migrate().await.unwrap();
    let keys = seed_invoices(&store).await;
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();

    for round in 0..kills {
        let child = spawn(dir.path());
        let up = Duration::from_millis(rng.u64(500..4000));
        tokio::time::sleep(up).await;
        let term = round % 4 == 3;
        send(&child, if term { libc::SIGTERM } else { libc::SIGKILL });
        let mut c = child;
        tokio::task::spawn_blocking(move || {
            reap(&mut c, Duration::from_secs(20));
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(0..3000))).await;
    }

    // The last daemon runs until every reminder is settled and every slot up to 3 s ago is
    // run or recorded; bounded at 3 minutes.
    let mut last = spawn(dir.path());
    let key_list: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let states = store.notification_states(&key_list).await.unwrap();
        let settled = states
            .values()
            .filter(|s| *s == "sent" || *s == "unknown")
            .count();
        let horizon = Utc::now() - TimeDelta::seconds(3);
        let mut open_old = 0;
        for job in JOBS {
            open_old += rows(&store, job)
                .await
                .iter()
                .filter(|r| {
                    (r.status == "pending" || r.status == "running") && r.scheduled_for < horizon
                })
                .count();
        }
        if (settled == keys.len() && open_old == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    send(&last, libc::SIGTERM);
    tokio::task::spawn_blocking(move || reap(&mut last, Duration::from_secs(30)))
        .await
        .unwrap();

    // Slots: every slot from each job's first row to its last has exactly one row.
    let (mut slots, mut no_row, mut doubled, mut pending, mut running) = (0, 0, 0, 0, 0);
    for job in JOBS {
        let spec = config.job(job).unwrap();
        let rows = rows(&store, job).await;
        let scheduled: Vec<_> = rows.iter().filter(|r| r.trigger != "manual").collect();
        let mut have: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
        let mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = vec![];
        for r in &scheduled {
            *have.entry(r.scheduled_for).or_default() += 1;
            if let Some(until) = r
                .metadata
                .as_ref()
                .and_then(|m| m.get("missed_until"))
                .and_then(|u| serde_json::from_value::<DateTime<Utc>>(u.clone()).ok())
            {
                ranges.push((r.scheduled_for, until));
            }
        }
        pending += rows.iter().filter(|r| r.status == "pending").count();
        running += rows.iter().filter(|r| r.status == "running").count();
        let (Some(first), Some(last)) = (have.keys().next().copied(), have.keys().last().copied())
        else {
            continue;
        };
        let mut slot = first;
        while slot <= last {
            slots += 1;
            let covered = ranges.iter().any(|(a, b)| slot >= *a && slot < *b);
            if !have.contains_key(&slot) && !covered {
                no_row += 1;
            }
            slot = spec.trigger.next_after(slot, spec.timezone).unwrap();
        }
        doubled += have.values().filter(|n| **n > 1).count();
    }
    let ran = std::fs::read_to_string(dir.path().join("ran.txt")).unwrap_or_default();
    let ran: Vec<&str> = ran.lines().collect();
    let distinct: BTreeSet<&&str> = ran.iter().collect();
    // A slot run twice shows as a line twice in `ran.txt`, or as two rows of one slot.
    let run_twice = ran.len() - distinct.len() + doubled;

    // Messages.
    let states = store.notification_states(&key_list).await.unwrap();
    let delivered = sink.delivered.lock().unwrap().clone();
    let mut per_address: BTreeMap<&str, usize> = BTreeMap::new();
    for to in &delivered {
        *per_address.entry(to.as_str()).or_default() += 1;
    }
    let sent_twice = per_address.values().filter(|n| **n > 1).count();
    let sending = states.values().filter(|s| *s == "sending").count();
    let (mut never_sent, mut unknown, mut unknown_delivered) = (0, 0, 0);
    for (key, to) in &keys {
        let got = per_address.contains_key(to.as_str());
        match states.get(key).map(String::as_str) {
            Some("sent") if got => {}
            Some("unknown") => {
                unknown += 1;
                unknown_delivered += got as usize;
            }
            _ => never_sent += 1,
        }
    }
    println!(
        "drill  backend={backend:<8} kills={kills} seed={seed} seconds={:.0}  slots={slots} \
         no_row={no_row} run_twice={run_twice} running={running} sending={sending} \
         sent_twice={sent_twice} never_sent={never_sent}  (unknown={unknown}, of which \
         delivered={unknown_delivered}; pending_for_next_daemon={pending}; messages={})",
        started.elapsed().as_secs_f64(),
        keys.len()
    );
    store.close().await;
    let log = std::env::temp_dir().join(format!("tickler-drill-{backend}.log"));
    if std::fs::copy(dir.path().join("daemon.log"), &log).is_ok() {
        println!("       the daemons' warnings and errors: {}", log.display());
    }
}

async fn rows(store: &Store, job: &str) -> Vec<tickler::store::RunRow> {
    store
        .history(&HistoryFilter {
            job: Some(job.into()),
            status: None,
            limit: 1_000_000,
            run: None,
        })
        .await
        .unwrap()
}

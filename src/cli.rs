//! The command line: `run`, `check`, `list`, `run-job`, `history`, `migrate`, `print-config`.
//! Each command is a function returning the text it prints, so tests pin the output exactly.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;

use crate::config::{self, Config};
use crate::daemon::{self, Options, Signal};
use crate::store::{HistoryFilter, Status, Store};

#[derive(Debug, Parser)]
#[command(
    name = "tickler",
    version,
    about = "A scheduler daemon for billing and collections back offices"
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        env = "TICKLER_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: fire every job on its trigger until SIGTERM; SIGHUP reloads the config.
    Run,
    /// Validate the config and print each job with its next fire.
    Check,
    /// Print the next fire instants of every job, in the job's zone and in UTC.
    List {
        /// How many fires per job.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        next: u16,
        /// Count from this RFC 3339 time instead of now, e.g. `2025-03-09T00:00:00-05:00`.
        #[arg(long, value_parser = parse_rfc3339)]
        from: Option<DateTime<Utc>>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run jobs now, in this process, recorded with trigger `manual`.
    RunJob {
        /// The job to run.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Run every enabled job, one after the other.
        #[arg(long)]
        all: bool,
    },
    /// Show recorded runs, newest first.
    History {
        #[arg(long)]
        job: Option<String>,
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Print the shipped, commented example config.
    PrintConfig,
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; write an RFC 3339 time such as `2025-03-09T00:00:00Z`"))
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status; expected one of {}", all.join(", "))
    })
}

/// Runs a command; the returned code is the process's exit status.
pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::PrintConfig => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let config = config::load(&cli.config)?;
            print!("{}", check_report(&config, Utc::now()));
            Ok(ExitCode::SUCCESS)
        }
        Command::List { next, from, format } => {
            let config = config::load(&cli.config)?;
            print!(
                "{}",
                list_report(
                    &config,
                    from.unwrap_or_else(Utc::now),
                    next as usize,
                    format
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = config::load(&cli.config)?;
            let store = Store::connect(&config.daemon.database_url).await?;
            store.migrate().await?;
            println!("migrated {}", config.daemon.database_url);
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::History {
            job,
            status,
            limit,
            format,
        } => {
            let config = config::load(&cli.config)?;
            let store = Store::connect(&config.daemon.database_url).await?;
            store.migrate().await?;
            let rows = store.history(&HistoryFilter { job, status, limit }).await?;
            store.close().await;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Format::Table => print!("{}", history_table(&rows)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RunJob { name, all: _ } => {
            let config = config::load(&cli.config)?;
            let names: Vec<Arc<str>> = match name {
                Some(name) => match config.job(&name) {
                    Some(spec) => vec![spec.name.clone()],
                    None => anyhow::bail!(
                        "no job named `{name}` in `{}`; `tickler check` lists the jobs",
                        config.path.display()
                    ),
                },
                None => config
                    .jobs
                    .iter()
                    .filter(|j| j.enabled)
                    .map(|j| j.name.clone())
                    .collect(),
            };
            let results = daemon::run_now(&config, &names).await?;
            let mut ok = true;
            for (name, summary) in results {
                match summary {
                    Some(s) => {
                        ok &= matches!(s.status, Status::Succeeded | Status::Partial);
                        println!(
                            "{name}: {} (run {}, {} records{})",
                            s.status.as_str(),
                            s.id,
                            s.records.unwrap_or(0),
                            s.error.map(|e| format!("; {e}")).unwrap_or_default()
                        );
                    }
                    None => {
                        ok = false;
                        println!("{name}: did not run");
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run => {
            let config = config::load(&cli.config)?;
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(forward_signals(tx));
            daemon::run(config, rx, Options::default()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn forward_signals(tx: mpsc::Sender<Signal>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let s = tokio::select! {
            _ = hup.recv() => Signal::Reload,
            _ = term.recv() => Signal::Shutdown,
            _ = int.recv() => Signal::Shutdown,
        };
        if tx.send(s).await.is_err() {
            return;
        }
    }
}

/// `tickler check`: one line per job with its trigger, zone and next fire.
pub fn check_report(config: &Config, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: OK, {} job(s); database {}; default time zone {}",
        config.path.display(),
        config.jobs.len(),
        config.daemon.database_url,
        config.daemon.timezone
    );
    for job in &config.jobs {
        let next = match (job.enabled, job.trigger.next_after(now, job.timezone)) {
            (false, _) => "disabled".to_string(),
            (true, Some(t)) => format!("next {}", t.with_timezone(&job.timezone).to_rfc3339()),
            (true, None) => "never fires".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {:<24} {:<20} {next}",
            job.name,
            job.kind,
            job.trigger.to_string(),
            job.timezone.name()
        );
    }
    out
}

/// `tickler list`.
pub fn list_report(config: &Config, from: DateTime<Utc>, n: usize, format: Format) -> String {
    let fires: Vec<(&str, &str, Vec<DateTime<Utc>>)> = config
        .jobs
        .iter()
        .map(|j| {
            let f = if j.enabled {
                j.trigger.upcoming(from, j.timezone, n)
            } else {
                vec![]
            };
            (&*j.name, j.timezone.name(), f)
        })
        .collect();
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = fires
                .iter()
                .map(|(job, tz, f)| {
                    serde_json::json!({
                        "job": job,
                        "timezone": tz,
                        "fires": f.iter().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(out, "{:<24} {:<26} {:<20}", "JOB", "LOCAL", "UTC");
            for (job, tz, f) in &fires {
                let tz: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
                for t in f {
                    let _ = writeln!(
                        out,
                        "{job:<24} {:<26} {}",
                        t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                }
            }
            out
        }
    }
}

fn history_table(rows: &[crate::store::RunRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<24} {:<11} {:<8} {:>3} {:>9} {:>8}  ERROR",
        "SCHEDULED_FOR (UTC)", "JOB", "STATUS", "TRIGGER", "TRY", "SECONDS", "RECORDS"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:<11} {:<8} {:>3} {:>9} {:>8}  {}",
            r.scheduled_for.format("%Y-%m-%d %H:%M:%S"),
            r.job_name,
            r.status,
            r.trigger,
            r.attempt,
            r.duration_seconds
                .map(|d| format!("{d:.3}"))
                .unwrap_or_default(),
            r.records_processed
                .map(|n| n.to_string())
                .unwrap_or_default(),
            r.error_message.as_deref().unwrap_or("")
        );
    }
    out
}

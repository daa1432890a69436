//! The command line: `run`, `check`, `list`, `run-job`, `history`, `migrate`, `print-config`,
//! `import`, `invoice`, `tasks`, `campaign`, `demo`.
//! Each command is a function returning the text it prints, so tests pin the output exactly.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;

use crate::billing::import::{self, Table};
use crate::config::{self, Config};
use crate::daemon::{self, Options, Signal};
use crate::queue::commands;
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
    Run {
        /// First fill an empty database with the demo data (as `tickler demo`) and run every
        /// enabled job once, so each one shows its work at once.
        #[arg(long)]
        demo: bool,
    },
    /// Validate the config and print each job with its next fire.
    Check {
        /// Print nothing when the config is valid (errors still go to stderr, and the exit
        /// status is 1): for the unit's `ExecStartPre=` and `ExecReload=`, which would
        /// otherwise put every job in the journal at each start and reload.
        #[arg(long, short)]
        quiet: bool,
    },
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
        /// Show what the job would send and change, sending and changing nothing (nothing is
        /// recorded in the ledger either).
        #[arg(long)]
        dry_run: bool,
    },
    /// Import customers, subscriptions or invoices from a CSV file with a header row: every
    /// row is checked first, and a file with a bad row imports nothing.
    Import {
        #[arg(value_enum)]
        table: Table,
        file: PathBuf,
        /// The prefix of invoice numbers assigned to rows without one.
        #[arg(long, default_value = "INV-")]
        number_prefix: String,
    },
    /// Work on invoices.
    Invoice {
        #[command(subcommand)]
        command: InvoiceCommand,
    },
    /// The queue of one-off delayed tasks: enqueue, list, cancel, retry.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Collection campaigns: invoices emailed on a schedule of stages until paid.
    Campaign {
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Fill an empty database with a realistic sample: tenants, leases, invoices at every stage.
    Demo,
    /// Show recorded runs, newest first; `--run ID` shows one run whole (an alert's link).
    History {
        #[arg(long)]
        job: Option<String>,
        /// One run, by its id, with its error, attempts and metadata.
        #[arg(long, value_parser = parse_run_id, conflicts_with_all = ["job", "status"])]
        run: Option<uuid::Uuid>,
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
    /// Print the completion script of a shell: `tickler completions bash > /etc/bash_completion.d/tickler`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write the manual pages (tickler.1 and one per command) into a directory.
    Man {
        /// The directory to write them into; it is created if missing.
        dir: PathBuf,
    },
}

/// The shells `tickler completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// Record that an open invoice is paid: reminders and escalations stop for it.
    MarkPaid {
        /// The invoice number, e.g. `INV-000123`.
        number: String,
        /// When it was paid (RFC 3339); default now.
        #[arg(long, value_parser = parse_rfc3339)]
        paid_at: Option<DateTime<Utc>>,
        /// The payment's reference (e.g. the bank or Paystack reference).
        #[arg(long)]
        reference: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Queue a task to run at a time (`--at`) or after a delay (`--in`).
    Enqueue(commands::EnqueueArgs),
    /// List tasks: pending ones by time, others most recent first.
    List {
        /// pending, executing, completed, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only the tasks of this campaign (name or id).
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cancel a pending task.
    Cancel { id: String },
    /// Run a failed or cancelled task again, now, with its retries reset.
    Retry { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign: each invoice's first email goes out 30 minutes later.
    Create(commands::CreateArgs),
    /// Pause a campaign: its pending tasks are cancelled.
    Pause { campaign: String },
    /// Resume a paused campaign: each invoice's next email is scheduled again.
    Resume { campaign: String },
    /// List campaigns with their active invoices and pending tasks.
    List,
    /// Show a campaign, its invoices and its pending tasks.
    Show { campaign: String },
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; write an RFC 3339 time such as `2025-03-09T00:00:00Z`"))
}

fn parse_run_id(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s.trim()).map_err(|_| {
        "not a run id; a run id is a UUID such as `0193b0a4-6f2e-7c3d-9a51-2b8e4f1c0d7e`, shown \
         by `tickler history --format json` and in alerts"
            .to_string()
    })
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
        Command::Completions { shell } => finish(&completions(shell), ExitCode::SUCCESS),
        Command::Man { dir } => {
            write_man_pages(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PrintConfig => finish(config::EXAMPLE, ExitCode::SUCCESS),
        Command::Check { quiet } => {
            let config = config::load(&cli.config)?;
            if quiet {
                return Ok(ExitCode::SUCCESS);
            }
            finish(&check_report(&config, Utc::now()), ExitCode::SUCCESS)
        }
        Command::List { next, from, format } => {
            let config = config::load(&cli.config)?;
            let from = from.unwrap_or_else(Utc::now);
            finish(
                &list_report(&config, from, next as usize, format),
                ExitCode::SUCCESS,
            )
        }
        Command::Migrate => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            store.close().await;
            finish(
                &format!("migrated {}\n", config.daemon.database_url),
                ExitCode::SUCCESS,
            )
        }
        Command::History {
            job,
            run,
            status,
            limit,
            format,
        } => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            let filter = HistoryFilter {
                job,
                status,
                limit,
                run,
            };
            let mut rows = store.history(&filter).await?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let mut messages = store.run_messages(&ids).await?;
            for r in &mut rows {
                r.messages = messages.remove(&r.id);
            }
            store.close().await;
            if let Some(id) = run
                && rows.is_empty()
            {
                anyhow::bail!(
                    "no run `{id}` in the ledger of `{}`; it may have been pruned \
                     (`history_retention`), or belong to another database",
                    config.daemon.database_url
                );
            }
            let text = match (format, run) {
                (Format::Json, _) => serde_json::to_string_pretty(&rows)? + "\n",
                (Format::Table, Some(_)) => run_detail(&rows[0]),
                (Format::Table, None) => history_table(&rows),
            };
            finish(&text, ExitCode::SUCCESS)
        }
        Command::RunJob {
            name,
            all: _,
            dry_run,
        } => {
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
            let code = |ok: bool| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            };
            let mut text = String::new();
            let mut ok = true;
            if dry_run {
                for (name, result) in daemon::dry_run(&config, &names).await? {
                    match result {
                        Ok(outcome) => text.push_str(&dry_run_report(&name, &outcome)),
                        Err(e) => {
                            ok = false;
                            let _ = writeln!(text, "{name}: would fail: {e}");
                        }
                    }
                }
                return finish(&text, code(ok));
            }
            for (name, summary) in daemon::run_now(&config, &names).await? {
                match summary {
                    Some(s) => {
                        ok &= matches!(s.status, Status::Succeeded | Status::Partial);
                        let _ = writeln!(
                            text,
                            "{name}: {} (run {}, {} records{})",
                            s.status.as_str(),
                            s.id,
                            s.records.unwrap_or(0),
                            s.error.map(|e| format!("; {e}")).unwrap_or_default()
                        );
                    }
                    None => {
                        ok = false;
                        let _ = writeln!(text, "{name}: did not run");
                    }
                }
            }
            finish(&text, code(ok))
        }
        Command::Import {
            table,
            file,
            number_prefix,
        } => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            let result = import::import(&store, table, &file, &number_prefix).await;
            store.close().await;
            let n = result?;
            let text = format!("imported {n} {} from {}\n", table.name(), file.display());
            finish(&text, ExitCode::SUCCESS)
        }
        Command::Invoice {
            command:
                InvoiceCommand::MarkPaid {
                    number,
                    paid_at,
                    reference,
                },
        } => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            let result =
                mark_paid(&store, &number, paid_at.unwrap_or_else(Utc::now), reference).await;
            store.close().await;
            finish(&(result? + "\n"), ExitCode::SUCCESS)
        }
        Command::Tasks { command } => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            let result = tasks_command(&store, &config, command).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Campaign { command } => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            let result = campaign_command(&store, &config, command).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Demo => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            let today = Utc::now()
                .with_timezone(&config.daemon.timezone)
                .date_naive();
            let result = crate::billing::demo::fill(&store, today).await;
            store.close().await;
            let (c, s, i) = result.map_err(anyhow::Error::msg)?;
            let text = format!(
                "demo data in {}: {c} customers, {s} subscriptions, {i} invoices\n",
                config.daemon.database_url
            );
            finish(&text, ExitCode::SUCCESS)
        }
        Command::Run { demo } => {
            let config = config::load(&cli.config)?;
            if demo {
                run_demo(&config).await?;
            }
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(forward_signals(tx));
            let options = Options {
                service: daemon::systemd::ServiceManager::from_env(),
                ..Options::default()
            };
            daemon::run(config, rx, options).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes a command's output to stdout, then ends with `code`.
///
/// A reader that stops reading (`tickler history | head`) closes the pipe; the command then
/// ends quietly with its own status, as Unix tools do, instead of `print!`'s panic. The error
/// is handled here rather than by restoring `SIGPIPE`'s default action, because `tickler run`
/// must never die of a signal when an HTTP client or an SMTP server closes a socket: Rust
/// ignores `SIGPIPE` in every command, and only this one place needs to know about it.
fn finish(text: &str, code: ExitCode) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(code),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(anyhow::anyhow!(
            "cannot write the output to stdout: {e}; check where it is redirected"
        )),
    }
}

/// Opens the config's database, its schema brought up to date, and resolves the claims of
/// tickler processes of this host that died (a killed `run-job`), so what it shows is true.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.daemon.database_url).await?;
    store.migrate().await?;
    daemon::orphans::resolve_local(&store, config).await?;
    Ok(store)
}

/// `tickler tasks …`, returning what it prints.
pub async fn tasks_command(
    store: &Store,
    config: &Config,
    command: TasksCommand,
) -> Result<String, commands::CommandError> {
    let now = Utc::now();
    match command {
        TasksCommand::Enqueue(args) => commands::enqueue(store, config, args, now)
            .await
            .map(|s| s + "\n"),
        TasksCommand::List {
            status,
            campaign,
            limit,
            format,
        } => commands::list(store, status, campaign, limit, format == Format::Json).await,
        TasksCommand::Cancel { id } => commands::cancel(store, &id, now).await.map(|s| s + "\n"),
        TasksCommand::Retry { id } => commands::retry(store, &id, now).await.map(|s| s + "\n"),
    }
}

/// `tickler campaign …`, returning what it prints.
pub async fn campaign_command(
    store: &Store,
    config: &Config,
    command: CampaignCommand,
) -> Result<String, commands::CommandError> {
    let now = Utc::now();
    match command {
        CampaignCommand::Create(args) => commands::create(store, config, args, now).await,
        CampaignCommand::Pause { campaign } => {
            commands::pause_or_resume(store, config, &campaign, true, now)
                .await
                .map(|s| s + "\n")
        }
        CampaignCommand::Resume { campaign } => {
            commands::pause_or_resume(store, config, &campaign, false, now)
                .await
                .map(|s| s + "\n")
        }
        CampaignCommand::List => commands::list_campaigns(store).await,
        CampaignCommand::Show { campaign } => commands::show(store, &campaign).await,
    }
}

/// `tickler invoice mark-paid`.
async fn mark_paid(
    store: &Store,
    number: &str,
    paid_at: DateTime<Utc>,
    reference: Option<String>,
) -> anyhow::Result<String> {
    let Some(invoice) = store.invoice_by_number(number).await? else {
        anyhow::bail!(
            "no invoice numbered `{number}`; `tickler history` and SQL on `invoices` list them"
        );
    };
    match invoice.status.as_str() {
        "open" => {}
        "paid" => anyhow::bail!(
            "invoice `{number}` is already paid (on {}); nothing changed",
            invoice
                .paid_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "an unknown date".into())
        ),
        other => {
            anyhow::bail!("invoice `{number}` is {other}; only an open invoice can be marked paid")
        }
    }
    if !store
        .mark_paid(number, paid_at, reference.as_deref())
        .await?
    {
        anyhow::bail!("invoice `{number}` changed meanwhile; look at it again");
    }
    Ok(format!(
        "invoice {number} ({}, {}) marked paid at {}",
        invoice.customer_name,
        crate::notify::money(invoice.amount_minor, &invoice.currency),
        paid_at.to_rfc3339()
    ))
}

/// `tickler run --demo`: demo data in an empty database, then every enabled job once.
async fn run_demo(config: &Config) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let today = Utc::now()
        .with_timezone(&config.daemon.timezone)
        .date_naive();
    match crate::billing::demo::fill(&store, today).await {
        Ok((c, s, i)) => tracing::info!(
            customers = c,
            subscriptions = s,
            invoices = i,
            "demo data loaded"
        ),
        Err(e) => tracing::info!("no demo data loaded: {e}"),
    }
    store.close().await;
    let names: Vec<Arc<str>> = config
        .jobs
        .iter()
        .filter(|j| j.enabled)
        .map(|j| j.name.clone())
        .collect();
    for (name, summary) in daemon::run_now(config, &names).await? {
        match summary {
            Some(s) => {
                tracing::info!(job = %name, status = s.status.as_str(), records = s.records.unwrap_or(0), "demo run")
            }
            None => tracing::warn!(job = %name, "demo run did not start"),
        }
    }
    Ok(())
}

/// What `run-job --dry-run` prints for one job.
pub fn dry_run_report(name: &str, outcome: &crate::jobs::Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{name}: dry run, {} record(s); nothing was sent or changed",
        outcome.records
    );
    let mut summary = outcome.metadata.clone();
    let plan = summary.remove("plan");
    if !summary.is_empty() {
        let _ = writeln!(out, "  {}", serde_json::Value::Object(summary));
    }
    if let Some(serde_json::Value::Array(items)) = plan {
        for item in items {
            let _ = writeln!(
                out,
                "  would send {} to {}: {}",
                item["channel"].as_str().unwrap_or("?"),
                item["to"].as_str().unwrap_or("?"),
                item["subject"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .or(item["text"].as_str())
                    .unwrap_or("")
            );
        }
    }
    for e in &outcome.errors {
        let _ = writeln!(out, "  would fail: {e}");
    }
    out
}

/// The completion script of `shell` for every command and option.
pub fn completions(shell: CompletionShell) -> String {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = vec![];
    clap_complete::generate(shell, &mut Cli::command(), "tickler", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `tickler man DIR`: tickler.1 and a page per command (tickler-tasks-enqueue.1, ...).
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    Ok(())
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
            "  {:<24} {:<18} {:<24} {:<20} {next}",
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

/// One run, field by field, with its metadata (failed attempts, item errors, output tails).
fn run_detail(r: &crate::store::RunRow) -> String {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut out = String::new();
    let fields = [
        ("run", r.id.clone()),
        ("job", r.job_name.clone()),
        ("status", r.status.clone()),
        ("trigger", r.trigger.clone()),
        ("scheduled_for", r.scheduled_for.to_rfc3339()),
        ("started_at", time(r.started_at)),
        ("completed_at", time(r.completed_at)),
        (
            "duration_s",
            r.duration_seconds
                .map(|d| format!("{d:.3}"))
                .unwrap_or_default(),
        ),
        (
            "records",
            r.records_processed
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
        ("attempts", r.attempt.to_string()),
        ("daemon", r.instance.clone().unwrap_or_default()),
        ("messages", message_counts(r)),
        ("error", r.error_message.clone().unwrap_or_default()),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "{name:<14} {value}");
    }
    if let Some(m) = &r.metadata {
        let pretty = serde_json::to_string_pretty(m).unwrap_or_default();
        let _ = writeln!(out, "metadata\n{pretty}");
    }
    out
}

/// The error of a run, and the messages it may have sent without knowing (`unknown`).
fn history_note(r: &crate::store::RunRow) -> String {
    let unknown = r
        .messages
        .as_ref()
        .and_then(|m| m.get("unknown"))
        .copied()
        .unwrap_or(0);
    let error = r.error_message.as_deref().unwrap_or("");
    match (unknown, error) {
        (0, e) => e.to_string(),
        (n, "") => format!("{n} message(s) unknown: they may have been sent"),
        (n, e) => format!("{e}; {n} message(s) unknown: they may have been sent"),
    }
}

/// A run's messages by status, e.g. `530 sent, 4 unknown`.
fn message_counts(r: &crate::store::RunRow) -> String {
    r.messages
        .iter()
        .flatten()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
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
            history_note(r)
        );
    }
    out
}

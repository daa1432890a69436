//! The command line: `run`, `check`, `list`, `run-job`, `history`, `migrate`, `print-config`,
//! `import`, `invoice`, `tasks`, `campaign`, `contacts`, `console`, `status`, `demo`.
//! Each command is a function returning the text it prints, so tests pin the output exactly;
//! one file per command group, and this one parses the arguments and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::billing::import::Table;
use crate::config::{self, Config};
use crate::store::{Status, Store};

pub mod billing;
pub mod campaign;
pub mod check;
pub mod console;
pub mod contacts;
pub mod docs;
pub mod history;
pub mod operate;
pub mod payments;
pub mod run;
pub mod status;
pub mod tasks;

use billing::InvoiceCommand;
use campaign::CampaignCommand;
use contacts::ContactsCommand;
use docs::CompletionShell;
use payments::PaymentsCommand;
use tasks::TasksCommand;

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
        /// Customers only: a row whose email names a stored customer changes that customer
        /// (the file's columns; the others are kept) instead of being refused.
        #[arg(long)]
        update: bool,
    },
    /// Work on invoices.
    Invoice {
        #[command(subcommand)]
        command: InvoiceCommand,
    },
    /// The queue of one-off delayed tasks: enqueue, list, cancel, retry, run now.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Collection campaigns: invoices emailed on a schedule of stages until paid.
    Campaign {
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Opt-outs: addresses that get nothing on a channel (block, unblock, list, import).
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Payments received (provider webhooks, `POST /invoices/NUMBER/payments`) and what became
    /// of each.
    Payments {
        #[command(subcommand)]
        command: PaymentsCommand,
    },
    /// Pause a job: its slots are recorded `paused`, not run, by every daemon sharing the
    /// database, until `tickler resume`; a reload or restart does not unpause it.
    Pause {
        job: String,
        /// Why, shown by `list`, `check`, `status`, the console and each `paused` row.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused job: its next slot runs (the slots it missed stay `paused`; `tickler
    /// backfill --only-missed` runs them).
    Resume { job: String },
    /// Run the past slots of a job from `--from` to `--to` (both included), oldest first, each
    /// with its own `scheduled_for` and `trigger = 'backfill'`, under the job's overlap policy.
    Backfill {
        job: String,
        /// The first instant of the range (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        from: DateTime<Utc>,
        /// The last instant of the range (RFC 3339), not in the future.
        #[arg(long, value_parser = parse_rfc3339)]
        to: DateTime<Utc>,
        /// Run only the slots with no successful run (`succeeded` or `partial`).
        #[arg(long)]
        only_missed: bool,
        /// List the slots and what the ledger says of each; run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The operator actions of the CLI and the console (who, from where, what, when), newest
    /// first.
    Audit {
        /// Only the actions on this job, task, invoice or address.
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The users of the operator console (`[http.console]`): add or remove one.
    Console {
        #[command(subcommand)]
        command: console::ConsoleCommand,
    },
    /// Each job with its next fire, last run, failure streak and dead-man state (like
    /// `systemctl list-timers`), then the queue, today's messages and the database.
    Status {
        /// Only the jobs whose name contains this.
        #[arg(long)]
        name: Option<String>,
        /// Only `enabled`, `disabled` or `paused` jobs.
        #[arg(long, value_parser = ["enabled", "disabled", "paused"])]
        state: Option<String>,
        /// The page of jobs to show (1 is the first).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        page: u32,
        /// Jobs per page (1-500).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
        per_page: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
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

/// Why a command-line value is refused; clap shows the text after the value and option.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("{0}; write an RFC 3339 time such as `2025-03-09T00:00:00Z`")]
    Time(chrono::ParseError),
    #[error(
        "not a run id; a run id is a UUID such as `0193b0a4-6f2e-7c3d-9a51-2b8e4f1c0d7e`, shown \
         by `tickler history --format json` and in alerts"
    )]
    RunId,
    #[error("unknown status; expected one of {}", status_names().join(", "))]
    Status,
}

fn status_names() -> Vec<&'static str> {
    Status::ALL.iter().map(|s| s.as_str()).collect()
}

pub(crate) fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, ArgError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(ArgError::Time)
}

fn parse_run_id(s: &str) -> Result<uuid::Uuid, ArgError> {
    uuid::Uuid::parse_str(s.trim()).map_err(|_| ArgError::RunId)
}

fn parse_status(s: &str) -> Result<Status, ArgError> {
    Status::parse(s).ok_or(ArgError::Status)
}

/// Runs a command; the returned code is the process's exit status.
pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = || config::load(&cli.config);
    match cli.command {
        Command::Completions { shell } => finish(&docs::completions(shell), ExitCode::SUCCESS),
        Command::Man { dir } => {
            docs::write_man_pages(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PrintConfig => finish(config::EXAMPLE, ExitCode::SUCCESS),
        Command::Check { quiet } => {
            let config = load()?;
            let sql = check::check_sql(&config).await;
            for w in &sql.warnings {
                eprintln!("warning: {w}");
            }
            if !sql.refused.is_empty() {
                let mut text = format!("{}:", config.path.display());
                for r in &sql.refused {
                    text.push_str(&format!("\n  {r}"));
                }
                anyhow::bail!(text);
            }
            if quiet {
                return Ok(ExitCode::SUCCESS);
            }
            let recorded = check::Recorded::read(&config).await;
            finish(
                &check::check_report(&config, Utc::now(), &recorded.paused),
                ExitCode::SUCCESS,
            )
        }
        Command::List { next, from, format } => {
            let config = load()?;
            let from = from.unwrap_or_else(Utc::now);
            let recorded = check::Recorded::read(&config).await;
            finish(
                &check::list_report(&config, from, next as usize, format, &recorded),
                ExitCode::SUCCESS,
            )
        }
        Command::Migrate => {
            let config = load()?;
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
        } => history::history(&load()?, job, run, status, limit, format).await,
        Command::RunJob {
            name,
            all: _,
            dry_run,
        } => run::run_job(&load()?, name, dry_run).await,
        Command::Import {
            table,
            file,
            number_prefix,
            update,
        } => billing::import(&load()?, table, &file, &number_prefix, update).await,
        Command::Invoice { command } => billing::invoice(&load()?, command).await,
        Command::Tasks { command } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = tasks::tasks_command(&store, &config, command).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Campaign { command } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = campaign::campaign_command(&store, &config, command).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Payments { command } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = payments::payments_command(&store, command).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Contacts { command } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = contacts::contacts_command(&store, command).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Pause { job, reason } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = operate::pause(&store, &config, &job, &reason).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Resume { job } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = operate::resume(&store, &config, &job).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Backfill {
            job,
            from,
            to,
            only_missed,
            dry_run,
        } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let request = operate::BackfillRequest {
                job: &job,
                from,
                to,
                only_missed,
                dry_run,
            };
            let result = operate::backfill(&store, &config, &request).await;
            store.close().await;
            let (text, all_ok) = result?;
            finish(
                &text,
                if all_ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Command::Audit {
            target,
            limit,
            format,
        } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let result = operate::audit(&store, target, limit, format).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Console { command } => {
            let config = load()?;
            let mut stdin = std::io::stdin().lock();
            let out = console::console_command(&config, command, &mut stdin)?;
            finish(&out, ExitCode::SUCCESS)
        }
        Command::Status {
            name,
            state,
            page,
            per_page,
            format,
        } => {
            let config = load()?;
            let store = open_store(&config).await?;
            let query = crate::daemon::overview::OverviewQuery {
                name,
                state,
                page: page as usize,
                per_page: per_page as usize,
            };
            let result = status::status(&store, &config, &query, Utc::now(), format).await;
            store.close().await;
            finish(&result?, ExitCode::SUCCESS)
        }
        Command::Demo => billing::demo(&load()?).await,
        Command::Run { demo } => run::run(load()?, demo).await,
    }
}

/// Writes a command's output to stdout, then ends with `code`.
///
/// A reader that stops reading (`tickler history | head`) closes the pipe; the command then
/// ends quietly with its own status, as Unix tools do, instead of `print!`'s panic. The error
/// is handled here rather than by restoring `SIGPIPE`'s default action, because `tickler run`
/// must never die of a signal when an HTTP client or an SMTP server closes a socket: Rust
/// ignores `SIGPIPE` in every command, and only this one place needs to know about it.
pub(crate) fn finish(text: &str, code: ExitCode) -> anyhow::Result<ExitCode> {
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
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.daemon.database_url).await?;
    store.migrate().await?;
    crate::daemon::orphans::resolve_local(&store, config).await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_say_what_to_write() {
        assert_eq!(
            parse_rfc3339("yesterday").unwrap_err().to_string(),
            "premature end of input; write an RFC 3339 time such as \
             `2025-03-09T00:00:00Z`"
        );
        assert_eq!(
            parse_rfc3339("2025-03-09T00:00:00+02:00").ok(),
            "2025-03-08T22:00:00Z".parse().ok()
        );
        assert_eq!(
            parse_run_id("run-1").unwrap_err().to_string(),
            "not a run id; a run id is a UUID such as `0193b0a4-6f2e-7c3d-9a51-2b8e4f1c0d7e`, \
             shown by `tickler history --format json` and in alerts"
        );
        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            parse_status("broken").unwrap_err().to_string(),
            format!("unknown status; expected one of {}", all.join(", "))
        );
    }
}

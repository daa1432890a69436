//! `tickler tasks …`: enqueue, list, cancel, retry and run now one-off tasks. Each command checks
//! everything first and writes nothing when any input is wrong, then returns the text it
//! prints, so tests pin it.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use clap::Subcommand;
use serde_json::Value;

use super::Format;
use crate::config::Config;
use crate::queue::runner::{enqueue as insert, wake};
use crate::queue::{TaskRequest, TaskType};
use crate::store::Store;
use crate::store::audit::{Action, Audit};
use crate::store::queue::TaskFilter;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Queue a task to run at a time (`--at`) or after a delay (`--in`).
    Enqueue(EnqueueArgs),
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
    /// Make a pending task due now, so a running daemon runs it at once.
    RunNow { id: String },
}

/// `tickler tasks …`, returning what it prints.
pub async fn tasks_command(
    store: &Store,
    config: &Config,
    command: TasksCommand,
) -> Result<String> {
    let now = Utc::now();
    match command {
        TasksCommand::Enqueue(args) => enqueue(store, config, args, now).await.map(|s| s + "\n"),
        TasksCommand::List {
            status,
            campaign,
            limit,
            format,
        } => list(store, status, campaign, limit, format == Format::Json).await,
        TasksCommand::Cancel { id } => cancel(store, &id, now).await.map(|s| s + "\n"),
        TasksCommand::Retry { id } => retry(store, &id, now).await.map(|s| s + "\n"),
        TasksCommand::RunNow { id } => run_now(store, &id, now).await.map(|s| s + "\n"),
    }
}

/// A refused command, said to the person who typed it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub type Result<T> = std::result::Result<T, CommandError>;

pub fn input<T>(message: impl Into<String>) -> Result<T> {
    Err(CommandError::Input(message.into()))
}

/// `tickler tasks enqueue`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EnqueueArgs {
    /// send_email, follow_up, check_payment, escalate, pause_campaign, resume_campaign,
    /// custom.
    #[arg(long = "type")]
    pub task_type: String,
    /// When: RFC 3339, or `YYYY-MM-DD HH:MM` in `[daemon].timezone`.
    #[arg(long, conflicts_with = "after", required_unless_present = "after")]
    pub at: Option<String>,
    /// After how long, e.g. `5m`, `2d`; `0s` runs it at once.
    #[arg(long = "in")]
    pub after: Option<String>,
    /// The task's data, a JSON object, e.g. '{"tone": "firm"}' or '{"handler": "crm"}'.
    #[arg(long)]
    pub data: Option<String>,
    /// The invoice (its number) the task is about.
    #[arg(long)]
    pub invoice: Option<String>,
    /// The campaign (name or id) the task belongs to.
    #[arg(long)]
    pub campaign: Option<String>,
    /// Higher runs first among due tasks.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,
    /// Retries after a failure (default: `[queue.retry]` of the type).
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// The organisation (a UUID) of a multi-tenant install; a campaign's task takes the
    /// campaign's.
    #[arg(long)]
    pub org: Option<String>,
}

/// Reads `--org`: a UUID, written back in its canonical form as the store keeps it.
pub fn org_id(text: &str) -> Result<String> {
    uuid::Uuid::parse_str(text)
        .map(|u| u.to_string())
        .map_err(|_| CommandError::Input(format!("`--org {text}` is not a UUID")))
}

/// How far ahead a task may be queued (`--in`, `--at`): the longest duration tickler accepts
/// anywhere, so that the runner's arithmetic on a task's time (leases, retries, wake-ups) can
/// never overflow and the stored time is always one the store reads back.
const LATEST: Duration = crate::time::duration::MAX;

/// The error of a `--in`/`--at` beyond `LATEST`.
fn too_far(flag: &str, text: &str) -> CommandError {
    CommandError::Input(format!(
        "`{flag} {text}` is too far ahead: the largest accepted is `{}` ({}s) from now",
        crate::time::duration::LONGEST_TEXT,
        crate::time::duration::LONGEST_SECS
    ))
}

/// Reads `--at`: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in `zone`; at most `LATEST` after `now`.
pub fn parse_at(text: &str, zone: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let latest = TimeDelta::from_std(LATEST)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let t = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let local = [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok());
            let Some(local) = local else {
                return input(format!(
                    "invalid `--at` time `{text}`: write RFC 3339 (`2026-12-01T10:00:00+02:00`) \
                     or a local time in {zone} (`2026-12-01 10:00`)"
                ));
            };
            // Refused before any zone arithmetic, which near chrono's limits would overflow.
            let margin = latest
                .checked_add_signed(TimeDelta::days(1))
                .unwrap_or(latest);
            if local > margin.naive_utc() {
                return Err(too_far("--at", text));
            }
            crate::schedule::first_instant_at_or_after(zone, local)
        }
    };
    if t > latest {
        return Err(too_far("--at", text));
    }
    Ok(t)
}

/// Reads `--in`: a duration of at most `LATEST`, as in `config.toml`.
pub fn parse_in(text: &str) -> Result<Duration> {
    use crate::time::duration::{self, DurationError};
    match duration::parse(text) {
        Ok(d) => Ok(d),
        Err(DurationError::TooLarge { .. }) => Err(too_far("--in", text)),
        Err(e) => input(format!("invalid `--in`: {e}")),
    }
}

/// `tickler tasks enqueue`: checks the type, time, data, invoice and campaign, then inserts.
pub async fn enqueue(
    store: &Store,
    config: &Config,
    args: EnqueueArgs,
    now: DateTime<Utc>,
) -> Result<String> {
    let ty = TaskType::parse(&args.task_type).map_err(|e| CommandError::Input(e.to_string()))?;
    if let Some(n) = args.max_retries
        && n > MAX_RETRIES
    {
        // Stored as a 32-bit signed integer: a larger count would wrap to a negative one.
        return input(format!(
            "`--max-retries {n}` must be 0-{MAX_RETRIES}, as `max_retries` in `[queue.retry]`"
        ));
    }
    let org = args.org.as_deref().map(org_id).transpose()?;
    let zone = config.daemon.timezone;
    let when = match (&args.at, &args.after) {
        (Some(at), None) => {
            let t = parse_at(at, zone, now)?;
            if t < now - TimeDelta::seconds(1) {
                return input(format!(
                    "`--at {at}` is in the past (it is now {}); to run a task at once use \
                     `--in 0s`",
                    now.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z")
                ));
            }
            t
        }
        (None, Some(after)) => {
            let d = parse_in(after)?;
            TimeDelta::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| too_far("--in", after))?
        }
        _ => return input("give exactly one of `--at TIME` and `--in DURATION`"),
    };
    let data: Option<Value> = match &args.data {
        None => None,
        Some(text) => Some(serde_json::from_str(text).map_err(|e| {
            CommandError::Input(format!(
                "invalid JSON in `--data`: {e}; write an object such as '{{\"tone\": \"firm\"}}'"
            ))
        })?),
    };
    ty.check_data(data.as_ref(), &config.queue, &config.notifier)
        .map_err(|e| CommandError::Input(e.0))?;
    let mut request = TaskRequest::new(ty, when);
    request.org_id = org.clone();
    request.data = data;
    request.priority = args.priority;
    request.max_retries = args.max_retries;
    if let Some(name) = &args.campaign {
        let c = store.campaign(name).await?.ok_or_else(|| {
            CommandError::Input(format!(
                "no campaign `{name}`; `tickler campaign list` lists them"
            ))
        })?;
        if let Some(org) = &org
            && *org != c.org_id
        {
            return input(format!(
                "`--org {org}` is not the organisation of campaign `{}` ({}): a campaign's \
                 tasks belong to its organisation; leave out `--org`",
                c.name, c.org_id
            ));
        }
        match (c.status.as_str(), ty) {
            ("completed", _) => {
                return input(format!(
                    "campaign `{}` is completed (its tasks were cancelled); create a new \
                     campaign instead",
                    c.name
                ));
            }
            ("paused", t) if t != TaskType::ResumeCampaign => {
                return input(format!(
                    "campaign `{}` is paused: resume it first (`tickler campaign resume {}`) \
                     or enqueue a `resume_campaign` task",
                    c.name, c.name
                ));
            }
            _ => {}
        }
        request.org_id = Some(c.org_id.clone());
        request.campaign_id = Some(c.id);
    }
    if let Some(number) = &args.invoice {
        let inv = store
            .invoice_by_number(number)
            .await?
            .ok_or_else(|| CommandError::Input(format!("no invoice numbered `{number}`")))?;
        if matches!(
            ty,
            TaskType::SendEmail | TaskType::FollowUp | TaskType::Escalate
        ) && inv.status != "open"
        {
            return input(format!(
                "invoice {number} is {}; there is nothing to remind about",
                inv.status
            ));
        }
        if let Some(campaign) = &request.campaign_id {
            let members = store.campaign_members(campaign).await?;
            if !members.iter().any(|m| m.invoice_id == inv.id) {
                return input(format!(
                    "invoice {number} is not in campaign `{}`",
                    args.campaign.as_deref().unwrap_or_default()
                ));
            }
        }
        request.invoice_id = Some(inv.id);
        request.customer_id = Some(inv.customer_id);
    }
    let needs = match ty {
        TaskType::SendEmail | TaskType::FollowUp if request.invoice_id.is_none() => {
            Some("an invoice (`--invoice NUMBER`)")
        }
        TaskType::Escalate | TaskType::CheckPayment
            if request.invoice_id.is_none() && request.campaign_id.is_none() =>
        {
            Some("an invoice (`--invoice NUMBER`) or a campaign (`--campaign NAME`)")
        }
        TaskType::PauseCampaign | TaskType::ResumeCampaign if request.campaign_id.is_none() => {
            Some("a campaign (`--campaign NAME`)")
        }
        _ => None,
    };
    if let Some(needs) = needs {
        return input(format!("a `{ty}` task needs {needs}"));
    }
    let ids = insert(store, &config.queue, vec![request], now).await?;
    let wait = (when - now).to_std().unwrap_or_default();
    Ok(format!(
        "queued task {} ({ty}) for {} (in {})",
        ids[0],
        when.with_timezone(&zone).to_rfc3339(),
        humantime::format_duration(Duration::from_secs(wait.as_secs()))
    ))
}

/// The most retries a task may have, as `max_retries` of `[queue.retry.*]` in `config.toml`.
const MAX_RETRIES: u32 = 100;

/// `tickler tasks list`.
pub async fn list(
    store: &Store,
    status: Option<String>,
    campaign: Option<String>,
    limit: i64,
    json: bool,
) -> Result<String> {
    if let Some(s) = &status
        && !crate::queue::STATUSES.contains(&s.as_str())
    {
        return input(format!(
            "unknown task status `{s}`: expected one of {}",
            crate::queue::STATUSES.join(", ")
        ));
    }
    let campaign_id = match &campaign {
        None => None,
        Some(name) => Some(
            store
                .campaign(name)
                .await?
                .ok_or_else(|| CommandError::Input(format!("no campaign `{name}`")))?
                .id,
        ),
    };
    let rows = store
        .tasks(&TaskFilter {
            status,
            campaign_id,
            limit,
        })
        .await?;
    if json {
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<15}  {:<9}  {:<20}  {:>5}  ERROR / RESULT",
        "ID", "TYPE", "STATUS", "SCHEDULED FOR (UTC)", "TRIES"
    );
    for t in &rows {
        let note = t
            .error_message
            .clone()
            .or(t.result.clone())
            .unwrap_or_default();
        let note: String = note.chars().take(80).collect();
        let _ = writeln!(
            out,
            "{:<36}  {:<15}  {:<9}  {:<20}  {:>5}  {}",
            t.id,
            t.task_type,
            t.status,
            t.scheduled_for.format("%Y-%m-%d %H:%M:%S"),
            format!("{}/{}", t.retry_count, t.max_retries),
            note
        );
    }
    if rows.is_empty() {
        out.push_str("(no tasks)\n");
    }
    Ok(out)
}

fn task_id(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| {
            CommandError::Input(format!(
                "`{id}` is not a task id: use the UUID `tickler tasks list` shows"
            ))
        })
}

/// `tickler tasks cancel`.
pub async fn cancel(store: &Store, id: &str, now: DateTime<Utc>) -> Result<String> {
    let id = task_id(id)?;
    let actor = super::operate::cli_actor();
    let audit = Audit {
        actor: &actor,
        action: Action::TaskCancel,
        target: &id,
        detail: None,
    };
    match store.cancel_task(&id, now, Some(audit)).await? {
        None => Ok(format!("cancelled task {id}")),
        Some(s) if s == "missing" => input(format!("no task {id}")),
        Some(s) => input(format!(
            "task {id} is {s}; only a pending task can be cancelled"
        )),
    }
}

/// `tickler tasks retry`.
pub async fn retry(store: &Store, id: &str, now: DateTime<Utc>) -> Result<String> {
    let id = task_id(id)?;
    let actor = super::operate::cli_actor();
    let audit = Audit {
        actor: &actor,
        action: Action::TaskRetry,
        target: &id,
        detail: None,
    };
    match store.retry_task(&id, now, Some(audit)).await? {
        None => {
            wake();
            Ok(format!("task {id} is pending again, due now"))
        }
        Some(s) if s == "missing" => input(format!("no task {id}")),
        Some(s) => input(format!(
            "task {id} is {s}; only a failed or cancelled task can be retried"
        )),
    }
}

/// `tickler tasks run-now`: a pending task due now, so a running daemon's runner takes it at
/// once (the store's change notification wakes runners in other processes).
pub async fn run_now(store: &Store, id: &str, now: DateTime<Utc>) -> Result<String> {
    let id = task_id(id)?;
    let actor = super::operate::cli_actor();
    let audit = Audit {
        actor: &actor,
        action: Action::TaskRunNow,
        target: &id,
        detail: None,
    };
    match store.run_task_now(&id, now, Some(audit)).await? {
        None => {
            wake();
            Ok(format!("task {id} is due now"))
        }
        Some(s) if s == "missing" => input(format!("no task {id}")),
        Some(s) if s == "failed" || s == "cancelled" => input(format!(
            "task {id} is {s}; only a pending task can be run now: `tickler tasks retry {id}` \
             queues it again, due now"
        )),
        Some(s) if s == "executing" => input(format!(
            "task {id} is executing: a daemon is running it now"
        )),
        Some(s) => input(format!(
            "task {id} is {s}; only a pending task can be run now: queue a new one with \
             `tickler tasks enqueue`"
        )),
    }
}

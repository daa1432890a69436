//! `tickler tasks …` and `tickler campaign …`: each checks everything first and writes
//! nothing when any input is wrong, then returns the text it prints, so tests pin it.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::campaign::Campaign;
use super::runner::{enqueue as insert, wake};
use super::{TaskData, TaskRequest, TaskType};
use crate::config::Config;
use crate::store::Store;
use crate::store::queue::{NO_ORG, NewCampaign, TaskFilter};

/// A refused command, said to the person who typed it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

type Result<T> = std::result::Result<T, CommandError>;

fn input<T>(message: impl Into<String>) -> Result<T> {
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
}

/// How far ahead a task may be queued (`--in`, `--at`): the longest duration tickler accepts
/// anywhere, so that the runner's arithmetic on a task's time (leases, retries, wake-ups) can
/// never overflow and the stored time is always one the store reads back.
const LATEST: Duration = crate::config::duration::MAX;

/// The error of a `--in`/`--at` beyond `LATEST`.
fn too_far(flag: &str, text: &str) -> CommandError {
    CommandError::Input(format!(
        "`{flag} {text}` is too far ahead: the largest accepted is `{}` ({}s) from now",
        crate::schedule::LONGEST_TEXT,
        crate::schedule::LONGEST_SECS
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
    use crate::config::duration::{self, DurationError};
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
    let ty = TaskType::parse(&args.task_type).map_err(CommandError::Input)?;
    if let Some(n) = args.max_retries
        && n > MAX_RETRIES
    {
        // Stored as a 32-bit signed integer: a larger count would wrap to a negative one.
        return input(format!(
            "`--max-retries {n}` must be 0-{MAX_RETRIES}, as `max_retries` in `[queue.retry]`"
        ));
    }
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
    TaskData::parse(ty, data.as_ref(), &config.queue, &config.notifier)
        .map_err(|e| CommandError::Input(e.0))?;
    let mut request = TaskRequest::new(ty, when);
    request.data = data;
    request.priority = args.priority;
    request.max_retries = args.max_retries;
    if let Some(name) = &args.campaign {
        let c = store.campaign(name).await?.ok_or_else(|| {
            CommandError::Input(format!(
                "no campaign `{name}`; `tickler campaign list` lists them"
            ))
        })?;
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

/// The most days `campaign create --overdue-days` reaches back, as `min_days_overdue` of
/// `overdue_escalation` (ten years); a larger count would take the date out of range.
const MAX_OVERDUE_DAYS: u32 = 3650;

pub(crate) const STATUSES: &[&str] = &["pending", "executing", "completed", "failed", "cancelled"];

/// `tickler tasks list`.
pub async fn list(
    store: &Store,
    status: Option<String>,
    campaign: Option<String>,
    limit: i64,
    json: bool,
) -> Result<String> {
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return input(format!(
            "unknown task status `{s}`: expected one of {}",
            STATUSES.join(", ")
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
    match store.cancel_task(&id, now).await? {
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
    match store.retry_task(&id, now).await? {
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

/// `tickler campaign create`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: String,
    /// Invoice numbers, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "overdue_days")]
    pub invoices: Vec<String>,
    /// Instead: every open invoice overdue by at least this many days.
    #[arg(long)]
    pub overdue_days: Option<u32>,
    /// Days between emails (default `[queue.campaigns]`).
    #[arg(long)]
    pub days_between: Option<u32>,
    /// Emails per invoice at most.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// The tone of each email in order, comma-separated (template names).
    #[arg(long, value_delimiter = ',')]
    pub stages: Option<Vec<String>>,
    /// The tone past the last stage; `none` for no escalation.
    #[arg(long)]
    pub escalation_tone: Option<String>,
    /// The hour (0-23) follow-ups go out, in each customer's zone.
    #[arg(long)]
    pub send_hour: Option<u32>,
    /// The organisation (a UUID) of a multi-tenant install.
    #[arg(long)]
    pub org: Option<String>,
}

pub async fn create(
    store: &Store,
    config: &Config,
    args: CreateArgs,
    now: DateTime<Utc>,
) -> Result<String> {
    let d = &config.queue.campaigns;
    let name = args.name.trim();
    if name.is_empty() {
        return input("a campaign needs a `--name`");
    }
    if store.campaign(name).await?.is_some() {
        return input(format!(
            "a campaign named `{name}` exists; choose another name"
        ));
    }
    let org = match &args.org {
        None => NO_ORG.to_string(),
        Some(o) => uuid::Uuid::parse_str(o)
            .map(|u| u.to_string())
            .map_err(|_| CommandError::Input(format!("`--org {o}` is not a UUID")))?,
    };
    let stages = args.stages.clone().unwrap_or_else(|| d.stages.clone());
    if stages.is_empty() {
        return input("`--stages` needs at least one tone, e.g. `friendly,professional,firm`");
    }
    let escalation = match args.escalation_tone.as_deref() {
        Some("none") | Some("") => None,
        Some(t) => Some(t.to_string()),
        None => d.escalation_tone.clone(),
    };
    for tone in stages.iter().chain(escalation.iter()) {
        config
            .notifier
            .templates
            .require(tone, "tone")
            .map_err(CommandError::Input)?;
    }
    let send_hour = args.send_hour.unwrap_or(d.send_hour);
    if send_hour > 23 {
        return input(format!("`--send-hour {send_hour}` must be 0-23"));
    }
    let days_between = args.days_between.unwrap_or(d.days_between_emails);
    if !(1..=365).contains(&days_between) {
        return input(format!("`--days-between {days_between}` must be 1-365"));
    }
    let max_attempts = args.max_attempts.unwrap_or(d.max_attempts);
    if !(1..=100).contains(&max_attempts) {
        return input(format!("`--max-attempts {max_attempts}` must be 1-100"));
    }
    if let Some(days) = args.overdue_days
        && days > MAX_OVERDUE_DAYS
    {
        return input(format!(
            "`--overdue-days {days}` must be 0-{MAX_OVERDUE_DAYS} (ten years)"
        ));
    }
    let today = now.with_timezone(&config.daemon.timezone).date_naive();
    let candidates = match (&args.overdue_days, args.invoices.is_empty()) {
        (Some(days), true) => {
            store
                .campaign_candidates(None, today - TimeDelta::days(*days as i64))
                .await?
        }
        (None, false) => {
            let found = store
                .campaign_candidates(Some(&args.invoices), today)
                .await?;
            let missing: Vec<&String> = args
                .invoices
                .iter()
                .filter(|n| !found.iter().any(|f| &&f.number == n))
                .collect();
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|n| format!("`{n}`")).collect();
                return input(format!("no invoice numbered {}", list.join(", ")));
            }
            for f in &found {
                if f.status != "open" {
                    return input(format!(
                        "invoice {} is {}; a campaign takes open invoices",
                        f.number, f.status
                    ));
                }
            }
            found
        }
        _ => {
            return input(
                "name the invoices (`--invoices INV-1,INV-2`) or take every open invoice overdue \
                 by some days (`--overdue-days 1`)",
            );
        }
    };
    let taken: Vec<String> = candidates
        .iter()
        .filter_map(|c| {
            c.in_campaign
                .as_ref()
                .map(|n| format!("{} (in `{n}`)", c.number))
        })
        .collect();
    if !taken.is_empty() && args.overdue_days.is_none() {
        return input(format!(
            "invoices already in an active campaign: {}; pause or finish that campaign first",
            taken.join(", ")
        ));
    }
    let members: Vec<_> = candidates
        .into_iter()
        .filter(|c| c.in_campaign.is_none())
        .collect();
    if members.is_empty() {
        return input(
            "no invoice to put in the campaign: none is open and overdue enough, or all are in campaigns",
        );
    }
    let id = uuid::Uuid::now_v7().to_string();
    let first_at = now + TimeDelta::from_std(d.first_email_after).unwrap_or_default();
    let tasks = members
        .iter()
        .map(|m| {
            let mut r = TaskRequest::new(TaskType::SendEmail, first_at);
            r.data = Some(serde_json::json!({ "tone": stages[0] }));
            r.org_id = Some(org.clone());
            r.campaign_id = Some(id.clone());
            r.invoice_id = Some(m.id.clone());
            r.customer_id = Some(m.customer_id.clone());
            r.into_row(&config.queue)
        })
        .collect();
    let campaign = NewCampaign {
        id: id.clone(),
        org_id: org,
        name: name.to_string(),
        days_between_emails: days_between as i32,
        max_attempts: max_attempts as i32,
        stages: stages.clone(),
        escalation_tone: escalation,
        send_hour: send_hour as i32,
        invoice_ids: members.iter().map(|m| m.id.clone()).collect(),
        tasks,
    };
    store.create_campaign(&campaign, now).await?;
    wake();
    let mut out = format!(
        "created campaign `{name}` ({id}) with {} invoice{}; first emails ({}) at {}\n",
        members.len(),
        if members.len() == 1 { "" } else { "s" },
        stages[0],
        first_at.with_timezone(&config.daemon.timezone).to_rfc3339()
    );
    if !taken.is_empty() {
        let _ = writeln!(out, "left out, already in a campaign: {}", taken.join(", "));
    }
    Ok(out)
}

/// `tickler campaign pause` and `resume`.
pub async fn pause_or_resume(
    store: &Store,
    config: &Config,
    name: &str,
    pause: bool,
    now: DateTime<Utc>,
) -> Result<String> {
    let row = store.campaign(name).await?.ok_or_else(|| {
        CommandError::Input(format!(
            "no campaign `{name}`; `tickler campaign list` lists them"
        ))
    })?;
    let (verb, from) = if pause {
        ("pause", "active")
    } else {
        ("resume", "paused")
    };
    if row.status != from {
        let hint = match row.status.as_str() {
            "completed" => "a completed campaign stays completed; create a new one",
            "paused" => "it is already paused",
            _ => "it is already active",
        };
        return input(format!(
            "cannot {verb} campaign `{}`: it is {} ({hint})",
            row.name, row.status
        ));
    }
    let campaign = Campaign::from_row(row);
    let tasks = if pause {
        vec![]
    } else {
        let members = store.campaign_members(&campaign.row.id).await?;
        campaign.resume_tasks(&members, now, config.daemon.timezone, &config.queue)
    };
    if !store
        .set_campaign_status(&campaign.row.id, pause, &tasks, now)
        .await?
    {
        return input(format!(
            "campaign `{}` changed meanwhile; look at it again",
            campaign.row.name
        ));
    }
    if pause {
        Ok(format!(
            "paused campaign `{}`; its pending tasks are cancelled",
            campaign.row.name
        ))
    } else {
        wake();
        Ok(format!(
            "resumed campaign `{}`; scheduled {} email{}",
            campaign.row.name,
            tasks.len(),
            if tasks.len() == 1 { "" } else { "s" }
        ))
    }
}

/// `tickler campaign list`.
pub async fn list_campaigns(store: &Store) -> Result<String> {
    let rows = store.campaigns().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24}  {:<9}  {:>7}  {:>7}  {:<10}  ID",
        "NAME", "STATUS", "ACTIVE", "PENDING", "CREATED"
    );
    for r in &rows {
        let c = &r.campaign;
        let _ = writeln!(
            out,
            "{:<24}  {:<9}  {:>7}  {:>7}  {:<10}  {}",
            c.name,
            c.status,
            r.active,
            r.pending,
            c.created_at.format("%Y-%m-%d"),
            c.id
        );
    }
    if rows.is_empty() {
        out.push_str("(no campaigns; `tickler campaign create` makes one)\n");
    }
    Ok(out)
}

/// `tickler campaign show`.
pub async fn show(store: &Store, name: &str) -> Result<String> {
    let row = store.campaign(name).await?.ok_or_else(|| {
        CommandError::Input(format!(
            "no campaign `{name}`; `tickler campaign list` lists them"
        ))
    })?;
    let c = Campaign::from_row(row);
    let members = store.campaign_members(&c.row.id).await?;
    let mut out = String::new();
    let _ = writeln!(out, "campaign `{}` ({})", c.row.name, c.row.id);
    let _ = writeln!(out, "  status:     {}", c.row.status);
    let _ = writeln!(
        out,
        "  emails:     {} ({} max), every {} days at {:02}:00 in each customer's zone",
        c.stages.join(" → "),
        c.row.max_attempts,
        c.row.days_between_emails,
        c.row.send_hour
    );
    let _ = writeln!(
        out,
        "  escalation: {}",
        c.row.escalation_tone.as_deref().unwrap_or("none")
    );
    let _ = writeln!(out, "  invoices:");
    for m in &members {
        let _ = writeln!(
            out,
            "    {:<14} {:<9} emails sent {}, last {}",
            m.number,
            m.status,
            m.attempts,
            m.last_sent_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "never".into())
        );
    }
    let pending = store
        .tasks(&TaskFilter {
            status: Some("pending".into()),
            campaign_id: Some(c.row.id.clone()),
            limit: 1000,
        })
        .await?;
    let _ = writeln!(out, "  pending tasks: {}", pending.len());
    for t in &pending {
        let _ = writeln!(
            out,
            "    {} {:<15} {}",
            t.scheduled_for.format("%Y-%m-%d %H:%M UTC"),
            t.task_type,
            t.task_data.as_deref().unwrap_or("")
        );
    }
    Ok(out)
}

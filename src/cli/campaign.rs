//! `tickler campaign …`: create, pause, resume, list and show collection campaigns, with the
//! same rules as `tickler tasks`: everything checked first, nothing written on a bad input.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Subcommand;

use super::tasks::{CommandError, Result, input, org_id};
use crate::config::Config;
use crate::queue::campaign::Campaign;
use crate::queue::runner::wake;
use crate::queue::{TaskRequest, TaskType};
use crate::store::Store;
use crate::store::audit::Action;
use crate::store::queue::{NO_ORG, NewCampaign, TaskFilter};

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign: each invoice's first email goes out 30 minutes later.
    Create(CreateArgs),
    /// Pause a campaign: its pending tasks are cancelled.
    Pause { campaign: String },
    /// Resume a paused campaign: each invoice's next email is scheduled again.
    Resume { campaign: String },
    /// List campaigns with their active invoices and pending tasks.
    List,
    /// Show a campaign, its invoices and its pending tasks.
    Show { campaign: String },
}

/// The most days `campaign create --overdue-days` reaches back, as `min_days_overdue` of
/// `overdue_escalation` (ten years); a larger count would take the date out of range.
const MAX_OVERDUE_DAYS: u32 = 3650;

/// `tickler campaign …`, returning what it prints.
pub async fn campaign_command(
    store: &Store,
    config: &Config,
    command: CampaignCommand,
) -> Result<String> {
    let now = Utc::now();
    match command {
        CampaignCommand::Create(args) => create(store, config, args, now).await,
        CampaignCommand::Pause { campaign } => pause_or_resume(store, config, &campaign, true, now)
            .await
            .map(|s| s + "\n"),
        CampaignCommand::Resume { campaign } => {
            pause_or_resume(store, config, &campaign, false, now)
                .await
                .map(|s| s + "\n")
        }
        CampaignCommand::List => list_campaigns(store).await,
        CampaignCommand::Show { campaign } => show(store, &campaign).await,
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
        Some(o) => org_id(o)?,
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
            .map_err(|e| CommandError::Input(e.to_string()))?;
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
    let actor = super::operate::cli_actor();
    let action = if pause {
        Action::CampaignPause
    } else {
        Action::CampaignResume
    };
    store
        .audit(&actor, action, &campaign.row.name, None, now)
        .await?;
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

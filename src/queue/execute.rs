//! Running one claimed task: what each task type does, and what it changes besides its own
//! row. An email carries the dedup key `task:<id>`, so a retry after a crash finds it already
//! sent and goes on with the campaign instead of sending again (DESIGN.md invariant 4).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::campaign::{Campaign, member_zone};
use super::{EmailData, QueueConfig, TaskData, TaskError, TaskType};
use crate::billing::messages::invoice_context;
use crate::jobs::{RunContext, TaskInput};
use crate::notify::{ChannelKind, Fate, Message, Notifier};
use crate::store::queue::{CampaignStep, MemberRow, Sent, TaskRow};
use crate::store::{Store, StoreError};

/// What a task runs with.
#[derive(Clone)]
pub struct Env {
    pub store: Store,
    pub queue: Arc<QueueConfig>,
    pub notifier: Arc<Notifier>,
    /// The daemon's zone: a customer without one gets it.
    pub timezone: Tz,
    /// The daemon running the tasks (its `tickler_instances` id): the owner of their claims.
    pub owner: Arc<str>,
}

/// How one attempt ended.
#[derive(Debug)]
pub enum Step {
    Done(Value),
    Failed {
        error: String,
        retryable: bool,
        result: Option<Value>,
    },
    /// Done, with changes to a campaign written in one transaction with the task's finish.
    Campaign(CampaignStep, Value),
}

/// A failure while running a task.
struct Fail {
    error: String,
    retryable: bool,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail {
            error: e.to_string(),
            retryable: true,
        }
    }
}

impl From<TaskError> for Fail {
    fn from(e: TaskError) -> Fail {
        fatal(e.0)
    }
}

fn fatal(error: impl Into<String>) -> Fail {
    Fail {
        error: error.into(),
        retryable: false,
    }
}

/// Runs `task` (claimed) at `now`.
pub async fn execute(env: &Env, task: &TaskRow, now: DateTime<Utc>) -> Step {
    match run(env, task, now).await {
        Ok(step) => step,
        Err(f) => Step::Failed {
            error: f.error,
            retryable: f.retryable,
            result: None,
        },
    }
}

async fn run(env: &Env, task: &TaskRow, now: DateTime<Utc>) -> Result<Step, Fail> {
    let ty = TaskType::parse(&task.task_type).map_err(fatal)?;
    let data: Option<Value> = match &task.task_data {
        None => None,
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| fatal(format!("the task's data is not valid JSON: {e}")))?,
        ),
    };
    let parsed = TaskData::parse(ty, data.as_ref(), &env.queue, &env.notifier)?;
    let campaign = match &task.campaign_id {
        None => None,
        Some(id) => Some(load_campaign(env, id).await?),
    };
    match (ty, parsed) {
        (TaskType::SendEmail | TaskType::FollowUp, TaskData::Email(d)) => {
            send(env, task, ty, now, campaign, d, None).await
        }
        (TaskType::Escalate, TaskData::Escalate(d)) => {
            let tone = d
                .new_tone
                .or_else(|| {
                    campaign
                        .as_ref()
                        .and_then(|c| c.0.row.escalation_tone.clone())
                })
                .unwrap_or_else(|| "urgent".into());
            if task.invoice_id.is_none() {
                // A campaign-wide escalation: one escalation per invoice still active, now.
                let (c, members) = campaign
                    .ok_or_else(|| fatal("an `escalate` task needs an invoice or a campaign"))?;
                let tasks: Vec<_> = members
                    .iter()
                    .filter(|m| m.status == "active")
                    .map(|m| {
                        c.request(TaskType::Escalate, json!({ "newTone": tone }), now, m)
                            .into_row(&env.queue)
                    })
                    .collect();
                let result = json!({ "escalated_invoices": tasks.len(), "tone": tone });
                return Ok(Step::Campaign(
                    CampaignStep {
                        campaign_id: c.row.id.clone(),
                        new_tasks: tasks,
                        ..Default::default()
                    },
                    result,
                ));
            }
            let d = EmailData {
                tone: Some(tone.clone()),
                ..Default::default()
            };
            send(env, task, ty, now, campaign, d, Some(tone)).await
        }
        (TaskType::CheckPayment, _) => check_payment(env, task, campaign).await,
        (TaskType::PauseCampaign | TaskType::ResumeCampaign, _) => {
            let (c, members) = campaign
                .ok_or_else(|| fatal(format!("a `{ty}` task needs a campaign (`campaign_id`)")))?;
            let pause = ty == TaskType::PauseCampaign;
            let from = if pause { "active" } else { "paused" };
            if c.row.status != from {
                return Ok(Step::Done(
                    json!({ "skipped": format!("the campaign is {}", c.row.status) }),
                ));
            }
            let (status, new_tasks) = if pause {
                ("paused", vec![])
            } else {
                let tasks = c.resume_tasks(&members, now, env.timezone, &env.queue);
                ("active", tasks)
            };
            let result = json!({ "campaign": c.row.name, "status": status,
                                 "scheduled": new_tasks.len() });
            Ok(Step::Campaign(
                CampaignStep {
                    campaign_id: c.row.id.clone(),
                    set_status: Some(status),
                    new_tasks,
                    ..Default::default()
                },
                result,
            ))
        }
        (TaskType::Custom, TaskData::Custom(handler, data)) => {
            custom(env, task, now, &handler, data).await
        }
        (ty, _) => Err(fatal(format!(
            "the data of a `{ty}` task does not fit its type"
        ))),
    }
}

async fn load_campaign(env: &Env, id: &str) -> Result<(Campaign, Vec<MemberRow>), Fail> {
    let row = env
        .store
        .campaign(id)
        .await?
        .ok_or_else(|| fatal(format!("campaign `{id}` does not exist")))?;
    let members = env.store.campaign_members(&row.id).await?;
    Ok((Campaign::from_row(row), members))
}

/// Sends one email for `task`'s invoice; in a campaign, records it and schedules what follows.
/// `escalation` is the tone an `escalate` task sets for the invoice's later emails.
async fn send(
    env: &Env,
    task: &TaskRow,
    ty: TaskType,
    now: DateTime<Utc>,
    campaign: Option<(Campaign, Vec<MemberRow>)>,
    data: EmailData,
    escalation: Option<String>,
) -> Result<Step, Fail> {
    let invoice_id = task.invoice_id.as_deref().ok_or_else(|| {
        fatal(format!(
            "a `{}` task needs an invoice (`invoice_id`)",
            task.task_type
        ))
    })?;
    let inv = env
        .store
        .invoice_by_id(invoice_id)
        .await?
        .ok_or_else(|| fatal(format!("invoice `{invoice_id}` does not exist")))?;
    let member = match &campaign {
        None => None,
        Some((c, members)) => Some((
            c,
            members
                .iter()
                .find(|m| m.invoice_id == inv.id)
                .ok_or_else(|| {
                    fatal(format!(
                        "invoice {} is not in campaign `{}`",
                        inv.number, c.row.name
                    ))
                })?,
        )),
    };
    if inv.status != "open" {
        let result = json!({ "skipped": format!("invoice {} is {}", inv.number, inv.status) });
        return Ok(match member {
            Some((c, _)) => Step::Campaign(
                CampaignStep {
                    campaign_id: c.row.id.clone(),
                    settle_paid: true,
                    ..Default::default()
                },
                result,
            ),
            None => Step::Done(result),
        });
    }
    let zone = match member {
        Some((_, m)) => member_zone(m, env.timezone),
        None => inv
            .customer_timezone
            .as_deref()
            .and_then(|z| z.parse().ok())
            .unwrap_or(env.timezone),
    };
    if let Some((c, m)) = member {
        if c.row.status != "active" {
            return Ok(Step::Done(
                json!({ "skipped": format!("campaign `{}` is {}", c.row.name, c.row.status) }),
            ));
        }
        if m.status != "active" {
            return Ok(Step::Done(json!({
                "skipped": format!("invoice {} left the campaign ({})", inv.number, m.status)
            })));
        }
        if let Some(last) = m.last_sent_at {
            let earliest = c.follow_up_time(last, zone);
            if now + TimeDelta::minutes(1) < earliest {
                if let Some(next) = env
                    .store
                    .next_campaign_task(&c.row.id, &inv.id, &task.id)
                    .await?
                {
                    // The invoice's next email is already queued: rescheduling this one too
                    // would send two.
                    return Ok(Step::Done(json!({
                        "skipped": "too early; the invoice's next email is already scheduled",
                        "next_at": next,
                    })));
                }
                // Too early (seed: "email too early"): the same task again when it is time.
                let mut again = c.request(
                    ty,
                    task.task_data
                        .as_deref()
                        .and_then(|t| serde_json::from_str(t).ok())
                        .unwrap_or(json!({})),
                    earliest,
                    m,
                );
                again.priority = task.priority;
                return Ok(Step::Campaign(
                    CampaignStep {
                        campaign_id: c.row.id.clone(),
                        new_tasks: vec![again.into_row(&env.queue)],
                        ..Default::default()
                    },
                    json!({ "rescheduled_to": earliest, "last_sent_at": last }),
                ));
            }
        }
    }
    if !env.notifier.has_channel(ChannelKind::Email) {
        return Err(fatal(
            "no email channel: add `[channels.email]` to config.toml",
        ));
    }
    let custom_text = data.subject.is_some();
    let template = if custom_text {
        "custom-message".to_string()
    } else {
        data.template_id
            .clone()
            .or(data.tone.clone())
            .or_else(|| member.map(|(c, m)| c.tone_for(m)))
            .unwrap_or_else(|| "friendly".into())
    };
    let today = now.with_timezone(&zone).date_naive();
    let mut context = invoice_context(&inv, today, None, None, None);
    context["message"] = json!({ "subject": data.subject, "body": data.body });
    if let Some((c, m)) = member {
        context["campaign"] = json!({
            "name": c.row.name,
            "email_number": m.attempts + 1,
            "max_attempts": c.row.max_attempts,
        });
    }
    let message = Message {
        key: format!("task:{}", task.id),
        channel: ChannelKind::Email,
        recipient: inv.email.clone(),
        template: template.clone(),
        invoice_id: Some(inv.id.clone()),
        context,
    };
    let job = format!("task {}", task.task_type);
    let fates = env
        .notifier
        .deliver(
            &env.store,
            &crate::notify::Claimant {
                job: &job,
                owner: &env.owner,
                run: None,
            },
            std::slice::from_ref(&message),
            false,
            now,
        )
        .await?;
    let already = match fates.into_iter().next() {
        Some(Fate::Sent) => false,
        Some(Fate::Done) => true,
        Some(Fate::Failed(e)) => {
            return Err(Fail {
                error: format!("sending to {}: {e}", inv.email.as_deref().unwrap_or("?")),
                retryable: true,
            });
        }
        Some(Fate::Skipped(e)) => return Err(fatal(e)),
        Some(Fate::Planned(_)) | None => return Err(fatal("the email was not sent")),
    };
    let mut result = json!({
        "invoice": inv.number,
        "template": template,
        "to": inv.email,
        "dedup_key": message.key,
    });
    if already {
        result["already_sent"] = json!(true);
    }
    let Some((c, m)) = member else {
        return Ok(Step::Done(result));
    };
    let sent = (m.attempts.max(0) + 1) as u32;
    let tone = escalation.clone().or(m.tone.clone());
    let next = c.next_after(sent, tone.as_deref());
    let mut new_tasks = vec![];
    if let Some((ty, data)) = next.clone() {
        let at = c.follow_up_time(now, zone);
        result["next"] = json!({ "type": ty.as_str(), "at": at, "data": data });
        new_tasks.push(c.request(ty, data, at, m).into_row(&env.queue));
    } else {
        result["next"] = json!(null);
    }
    Ok(Step::Campaign(
        CampaignStep {
            campaign_id: c.row.id.clone(),
            sent: Some(Sent {
                invoice_id: inv.id.clone(),
                tone: escalation,
                exhausted: next.is_none(),
            }),
            new_tasks,
            ..Default::default()
        },
        result,
    ))
}

async fn check_payment(
    env: &Env,
    task: &TaskRow,
    campaign: Option<(Campaign, Vec<MemberRow>)>,
) -> Result<Step, Fail> {
    if let Some((c, members)) = campaign {
        let active: Vec<&MemberRow> = members.iter().filter(|m| m.status == "active").collect();
        let paid = active.iter().filter(|m| m.invoice_status != "open").count();
        let result = json!({
            "campaign": c.row.name,
            "active_invoices": active.len(),
            "newly_paid": paid,
            "paid": active.iter().filter(|m| m.invoice_status != "open")
                .map(|m| m.number.clone()).collect::<Vec<_>>(),
        });
        return Ok(Step::Campaign(
            CampaignStep {
                campaign_id: c.row.id.clone(),
                settle_paid: true,
                ..Default::default()
            },
            result,
        ));
    }
    let id = task
        .invoice_id
        .as_deref()
        .ok_or_else(|| fatal("a `check_payment` task needs a campaign or an invoice"))?;
    let inv = env
        .store
        .invoice_by_id(id)
        .await?
        .ok_or_else(|| fatal(format!("invoice `{id}` does not exist")))?;
    Ok(Step::Done(
        json!({ "invoice": inv.number, "status": inv.status, "paid_at": inv.paid_at }),
    ))
}

async fn custom(
    env: &Env,
    task: &TaskRow,
    now: DateTime<Utc>,
    handler: &str,
    data: Value,
) -> Result<Step, Fail> {
    let h = env.queue.handlers.get(handler).ok_or_else(|| {
        fatal(format!(
            "no handler `{handler}`: it was removed from config.toml after the task was queued"
        ))
    })?;
    let ctx = RunContext {
        job_name: Arc::from(format!("task handler {handler}")),
        scheduled_for: task.scheduled_for,
        attempt: task.attempts.max(1) as u32,
        store: env.store.clone(),
        now,
        timezone: env.timezone,
        notifier: env.notifier.clone(),
        dry_run: false,
        task: Some(Arc::new(TaskInput {
            id: task.id.clone(),
            task_type: task.task_type.clone(),
            attempt: task.attempts.max(1) as u32,
            scheduled_for: task.scheduled_for,
            campaign_id: task.campaign_id.clone(),
            invoice_id: task.invoice_id.clone(),
            customer_id: task.customer_id.clone(),
            data,
        })),
        instance: env.owner.clone(),
        run_id: None,
    };
    let timeout = h.timeout.unwrap_or(env.queue.timeout);
    match tokio::time::timeout(timeout, h.job.run(&ctx)).await {
        Err(_) => Err(Fail {
            error: format!(
                "handler `{handler}` timed out after {}",
                humantime::format_duration(timeout)
            ),
            retryable: true,
        }),
        Ok(Ok(outcome)) => {
            let mut result = Map::new();
            result.insert("handler".into(), handler.into());
            if outcome.records > 0 {
                result.insert("records".into(), outcome.records.into());
            }
            if !outcome.errors.is_empty() {
                result.insert("errors".into(), json!(outcome.errors));
            }
            result.extend(outcome.metadata);
            Ok(Step::Done(Value::Object(result)))
        }
        Ok(Err(e)) => Ok(Step::Failed {
            error: e.to_string(),
            retryable: e.is_retryable(),
            result: (!e.metadata().is_empty()).then(|| Value::Object(e.metadata().clone())),
        }),
    }
}

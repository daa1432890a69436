//! `send_email`: one email about the task's invoice, in the tone, template or own text its
//! data names (else the campaign's stage, else `friendly`). In a campaign it records the email
//! and schedules the invoice's next one in the same transaction as the task's finish; too early
//! after the last email, it moves itself to when the next may go. The email carries the dedup
//! key `task:<id>`, so a retry after a crash finds it already sent and goes on with the campaign
//! instead of sending again (DESIGN.md invariant 4). `follow_up` is this type under its own
//! name; `escalate` sends through `send` too.

use chrono::TimeDelta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DataContext, Task, TaskContext};
use crate::billing::messages::invoice_context;
use crate::notify::{ChannelKind, Fate, Message};
use crate::queue::TaskError;
use crate::queue::campaign::member_zone;
use crate::queue::execute::{Fail, Step, fatal};
use crate::store::queue::{CampaignStep, Retone, Sent};

/// The data of `send_email` and `follow_up` (the seed's names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmailData {
    /// `friendly`, `professional`, `firm`, `urgent`, or any template's name.
    pub tone: Option<String>,
    /// A template to use instead of the tone's.
    pub template_id: Option<String>,
    /// A subject and body written by the enqueuer: minijinja templates rendered with the
    /// context of the other invoice emails (`{{ invoice.number }}`, `{{ customer.first_name }}`,
    /// `{{ campaign.name }}` in a campaign, `{{ vars.company }}`), then sent as plain text.
    pub subject: Option<String>,
    pub body: Option<String>,
}

/// `send_email` (and `follow_up`): an email about an invoice.
pub struct SendEmail;

impl Task for SendEmail {
    type Data = EmailData;

    /// The tone and template named must exist, and the data's own text needs both a subject
    /// and a body, each a template that parses and renders against a sample invoice.
    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<EmailData, TaskError> {
        let d: EmailData = cx.read(data, "`tone`, `templateId`, `subject` and `body`")?;
        if let Some(t) = &d.tone {
            cx.template(t, "tone")?;
        }
        if let Some(t) = &d.template_id {
            cx.template(t, "templateId")?;
        }
        if d.subject.is_some() != d.body.is_some() {
            return Err(TaskError(format!(
                "a `{}` task with its own text needs both `subject` and `body`",
                cx.ty
            )));
        }
        let sample = sample_context();
        for (key, text) in [("subject", &d.subject), ("body", &d.body)] {
            if let Some(text) = text {
                own_text(cx.notifier, key, text, &sample).map_err(|e| {
                    TaskError(format!(
                        "invalid data for a `{}` task: {e}; `subject` and `body` are minijinja \
                         templates, e.g. `Invoice {{{{ invoice.number }}}} is due`",
                        cx.ty
                    ))
                })?;
            }
        }
        Ok(d)
    }

    async fn run(&self, cx: TaskContext<'_>, data: EmailData) -> Result<Step, Fail> {
        send(cx, data, None).await
    }
}

/// The context a `send_email` task's own text is checked against when it is enqueued: a
/// sample invoice and customer, in a campaign (so `{{ campaign.name }}` passes; a task outside
/// one that names it fails when it runs).
fn sample_context() -> Value {
    let mut context = crate::billing::messages::sample_invoice_context(None, None);
    context["campaign"] = campaign_context("spring-collections", 1, 3);
    context
}

/// What `{{ campaign }}` holds in a campaign's emails.
fn campaign_context(name: &str, email_number: i32, max_attempts: i32) -> Value {
    json!({ "name": name, "email_number": email_number, "max_attempts": max_attempts })
}

/// Renders the task's own `subject` or `body` (`key`) against `context`.
fn own_text(
    notifier: &crate::notify::Notifier,
    key: &str,
    text: &str,
    context: &Value,
) -> Result<String, crate::notify::templates::TemplateError> {
    let what = format!("the `{key}` template");
    let templates = &notifier.templates;
    templates.check_str(&what, text)?;
    templates.render_str(&what, text, context)
}

/// Sends one email for the task's invoice; in a campaign, records it and schedules what
/// follows. `escalation` is the tone an `escalate` task sets for the invoice's later emails.
pub(super) async fn send(
    cx: TaskContext<'_>,
    data: EmailData,
    escalation: Option<String>,
) -> Result<Step, Fail> {
    let TaskContext {
        env,
        task,
        ty,
        now,
        campaign,
    } = cx;
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
                    // would send two. An escalation changes the tone of that email and of
                    // the later ones instead.
                    if let Some(tone) = escalation {
                        return Ok(Step::Campaign(
                            CampaignStep {
                                campaign_id: c.row.id.clone(),
                                retone: Some(Retone {
                                    invoice_id: inv.id.clone(),
                                    tone: tone.clone(),
                                }),
                                ..Default::default()
                            },
                            json!({
                                "retoned": "the invoice's next email is already scheduled: \
                                            it and the later ones take the new tone",
                                "tone": tone,
                                "next_at": next,
                            }),
                        ));
                    }
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
    if let Some((c, m)) = member {
        context["campaign"] = campaign_context(&c.row.name, m.attempts + 1, c.row.max_attempts);
    }
    if let (Some(subject), Some(body)) = (&data.subject, &data.body) {
        // The task's own text, rendered with the invoice's context; a failure (an undefined
        // name, or `{{ campaign }}` outside a campaign) is the task's data, so no retry helps.
        let render = |key, text| {
            own_text(&env.notifier, key, text, &context)
                .map_err(|e| fatal(format!("{e}; the task's `{key}` is a minijinja template")))
        };
        let message = json!({ "subject": render("subject", subject)?,
                              "body": render("body", body)? });
        context["message"] = message;
    } else {
        context["message"] = json!({ "subject": null, "body": null });
    }
    let message = Message {
        key: format!("task:{}", task.id),
        channel: ChannelKind::Email,
        recipient: inv.email.clone(),
        template: template.clone(),
        invoice_id: Some(inv.id.clone()),
        context,
        zone: Some(zone),
        window: member.and(env.queue.campaigns.send_window.clone()),
    };
    // Outside its windows (the email channel's, the campaign's) the task waits for them, so
    // that what follows the email (the campaign's next step) follows it then.
    match env.notifier.opens(&message, now) {
        Ok(at) if at > now => {
            return Ok(Step::Later(
                at,
                json!({ "deferred_until": at, "why": "outside its send window" }),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(fatal(e.to_string())),
    }
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
        // Like a missing address: final, not retried; the task's error names the block.
        Some(Fate::Skipped(e) | Fate::Suppressed(e)) => return Err(fatal(e)),
        // Not reached: the windows were read at the same instant above.
        Some(Fate::Deferred(at)) => {
            return Ok(Step::Later(at, json!({ "deferred_until": at })));
        }
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

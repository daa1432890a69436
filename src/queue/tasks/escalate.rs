//! `escalate`: for one invoice, an email in the escalation tone (its data's `newTone`, else the
//! campaign's `escalation_tone`, else `urgent`), which the invoice's later emails keep. Without
//! an invoice, for a whole campaign: one `escalate` task per invoice still active, due now, in
//! one transaction with the task's finish.

use serde::Deserialize;
use serde_json::{Value, json};

use super::send_email::{EmailData, send};
use super::{DataContext, Task, TaskContext};
use crate::queue::execute::{Fail, Step, fatal};
use crate::queue::{TaskError, TaskType};
use crate::store::queue::CampaignStep;

/// The data of `escalate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EscalateData {
    /// The tone of this email and the invoice's later ones; its template must exist.
    pub new_tone: Option<String>,
}

/// `escalate`: needs an invoice or a campaign.
pub struct Escalate;

impl Task for Escalate {
    type Data = EscalateData;

    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<EscalateData, TaskError> {
        let d: EscalateData = cx.read(data, "`newTone`")?;
        if let Some(t) = &d.new_tone {
            cx.template(t, "newTone")?;
        }
        Ok(d)
    }

    async fn run(&self, cx: TaskContext<'_>, d: EscalateData) -> Result<Step, Fail> {
        let tone = d
            .new_tone
            .or_else(|| {
                cx.campaign
                    .as_ref()
                    .and_then(|c| c.0.row.escalation_tone.clone())
            })
            .unwrap_or_else(|| "urgent".into());
        if cx.task.invoice_id.is_none() {
            // A campaign-wide escalation: one escalation per invoice still active, now.
            let (c, members) = cx
                .campaign
                .ok_or_else(|| fatal("an `escalate` task needs an invoice or a campaign"))?;
            let tasks: Vec<_> = members
                .iter()
                .filter(|m| m.status == "active")
                .map(|m| {
                    c.request(TaskType::Escalate, json!({ "newTone": tone }), cx.now, m)
                        .into_row(&cx.env.queue)
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
        send(cx, d, Some(tone)).await
    }
}

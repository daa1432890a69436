//! `check_payment`: reads whether the task's invoice was paid; for a campaign, counts its
//! active invoices that were and settles them (they leave the campaign, which completes when
//! none is left) in one transaction with the task's finish.

use serde_json::{Value, json};

use super::{DataContext, Task, TaskContext};
use crate::queue::TaskError;
use crate::queue::execute::{Fail, Step, fatal};
use crate::store::queue::{CampaignStep, MemberRow};

/// `check_payment`: takes no data; needs a campaign or an invoice.
pub struct CheckPayment;

impl Task for CheckPayment {
    type Data = ();

    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<(), TaskError> {
        cx.none(data)
    }

    async fn run(&self, cx: TaskContext<'_>, (): ()) -> Result<Step, Fail> {
        let TaskContext {
            env,
            task,
            campaign,
            ..
        } = cx;
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
}

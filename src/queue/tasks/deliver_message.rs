//! `deliver_message`: sends a message the pipeline deferred because its send window was
//! closed (DESIGN.md invariant 6). The pipeline inserts this task in the transaction that
//! records the message `deferred`, due when the window opens; the task hands the message back
//! to the pipeline, whose claim makes it go out once, whether this task or a later run of the
//! job gets there first. A message about an invoice that is no longer open is not sent.

use serde_json::{Value, json};

use super::{DataContext, Task, TaskContext};
use crate::notify::window::DeferredMessage;
use crate::notify::{Claimant, Fate};
use crate::queue::TaskError;
use crate::queue::execute::{Fail, Step, fatal};

/// `deliver_message`: the message, its recipient's zone and its sender's window.
pub struct DeliverMessage;

impl Task for DeliverMessage {
    type Data = DeferredMessage;

    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<DeferredMessage, TaskError> {
        let d: DeferredMessage = cx.read(
            data,
            "`key`, `channel`, `recipient`, `template`, `invoice_id`, `context`, `zone`, \
             `window` and `job`",
        )?;
        cx.template(&d.template, "template")?;
        Ok(d)
    }

    async fn run(&self, cx: TaskContext<'_>, d: DeferredMessage) -> Result<Step, Fail> {
        let TaskContext { env, now, .. } = cx;
        if let Some(id) = &d.invoice_id {
            let status = env.store.invoice_by_id(id).await?.map(|i| i.status);
            if status.as_deref() != Some("open") {
                let why = format!(
                    "cancelled: its invoice is {}",
                    status.as_deref().unwrap_or("gone")
                );
                env.store
                    .cancel_deferred_notification(&d.key, &why, now)
                    .await?;
                return Ok(Step::Done(json!({ "key": d.key, "skipped": why })));
            }
        }
        let message = d.message();
        let claimant = Claimant {
            job: &d.job,
            owner: &env.owner,
            run: None,
        };
        let fates = env
            .notifier
            .deliver(
                &env.store,
                &claimant,
                std::slice::from_ref(&message),
                false,
                now,
            )
            .await?;
        let result = |what: &str, detail: Value| json!({ "key": d.key, what: detail });
        match fates.into_iter().next() {
            Some(Fate::Sent) => Ok(Step::Done(result("sent", json!(message.recipient)))),
            Some(Fate::Done) => Ok(Step::Done(result(
                "already",
                json!("sent, deferred again or being sent by another run"),
            ))),
            // The windows changed (a reload): the pipeline deferred it again, with its task.
            Some(Fate::Deferred(at)) => Ok(Step::Done(result("deferred_until", json!(at)))),
            Some(Fate::Skipped(e) | Fate::Suppressed(e)) => {
                Ok(Step::Done(result("not_sent", json!(e))))
            }
            Some(Fate::Failed(e)) => Err(Fail {
                error: format!("sending `{}`: {e}", d.key),
                retryable: true,
            }),
            Some(Fate::Planned(_)) | None => Err(fatal("the message was not sent")),
        }
    }
}

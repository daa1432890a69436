//! `resume_campaign`: a paused campaign becomes `active` again, and each of its active
//! invoices gets its next email: not sooner than `[queue.campaigns].first_email_after` from now,
//! nor than `days_between_emails` after its last one.

use serde_json::Value;

use super::{DataContext, Task, TaskContext, change_status};
use crate::queue::TaskError;
use crate::queue::execute::{Fail, Step};

/// `resume_campaign`: takes no data; needs a campaign. A campaign that is not paused is left
/// as it is.
pub struct ResumeCampaign;

impl Task for ResumeCampaign {
    type Data = ();

    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<(), TaskError> {
        cx.none(data)
    }

    async fn run(&self, cx: TaskContext<'_>, (): ()) -> Result<Step, Fail> {
        let (env, now) = (cx.env, cx.now);
        change_status(cx, "paused", "active", |c, members| {
            c.resume_tasks(members, now, env.timezone, &env.queue)
        })
    }
}

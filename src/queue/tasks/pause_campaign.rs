//! `pause_campaign`: an active campaign becomes `paused` and its pending tasks are cancelled
//! (a queued `resume_campaign` is kept), in one transaction with the task's finish; resuming it
//! schedules each invoice's next email again.

use serde_json::Value;

use super::{DataContext, Task, TaskContext, change_status};
use crate::queue::TaskError;
use crate::queue::execute::{Fail, Step};

/// `pause_campaign`: takes no data; needs a campaign. A campaign that is not active is left
/// as it is.
pub struct PauseCampaign;

impl Task for PauseCampaign {
    type Data = ();

    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<(), TaskError> {
        cx.none(data)
    }

    async fn run(&self, cx: TaskContext<'_>, (): ()) -> Result<Step, Fail> {
        change_status(cx, "active", "paused", |_, _| vec![])
    }
}

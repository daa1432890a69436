//! Queue task types: what a task of each type does when it runs. Each type is one file here
//! holding its data (read by serde from the row's `task_data`) and one async `run`, behind the
//! [`Task`] trait, as a job kind is one file behind `jobs::Job` (`follow_up` is `send_email`
//! under its own name). The list given to `task_types!` below is the single place that maps a
//! type's stored name to its implementation: a new task type is a file in this folder and one
//! line there. The runner owns claims, leases, retries and timeouts;
//! [`execute`](super::execute) reads the row's type and data; a type owns only its work.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::campaign::Campaign;
use super::execute::{Env, Fail, Step, fatal, load_campaign};
use super::{QueueConfig, TaskError};
use crate::jobs::BoxFuture;
use crate::notify::Notifier;
use crate::store::queue::{CampaignStep, MemberRow, NewTask, TaskRow};

pub mod check_payment;
pub mod custom;
pub mod deliver_message;
pub mod escalate;
pub mod follow_up;
pub mod pause_campaign;
pub mod resume_campaign;
pub mod send_email;

/// Declares [`TaskType`] (with `ALL`, `as_str` and `task`) from one list of
/// `Variant = "stored_name" => implementation`, so that the names, the variants and what runs
/// them cannot disagree.
macro_rules! task_types {
    ($($(#[$doc:meta])* $variant:ident = $name:literal => $task:path,)*) => {
        /// A task type: what a row of `scheduled_tasks` asks for. Its name is what the row stores
        /// in `task_type` and what `[queue.retry.NAME]` and `tickler tasks enqueue` take.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TaskType {
            $($(#[$doc])* $variant,)*
        }

        impl TaskType {
            /// Every task type, in the order of the table (and of error messages listing them).
            pub const ALL: &'static [TaskType] = &[$(TaskType::$variant),*];

            /// The name stored in `scheduled_tasks.task_type`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(TaskType::$variant => $name,)*
                }
            }

            /// What runs a task of this type.
            pub fn task(self) -> &'static dyn DynTask {
                match self {
                    $(TaskType::$variant => &$task,)*
                }
            }
        }
    };
}

// Every task type: its variant, its name in `scheduled_tasks.task_type` (never rename one: rows
// and `[queue.retry.NAME]` tables hold it) and its implementation. A new type is a file in this
// folder and one line here.
task_types! {
    /// The first email about an invoice (in a campaign, in its first stage's tone).
    SendEmail = "send_email" => send_email::SendEmail,
    /// A later email about an invoice: a campaign's next stage, or the tone an escalation set.
    FollowUp = "follow_up" => follow_up::FollowUp,
    /// Reads whether an invoice, or a campaign's invoices, were paid.
    CheckPayment = "check_payment" => check_payment::CheckPayment,
    /// An email in a firmer tone that the invoice's later emails keep; campaign-wide, one
    /// escalation per active invoice.
    Escalate = "escalate" => escalate::Escalate,
    /// Pauses a campaign: its pending tasks are cancelled until it is resumed.
    PauseCampaign = "pause_campaign" => pause_campaign::PauseCampaign,
    /// Resumes a paused campaign and schedules each active invoice's next email.
    ResumeCampaign = "resume_campaign" => resume_campaign::ResumeCampaign,
    /// Runs a `[queue.handlers.NAME]` job with the task's data.
    Custom = "custom" => custom::Custom,
    /// Sends a message that waited for its send window (inserted by the delivery pipeline).
    DeliverMessage = "deliver_message" => deliver_message::DeliverMessage,
}

/// A task type name that no type has, from a row, `[queue.retry.NAME]` or the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task type `{0}`: expected one of {names}", names = names())]
pub struct UnknownTaskType(pub String);

impl TaskType {
    /// Reads a stored or typed name.
    pub fn parse(s: &str) -> Result<TaskType, UnknownTaskType> {
        TaskType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTaskType(s.to_string()))
    }

    /// Checks the data of a task of this type against the config (a tone or template must
    /// exist, a custom handler must be configured), so that `tickler tasks enqueue` refuses a
    /// task that would fail when it runs.
    pub fn check_data(
        self,
        data: Option<&Value>,
        queue: &QueueConfig,
        notifier: &Notifier,
    ) -> Result<(), TaskError> {
        let cx = DataContext {
            ty: self,
            queue,
            notifier,
        };
        self.task().check(&cx.object(data)?, &cx)
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn names() -> String {
    TaskType::ALL
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A task type, shaped like a job kind's `jobs::Job` (itself after underway's `Task`): its data
/// is an associated type read from `task_data`, one async `run` does the work, and a failure
/// says whether a retry may help.
pub trait Task: Send + Sync + 'static {
    /// What the task's `task_data` holds once read and checked.
    type Data: Send;

    /// Reads `data` (a JSON object; `{}` when the task has none) and checks it against the
    /// config: at enqueue, so that a bad task is refused there, and again before each attempt,
    /// since a reload may have removed a template or handler it names.
    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<Self::Data, TaskError>;

    /// Does the task's work once; its campaign, if any, is loaded.
    fn run(
        &self,
        cx: TaskContext<'_>,
        data: Self::Data,
    ) -> impl Future<Output = Result<Step, Fail>> + Send;
}

/// The object-safe face of [`Task`], so that every type answers through [`TaskType::task`].
pub trait DynTask: Send + Sync {
    /// Reads and checks `data` (a JSON object), as [`Task::data`].
    fn check(&self, data: &Value, cx: &DataContext<'_>) -> Result<(), TaskError>;
    /// Runs the claimed `task` of type `ty`: its data read and checked against the config
    /// (a failure here is fatal), then its campaign loaded, then the type's work.
    fn run<'a>(
        &'a self,
        env: &'a Env,
        task: &'a TaskRow,
        ty: TaskType,
        now: DateTime<Utc>,
        data: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Step, Fail>>;
}

impl<T: Task> DynTask for T {
    fn check(&self, data: &Value, cx: &DataContext<'_>) -> Result<(), TaskError> {
        Task::data(self, data, cx).map(drop)
    }
    fn run<'a>(
        &'a self,
        env: &'a Env,
        task: &'a TaskRow,
        ty: TaskType,
        now: DateTime<Utc>,
        data: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Step, Fail>> {
        Box::pin(async move {
            let cx = DataContext {
                ty,
                queue: &env.queue,
                notifier: &env.notifier,
            };
            let data = Task::data(self, &cx.object(data)?, &cx)?;
            let campaign = match &task.campaign_id {
                None => None,
                Some(id) => Some(load_campaign(env, id).await?),
            };
            let cx = TaskContext {
                env,
                task,
                ty,
                now,
                campaign,
            };
            Task::run(self, cx, data).await
        })
    }
}

/// What reading a task's data may consult: its type (named in errors) and the config.
pub struct DataContext<'a> {
    pub ty: TaskType,
    pub queue: &'a QueueConfig,
    pub notifier: &'a Notifier,
}

impl DataContext<'_> {
    /// The data as the object a type reads: none (or `null`) is `{}`, anything but an object is
    /// refused.
    pub fn object(&self, data: Option<&Value>) -> Result<Value, TaskError> {
        match data {
            None | Some(Value::Null) => Ok(Value::Object(Default::default())),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            Some(other) => Err(TaskError(format!(
                "the data of a `{}` task must be a JSON object (found `{other}`)",
                self.ty
            ))),
        }
    }

    /// Reads `data` as `D` (serde, `deny_unknown_fields`); `keys` names what `D` takes, for
    /// the error when it refuses a key.
    pub fn read<D: DeserializeOwned>(&self, data: &Value, keys: &str) -> Result<D, TaskError> {
        serde_json::from_value(data.clone()).map_err(|e| {
            TaskError(format!(
                "invalid data for a `{}` task: {e}; it takes {keys}",
                self.ty
            ))
        })
    }

    /// The data of a type that takes none: only `{}` passes.
    pub fn none(&self, data: &Value) -> Result<(), TaskError> {
        /// No keys at all.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoData {}
        self.read::<NoData>(data, "no keys").map(drop)
    }

    /// Checks that a template exists for `name`, given in the data's key `what`.
    pub fn template(&self, name: &str, what: &str) -> Result<(), TaskError> {
        self.notifier
            .templates
            .require(name, what)
            .map_err(|e| TaskError(e.to_string()))
    }
}

/// What a task's run works with: the daemon's [`Env`], the claimed row and its type, the time
/// of the attempt, and the task's campaign with its members when it has one.
pub struct TaskContext<'a> {
    pub env: &'a Env,
    pub task: &'a TaskRow,
    pub ty: TaskType,
    pub now: DateTime<Utc>,
    pub campaign: Option<(Campaign, Vec<MemberRow>)>,
}

/// Moves the task's campaign from status `from` to `to` and schedules `new_tasks` (given the
/// campaign and its members), in one transaction with the task's finish; a campaign in another
/// status is left alone. What `pause_campaign` and `resume_campaign` share.
fn change_status(
    cx: TaskContext<'_>,
    from: &str,
    to: &'static str,
    new_tasks: impl FnOnce(&Campaign, &[MemberRow]) -> Vec<NewTask>,
) -> Result<Step, Fail> {
    let ty = cx.ty;
    let (c, members) = cx
        .campaign
        .ok_or_else(|| fatal(format!("a `{ty}` task needs a campaign (`campaign_id`)")))?;
    if c.row.status != from {
        return Ok(Step::Done(
            json!({ "skipped": format!("the campaign is {}", c.row.status) }),
        ));
    }
    let new_tasks = new_tasks(&c, &members);
    let result = json!({ "campaign": c.row.name, "status": to,
                         "scheduled": new_tasks.len() });
    Ok(Step::Campaign(
        CampaignStep {
            campaign_id: c.row.id.clone(),
            set_status: Some(to),
            new_tasks,
            ..Default::default()
        },
        result,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::Handler;

    /// The names rows hold: renaming one would strand every stored task of that type.
    #[test]
    fn the_table_keeps_the_stored_names() {
        let names: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "send_email",
                "follow_up",
                "check_payment",
                "escalate",
                "pause_campaign",
                "resume_campaign",
                "custom",
                "deliver_message"
            ]
        );
        // The delivery pipeline inserts this type by name.
        assert_eq!(
            TaskType::parse(crate::notify::window::DELIVER_TASK),
            Ok(TaskType::DeliverMessage)
        );
        for &ty in TaskType::ALL {
            assert_eq!(TaskType::parse(ty.as_str()), Ok(ty));
            assert_eq!(ty.to_string(), ty.as_str());
        }
        assert_eq!(
            TaskType::parse("send_sms").unwrap_err().to_string(),
            "unknown task type `send_sms`: expected one of `send_email`, `follow_up`, \
             `check_payment`, `escalate`, `pause_campaign`, `resume_campaign`, `custom`, \
             `deliver_message`"
        );
    }

    fn queue(handlers: &[&str]) -> QueueConfig {
        let mut queue = QueueConfig::default();
        for name in handlers {
            let handler = Handler {
                kind: "noop".into(),
                job: Arc::new(crate::jobs::noop::NoopJob {
                    duration: Default::default(),
                }),
                timeout: None,
            };
            queue.handlers.insert(name.to_string(), handler);
        }
        queue
    }

    /// Every type in the table reads data it accepts, and each bad input gets its exact error.
    #[test]
    fn every_type_reads_its_data() {
        use TaskType::*;
        let notifier = Notifier::empty();
        let known = notifier.templates.names().collect::<Vec<_>>().join(", ");
        let crm = queue(&["crm"]);
        let none = queue(&[]);
        #[rustfmt::skip]
        let table: &[(TaskType, &str, &QueueConfig, Result<(), String>)] = &[
            (SendEmail, "null", &none, Ok(())),
            (SendEmail, r#"{"tone": "firm", "templateId": "urgent"}"#, &none, Ok(())),
            (SendEmail, r#"{"subject": "Hello", "body": "Pay"}"#, &none, Ok(())),
            (SendEmail, r#"{"colour": "red"}"#, &none, Err(
                "invalid data for a `send_email` task: unknown field `colour`, expected one of \
                 `tone`, `templateId`, `subject`, `body`; it takes `tone`, `templateId`, \
                 `subject` and `body`".into())),
            (SendEmail, r#"{"tone": "stern"}"#, &none, Err(format!(
                "no template for the tone `stern`: add `stern.j2` to the templates directory or \
                 use one of: {known}"))),
            (FollowUp, r#"{"tone": "professional"}"#, &none, Ok(())),
            (FollowUp, r#"{"templateId": "stern"}"#, &none, Err(format!(
                "no template for the templateId `stern`: add `stern.j2` to the templates \
                 directory or use one of: {known}"))),
            (FollowUp, r#"{"subject": "Hello"}"#, &none, Err(
                "a `follow_up` task with its own text needs both `subject` and `body`".into())),
            (Escalate, r#"{"newTone": "urgent"}"#, &none, Ok(())),
            (Escalate, r#"{"tone": "urgent"}"#, &none, Err(
                "invalid data for a `escalate` task: unknown field `tone`, expected `newTone`; \
                 it takes `newTone`".into())),
            (CheckPayment, "{}", &none, Ok(())),
            (PauseCampaign, "null", &none, Ok(())),
            (ResumeCampaign, "{}", &none, Ok(())),
            (PauseCampaign, r#"{"now": true}"#, &none, Err(
                "invalid data for a `pause_campaign` task: unknown field `now`, there are no \
                 fields; it takes no keys".into())),
            (CheckPayment, "[1]", &none, Err(
                "the data of a `check_payment` task must be a JSON object (found `[1]`)".into())),
            (Custom, r#"{"handler": "crm", "order": 7}"#, &crm, Ok(())),
            (Custom, r#"{"order": 7}"#, &crm, Err(
                "a `custom` task needs `\"handler\": NAME` in its data, naming a \
                 `[queue.handlers.NAME]` of config.toml (configured: `crm`)".into())),
            (Custom, r#"{"handler": "erp"}"#, &crm, Err(
                "no handler `erp` for a `custom` task: add `[queue.handlers.erp]` to \
                 config.toml (configured: `crm`)".into())),
            (Custom, r#"{"handler": "erp"}"#, &none, Err(
                "no handler `erp` for a `custom` task: add `[queue.handlers.erp]` to \
                 config.toml (none is configured)".into())),
            (DeliverMessage, r#"{"key": "k", "channel": "sms", "recipient": "+27821234567",
              "template": "friendly", "invoice_id": null, "context": {}, "zone":
              "Africa/Johannesburg", "window": null, "job": "reminders"}"#, &none, Ok(())),
            (DeliverMessage, r#"{"key": "k", "channel": "sms", "recipient": null,
              "template": "stern", "invoice_id": null, "context": {}, "zone": null,
              "window": null, "job": "reminders"}"#, &none, Err(format!(
                "no template for the template `stern`: add `stern.j2` to the templates \
                 directory or use one of: {known}"))),
        ];
        for (ty, data, queue, expected) in table {
            let data: Value = serde_json::from_str(data).unwrap();
            let got = ty
                .check_data(Some(&data), queue, &notifier)
                .map_err(|e| e.0);
            assert_eq!(&got, expected, "{ty} {data}");
        }
        for ty in TaskType::ALL {
            assert!(
                table.iter().any(|(t, _, _, r)| t == ty && r.is_ok()),
                "`{ty}` has no accepted data in the table"
            );
        }
        assert_eq!(SendEmail.check_data(None, &none, &notifier), Ok(()));
    }
}

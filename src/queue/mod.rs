//! The durable queue of one-off delayed tasks (seed 000) and the collection campaigns that
//! feed it. A task is a row in `scheduled_tasks`; the runner ([`runner`]) claims due rows with a
//! lease, runs them ([`execute`]) and writes how they ended; campaigns ([`campaign`]) schedule
//! their emails as tasks. This module holds the task types, their data and the `[queue]`
//! settings.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::jobs::DynJob;
use crate::notify::Notifier;
use crate::store::queue::{NO_ORG, NewTask, task_time};

pub mod campaign;
pub mod execute;
pub mod runner;

/// Every status a task row can have, in the order of its life.
pub const STATUSES: &[&str] = &["pending", "executing", "completed", "failed", "cancelled"];

/// The kinds of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    SendEmail,
    FollowUp,
    CheckPayment,
    Escalate,
    PauseCampaign,
    ResumeCampaign,
    Custom,
}

impl TaskType {
    pub const ALL: [TaskType; 7] = [
        TaskType::SendEmail,
        TaskType::FollowUp,
        TaskType::CheckPayment,
        TaskType::Escalate,
        TaskType::PauseCampaign,
        TaskType::ResumeCampaign,
        TaskType::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::SendEmail => "send_email",
            TaskType::FollowUp => "follow_up",
            TaskType::CheckPayment => "check_payment",
            TaskType::Escalate => "escalate",
            TaskType::PauseCampaign => "pause_campaign",
            TaskType::ResumeCampaign => "resume_campaign",
            TaskType::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Result<TaskType, String> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task type `{s}`: expected one of {}", names()))
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

/// The data of `send_email` and `follow_up` (the seed's names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmailData {
    /// `friendly`, `professional`, `firm`, `urgent`, or any template's name.
    pub tone: Option<String>,
    /// A template to use instead of the tone's.
    pub template_id: Option<String>,
    /// A subject and body written by the enqueuer, sent as plain text.
    pub subject: Option<String>,
    pub body: Option<String>,
}

/// The data of `escalate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EscalateData {
    pub new_tone: Option<String>,
}

/// The data of tasks that take none (`check_payment`, `pause_campaign`, `resume_campaign`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoData {}

/// What a task of a type carries, read from its `task_data`.
#[derive(Debug, Clone)]
pub enum TaskData {
    Email(EmailData),
    Escalate(EscalateData),
    None,
    /// The handler's name and the whole data, passed to it as is.
    Custom(String, Value),
}

/// Why a task is refused at enqueue, or fails without retry when it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

impl TaskData {
    /// Reads and checks the data of a task of type `ty` against the config: a tone or template
    /// must exist, a custom handler must be configured.
    pub fn parse(
        ty: TaskType,
        data: Option<&Value>,
        queue: &QueueConfig,
        notifier: &Notifier,
    ) -> Result<TaskData, TaskError> {
        let empty = Value::Object(Default::default());
        let data = match data {
            None | Some(Value::Null) => &empty,
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                return Err(TaskError(format!(
                    "the data of a `{ty}` task must be a JSON object (found `{other}`)"
                )));
            }
        };
        let bad = |e: serde_json::Error| {
            let accepted = match ty {
                TaskType::SendEmail | TaskType::FollowUp => {
                    "`tone`, `templateId`, `subject` and `body`"
                }
                TaskType::Escalate => "`newTone`",
                _ => "no keys",
            };
            TaskError(format!(
                "invalid data for a `{ty}` task: {e}; it takes {accepted}"
            ))
        };
        let template = |name: &str, what: &str| {
            notifier
                .templates
                .require(name, what)
                .map_err(|e| TaskError(e.to_string()))
        };
        Ok(match ty {
            TaskType::SendEmail | TaskType::FollowUp => {
                let d: EmailData = serde_json::from_value(data.clone()).map_err(bad)?;
                if let Some(t) = &d.tone {
                    template(t, "tone")?;
                }
                if let Some(t) = &d.template_id {
                    template(t, "templateId")?;
                }
                if d.subject.is_some() != d.body.is_some() {
                    return Err(TaskError(format!(
                        "a `{ty}` task with its own text needs both `subject` and `body`"
                    )));
                }
                TaskData::Email(d)
            }
            TaskType::Escalate => {
                let d: EscalateData = serde_json::from_value(data.clone()).map_err(bad)?;
                if let Some(t) = &d.new_tone {
                    template(t, "newTone")?;
                }
                TaskData::Escalate(d)
            }
            TaskType::CheckPayment | TaskType::PauseCampaign | TaskType::ResumeCampaign => {
                serde_json::from_value::<NoData>(data.clone()).map_err(bad)?;
                TaskData::None
            }
            TaskType::Custom => {
                let handler = data.get("handler").and_then(Value::as_str).ok_or_else(|| {
                    TaskError(format!(
                        "a `custom` task needs `\"handler\": NAME` in its data, naming a \
                         `[queue.handlers.NAME]` of config.toml{}",
                        handler_list(queue)
                    ))
                })?;
                if !queue.handlers.contains_key(handler) {
                    return Err(TaskError(format!(
                        "no handler `{handler}` for a `custom` task: add \
                         `[queue.handlers.{handler}]` to config.toml{}",
                        handler_list(queue)
                    )));
                }
                TaskData::Custom(handler.to_string(), data.clone())
            }
        })
    }
}

fn handler_list(queue: &QueueConfig) -> String {
    if queue.handlers.is_empty() {
        " (none is configured)".into()
    } else {
        let names: Vec<String> = queue.handlers.keys().map(|k| format!("`{k}`")).collect();
        format!(" (configured: {})", names.join(", "))
    }
}

/// Retries of one task type: the wait before each retry, and how many.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryRule {
    pub backoff: Vec<Duration>,
    pub max_retries: u32,
}

impl Default for RetryRule {
    /// The seed's: 5 minutes, 15 minutes, 1 hour; three retries.
    fn default() -> Self {
        RetryRule {
            backoff: vec![
                Duration::from_secs(300),
                Duration::from_secs(900),
                Duration::from_secs(3600),
            ],
            max_retries: 3,
        }
    }
}

impl RetryRule {
    /// The wait before retry number `n` (1-based); the last step repeats.
    pub fn delay(&self, n: u32) -> Duration {
        let i = (n.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        self.backoff
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }
}

/// A `custom` task handler: a job of kind `http`, `command`, `sql` or `noop` that receives the
/// task's data.
pub struct Handler {
    pub kind: String,
    pub job: Arc<dyn DynJob>,
    pub timeout: Option<Duration>,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What `tickler campaign create` uses when its options leave something out.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignDefaults {
    pub days_between_emails: u32,
    pub max_attempts: u32,
    pub stages: Vec<String>,
    pub escalation_tone: Option<String>,
    pub send_hour: u32,
    /// The first emails go out this long after the campaign is created (seed: 30 minutes).
    pub first_email_after: Duration,
}

impl Default for CampaignDefaults {
    fn default() -> Self {
        CampaignDefaults {
            days_between_emails: 5,
            max_attempts: 4,
            stages: vec!["friendly".into(), "professional".into(), "firm".into()],
            escalation_tone: Some("urgent".into()),
            send_hour: 10,
            first_email_after: Duration::from_secs(1800),
        }
    }
}

/// The `[queue]` section.
#[derive(Debug)]
pub struct QueueConfig {
    /// `false`: this daemon runs no tasks (another replica does).
    pub enabled: bool,
    /// Tasks run at once by one daemon.
    pub concurrency: usize,
    /// Tasks claimed by one statement.
    pub batch: usize,
    /// How long a claim holds a task; renewed while it runs, reclaimed by any daemon after.
    pub lease: Duration,
    /// The longest one attempt may take (a handler may set its own).
    pub timeout: Duration,
    /// SQLite only, a fallback: how often the runner reads the count of queue changes when
    /// the kernel's file-change notifications (inotify) cannot be had. Normally a write by
    /// another process is reported at once and nothing polls (invariant 8); on PostgreSQL,
    /// LISTEN/NOTIFY does the same.
    pub poll: Duration,
    pub retry_default: RetryRule,
    pub retry: BTreeMap<TaskType, RetryRule>,
    pub handlers: BTreeMap<String, Handler>,
    pub campaigns: CampaignDefaults,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            concurrency: 256,
            batch: 128,
            lease: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(5),
            retry_default: RetryRule::default(),
            retry: BTreeMap::new(),
            handlers: BTreeMap::new(),
            campaigns: CampaignDefaults::default(),
        }
    }
}

impl QueueConfig {
    pub fn retry_of(&self, ty: TaskType) -> &RetryRule {
        self.retry.get(&ty).unwrap_or(&self.retry_default)
    }
}

/// A task to enqueue, as `tickler tasks enqueue` and campaigns describe it.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub task_type: TaskType,
    pub scheduled_for: DateTime<Utc>,
    pub data: Option<Value>,
    pub org_id: Option<String>,
    pub campaign_id: Option<String>,
    pub invoice_id: Option<String>,
    pub customer_id: Option<String>,
    pub priority: i32,
    pub max_retries: Option<u32>,
    pub metadata: Option<Value>,
}

impl TaskRequest {
    pub fn new(task_type: TaskType, scheduled_for: DateTime<Utc>) -> TaskRequest {
        TaskRequest {
            task_type,
            scheduled_for,
            data: None,
            org_id: None,
            campaign_id: None,
            invoice_id: None,
            customer_id: None,
            priority: 0,
            max_retries: None,
            metadata: None,
        }
    }

    /// The row to insert, with a new time-ordered id.
    pub fn into_row(self, queue: &QueueConfig) -> NewTask {
        NewTask {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: self.org_id.unwrap_or_else(|| NO_ORG.to_string()),
            campaign_id: self.campaign_id,
            invoice_id: self.invoice_id,
            customer_id: self.customer_id,
            task_type: self.task_type.as_str().to_string(),
            task_data: self.data.map(|d| d.to_string()),
            scheduled_for: task_time(self.scheduled_for),
            max_retries: self
                .max_retries
                .unwrap_or(queue.retry_of(self.task_type).max_retries)
                as i32,
            priority: self.priority,
            metadata: self.metadata.map(|m| m.to_string()),
        }
    }
}

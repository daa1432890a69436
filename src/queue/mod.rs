//! The durable queue of one-off delayed tasks (seed 000) and the collection campaigns that
//! feed it. A task is a row in `scheduled_tasks`; the runner ([`runner`]) claims due rows with a
//! lease, runs them ([`execute`]) and writes how they ended; campaigns ([`campaign`]) schedule
//! their emails as tasks; each task type is one file in [`tasks`]. This module holds what is
//! asked of the queue ([`TaskRequest`]) and the `[queue]` settings.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::jobs::DynJob;
use crate::store::queue::{NO_ORG, NewTask, task_time};

pub mod campaign;
pub mod execute;
pub mod runner;
pub mod tasks;

pub use tasks::{TaskType, UnknownTaskType};

/// Every status a task row can have, in the order of its life.
pub const STATUSES: &[&str] = &["pending", "executing", "completed", "failed", "cancelled"];

/// Why a task is refused at enqueue, or fails without retry when it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

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
    /// Campaign emails go out only inside this window (and the email channel's), in each
    /// customer's zone; outside it, the email's task waits for it.
    pub send_window: Option<std::sync::Arc<crate::notify::SendWindow>>,
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
            send_window: None,
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

//! Running one claimed task: reading its type and data and handing it to its type (one file
//! each, in [`tasks`](super::tasks)); and what every type runs with ([`Env`]), ends with
//! ([`Step`]) or fails with ([`Fail`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::campaign::Campaign;
use super::{QueueConfig, TaskError, TaskType};
use crate::notify::Notifier;
use crate::store::queue::{CampaignStep, MemberRow, TaskRow};
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
    /// The application's databases of `[databases]`, for handlers' SQL.
    pub databases: Arc<crate::store::user::Databases>,
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
    /// Not yet: the task runs again at this instant (its message's send window opens then),
    /// without counting a retry.
    Later(DateTime<Utc>, Value),
}

/// A failure while running a task: the runner retries a retryable one under the type's
/// backoff and marks any other `failed` at once.
pub struct Fail {
    pub error: String,
    pub retryable: bool,
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

/// A failure that a retry would only repeat (bad data, a missing invoice or campaign).
pub fn fatal(error: impl Into<String>) -> Fail {
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
    let ty = TaskType::parse(&task.task_type).map_err(|e| fatal(e.to_string()))?;
    let data: Option<Value> = match &task.task_data {
        None => None,
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| fatal(format!("the task's data is not valid JSON: {e}")))?,
        ),
    };
    ty.task().run(env, task, ty, now, data.as_ref()).await
}

/// Reads the campaign `id` and its members, for a task of that campaign.
pub(super) async fn load_campaign(env: &Env, id: &str) -> Result<(Campaign, Vec<MemberRow>), Fail> {
    let row = env
        .store
        .campaign(id)
        .await?
        .ok_or_else(|| fatal(format!("campaign `{id}` does not exist")))?;
    let members = env.store.campaign_members(&row.id).await?;
    Ok((Campaign::from_row(row), members))
}

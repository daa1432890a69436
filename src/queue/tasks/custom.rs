//! `custom`: runs a `[queue.handlers.NAME]` job (`http`, `command`, `sql` or `noop`) with the
//! task's data, within the handler's timeout (else `[queue].timeout`). The job's outcome is
//! the task's result; its error, retryable or not, is the task's.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{DataContext, Task, TaskContext};
use crate::jobs::{RunContext, TaskInput};
use crate::queue::execute::{Fail, Step, fatal};
use crate::queue::{QueueConfig, TaskError};

/// The data of a `custom` task: the handler's name, and the whole data, passed to it as is.
#[derive(Debug, Clone)]
pub struct CustomData {
    pub handler: String,
    pub data: Value,
}

/// `custom`: its data names a configured handler in `"handler"`; any other key is the
/// handler's business.
pub struct Custom;

impl Task for Custom {
    type Data = CustomData;

    fn data(&self, data: &Value, cx: &DataContext<'_>) -> Result<CustomData, TaskError> {
        let queue = cx.queue;
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
        Ok(CustomData {
            handler: handler.to_string(),
            data: data.clone(),
        })
    }

    async fn run(&self, cx: TaskContext<'_>, d: CustomData) -> Result<Step, Fail> {
        let TaskContext { env, task, now, .. } = cx;
        let CustomData { handler, data } = d;
        let handler = handler.as_str();
        let h = env.queue.handlers.get(handler).ok_or_else(|| {
            fatal(format!(
                "no handler `{handler}`: it was removed from config.toml after the task was queued"
            ))
        })?;
        let ctx = RunContext {
            job_name: Arc::from(format!("task handler {handler}")),
            scheduled_for: task.scheduled_for,
            attempt: task.attempts.max(1) as u32,
            store: env.store.clone(),
            now,
            timezone: env.timezone,
            notifier: env.notifier.clone(),
            dry_run: false,
            task: Some(Arc::new(TaskInput {
                id: task.id.clone(),
                task_type: task.task_type.clone(),
                attempt: task.attempts.max(1) as u32,
                scheduled_for: task.scheduled_for,
                campaign_id: task.campaign_id.clone(),
                invoice_id: task.invoice_id.clone(),
                customer_id: task.customer_id.clone(),
                data,
            })),
            instance: env.owner.clone(),
            run_id: None,
            databases: env.databases.clone(),
            send_window: None,
        };
        let timeout = h.timeout.unwrap_or(env.queue.timeout);
        match tokio::time::timeout(timeout, h.job.run(&ctx)).await {
            Err(_) => Err(Fail {
                error: format!(
                    "handler `{handler}` timed out after {}",
                    humantime::format_duration(timeout)
                ),
                retryable: true,
            }),
            Ok(Ok(outcome)) => {
                let mut result = Map::new();
                result.insert("handler".into(), handler.into());
                if outcome.records > 0 {
                    result.insert("records".into(), outcome.records.into());
                }
                if !outcome.errors.is_empty() {
                    result.insert("errors".into(), json!(outcome.errors));
                }
                result.extend(outcome.metadata);
                Ok(Step::Done(Value::Object(result)))
            }
            Ok(Err(e)) => Ok(Step::Failed {
                error: e.to_string(),
                retryable: e.is_retryable(),
                result: (!e.metadata().is_empty()).then(|| Value::Object(e.metadata().clone())),
            }),
        }
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

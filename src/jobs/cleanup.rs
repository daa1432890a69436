//! `cleanup` (seeds 002, 003): retention per table. Each `[[job.rule]]` deletes the rows of
//! `table` whose `column` is older than `older_than`, except those its `keep` condition
//! protects (failures kept longer, critical audit rows never), in batches of `batch_size`, each
//! its own short transaction, so a large delete never holds the database for long.

use std::time::Duration;

use serde::Deserialize;

use super::{Job, JobError, Outcome, RunContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupJob {
    pub rule: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub table: String,
    /// The timestamp (or date) column the age is read from.
    #[serde(default = "created_at")]
    pub column: String,
    #[serde(with = "crate::time::duration")]
    pub older_than: Duration,
    /// An SQL condition for rows to keep, e.g. `status = 'failed'` or `severity = 'critical'`.
    pub keep: Option<String>,
    #[serde(default = "thousand")]
    pub batch_size: i64,
    /// A pause between batches, to leave room to other writers.
    #[serde(default, with = "crate::time::duration::option")]
    pub pause: Option<Duration>,
}

fn created_at() -> String {
    "created_at".into()
}
fn thousand() -> i64 {
    1000
}

/// Tables tickler needs whole.
const PROTECTED: &[&str] = &["tickler_instances", "tickler_counters", "_sqlx_migrations"];

/// What is wrong with the rules of a `cleanup` job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanupError {
    #[error("add at least one `[[job.rule]]` with `table` and `older_than`")]
    NoRule,
    /// A `table` or `column` that is not a bare (optionally schema-qualified) name.
    #[error(
        "`{what}` `{name}` is not a plain table or column name (letters, digits, `_`, an \
         optional `schema.`)"
    )]
    NotAName { what: &'static str, name: String },
    /// One of the tables tickler keeps its own state in.
    #[error("`{0}` is tickler's own bookkeeping and cannot be cleaned")]
    Bookkeeping(String),
    /// A batch size out of range (the value found).
    #[error("`batch_size` must be 1-100000 (found {0})")]
    BatchSize(i64),
    #[error("`keep` must be one SQL condition, without `;`")]
    KeepStatements,
}

fn identifier(what: &'static str, s: &str) -> Result<(), CleanupError> {
    let ok = s.split('.').count() <= 2
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(CleanupError::NotAName {
            what,
            name: s.to_string(),
        })
    }
}

impl Rule {
    /// The rows to keep, with a running run's ledger row always kept.
    fn keep(&self) -> Option<String> {
        let running =
            (self.table == "job_execution_logs").then(|| "status = 'running'".to_string());
        match (&self.keep, running) {
            (Some(k), Some(r)) => Some(format!("({k}) OR {r}")),
            (Some(k), None) => Some(k.clone()),
            (None, r) => r,
        }
    }
}

impl Job for CleanupJob {
    type Invalid = CleanupError;

    fn validate(&self) -> Result<(), CleanupError> {
        if self.rule.is_empty() {
            return Err(CleanupError::NoRule);
        }
        for r in &self.rule {
            identifier("table", &r.table)?;
            identifier("column", &r.column)?;
            if PROTECTED.contains(&r.table.as_str()) {
                return Err(CleanupError::Bookkeeping(r.table.clone()));
            }
            if !(1..=100_000).contains(&r.batch_size) {
                return Err(CleanupError::BatchSize(r.batch_size));
            }
            if r.keep.as_deref().is_some_and(|k| k.contains(';')) {
                return Err(CleanupError::KeepStatements);
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let mut outcome = Outcome::default();
        let mut per_table = serde_json::Map::new();
        for r in &self.rule {
            let before = chrono::Duration::from_std(r.older_than)
                .ok()
                .and_then(|d| ctx.now.checked_sub_signed(d))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            let keep = r.keep();
            let label = format!(
                "{}.{} older than {}",
                r.table,
                r.column,
                humantime::format_duration(r.older_than)
            );
            let column = match ctx.store.instant_column(&r.table, &r.column).await {
                Ok(column) => column,
                Err(e) => {
                    outcome.errors.push(format!("{label}: {e}"));
                    continue;
                }
            };
            if ctx.dry_run {
                match ctx
                    .store
                    .count_deletable(&column, keep.as_deref(), before)
                    .await
                {
                    Ok(n) => {
                        outcome.records += n;
                        per_table.insert(label, n.into());
                    }
                    Err(e) => outcome.errors.push(format!("{label}: {e}")),
                }
                continue;
            }
            let mut deleted = 0i64;
            loop {
                match ctx
                    .store
                    .delete_batch(&column, keep.as_deref(), before, r.batch_size)
                    .await
                {
                    Ok(n) => {
                        deleted += n as i64;
                        if (n as i64) < r.batch_size {
                            break;
                        }
                        match r.pause {
                            Some(p) => tokio::time::sleep(p).await,
                            None => tokio::task::yield_now().await,
                        }
                    }
                    Err(e) => {
                        outcome.errors.push(format!("{label}: {e}"));
                        break;
                    }
                }
            }
            if deleted > 0 {
                tracing::info!(job = %ctx.job_name, table = %r.table, rows = deleted, "deleted old rows");
            }
            outcome.records += deleted;
            per_table.insert(label, deleted.into());
        }
        let key = if ctx.dry_run {
            "would_delete"
        } else {
            "deleted"
        };
        outcome
            .metadata
            .insert(key.into(), serde_json::Value::Object(per_table));
        if outcome.errors.len() == self.rule.len() {
            // Nothing worked: a failed run, not a partial one.
            return Err(JobError::retryable(outcome.errors.join("; ")));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    /// A `[[job.rule]]` on `table` with `extra` keys.
    fn rule(table: &str, extra: &str) -> String {
        format!("[[rule]]\ntable = \"{table}\"\nolder_than = \"30d\"\n{extra}")
    }

    #[test]
    fn bad_rules_are_refused_with_what_to_write() {
        #[rustfmt::skip]
        let table: Vec<(String, &str)> = vec![
            ("rule = []".into(),
             "add at least one `[[job.rule]]` with `table` and `older_than`"),
            (rule("audit log", ""),
             "`table` `audit log` is not a plain table or column name (letters, digits, `_`, an \
              optional `schema.`)"),
            (rule("audit_log", "column = \"a.b.c\""),
             "`column` `a.b.c` is not a plain table or column name (letters, digits, `_`, an \
              optional `schema.`)"),
            (rule("tickler_counters", ""),
             "`tickler_counters` is tickler's own bookkeeping and cannot be cleaned"),
            (rule("audit_log", "batch_size = 0"), "`batch_size` must be 1-100000 (found 0)"),
            (rule("audit_log", "keep = \"a = 1; drop table b\""),
             "`keep` must be one SQL condition, without `;`"),
        ];
        assert_refused::<CleanupJob>(&table);
        let job: CleanupJob = toml::from_str(&rule("public.audit_log", "")).unwrap();
        assert!(job.validate().is_ok());
    }
}

//! `cleanup` (seeds 002, 003): retention per table. Each `[[job.rule]]` deletes the rows of
//! `table` whose `column` is older than `older_than`, except those its `keep` condition
//! protects (failures kept longer, critical audit rows never), in batches of `batch_size`, each
//! its own short transaction, so a large delete never holds the database for long. With
//! `action = { update = "status = 'cancelled'" }` it changes those rows instead (seed 003:
//! bookings without a deposit cancelled after 24 hours); `keep` must then leave alone the rows
//! it already changed.

use std::time::Duration;

use serde::Deserialize;

use super::{Job, JobError, Outcome, RunContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupJob {
    pub rule: Vec<Rule>,
    /// The `[databases]` entry whose tables the rules clean; tickler's own by default.
    pub database: Option<String>,
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
    /// What happens to the rows: deleted (the default), or updated.
    #[serde(default)]
    pub action: Action,
}

/// What a rule does with the rows it finds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Action {
    #[default]
    Delete,
    /// `SET` these assignments, e.g. `status = 'cancelled'`.
    Update(String),
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
    #[error(
        "`action.update` must be the assignments of one `SET`, e.g. `status = 'cancelled'`, \
         without `;`"
    )]
    UpdateStatements,
    /// An update without `keep` would change the same rows at every run.
    #[error(
        "a rule with `action = {{ update = ... }}` needs `keep`, a condition true of the rows it \
         already changed, e.g. `keep = \"status <> 'pending'\"`; else every run changes them again"
    )]
    UpdateWithoutKeep,
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
            if let Action::Update(set) = &r.action {
                if set.contains(';') || set.trim().is_empty() {
                    return Err(CleanupError::UpdateStatements);
                }
                if r.keep.is_none() {
                    return Err(CleanupError::UpdateWithoutKeep);
                }
            }
        }
        Ok(())
    }

    fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    fn sql(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for (i, r) in self.rule.iter().enumerate() {
            let keep = r
                .keep
                .as_deref()
                .map(|k| format!(" AND ({k})"))
                .unwrap_or_default();
            let what = format!("rule {}", i + 1);
            out.push((
                what.clone(),
                format!("SELECT {} FROM {} WHERE FALSE{keep}", r.column, r.table),
            ));
            if let Action::Update(set) = &r.action {
                out.push((what, format!("UPDATE {} SET {set} WHERE FALSE", r.table)));
            }
        }
        out
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        let store = ctx.database(self.database.as_deref()).await?;
        let mut outcome = Outcome::default();
        let (mut deleted, mut updated) = (serde_json::Map::new(), serde_json::Map::new());
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
            let per_table = match r.action {
                Action::Delete => &mut deleted,
                Action::Update(_) => &mut updated,
            };
            let column = match store.instant_column(&r.table, &r.column).await {
                Ok(column) => column,
                Err(e) => {
                    outcome.errors.push(format!("{label}: {e}"));
                    continue;
                }
            };
            // The rows to change, counted first: an update stops there even if `keep` fails
            // to exclude the rows it changed.
            let due = match store
                .count_deletable(&column, keep.as_deref(), before)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    outcome.errors.push(format!("{label}: {e}"));
                    continue;
                }
            };
            if ctx.dry_run {
                outcome.records += due;
                per_table.insert(label, due.into());
                continue;
            }
            let mut changed = 0i64;
            while changed < due {
                let batch = r.batch_size.min(due - changed);
                let set = match &r.action {
                    Action::Delete => None,
                    Action::Update(set) => Some(set.as_str()),
                };
                match store
                    .clean_batch(&column, keep.as_deref(), set, before, batch)
                    .await
                {
                    Ok(n) => {
                        changed += n as i64;
                        if (n as i64) < batch {
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
            if changed > 0 {
                let what = match r.action {
                    Action::Delete => "deleted old rows",
                    Action::Update(_) => "updated old rows",
                };
                tracing::info!(job = %ctx.job_name, table = %r.table, rows = changed, "{what}");
            }
            outcome.records += changed;
            per_table.insert(label, changed.into());
        }
        let (d, u) = if ctx.dry_run {
            ("would_delete", "would_update")
        } else {
            ("deleted", "updated")
        };
        outcome
            .metadata
            .insert(d.into(), serde_json::Value::Object(deleted));
        if !updated.is_empty() {
            outcome
                .metadata
                .insert(u.into(), serde_json::Value::Object(updated));
        }
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

//! `sql`: statements run against tickler's database or an application's (`database = "app"`,
//! a `[databases]` entry), in one transaction unless told otherwise; the records processed
//! are the rows they affected.

use serde::Deserialize;

use super::{Job, JobError, Outcome, RunContext};
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlJob {
    /// The statements, run in order.
    pub statements: Vec<String>,
    /// Run them in one transaction, so a failing statement undoes the others.
    #[serde(default = "yes")]
    pub transaction: bool,
    /// The `[databases]` entry to run them on; tickler's own database by default.
    pub database: Option<String>,
}

/// Database error codes worth another attempt: SQLite's busy and locked (with their extended
/// forms), PostgreSQL's serialization failure, deadlock and lock timeout.
const TRANSIENT: &[&str] = &["5", "6", "261", "262", "517", "40001", "40P01", "55P03"];

fn yes() -> bool {
    true
}

/// What is wrong with the statements of an `sql` job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// None listed, or one of them blank.
    #[error("`statements` must list at least one non-empty SQL statement")]
    NoStatements,
}

impl Job for SqlJob {
    type Invalid = SqlError;

    fn validate(&self) -> Result<(), SqlError> {
        if self.statements.is_empty() || self.statements.iter().any(|s| s.trim().is_empty()) {
            return Err(SqlError::NoStatements);
        }
        Ok(())
    }

    fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    fn sql(&self) -> Vec<(String, String)> {
        self.statements
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("statement {}", i + 1), s.clone()))
            .collect()
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        if ctx.dry_run {
            return Ok(super::dry_run_only(
                "would_run",
                serde_json::json!(self.statements),
            ));
        }
        let rows = ctx
            .database(self.database.as_deref())
            .await?
            .execute(&self.statements, self.transaction)
            .await
            .map_err(|e| match &e {
                // The database refused the SQL itself: running it again will not help, unless
                // it only lost a race (a lock, a serialization failure, a deadlock).
                StoreError::Query {
                    source: sqlx::Error::Database(db),
                    ..
                } if !db.code().is_some_and(|c| TRANSIENT.contains(&&*c)) => {
                    JobError::fatal(e.to_string())
                }
                _ => JobError::retryable(e.to_string()),
            })?;
        let mut out = Outcome {
            records: rows as i64,
            ..Outcome::default()
        };
        out.metadata.insert("rows_affected".into(), rows.into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_must_not_be_empty() {
        for params in ["statements = []", "statements = [\"select 1\", \" \"]"] {
            let job: SqlJob = toml::from_str(params).unwrap();
            assert_eq!(
                job.validate().unwrap_err().to_string(),
                "`statements` must list at least one non-empty SQL statement",
                "{params}"
            );
        }
    }
}

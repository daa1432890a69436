//! SQL on the user's own tables, written by the user in `config.toml`: a `sql` job's
//! statements, and a `notify` job's query, run with `:now` bound and each row decoded into a
//! JSON object for its templates. Both run on a pool of their own, apart from the ledger's, so
//! long user SQL cannot starve slot claims and heartbeats.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use super::{Doing, Result, Store, ts};

/// Replaces the `:now` placeholder of a user's query by the backend's parameter `$1`.
fn bind_now(query: &str) -> (String, bool) {
    let mut used = false;
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(pos) = rest.find(":now") {
        let before_ok = !rest[..pos].ends_with(':');
        let after = &rest[pos + 4..];
        let after_ok = !after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..pos]);
        used |= before_ok && after_ok;
        out.push_str(if before_ok && after_ok { "$1" } else { ":now" });
        rest = after;
    }
    out.push_str(rest);
    (out, used)
}

impl Store {
    /// Runs a `sql` job's statements, in one transaction when `transaction`; returns the rows
    /// they changed. SQLite reports a stale change count for DDL, so there the count is the
    /// difference of `total_changes()` around the statements.
    pub async fn execute(&self, statements: &[String], transaction: bool) -> Result<u64> {
        let doing = "running the job's SQL";
        match self {
            Store::Sqlite(s) => {
                const CHANGES: &str = "SELECT total_changes()";
                let mut conn = s.jobs_pool().acquire().await.doing(doing)?;
                let before: i64 = sqlx::query_scalar(CHANGES)
                    .fetch_one(&mut *conn)
                    .await
                    .doing(doing)?;
                if transaction {
                    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.doing(doing)?;
                    for s in statements {
                        sqlx::query(s.as_str())
                            .execute(&mut *tx)
                            .await
                            .doing(doing)?;
                    }
                    tx.commit().await.doing(doing)?;
                } else {
                    for s in statements {
                        sqlx::query(s.as_str())
                            .execute(&mut *conn)
                            .await
                            .doing(doing)?;
                    }
                }
                let after: i64 = sqlx::query_scalar(CHANGES)
                    .fetch_one(&mut *conn)
                    .await
                    .doing(doing)?;
                Ok((after - before).max(0) as u64)
            }
            Store::Postgres(s) => {
                let mut conn = s.jobs_pool().acquire().await.doing(doing)?;
                let mut total = 0;
                if transaction {
                    let mut tx = conn.begin().await.doing(doing)?;
                    for s in statements {
                        total += sqlx::query(s.as_str())
                            .execute(&mut *tx)
                            .await
                            .doing(doing)?
                            .rows_affected();
                    }
                    tx.commit().await.doing(doing)?;
                } else {
                    for s in statements {
                        total += sqlx::query(s.as_str())
                            .execute(&mut *conn)
                            .await
                            .doing(doing)?
                            .rows_affected();
                    }
                }
                Ok(total)
            }
        }
    }

    /// Runs a user's query (a `notify` job's) and returns each row as a JSON object. `:now`
    /// in the query is bound to `now`: a `timestamptz` on PostgreSQL, and on SQLite the text
    /// `YYYY-MM-DD HH:MM:SS` (UTC) that SQLite's own `datetime()` writes and compares.
    pub async fn query_json(
        &self,
        query: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<serde_json::Map<String, Value>>> {
        use futures_util::TryStreamExt;
        let (text, uses_now) = bind_now(query);
        let mut out = vec![];
        match self {
            Store::Sqlite(s) => {
                let mut q = sqlx::query(&text);
                if uses_now {
                    q = q.bind(now.format("%Y-%m-%d %H:%M:%S").to_string());
                }
                let mut rows = q.fetch(s.jobs_pool());
                while let Some(row) = rows.try_next().await.doing("running the query")? {
                    out.push(sqlite_row_json(&row)?);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Store::Postgres(s) => {
                let mut q = sqlx::query(&text);
                if uses_now {
                    q = q.bind(now);
                }
                let mut rows = q.fetch(s.jobs_pool());
                while let Some(row) = rows.try_next().await.doing("running the query")? {
                    out.push(pg_row_json(&row)?);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn unsupported(column: &str, ty: &str) -> super::StoreError {
    super::StoreError::Query {
        doing: "reading the query's rows",
        source: sqlx::Error::Decode(
            format!(
                "column `{column}` has the type {ty}, which tickler cannot read; cast it in the \
                 query, e.g. `{column}::text`"
            )
            .into(),
        ),
    }
}

fn sqlite_row_json(row: &sqlx::sqlite::SqliteRow) -> Result<serde_json::Map<String, Value>> {
    use sqlx::{Column, TypeInfo, ValueRef};
    let mut map = serde_json::Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).doing("reading the query's rows")?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => {
                    json!(row.try_get::<i64, _>(i).doing("reading the query's rows")?)
                }
                "REAL" => json!(row.try_get::<f64, _>(i).doing("reading the query's rows")?),
                "TEXT" | "DATETIME" | "DATE" | "TIME" => {
                    json!(
                        row.try_get::<String, _>(i)
                            .doing("reading the query's rows")?
                    )
                }
                other => return Err(unsupported(col.name(), other)),
            }
        };
        map.insert(col.name().to_string(), value);
    }
    Ok(map)
}

fn pg_row_json(row: &sqlx::postgres::PgRow) -> Result<serde_json::Map<String, Value>> {
    use sqlx::{Column, TypeInfo, ValueRef};
    let mut map = serde_json::Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).doing("reading the query's rows")?;
        let d = "reading the query's rows";
        let value = if raw.is_null() {
            Value::Null
        } else {
            match col.type_info().name() {
                "BOOL" => json!(row.try_get::<bool, _>(i).doing(d)?),
                "INT2" => json!(row.try_get::<i16, _>(i).doing(d)?),
                "INT4" => json!(row.try_get::<i32, _>(i).doing(d)?),
                "INT8" => json!(row.try_get::<i64, _>(i).doing(d)?),
                "FLOAT4" => json!(row.try_get::<f32, _>(i).doing(d)?),
                "FLOAT8" => json!(row.try_get::<f64, _>(i).doing(d)?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => {
                    json!(row.try_get::<String, _>(i).doing(d)?)
                }
                "UUID" => json!(row.try_get::<uuid::Uuid, _>(i).doing(d)?.to_string()),
                "TIMESTAMPTZ" => json!(ts(row.try_get::<DateTime<Utc>, _>(i).doing(d)?)),
                "TIMESTAMP" => json!(
                    row.try_get::<chrono::NaiveDateTime, _>(i)
                        .doing(d)?
                        .to_string()
                ),
                "DATE" => json!(row.try_get::<NaiveDate, _>(i).doing(d)?.to_string()),
                "JSON" | "JSONB" => row.try_get::<Value, _>(i).doing(d)?,
                other => return Err(unsupported(col.name(), other)),
            }
        };
        map.insert(col.name().to_string(), value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::bind_now;

    #[test]
    fn now_is_bound_but_casts_are_left_alone() {
        assert_eq!(
            bind_now("SELECT * FROM s WHERE t BETWEEN :now AND x::nowhere AND y = :nowish"),
            (
                "SELECT * FROM s WHERE t BETWEEN $1 AND x::nowhere AND y = :nowish".to_string(),
                true
            )
        );
        assert_eq!(bind_now("SELECT '$1'"), ("SELECT '$1'".to_string(), false));
    }
}

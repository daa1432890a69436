//! SQL on the user's own tables, written by the user in `config.toml`: a `sql` job's
//! statements, and a `notify` job's query, run with `:now` bound and each row decoded into a
//! JSON object for its templates. Both run on a pool of their own, apart from the ledger's, so
//! long user SQL cannot starve slot claims and heartbeats.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use std::collections::BTreeMap;

use tokio::sync::OnceCell;

use super::{Doing, Result, Store, StoreError, ts, with_pool};
use crate::secret::{DatabaseUrl, SecretError, SecretSource};

/// Replaces the `:now` placeholder of a user's query by the backend's parameter `$1`.
pub fn bind_now(query: &str) -> (String, bool) {
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
    /// Prepares `sql` without running it, as `tickler check` does for the SQL of jobs on an
    /// application's database: a syntax error, or a table or column the database lacks, is an
    /// error. PostgreSQL's "could not determine the type of a parameter" is not: the types
    /// come from the values bound at run time.
    pub async fn prepare(&self, sql: &str) -> Result<()> {
        use sqlx::Executor;
        let doing = "preparing the SQL";
        let result = match self {
            Store::Sqlite(s) => {
                let mut conn = s.jobs_pool().acquire().await.doing(doing)?;
                conn.prepare(sql).await.map(|_| ())
            }
            Store::Postgres(s) => {
                let mut conn = s.jobs_pool().acquire().await.doing(doing)?;
                conn.prepare(sql).await.map(|_| ())
            }
        };
        match result {
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P18") => Ok(()),
            other => other.doing(doing),
        }
    }
}

/// Where a named database's URL comes from: written in the config, or read at first use from
/// an environment variable or a file (a URL with a password is a secret).
#[derive(Debug, Clone)]
pub enum DatabaseSource {
    Url(DatabaseUrl),
    Secret(SecretSource),
}

/// Why a named database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("no database `{0}`: add `[databases.{0}]` with `url`, `url_env` or `url_file`")]
    Unknown(String),
    #[error("database `{name}`: {source}")]
    Url { name: String, source: SecretError },
    #[error(
        "database `{name}`: the SQLite file `{path}` does not exist; tickler does not create \
         the application's database: check `[databases.{name}]`"
    )]
    NoFile { name: String, path: String },
    #[error("database `{name}`: {source}")]
    Open { name: String, source: StoreError },
}

/// The application's own databases named in `[databases]`, each opened on its first use with
/// a small pool of its own, and kept for the jobs of one config (a reload opens them anew).
#[derive(Default)]
pub struct Databases {
    named: BTreeMap<String, (DatabaseSource, OnceCell<Store>)>,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Databases {
    pub fn new(named: impl IntoIterator<Item = (String, DatabaseSource)>) -> Databases {
        Databases {
            named: named
                .into_iter()
                .map(|(name, source)| (name, (source, OnceCell::new())))
                .collect(),
        }
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }

    /// The database `name`, opened on first use.
    pub async fn get(&self, name: &str) -> std::result::Result<&Store, DatabaseError> {
        let (source, store) = self
            .named
            .get(name)
            .ok_or_else(|| DatabaseError::Unknown(name.to_string()))?;
        store
            .get_or_try_init(|| async {
                let url = match source {
                    DatabaseSource::Url(url) => url.clone(),
                    DatabaseSource::Secret(s) => {
                        let secret = s.read().map_err(|source| DatabaseError::Url {
                            name: name.to_string(),
                            source,
                        })?;
                        DatabaseUrl::new(secret.expose())
                    }
                };
                Store::connect_user(&url).await.map_err(|e| match e {
                    StoreError::NoDatabaseFile(path) => DatabaseError::NoFile {
                        name: name.to_string(),
                        path,
                    },
                    source => DatabaseError::Open {
                        name: name.to_string(),
                        source,
                    },
                })
            })
            .await
    }

    /// Closes the pools opened so far.
    pub async fn close(&self) {
        for (_, store) in self.named.values() {
            if let Some(s) = store.get() {
                s.close().await;
            }
        }
    }
}

/// A statement of the user's whose `:name` placeholders take the values of a row's columns
/// by name (`notify`'s `on_sent`), turned into the backends' `$n` once.
#[derive(Debug, Clone)]
pub struct RowStatement {
    text: String,
    /// The column each `$n` takes, in order.
    names: Vec<String>,
}

impl RowStatement {
    /// Reads `:name` placeholders outside quoted strings; `::type` casts are left alone.
    pub fn parse(sql: &str) -> RowStatement {
        let mut text = String::with_capacity(sql.len());
        let mut names: Vec<String> = vec![];
        let chars: Vec<char> = sql.chars().collect();
        let (mut i, mut quoted) = (0, false);
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                quoted = !quoted;
            }
            let starts = !quoted
                && c == ':'
                && chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
                && (i == 0 || chars[i - 1] != ':');
            if !starts {
                text.push(c);
                i += 1;
                continue;
            }
            let end = (i + 1..chars.len())
                .find(|&j| !ident(chars[j]))
                .unwrap_or(chars.len());
            let name: String = chars[i + 1..end].iter().collect();
            let n = match names.iter().position(|k| *k == name) {
                Some(p) => p + 1,
                None => {
                    names.push(name);
                    names.len()
                }
            };
            text.push_str(&format!("${n}"));
            i = end;
        }
        RowStatement { text, names }
    }

    /// Its text, with `$n` for each name.
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// The columns it names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Binds a row's values to a query by JSON type: text, integer, real, boolean, NULL; other
/// JSON as its text; `None` (`:now`) as `$now`.
macro_rules! bind_values {
    ($query:expr, $values:expr, $now:expr) => {{
        let mut q = $query;
        for v in $values {
            let Some(v) = v else {
                q = q.bind($now);
                continue;
            };
            q = match v {
                Value::String(s) => q.bind(s.clone()),
                Value::Bool(b) => q.bind(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => q.bind(i),
                    None => q.bind(n.as_f64()),
                },
                Value::Null => q.bind(None::<String>),
                other => q.bind(other.to_string()),
            };
        }
        q
    }};
}

impl Store {
    /// Runs `statements` for one row, in one transaction, each `:name` bound to the row's
    /// column `name` (`:now`, when the row has no such column, to `now` as in the query: a
    /// `timestamptz` on PostgreSQL, `YYYY-MM-DD HH:MM:SS` text on SQLite). A name the row lacks
    /// is refused before anything runs.
    pub async fn execute_for_row(
        &self,
        statements: &[RowStatement],
        row: &serde_json::Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut bound: Vec<(&str, Vec<Option<&Value>>)> = vec![];
        for (i, st) in statements.iter().enumerate() {
            let mut values = vec![];
            for name in &st.names {
                match row.get(name) {
                    Some(v) => values.push(Some(v)),
                    None if name == "now" => values.push(None),
                    None => {
                        return Err(StoreError::NoRowColumn {
                            statement: i + 1,
                            name: name.clone(),
                            columns: row.keys().cloned().collect::<Vec<_>>().join(", "),
                        });
                    }
                }
            }
            bound.push((st.text.as_str(), values));
        }
        let doing = "running `on_sent`";
        match self {
            Store::Sqlite(s) => {
                let mut tx = s
                    .jobs_pool()
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .doing(doing)?;
                let now = now.format("%Y-%m-%d %H:%M:%S").to_string();
                for (text, values) in &bound {
                    bind_values!(sqlx::query(text), values, now.clone())
                        .execute(&mut *tx)
                        .await
                        .doing(doing)?;
                }
                tx.commit().await.doing(doing)
            }
            Store::Postgres(s) => {
                let mut tx = s.jobs_pool().begin().await.doing(doing)?;
                for (text, values) in &bound {
                    bind_values!(sqlx::query(text), values, now)
                        .execute(&mut *tx)
                        .await
                        .doing(doing)?;
                }
                tx.commit().await.doing(doing)
            }
        }
    }
}

/// How a cleanup rule reads its column as instants, whatever the column holds: decided once per
/// run by [`Store::instant_column`], then used by every batch.
#[derive(Debug, Clone)]
pub struct InstantColumn {
    table: String,
    /// The condition "older than the cut-off `$1`" (unix seconds), in the database's terms.
    older: String,
    /// What names a row: `rowid` on SQLite, `ctid` on PostgreSQL.
    row_id: &'static str,
}

impl InstantColumn {
    /// `FROM table WHERE` older than `$1` and not kept by `keep` (an SQL condition).
    fn rows(&self, keep: Option<&str>) -> String {
        let keep = keep
            .map(|k| format!(" AND NOT COALESCE(({k}), FALSE)"))
            .unwrap_or_default();
        format!("FROM {} WHERE {}{keep}", self.table, self.older)
    }
}

/// The cut-off as both backends' conditions take it: unix seconds, to the millisecond.
fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// PostgreSQL column types read as instants, and how: `timestamp` and `date` as UTC (midnight
/// for a date), numbers as unix seconds.
fn pg_older_than(column: &str, ty: &str) -> Option<String> {
    Some(match ty {
        "timestamp with time zone" => format!("{column} < to_timestamp($1::float8)"),
        "timestamp without time zone" | "date" => {
            format!("{column} < (to_timestamp($1::float8) AT TIME ZONE 'UTC')")
        }
        "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => {
            format!("{column} < $1::float8")
        }
        _ => return None,
    })
}

impl Store {
    /// Decides how `table.column` is compared with a cut-off, as an instant: on SQLite,
    /// `julianday(column, 'auto')`, which reads text in SQLite's own `YYYY-MM-DD HH:MM:SS` as
    /// well as RFC 3339 (`…T…Z`, offsets) and unix seconds alike (text compared as text put
    /// `…T…` after `… …` of the same day, and deleted rows that were too young); a column with
    /// a value it cannot read is refused, naming the value. On PostgreSQL, by the column's
    /// type: `timestamptz`; `timestamp` and `date` as UTC; numbers as unix seconds; any other
    /// type is refused.
    pub async fn instant_column(&self, table: &str, column: &str) -> Result<InstantColumn> {
        let doing = "deleting old rows";
        let label = format!("{table}.{column}");
        let older = match self {
            Store::Sqlite(s) => {
                let odd: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT CAST({column} AS TEXT) FROM {table}
                      WHERE {column} IS NOT NULL AND julianday({column}, 'auto') IS NULL LIMIT 1"
                ))
                .fetch_optional(s.jobs_pool())
                .await
                .doing(doing)?;
                if let Some(found) = odd {
                    return Err(StoreError::NotInstants {
                        column: label,
                        found,
                    });
                }
                // `julianday` counts days from noon UTC of 24 November 4714 BC; the unix epoch is
                // its day 2440587.5.
                format!("(julianday({column}, 'auto') - 2440587.5) * 86400.0 < $1")
            }
            Store::Postgres(s) => {
                let (schema, name) = match table.split_once('.') {
                    Some((schema, name)) => (Some(schema), name),
                    None => (None, table),
                };
                let ty: Option<String> = sqlx::query_scalar(
                    "SELECT data_type FROM information_schema.columns
                      WHERE table_name = $1 AND column_name = $2
                        AND table_schema = COALESCE($3, current_schema())",
                )
                .bind(name)
                .bind(column)
                .bind(schema)
                .fetch_optional(s.jobs_pool())
                .await
                .doing(doing)?;
                let Some(ty) = ty else {
                    return Err(StoreError::NoColumn { column: label });
                };
                match pg_older_than(column, &ty) {
                    Some(older) => older,
                    None => return Err(StoreError::NotInstantType { column: label, ty }),
                }
            }
        };
        let row_id = match self {
            Store::Sqlite(_) => "rowid",
            Store::Postgres(_) => "ctid",
        };
        Ok(InstantColumn {
            table: table.to_string(),
            older,
            row_id,
        })
    }

    /// Deletes up to `batch` rows whose `column` is before `before` and that `keep` (an SQL
    /// condition) does not protect, or with `set` (an SQL assignment list, e.g. `status =
    /// 'cancelled'`) updates them; one short transaction per call.
    pub async fn clean_batch(
        &self,
        column: &InstantColumn,
        keep: Option<&str>,
        set: Option<&str>,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64> {
        let (table, row_id) = (&column.table, column.row_id);
        let (change, doing) = match set {
            None => (format!("DELETE FROM {table}"), "deleting old rows"),
            Some(set) => (format!("UPDATE {table} SET {set}"), "updating old rows"),
        };
        let text = format!(
            "{change} WHERE {row_id} IN (SELECT {row_id} {} LIMIT $2)",
            column.rows(keep)
        );
        with_pool!(self, jobs, pool => sqlx::query(&text)
            .bind(unix_seconds(before))
            .bind(batch)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .doing(doing))
    }

    /// Counts the rows [`Store::clean_batch`] would change (for `--dry-run`).
    pub async fn count_deletable(
        &self,
        column: &InstantColumn,
        keep: Option<&str>,
        before: DateTime<Utc>,
    ) -> Result<i64> {
        let text = format!("SELECT COUNT(*) {}", column.rows(keep));
        with_pool!(self, jobs, pool => sqlx::query_scalar(&text)
            .bind(unix_seconds(before))
            .fetch_one(pool)
            .await
            .doing("counting old rows"))
    }
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

    /// Refuses `sql` (a query or statement with `:now`) if it compares `:now` with a column
    /// holding another form of instant. On SQLite, where `:now` is text and text compares by
    /// its characters, a column compared bare with it whose sampled values are RFC 3339 or
    /// unix seconds would pick the wrong rows (`store/now.rs` says how the columns are found
    /// and sampled). PostgreSQL compares typed values, and refuses a `text` column compared
    /// with a `timestamptz`, but only once `:now` is bound: a statement whose only placeholder
    /// is `:now` is prepared here with it typed, as the run will.
    pub async fn check_now_columns(&self, sql: &str) -> Result<()> {
        use sqlx::Executor;
        match self {
            Store::Sqlite(s) => super::now::check(s.jobs_pool(), sql).await,
            Store::Postgres(s) => {
                let st = RowStatement::parse(sql);
                if st.names() != ["now"] {
                    return Ok(());
                }
                let doing = "checking the SQL with `:now` bound as a `timestamptz`";
                let now = <DateTime<Utc> as sqlx::Type<sqlx::Postgres>>::type_info();
                // sqlx caches a connection's statements by their text alone: the same text
                // prepared before untyped (`Store::prepare`) would be found, not typed anew.
                let text = format!("{}\n-- :now as a timestamptz", st.sql());
                let mut conn = s.jobs_pool().acquire().await.doing(doing)?;
                match conn.prepare_with(&text, &[now]).await {
                    Ok(_) => Ok(()),
                    // undefined_function: no operator for these types.
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42883") => {
                        Err(StoreError::NowType {
                            source: sqlx::Error::Database(db),
                        })
                    }
                    Err(e) => Err(e).doing(doing),
                }
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
                "NUMERIC" => {
                    let text = match raw.format() {
                        sqlx::postgres::PgValueFormat::Text => raw.as_str().ok().map(String::from),
                        sqlx::postgres::PgValueFormat::Binary => {
                            raw.as_bytes().ok().and_then(pg_numeric_text)
                        }
                    };
                    json!(text.ok_or_else(|| unsupported(col.name(), "NUMERIC"))?)
                }
                "JSON" | "JSONB" => row.try_get::<Value, _>(i).doing(d)?,
                other => return Err(unsupported(col.name(), other)),
            }
        };
        map.insert(col.name().to_string(), value);
    }
    Ok(map)
}

/// PostgreSQL's binary `numeric` in its text form (`5000.00`, `-0.0012`, `NaN`), exact: a
/// money column reaches templates as the digits the database holds, not a rounded float. The
/// binary form is a count of base-10000 digits, the weight of the first, a sign and the
/// display scale, then the digits; `None` when the bytes are not that.
fn pg_numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]))
    };
    let (count, weight, sign, scale) = (
        usize::from(word(0)?),
        i32::from(word(2)? as i16),
        word(4)?,
        usize::from(word(6)?),
    );
    let digits = (0..count)
        .map(|k| word(8 + 2 * k))
        .collect::<Option<Vec<u16>>>()?;
    if bytes.len() != 8 + 2 * count {
        return None;
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    };
    // The base-10000 digit of weight `w` (10000^w), zero beyond those stored.
    let digit = |w: i32| {
        usize::try_from(weight - w)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if negative {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(weight).to_string());
        for w in (0..weight).rev() {
            text.push_str(&format!("{:04}", digit(w)));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut w = -1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit(w)));
            w -= 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::{RowStatement, bind_now, pg_numeric_text};

    #[test]
    fn postgres_numerics_read_exactly() {
        // (digits, weight, sign, scale) as PostgreSQL sends them, and their text.
        let bytes = |digits: &[u16], weight: i16, sign: u16, scale: u16| {
            let mut b = vec![];
            for w in [digits.len() as u16, weight as u16, sign, scale] {
                b.extend(w.to_be_bytes());
            }
            for d in digits {
                b.extend(d.to_be_bytes());
            }
            b
        };
        #[rustfmt::skip]
        let table: [(Vec<u8>, &str); 9] = [
            (bytes(&[], 0, 0, 0), "0"),
            (bytes(&[], 0, 0, 2), "0.00"),
            (bytes(&[5000], 0, 0, 2), "5000.00"),
            (bytes(&[1], 1, 0, 0), "10000"),
            (bytes(&[1, 2345, 6780], 1, 0, 3), "12345.678"),
            (bytes(&[12], -1, 0x4000, 4), "-0.0012"),
            (bytes(&[5], -2, 0, 9), "0.000000050"),
            (bytes(&[], 0, 0xC000, 0), "NaN"),
            (bytes(&[1, 2], 0, 0, 4), "1.0002"),
        ];
        for (b, text) in &table {
            assert_eq!(pg_numeric_text(b).as_deref(), Some(*text), "{b:?}");
        }
        assert_eq!(pg_numeric_text(&[0, 1, 0]), None, "truncated");
        assert_eq!(
            pg_numeric_text(&bytes(&[1], 0, 0x1234, 0)),
            None,
            "bad sign"
        );
    }

    #[test]
    fn row_placeholders_become_numbered_parameters() {
        let st = RowStatement::parse(
            "INSERT INTO n (user_id, title, at) VALUES (:user_id, ':not_me', :at::timestamptz) \
             ON CONFLICT DO UPDATE SET title = :title WHERE n.user_id = :user_id",
        );
        assert_eq!(
            st.text,
            "INSERT INTO n (user_id, title, at) VALUES ($1, ':not_me', $2::timestamptz) \
             ON CONFLICT DO UPDATE SET title = $3 WHERE n.user_id = $1"
        );
        assert_eq!(st.names(), ["user_id", "at", "title"]);
    }

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

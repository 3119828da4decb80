//! The store on SQL: SQLite (one file, `<data-dir>/warden.db` by default) or PostgreSQL (which
//! several `warden` replicas can share), chosen by the database URL. One implementation, one
//! set of migrations: every statement is written once in the dialect both databases accept
//! (`$n` placeholders, `ON CONFLICT`, `RETURNING`, `CAST(… AS BIGINT)` around sums); what differs
//! lives in `sql/backend.rs`.

mod audit;
mod backend;
mod governance;
mod keys;
mod leases;
mod ledger;
mod mcp;
mod providers;

use super::StoreError;
use anyhow::Context;
use backend::{DbRow, Pool, Sql};
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The store over SQLite or PostgreSQL. Shared across tasks (`Send + Sync`); every method is one
/// transaction. Several `SqlStore`s, in one process or several, may use one PostgreSQL database
/// (or one existing SQLite file): usage writes are idempotent by record id, lease grants lock
/// their window's row, and audit appends are serialised by a database lock.
pub struct SqlStore {
    pool: Pool,
    /// Audit appends from this process, one at a time; the database lock taken inside the
    /// transaction (`Tx::exclusive`) orders them with other processes'. Taken before it.
    audit_lock: tokio::sync::Mutex<()>,
}

impl SqlStore {
    /// Connects to `url` (`sqlite://<file>`, created if missing, or `postgres://…`) and brings
    /// its schema up to date. Errors name the URL without its password.
    pub async fn connect(url: &str) -> anyhow::Result<SqlStore> {
        let shown = redacted_url(url);
        let pool = Pool::connect(url).await.with_context(|| format!("connecting to {shown}"))?;
        Self::migrated(pool).await.with_context(|| format!("the database {shown}"))
    }

    /// A private in-memory SQLite database, for tests.
    pub async fn in_memory() -> anyhow::Result<SqlStore> {
        Self::migrated(Pool::in_memory().await?).await
    }

    /// `"SQLite"` or `"PostgreSQL"`.
    pub fn database(&self) -> &'static str {
        self.pool.name()
    }

    async fn migrated(pool: Pool) -> anyhow::Result<SqlStore> {
        match pool.migrate(&MIGRATOR).await {
            Ok(()) => Ok(SqlStore { pool, audit_lock: tokio::sync::Mutex::new(()) }),
            // A database made by the pre-release migrations (0001-0009, squashed into today's
            // 0001) lists versions this build does not have, or a different version 1.
            Err(MigrateError::VersionMissing(_) | MigrateError::VersionMismatch(_)) => anyhow::bail!(
                "this database was made by an older, pre-release schema of Warden that this version cannot \
                 upgrade; move it away (for SQLite, the old data/ folder) and start again with an empty one"
            ),
            Err(e) => Err(e).context("migrating the schema"),
        }
    }

    /// Runs one statement as written; for tests that tamper with rows.
    #[cfg(test)]
    pub(crate) async fn execute_raw(&self, text: &str) -> u64 {
        self.pool.execute(Sql::new(text)).await.unwrap()
    }

    /// Column `column` of the first row `text` returns; for tests.
    #[cfg(test)]
    pub(crate) async fn fetch_text(&self, text: &str, column: &str) -> String {
        let row = self.pool.fetch_optional(Sql::new(text)).await.unwrap().unwrap();
        row.get(column).unwrap()
    }

    /// The row `sql` returns, if any, decoded.
    async fn one<T>(&self, sql: Sql, decode: fn(&DbRow) -> Result<T, StoreError>) -> Result<Option<T>, StoreError> {
        self.pool.fetch_optional(sql).await.map_err(backend)?.as_ref().map(decode).transpose()
    }

    /// Every row `sql` returns, decoded.
    async fn all<T>(&self, sql: Sql, decode: fn(&DbRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
        self.pool.fetch_all(sql).await.map_err(backend)?.iter().map(decode).collect()
    }

    /// Runs an insert or update of one row, a unique clash being a conflict on `conflict_field`;
    /// `true` if it changed a row.
    async fn write(&self, sql: Sql, conflict_field: &'static str) -> Result<bool, StoreError> {
        Ok(self.pool.execute(sql).await.map_err(unique_on(conflict_field))? == 1)
    }

    /// One page of `table` in creation order among the rows `filter` keeps (it appends
    /// ` AND …` conditions), and how many rows it keeps in all.
    async fn page<T>(
        &self,
        table: &str,
        filter: impl Fn(&mut Sql),
        (limit, offset): (Option<u32>, u32),
        decode: fn(&DbRow) -> Result<T, StoreError>,
    ) -> Result<(Vec<T>, u64), StoreError> {
        let mut count = Sql::new(format!("SELECT COUNT(*) AS n FROM {table} WHERE 1 = 1"));
        filter(&mut count);
        let total = match self.pool.fetch_optional(count).await.map_err(backend)? {
            Some(row) => row.unsigned("n")?,
            None => 0,
        };
        let mut rows = Sql::new(format!("SELECT * FROM {table} WHERE 1 = 1"));
        filter(&mut rows);
        // No limit is the largest one: SQLite's `LIMIT -1` is an error in PostgreSQL.
        rows.push(" ORDER BY created_at, id LIMIT ")
            .bind(limit.map_or(i64::MAX, i64::from))
            .push(" OFFSET ")
            .bind(i64::from(offset));
        Ok((self.all(rows, decode).await?, total))
    }
}

/// Appends ` AND (LOWER(<column>) LIKE … OR …)`: `needle` anywhere in any of `columns`,
/// ignoring ASCII case on both databases (SQLite's LIKE ignores it, PostgreSQL's does not), with
/// `%` and `_` in the needle taken literally. The escape character is `!`, not `\`, which
/// PostgreSQL would read as an escape in the SQL literal itself with
/// `standard_conforming_strings` off.
fn contains(sql: &mut Sql, columns: &[&str], needle: &str) {
    let escaped = needle.replace('!', "!!").replace('%', "!%").replace('_', "!_");
    sql.push(" AND (");
    for (i, column) in columns.iter().enumerate() {
        sql.push(if i == 0 { "LOWER(" } else { " OR LOWER(" })
            .push(column)
            .push(") LIKE LOWER(")
            .bind(format!("%{escaped}%"))
            .push(") ESCAPE '!'");
    }
    sql.push(")");
}

/// `url` with its password, if any, replaced by `***`: for logs and errors. Errs on the side of
/// hiding: the user information ends at the last `@` before any `?`, so an unescaped `/` or `@`
/// in a password does not leak it.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let before_query = rest.find('?').unwrap_or(rest.len());
    let (user, rest) = match rest[..before_query].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _password)) => (format!("{user}:***@"), &rest[at + 1..]),
            None => (rest[..=at].to_owned(), &rest[at + 1..]),
        },
        None => (String::new(), rest),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{user}{rest}")
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A unique clash becomes a conflict on `field`; anything else is a backend failure.
fn unique_on(field: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { field },
        _ => backend(e),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

fn optional_json<T: serde::Serialize>(value: &Option<T>) -> Result<Option<String>, StoreError> {
    value.as_ref().map(json).transpose()
}

fn from_json<T: serde::de::DeserializeOwned>(row: &DbRow, column: &str) -> Result<T, StoreError> {
    serde_json::from_str(&row.get::<String>(column)?).map_err(backend)
}

fn from_optional_json<T: serde::de::DeserializeOwned>(row: &DbRow, column: &str) -> Result<Option<T>, StoreError> {
    row.get::<Option<String>>(column)?.map(|t| serde_json::from_str(&t)).transpose().map_err(backend)
}

fn time(row: &DbRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<String> = row.get(column)?;
    text.map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)).map_err(backend)).transpose()
}

fn required_time(row: &DbRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    time(row, column)?.ok_or_else(|| backend(format!("missing {column}")))
}

#[cfg(test)]
mod tests;

//! The embedded SQLite store (one file under `data/`).

mod audit;
mod governance;
mod leases;
mod ledger;
mod providers;

use super::{KeyQuery, Store, StoreError};
use crate::model::VirtualKey;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
    /// Audit appends read the last hash and write the next row: one at a time.
    audit_lock: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations.
    pub async fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        Self::with_options(options, 4).await
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> anyhow::Result<SqliteStore> {
        // One connection: every connection to ":memory:" is a different database.
        Self::with_options(SqliteConnectOptions::from_str("sqlite::memory:")?, 1).await
    }

    async fn with_options(options: SqliteConnectOptions, connections: u32) -> anyhow::Result<SqliteStore> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(SqliteStore { pool, audit_lock: tokio::sync::Mutex::new(()) })
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn write_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let field = if db.message().contains("value_hash") { "value" } else { "name" };
            StoreError::Conflict { field }
        }
        _ => backend(e),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

fn from_json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column).map_err(backend)?;
    serde_json::from_str(&text).map_err(backend)
}

fn time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(backend)?;
    text.map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)).map_err(backend)).transpose()
}

fn key_from_row(row: &SqliteRow) -> Result<VirtualKey, StoreError> {
    let rate_limit: Option<String> = row.try_get("rate_limit").map_err(backend)?;
    let required = |t: Option<DateTime<Utc>>| t.ok_or_else(|| backend("missing timestamp"));
    Ok(VirtualKey {
        id: row.try_get("id").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        description: row.try_get("description").map_err(backend)?,
        is_active: row.try_get("is_active").map_err(backend)?,
        value_prefix: row.try_get("value_prefix").map_err(backend)?,
        value_hash: row.try_get("value_hash").map_err(backend)?,
        provider_configs: from_json(row, "provider_configs")?,
        mcp_configs: from_json(row, "mcp_configs")?,
        team_id: row.try_get("team_id").map_err(backend)?,
        customer_id: row.try_get("customer_id").map_err(backend)?,
        budgets: from_json(row, "budgets")?,
        rate_limit: rate_limit.map(|t| serde_json::from_str(&t)).transpose().map_err(backend)?,
        calendar_aligned: row.try_get("calendar_aligned").map_err(backend)?,
        allow_all_providers: row.try_get("allow_all_providers").map_err(backend)?,
        max_concurrent_requests: row.try_get("max_concurrent_requests").map_err(backend)?,
        prices: from_json(row, "prices")?,
        expires_at: time(row, "expires_at")?,
        delete_after_expire: row.try_get("delete_after_expire").map_err(backend)?,
        disable_content_logging: row.try_get("disable_content_logging").map_err(backend)?,
        created_at: required(time(row, "created_at")?)?,
        updated_at: required(time(row, "updated_at")?)?,
    })
}

/// The columns written on insert and update, in one order.
fn bind_key<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    key: &'q VirtualKey,
) -> Result<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>, StoreError> {
    Ok(query
        .bind(&key.name)
        .bind(&key.description)
        .bind(&key.value_hash)
        .bind(&key.value_prefix)
        .bind(key.is_active)
        .bind(&key.team_id)
        .bind(&key.customer_id)
        .bind(json(&key.provider_configs)?)
        .bind(json(&key.mcp_configs)?)
        .bind(json(&key.budgets)?)
        .bind(key.rate_limit.as_ref().map(json).transpose()?)
        .bind(key.calendar_aligned)
        .bind(key.allow_all_providers)
        .bind(key.max_concurrent_requests)
        .bind(json(&key.prices)?)
        .bind(key.expires_at.map(|t| t.to_rfc3339()))
        .bind(key.delete_after_expire)
        .bind(key.disable_content_logging)
        .bind(key.created_at.to_rfc3339())
        .bind(key.updated_at.to_rfc3339())
        .bind(&key.id))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_virtual_key(&self, key: &VirtualKey) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO virtual_keys (name, description, value_hash, value_prefix, is_active, team_id,
             customer_id, provider_configs, mcp_configs, budgets, rate_limit, calendar_aligned, allow_all_providers,
             max_concurrent_requests, prices, expires_at, delete_after_expire, disable_content_logging, created_at,
             updated_at, id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        bind_key(query, key)?.execute(&self.pool).await.map_err(write_error)?;
        Ok(())
    }

    async fn update_virtual_key(&self, key: &VirtualKey) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE virtual_keys SET name = ?, description = ?, value_hash = ?, value_prefix = ?, is_active = ?,
             team_id = ?, customer_id = ?, provider_configs = ?, mcp_configs = ?, budgets = ?, rate_limit = ?,
             calendar_aligned = ?, allow_all_providers = ?, max_concurrent_requests = ?, prices = ?, expires_at = ?,
             delete_after_expire = ?,
             disable_content_logging = ?, created_at = ?, updated_at = ? WHERE id = ?",
        );
        let done = bind_key(query, key)?.execute(&self.pool).await.map_err(write_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_virtual_key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError> {
        let row = sqlx::query("DELETE FROM virtual_keys WHERE id = ? RETURNING *")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn virtual_key_by_hash(&self, value_hash: &str) -> Result<Option<VirtualKey>, StoreError> {
        let row = sqlx::query("SELECT * FROM virtual_keys WHERE value_hash = ?")
            .bind(value_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn virtual_key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError> {
        let row = sqlx::query("SELECT * FROM virtual_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn virtual_keys(&self, query: &KeyQuery) -> Result<(Vec<VirtualKey>, u64), StoreError> {
        let filter = |builder: &mut QueryBuilder<'_, Sqlite>| {
            builder.push(" WHERE 1 = 1");
            if let Some(search) = &query.search {
                builder.push(" AND (name LIKE ").push_bind(format!("%{search}%"));
                builder.push(" OR description LIKE ").push_bind(format!("%{search}%")).push(")");
            }
            if let Some(team) = &query.team_id {
                builder.push(" AND team_id = ").push_bind(team.clone());
            }
            if let Some(customer) = &query.customer_id {
                builder.push(" AND customer_id = ").push_bind(customer.clone());
            }
        };
        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM virtual_keys");
        filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await.map_err(backend)?;
        let mut page = QueryBuilder::new("SELECT * FROM virtual_keys");
        filter(&mut page);
        page.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(query.limit.map_or(-1, i64::from))
            .push(" OFFSET ")
            .push_bind(i64::from(query.offset));
        let rows = page.build().fetch_all(&self.pool).await.map_err(backend)?;
        let keys = rows.iter().map(key_from_row).collect::<Result<_, _>>()?;
        Ok((keys, u64::try_from(total).unwrap_or(0)))
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

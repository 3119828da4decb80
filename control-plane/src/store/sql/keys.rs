//! [`Store`]'s own methods: virtual keys and settings.

use super::backend::{Columns, DbRow, Sql, sql};
use super::{SqlStore, backend, contains, from_json, from_optional_json, json, optional_json, required_time, time};
use crate::model::VirtualKey;
use crate::store::{KeyQuery, Store, StoreError};
use async_trait::async_trait;

/// A unique clash on a key: the API field it is about. Both databases name the column in the
/// message (SQLite `virtual_keys.value_hash`, PostgreSQL the constraint `virtual_keys_value_hash_key`).
fn write_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let field = if db.message().contains("value_hash") { "value" } else { "name" };
            StoreError::Conflict { field }
        }
        _ => backend(e),
    }
}

pub(super) fn key_from_row(row: &DbRow) -> Result<VirtualKey, StoreError> {
    let max_concurrent: Option<i64> = row.get("max_concurrent_requests")?;
    Ok(VirtualKey {
        id: row.get("id")?,
        name: row.get("name")?,
        description: row.get("description")?,
        is_active: row.get("is_active")?,
        value_prefix: row.get("value_prefix")?,
        value_hash: row.get("value_hash")?,
        provider_configs: from_json(row, "provider_configs")?,
        mcp_configs: from_json(row, "mcp_configs")?,
        team_id: row.get("team_id")?,
        customer_id: row.get("customer_id")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: from_optional_json(row, "rate_limit")?,
        calendar_aligned: row.get("calendar_aligned")?,
        allow_all_providers: row.get("allow_all_providers")?,
        max_concurrent_requests: max_concurrent.map(u32::try_from).transpose().map_err(backend)?,
        prices: from_json(row, "prices")?,
        expires_at: time(row, "expires_at")?,
        delete_after_expire: row.get("delete_after_expire")?,
        disable_content_logging: row.get("disable_content_logging")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

/// The columns written on insert and update, `id` last.
fn key_columns(key: &VirtualKey) -> Result<Columns, StoreError> {
    Ok(vec![
        ("name", (&key.name).into()),
        ("description", (&key.description).into()),
        ("value_hash", (&key.value_hash).into()),
        ("value_prefix", (&key.value_prefix).into()),
        ("is_active", key.is_active.into()),
        ("team_id", (&key.team_id).into()),
        ("customer_id", (&key.customer_id).into()),
        ("provider_configs", json(&key.provider_configs)?.into()),
        ("mcp_configs", json(&key.mcp_configs)?.into()),
        ("budgets", json(&key.budgets)?.into()),
        ("rate_limit", optional_json(&key.rate_limit)?.into()),
        ("calendar_aligned", key.calendar_aligned.into()),
        ("allow_all_providers", key.allow_all_providers.into()),
        ("max_concurrent_requests", key.max_concurrent_requests.map(i64::from).into()),
        ("prices", json(&key.prices)?.into()),
        ("expires_at", key.expires_at.map(|t| t.to_rfc3339()).into()),
        ("delete_after_expire", key.delete_after_expire.into()),
        ("disable_content_logging", key.disable_content_logging.into()),
        ("created_at", key.created_at.to_rfc3339().into()),
        ("updated_at", key.updated_at.to_rfc3339().into()),
        ("id", (&key.id).into()),
    ])
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_virtual_key(&self, key: &VirtualKey) -> Result<(), StoreError> {
        self.pool.execute(Sql::insert("virtual_keys", key_columns(key)?)).await.map_err(write_error)?;
        Ok(())
    }

    async fn update_virtual_key(&self, key: &VirtualKey) -> Result<bool, StoreError> {
        let changed = self.pool.execute(Sql::update("virtual_keys", key_columns(key)?)).await.map_err(write_error)?;
        Ok(changed == 1)
    }

    async fn delete_virtual_key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError> {
        self.one(sql!("DELETE FROM virtual_keys WHERE id = $1 RETURNING *", id), key_from_row).await
    }

    async fn virtual_key_by_hash(&self, value_hash: &str) -> Result<Option<VirtualKey>, StoreError> {
        self.one(sql!("SELECT * FROM virtual_keys WHERE value_hash = $1", value_hash), key_from_row).await
    }

    async fn virtual_key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError> {
        self.one(sql!("SELECT * FROM virtual_keys WHERE id = $1", id), key_from_row).await
    }

    async fn virtual_keys(&self, query: &KeyQuery) -> Result<(Vec<VirtualKey>, u64), StoreError> {
        let filter = |sql: &mut Sql| {
            if let Some(search) = &query.search {
                contains(sql, &["name", "description"], search);
            }
            if let Some(team) = &query.team_id {
                sql.push(" AND team_id = ").bind(team);
            }
            if let Some(customer) = &query.customer_id {
                sql.push(" AND customer_id = ").bind(customer);
            }
        };
        self.page("virtual_keys", filter, (query.limit, query.offset), key_from_row).await
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = self.pool.fetch_optional(sql!("SELECT value FROM settings WHERE name = $1", name));
        row.await.map_err(backend)?.map(|row| row.get("value")).transpose()
    }

    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let sql = sql!(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            name,
            value
        );
        self.pool.execute(sql).await.map_err(backend)?;
        Ok(())
    }

    async fn bump_setting(&self, name: &str) -> Result<u64, StoreError> {
        let sql = sql!(
            "INSERT INTO settings (name, value) VALUES ($1, '1') ON CONFLICT (name)
             DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT) RETURNING value",
            name
        );
        let row = self.pool.fetch_optional(sql).await.map_err(backend)?;
        let value: Option<String> = row.map(|row| row.get("value")).transpose()?;
        value.and_then(|v| v.parse().ok()).ok_or_else(|| backend("the counter is not a number"))
    }

    async fn insert_setting(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let sql = sql!("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, value);
        Ok(self.pool.execute(sql).await.map_err(backend)? == 1)
    }
}

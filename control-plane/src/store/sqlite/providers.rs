//! [`ProviderStore`] on SQLite. Nested values are JSON columns.

use super::{SqliteStore, backend, from_json, json, time};
use crate::model::Provider;
use crate::store::{ProviderStore, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn provider_from_row(row: &SqliteRow) -> Result<Provider, StoreError> {
    let rate_limit: Option<String> = row.try_get("rate_limit").map_err(backend)?;
    let kind: String = row.try_get("kind").map_err(backend)?;
    Ok(Provider {
        name: row.try_get("name").map_err(backend)?,
        kind: serde_json::from_value(serde_json::Value::String(kind)).map_err(backend)?,
        base_url: row.try_get("base_url").map_err(backend)?,
        models: from_json(row, "models")?,
        keys: serde_json::from_str::<Vec<StoredKey>>(&row.try_get::<String, _>("keys").map_err(backend)?)
            .map_err(backend)?
            .into_iter()
            .map(|k| crate::model::ProviderKey { id: k.id, value: k.value })
            .collect(),
        timeouts: from_json(row, "timeouts")?,
        rate_limit: rate_limit.map(|t| serde_json::from_str(&t)).transpose().map_err(backend)?,
        budgets: from_json(row, "budgets")?,
        calendar_aligned: row.try_get("calendar_aligned").map_err(backend)?,
        created_at: time(row, "created_at")?.ok_or_else(|| backend("missing created_at"))?,
        updated_at: time(row, "updated_at")?.ok_or_else(|| backend("missing updated_at"))?,
    })
}

/// A key as stored: unlike the API view, with its value.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    id: String,
    value: String,
}

fn bind<'q>(query: Query<'q>, p: &'q Provider) -> Result<Query<'q>, StoreError> {
    let keys: Vec<StoredKey> = p.keys.iter().map(|k| StoredKey { id: k.id.clone(), value: k.value.clone() }).collect();
    let kind = serde_json::to_value(p.kind).map_err(backend)?;
    Ok(query
        .bind(kind.as_str().unwrap_or_default().to_owned())
        .bind(&p.base_url)
        .bind(json(&p.models)?)
        .bind(json(&keys)?)
        .bind(json(&p.timeouts)?)
        .bind(p.rate_limit.as_ref().map(json).transpose()?)
        .bind(json(&p.budgets)?)
        .bind(p.calendar_aligned)
        .bind(p.created_at.to_rfc3339())
        .bind(p.updated_at.to_rfc3339())
        .bind(&p.name))
}

#[async_trait]
impl ProviderStore for SqliteStore {
    async fn insert_provider(&self, provider: &Provider) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO providers (kind, base_url, models, keys, timeouts, rate_limit, budgets, calendar_aligned,
             created_at, updated_at, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        bind(query, provider)?.execute(&self.pool).await.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { field: "name" },
            _ => backend(e),
        })?;
        Ok(())
    }

    async fn update_provider(&self, provider: &Provider) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE providers SET kind = ?, base_url = ?, models = ?, keys = ?, timeouts = ?, rate_limit = ?, budgets = ?,
             calendar_aligned = ?, created_at = ?, updated_at = ? WHERE name = ?",
        );
        let done = bind(query, provider)?.execute(&self.pool).await.map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_provider(&self, name: &str) -> Result<Option<Provider>, StoreError> {
        let row = sqlx::query("DELETE FROM providers WHERE name = ? RETURNING *")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(provider_from_row).transpose()
    }

    async fn provider(&self, name: &str) -> Result<Option<Provider>, StoreError> {
        let row = sqlx::query("SELECT * FROM providers WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(provider_from_row).transpose()
    }

    async fn providers(&self) -> Result<Vec<Provider>, StoreError> {
        let rows = sqlx::query("SELECT * FROM providers ORDER BY name").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(provider_from_row).collect()
    }
}

//! [`ProviderStore`] on SQL. Nested values are JSON columns.

use super::backend::{Columns, DbRow, Sql, sql};
use super::{SqlStore, backend, from_json, from_optional_json, json, optional_json, required_time};
use crate::model::{Provider, ProviderKey};
use crate::store::{ProviderStore, StoreError};
use async_trait::async_trait;

/// A key as stored: unlike the API view, with its value.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    id: String,
    value: String,
}

fn provider_from_row(row: &DbRow) -> Result<Provider, StoreError> {
    let kind: String = row.get("kind")?;
    let keys: Vec<StoredKey> = from_json(row, "keys")?;
    Ok(Provider {
        name: row.get("name")?,
        kind: serde_json::from_value(serde_json::Value::String(kind)).map_err(backend)?,
        base_url: row.get("base_url")?,
        models: from_json(row, "models")?,
        keys: keys.into_iter().map(|k| ProviderKey { id: k.id, value: k.value }).collect(),
        timeouts: from_json(row, "timeouts")?,
        rate_limit: from_optional_json(row, "rate_limit")?,
        budgets: from_json(row, "budgets")?,
        calendar_aligned: row.get("calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

/// The columns written on insert and update, `name` (the key) last.
fn provider_columns(p: &Provider) -> Result<Columns, StoreError> {
    let keys: Vec<StoredKey> = p.keys.iter().map(|k| StoredKey { id: k.id.clone(), value: k.value.clone() }).collect();
    let kind = serde_json::to_value(p.kind).map_err(backend)?;
    Ok(vec![
        ("kind", kind.as_str().unwrap_or_default().into()),
        ("base_url", (&p.base_url).into()),
        ("models", json(&p.models)?.into()),
        ("keys", json(&keys)?.into()),
        ("timeouts", json(&p.timeouts)?.into()),
        ("rate_limit", optional_json(&p.rate_limit)?.into()),
        ("budgets", json(&p.budgets)?.into()),
        ("calendar_aligned", p.calendar_aligned.into()),
        ("created_at", p.created_at.to_rfc3339().into()),
        ("updated_at", p.updated_at.to_rfc3339().into()),
        ("name", (&p.name).into()),
    ])
}

#[async_trait]
impl ProviderStore for SqlStore {
    async fn insert_provider(&self, provider: &Provider) -> Result<(), StoreError> {
        self.write(Sql::insert("providers", provider_columns(provider)?), "name").await.map(drop)
    }

    async fn update_provider(&self, provider: &Provider) -> Result<bool, StoreError> {
        self.write(Sql::update("providers", provider_columns(provider)?), "name").await
    }

    async fn delete_provider(&self, name: &str) -> Result<Option<Provider>, StoreError> {
        self.one(sql!("DELETE FROM providers WHERE name = $1 RETURNING *", name), provider_from_row).await
    }

    async fn provider(&self, name: &str) -> Result<Option<Provider>, StoreError> {
        self.one(sql!("SELECT * FROM providers WHERE name = $1", name), provider_from_row).await
    }

    async fn providers(&self) -> Result<Vec<Provider>, StoreError> {
        let mut providers = self.all(sql!("SELECT * FROM providers"), provider_from_row).await?;
        // By bytes, not by the database's collation: PostgreSQL's may order `-` and `_` apart
        // from SQLite's.
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(providers)
    }
}

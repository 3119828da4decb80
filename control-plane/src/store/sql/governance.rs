//! [`GovernanceStore`] on SQL.

use super::backend::{Columns, DbRow, Sql, Tx, sql};
use super::keys::key_from_row;
use super::{SqlStore, backend, contains, from_json, from_optional_json, json, optional_json, required_time};
use crate::model::{Customer, ModelConfig, Team, VirtualKey};
use crate::store::{CustomerQuery, Deletion, GovernanceStore, ModelConfigQuery, OnReferenced, StoreError, TeamQuery};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

fn team_from_row(row: &DbRow) -> Result<Team, StoreError> {
    Ok(Team {
        id: row.get("id")?,
        name: row.get("name")?,
        customer_id: row.get("customer_id")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: from_optional_json(row, "rate_limit")?,
        calendar_aligned: row.get("calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn customer_from_row(row: &DbRow) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: row.get("id")?,
        name: row.get("name")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: from_optional_json(row, "rate_limit")?,
        calendar_aligned: row.get("calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn model_config_from_row(row: &DbRow) -> Result<ModelConfig, StoreError> {
    Ok(ModelConfig {
        id: row.get("id")?,
        model_name: row.get("model_name")?,
        provider: row.get("provider")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: from_optional_json(row, "rate_limit")?,
        calendar_aligned: row.get("calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn team_columns(team: &Team) -> Result<Columns, StoreError> {
    Ok(vec![
        ("name", (&team.name).into()),
        ("customer_id", (&team.customer_id).into()),
        ("budgets", json(&team.budgets)?.into()),
        ("rate_limit", optional_json(&team.rate_limit)?.into()),
        ("calendar_aligned", team.calendar_aligned.into()),
        ("created_at", team.created_at.to_rfc3339().into()),
        ("updated_at", team.updated_at.to_rfc3339().into()),
        ("id", (&team.id).into()),
    ])
}

fn customer_columns(customer: &Customer) -> Result<Columns, StoreError> {
    Ok(vec![
        ("name", (&customer.name).into()),
        ("budgets", json(&customer.budgets)?.into()),
        ("rate_limit", optional_json(&customer.rate_limit)?.into()),
        ("calendar_aligned", customer.calendar_aligned.into()),
        ("created_at", customer.created_at.to_rfc3339().into()),
        ("updated_at", customer.updated_at.to_rfc3339().into()),
        ("id", (&customer.id).into()),
    ])
}

fn model_config_columns(config: &ModelConfig) -> Result<Columns, StoreError> {
    Ok(vec![
        ("model_name", (&config.model_name).into()),
        ("provider", (&config.provider).into()),
        ("budgets", json(&config.budgets)?.into()),
        ("rate_limit", optional_json(&config.rate_limit)?.into()),
        ("calendar_aligned", config.calendar_aligned.into()),
        ("created_at", config.created_at.to_rfc3339().into()),
        ("updated_at", config.updated_at.to_rfc3339().into()),
        ("id", (&config.id).into()),
    ])
}

/// How many rows of `table` have `column = id`.
async fn count(tx: &mut Tx, table: &str, column: &str, id: &str) -> Result<u64, StoreError> {
    let mut sql = Sql::new(format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = "));
    sql.bind(id);
    match tx.fetch_optional(sql).await.map_err(backend)? {
        Some(row) => row.unsigned("n"),
        None => Ok(0),
    }
}

/// Clears `column` (stamping `updated_at` with `at`) on the rows of `table` that point at `id`;
/// those rows, as they now are.
async fn detach<T>(
    tx: &mut Tx,
    (table, column): (&str, &str),
    at: DateTime<Utc>,
    id: &str,
    decode: fn(&DbRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut sql = Sql::new(format!("UPDATE {table} SET {column} = NULL, updated_at = "));
    sql.bind(at.to_rfc3339()).push(&format!(" WHERE {column} = ")).bind(id).push(" RETURNING *");
    tx.fetch_all(sql).await.map_err(backend)?.iter().map(decode).collect()
}

/// Deletes row `id` of `table` in `tx`, commits, and returns the row as it was.
async fn delete_and_commit<T>(
    mut tx: Tx,
    table: &str,
    id: &str,
    decode: fn(&DbRow) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut sql = Sql::new(format!("DELETE FROM {table} WHERE id = "));
    sql.bind(id).push(" RETURNING *");
    let row =
        tx.fetch_optional(sql).await.map_err(backend)?.ok_or_else(|| backend(format!("{table} {id} vanished")))?;
    let entity = decode(&row)?;
    tx.commit().await.map_err(backend)?;
    Ok(entity)
}

#[async_trait]
impl GovernanceStore for SqlStore {
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
        self.write(Sql::insert("teams", team_columns(team)?), "name").await.map(drop)
    }

    async fn update_team(&self, team: &Team) -> Result<bool, StoreError> {
        self.write(Sql::update("teams", team_columns(team)?), "name").await
    }

    async fn delete_team(&self, id: &str, on_referenced: OnReferenced) -> Result<Deletion<Team>, StoreError> {
        let mut tx = self.pool.begin_write().await.map_err(backend)?;
        if count(&mut tx, "teams", "id", id).await? == 0 {
            return Ok(Deletion::NotFound);
        }
        let detached_keys: Vec<VirtualKey> = match on_referenced {
            OnReferenced::Refuse => {
                let keys = count(&mut tx, "virtual_keys", "team_id", id).await?;
                if keys > 0 {
                    return Ok(Deletion::Referenced { teams: 0, keys });
                }
                Vec::new()
            }
            OnReferenced::Detach { at } => detach(&mut tx, ("virtual_keys", "team_id"), at, id, key_from_row).await?,
        };
        let entity = delete_and_commit(tx, "teams", id, team_from_row).await?;
        Ok(Deletion::Deleted { entity, detached_teams: Vec::new(), detached_keys })
    }

    async fn team(&self, id: &str) -> Result<Option<Team>, StoreError> {
        self.one(sql!("SELECT * FROM teams WHERE id = $1", id), team_from_row).await
    }

    async fn teams(&self, query: &TeamQuery) -> Result<(Vec<Team>, u64), StoreError> {
        let filter = |sql: &mut Sql| {
            if let Some(search) = &query.search {
                contains(sql, &["name"], search);
            }
            if let Some(customer) = &query.customer_id {
                sql.push(" AND customer_id = ").bind(customer);
            }
        };
        self.page("teams", filter, (query.limit, query.offset), team_from_row).await
    }

    async fn insert_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        self.write(Sql::insert("customers", customer_columns(customer)?), "name").await.map(drop)
    }

    async fn update_customer(&self, customer: &Customer) -> Result<bool, StoreError> {
        self.write(Sql::update("customers", customer_columns(customer)?), "name").await
    }

    async fn delete_customer(&self, id: &str, on_referenced: OnReferenced) -> Result<Deletion<Customer>, StoreError> {
        let mut tx = self.pool.begin_write().await.map_err(backend)?;
        if count(&mut tx, "customers", "id", id).await? == 0 {
            return Ok(Deletion::NotFound);
        }
        let (detached_teams, detached_keys) = match on_referenced {
            OnReferenced::Refuse => {
                let teams = count(&mut tx, "teams", "customer_id", id).await?;
                let keys = count(&mut tx, "virtual_keys", "customer_id", id).await?;
                if teams + keys > 0 {
                    return Ok(Deletion::Referenced { teams, keys });
                }
                (Vec::new(), Vec::new())
            }
            OnReferenced::Detach { at } => {
                let teams = detach(&mut tx, ("teams", "customer_id"), at, id, team_from_row).await?;
                (teams, detach(&mut tx, ("virtual_keys", "customer_id"), at, id, key_from_row).await?)
            }
        };
        let entity = delete_and_commit(tx, "customers", id, customer_from_row).await?;
        Ok(Deletion::Deleted { entity, detached_teams, detached_keys })
    }

    async fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        self.one(sql!("SELECT * FROM customers WHERE id = $1", id), customer_from_row).await
    }

    async fn customers(&self, query: &CustomerQuery) -> Result<(Vec<Customer>, u64), StoreError> {
        let filter = |sql: &mut Sql| {
            if let Some(search) = &query.search {
                contains(sql, &["name"], search);
            }
        };
        self.page("customers", filter, (query.limit, query.offset), customer_from_row).await
    }

    async fn insert_model_config(&self, config: &ModelConfig) -> Result<(), StoreError> {
        self.write(Sql::insert("model_configs", model_config_columns(config)?), "model_name").await.map(drop)
    }

    async fn update_model_config(&self, config: &ModelConfig) -> Result<bool, StoreError> {
        self.write(Sql::update("model_configs", model_config_columns(config)?), "model_name").await
    }

    async fn delete_model_config(&self, id: &str) -> Result<Option<ModelConfig>, StoreError> {
        self.one(sql!("DELETE FROM model_configs WHERE id = $1 RETURNING *", id), model_config_from_row).await
    }

    async fn model_config(&self, id: &str) -> Result<Option<ModelConfig>, StoreError> {
        self.one(sql!("SELECT * FROM model_configs WHERE id = $1", id), model_config_from_row).await
    }

    async fn model_configs(&self, query: &ModelConfigQuery) -> Result<(Vec<ModelConfig>, u64), StoreError> {
        let filter = |sql: &mut Sql| {
            if let Some(search) = &query.search {
                contains(sql, &["model_name"], search);
            }
            if let Some(model) = &query.model_name {
                sql.push(" AND model_name = ").bind(model);
            }
        };
        self.page("model_configs", filter, (query.limit, query.offset), model_config_from_row).await
    }
}

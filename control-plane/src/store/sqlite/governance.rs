//! [`GovernanceStore`] on SQLite.

use super::{SqliteStore, backend, from_json, json, key_from_row, time};
use crate::model::{Customer, ModelConfig, Team, VirtualKey};
use crate::store::{CustomerQuery, Deletion, GovernanceStore, ModelConfigQuery, OnReferenced, StoreError, TeamQuery};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// A unique clash becomes a conflict on `field`; anything else is a backend failure.
fn unique_on(field: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { field },
        _ => backend(e),
    }
}

fn column<T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(
    row: &SqliteRow,
    name: &str,
) -> Result<T, StoreError> {
    row.try_get(name).map_err(backend)
}

fn optional_json<T: serde::de::DeserializeOwned>(row: &SqliteRow, name: &str) -> Result<Option<T>, StoreError> {
    let text: Option<String> = column(row, name)?;
    text.map(|t| serde_json::from_str(&t)).transpose().map_err(backend)
}

fn required_time(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>, StoreError> {
    time(row, name)?.ok_or_else(|| backend(format!("missing {name}")))
}

fn team_from_row(row: &SqliteRow) -> Result<Team, StoreError> {
    Ok(Team {
        id: column(row, "id")?,
        name: column(row, "name")?,
        customer_id: column(row, "customer_id")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: optional_json(row, "rate_limit")?,
        calendar_aligned: column(row, "calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn customer_from_row(row: &SqliteRow) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: column(row, "id")?,
        name: column(row, "name")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: optional_json(row, "rate_limit")?,
        calendar_aligned: column(row, "calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn model_config_from_row(row: &SqliteRow) -> Result<ModelConfig, StoreError> {
    Ok(ModelConfig {
        id: column(row, "id")?,
        model_name: column(row, "model_name")?,
        provider: column(row, "provider")?,
        budgets: from_json(row, "budgets")?,
        rate_limit: optional_json(row, "rate_limit")?,
        calendar_aligned: column(row, "calendar_aligned")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

/// Team columns on insert and update, in one order: name, customer_id, budgets, rate_limit,
/// calendar_aligned, created_at, updated_at, id.
fn bind_team<'q>(query: Query<'q>, team: &'q Team) -> Result<Query<'q>, StoreError> {
    Ok(query
        .bind(&team.name)
        .bind(&team.customer_id)
        .bind(json(&team.budgets)?)
        .bind(team.rate_limit.as_ref().map(json).transpose()?)
        .bind(team.calendar_aligned)
        .bind(team.created_at.to_rfc3339())
        .bind(team.updated_at.to_rfc3339())
        .bind(&team.id))
}

/// Customer columns: name, budgets, rate_limit, calendar_aligned, created_at, updated_at, id.
fn bind_customer<'q>(query: Query<'q>, customer: &'q Customer) -> Result<Query<'q>, StoreError> {
    Ok(query
        .bind(&customer.name)
        .bind(json(&customer.budgets)?)
        .bind(customer.rate_limit.as_ref().map(json).transpose()?)
        .bind(customer.calendar_aligned)
        .bind(customer.created_at.to_rfc3339())
        .bind(customer.updated_at.to_rfc3339())
        .bind(&customer.id))
}

/// Model config columns: model_name, provider, budgets, rate_limit, calendar_aligned,
/// created_at, updated_at, id.
fn bind_model_config<'q>(query: Query<'q>, config: &'q ModelConfig) -> Result<Query<'q>, StoreError> {
    Ok(query
        .bind(&config.model_name)
        .bind(&config.provider)
        .bind(json(&config.budgets)?)
        .bind(config.rate_limit.as_ref().map(json).transpose()?)
        .bind(config.calendar_aligned)
        .bind(config.created_at.to_rfc3339())
        .bind(config.updated_at.to_rfc3339())
        .bind(&config.id))
}

/// One page of `table` in creation order under `filter`, and how many rows match in all.
async fn page<T>(
    pool: &SqlitePool,
    table: &str,
    filter: impl Fn(&mut QueryBuilder<'_, Sqlite>),
    (limit, offset): (Option<u32>, u32),
    decode: fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<(Vec<T>, u64), StoreError> {
    let mut count = QueryBuilder::new(format!("SELECT COUNT(*) FROM {table} WHERE 1 = 1"));
    filter(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await.map_err(backend)?;
    let mut rows = QueryBuilder::new(format!("SELECT * FROM {table} WHERE 1 = 1"));
    filter(&mut rows);
    rows.push(" ORDER BY created_at, id LIMIT ")
        .push_bind(limit.map_or(-1, i64::from))
        .push(" OFFSET ")
        .push_bind(i64::from(offset));
    let rows = rows.build().fetch_all(pool).await.map_err(backend)?;
    let items = rows.iter().map(decode).collect::<Result<_, _>>()?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

async fn fetch<T>(
    pool: &SqlitePool,
    sql: &'static str,
    id: &str,
    decode: fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let row = sqlx::query(sql).bind(id).fetch_optional(pool).await.map_err(backend)?;
    row.as_ref().map(decode).transpose()
}

async fn count(tx: &mut Transaction<'_, Sqlite>, sql: &'static str, id: &str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql).bind(id).fetch_one(&mut **tx).await.map_err(backend)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs an `UPDATE … SET <owner> = NULL, updated_at = ? WHERE <owner> = ? RETURNING *`.
async fn detach<T>(
    tx: &mut Transaction<'_, Sqlite>,
    sql: &'static str,
    at: DateTime<Utc>,
    id: &str,
    decode: fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = sqlx::query(sql).bind(at.to_rfc3339()).bind(id).fetch_all(&mut **tx).await.map_err(backend)?;
    rows.iter().map(decode).collect()
}

impl SqliteStore {
    /// A write transaction from its first statement: a read that later upgrades to a write
    /// fails at once with SQLITE_BUSY when another writer got in between, whereas this waits.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)
    }
}

#[async_trait]
impl GovernanceStore for SqliteStore {
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO teams (name, customer_id, budgets, rate_limit, calendar_aligned, created_at, updated_at, id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        bind_team(query, team)?.execute(&self.pool).await.map_err(unique_on("name"))?;
        Ok(())
    }

    async fn update_team(&self, team: &Team) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE teams SET name = ?, customer_id = ?, budgets = ?, rate_limit = ?, calendar_aligned = ?,
             created_at = ?, updated_at = ? WHERE id = ?",
        );
        let done = bind_team(query, team)?.execute(&self.pool).await.map_err(unique_on("name"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_team(&self, id: &str, on_referenced: OnReferenced) -> Result<Deletion<Team>, StoreError> {
        let mut tx = self.begin_write().await?;
        if count(&mut tx, "SELECT COUNT(*) FROM teams WHERE id = ?", id).await? == 0 {
            return Ok(Deletion::NotFound);
        }
        let detached_keys: Vec<VirtualKey> = match on_referenced {
            OnReferenced::Refuse => {
                let keys = count(&mut tx, "SELECT COUNT(*) FROM virtual_keys WHERE team_id = ?", id).await?;
                if keys > 0 {
                    return Ok(Deletion::Referenced { teams: 0, keys });
                }
                Vec::new()
            }
            OnReferenced::Detach { at } => {
                let sql = "UPDATE virtual_keys SET team_id = NULL, updated_at = ? WHERE team_id = ? RETURNING *";
                detach(&mut tx, sql, at, id, key_from_row).await?
            }
        };
        let row = sqlx::query("DELETE FROM teams WHERE id = ? RETURNING *")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let entity = team_from_row(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(Deletion::Deleted { entity, detached_teams: Vec::new(), detached_keys })
    }

    async fn team(&self, id: &str) -> Result<Option<Team>, StoreError> {
        fetch(&self.pool, "SELECT * FROM teams WHERE id = ?", id, team_from_row).await
    }

    async fn teams(&self, query: &TeamQuery) -> Result<(Vec<Team>, u64), StoreError> {
        let filter = |builder: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(search) = &query.search {
                builder.push(" AND name LIKE ").push_bind(format!("%{search}%"));
            }
            if let Some(customer) = &query.customer_id {
                builder.push(" AND customer_id = ").push_bind(customer.clone());
            }
        };
        page(&self.pool, "teams", filter, (query.limit, query.offset), team_from_row).await
    }

    async fn insert_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO customers (name, budgets, rate_limit, calendar_aligned, created_at, updated_at, id)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        bind_customer(query, customer)?.execute(&self.pool).await.map_err(unique_on("name"))?;
        Ok(())
    }

    async fn update_customer(&self, customer: &Customer) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE customers SET name = ?, budgets = ?, rate_limit = ?, calendar_aligned = ?, created_at = ?,
             updated_at = ? WHERE id = ?",
        );
        let done = bind_customer(query, customer)?.execute(&self.pool).await.map_err(unique_on("name"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_customer(&self, id: &str, on_referenced: OnReferenced) -> Result<Deletion<Customer>, StoreError> {
        let mut tx = self.begin_write().await?;
        if count(&mut tx, "SELECT COUNT(*) FROM customers WHERE id = ?", id).await? == 0 {
            return Ok(Deletion::NotFound);
        }
        let (detached_teams, detached_keys) = match on_referenced {
            OnReferenced::Refuse => {
                let teams = count(&mut tx, "SELECT COUNT(*) FROM teams WHERE customer_id = ?", id).await?;
                let keys = count(&mut tx, "SELECT COUNT(*) FROM virtual_keys WHERE customer_id = ?", id).await?;
                if teams + keys > 0 {
                    return Ok(Deletion::Referenced { teams, keys });
                }
                (Vec::new(), Vec::new())
            }
            OnReferenced::Detach { at } => {
                let sql = "UPDATE teams SET customer_id = NULL, updated_at = ? WHERE customer_id = ? RETURNING *";
                let teams = detach(&mut tx, sql, at, id, team_from_row).await?;
                let sql =
                    "UPDATE virtual_keys SET customer_id = NULL, updated_at = ? WHERE customer_id = ? RETURNING *";
                (teams, detach(&mut tx, sql, at, id, key_from_row).await?)
            }
        };
        let row = sqlx::query("DELETE FROM customers WHERE id = ? RETURNING *")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let entity = customer_from_row(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(Deletion::Deleted { entity, detached_teams, detached_keys })
    }

    async fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        fetch(&self.pool, "SELECT * FROM customers WHERE id = ?", id, customer_from_row).await
    }

    async fn customers(&self, query: &CustomerQuery) -> Result<(Vec<Customer>, u64), StoreError> {
        let filter = |builder: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(search) = &query.search {
                builder.push(" AND name LIKE ").push_bind(format!("%{search}%"));
            }
        };
        page(&self.pool, "customers", filter, (query.limit, query.offset), customer_from_row).await
    }

    async fn insert_model_config(&self, config: &ModelConfig) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO model_configs (model_name, provider, budgets, rate_limit, calendar_aligned, created_at,
             updated_at, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        bind_model_config(query, config)?.execute(&self.pool).await.map_err(unique_on("model_name"))?;
        Ok(())
    }

    async fn update_model_config(&self, config: &ModelConfig) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE model_configs SET model_name = ?, provider = ?, budgets = ?, rate_limit = ?, calendar_aligned = ?,
             created_at = ?, updated_at = ? WHERE id = ?",
        );
        let done = bind_model_config(query, config)?.execute(&self.pool).await.map_err(unique_on("model_name"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_model_config(&self, id: &str) -> Result<Option<ModelConfig>, StoreError> {
        fetch(&self.pool, "DELETE FROM model_configs WHERE id = ? RETURNING *", id, model_config_from_row).await
    }

    async fn model_config(&self, id: &str) -> Result<Option<ModelConfig>, StoreError> {
        fetch(&self.pool, "SELECT * FROM model_configs WHERE id = ?", id, model_config_from_row).await
    }

    async fn model_configs(&self, query: &ModelConfigQuery) -> Result<(Vec<ModelConfig>, u64), StoreError> {
        let filter = |builder: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(search) = &query.search {
                builder.push(" AND model_name LIKE ").push_bind(format!("%{search}%"));
            }
            if let Some(model) = &query.model_name {
                builder.push(" AND model_name = ").push_bind(model.clone());
            }
        };
        page(&self.pool, "model_configs", filter, (query.limit, query.offset), model_config_from_row).await
    }
}

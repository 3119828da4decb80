//! [`LedgerStore`] on SQLite.

use super::{SqliteStore, backend};
use crate::store::{LedgerStore, StoreError, UsageQuery, UsageTotals, WrittenUsage};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};
use warden_policy::ledger::UsageRecord;

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<WrittenUsage, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut new_denials = Vec::new();
        for r in records {
            let done = sqlx::query(
                "INSERT INTO usage_records (id, at_ms, key_id, team_id, customer_id, provider, model, input_tokens,
                 cached_input_tokens, output_tokens, cost_micros, status, denial)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&r.id)
            .bind(signed(r.at_ms))
            .bind(&r.key_id)
            .bind(non_empty(&r.team_id))
            .bind(non_empty(&r.customer_id))
            .bind(&r.provider)
            .bind(&r.model)
            .bind(signed(r.input_tokens))
            .bind(signed(r.cached_input_tokens))
            .bind(signed(r.output_tokens))
            .bind(signed(r.cost_micros))
            .bind(i64::from(r.status))
            .bind(&r.denial)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 1 && !r.denial.is_empty() {
                new_denials.push(r.clone());
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(WrittenUsage { ids: records.iter().map(|r| r.id.clone()).collect(), new_denials })
    }

    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageTotals>, StoreError> {
        let group = q.group_by.map(|g| g.column());
        let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        sql.push(group.unwrap_or("NULL"));
        sql.push(
            " AS grp, COUNT(*) AS requests, COALESCE(SUM(input_tokens), 0) AS input_tokens,
             COALESCE(SUM(cached_input_tokens), 0) AS cached_input_tokens,
             COALESCE(SUM(output_tokens), 0) AS output_tokens, COALESCE(SUM(cost_micros), 0) AS cost_micros
             FROM usage_records WHERE denial = ''",
        );
        let filters = [
            ("key_id", &q.key_id),
            ("team_id", &q.team_id),
            ("customer_id", &q.customer_id),
            ("model", &q.model),
            ("provider", &q.provider),
        ];
        for (column, value) in filters {
            if let Some(v) = value {
                sql.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if let Some(from) = q.from_ms {
            sql.push(" AND at_ms >= ").push_bind(signed(from));
        }
        if let Some(to) = q.to_ms {
            sql.push(" AND at_ms < ").push_bind(signed(to));
        }
        if let Some(column) = group {
            sql.push(format!(" GROUP BY {column} ORDER BY cost_micros DESC, grp"));
        }
        let rows = sql.build().fetch_all(&self.pool).await.map_err(backend)?;
        let unsigned = |row: &sqlx::sqlite::SqliteRow, name: &str| -> Result<u64, StoreError> {
            let n: i64 = row.try_get(name).map_err(backend)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        rows.iter()
            .map(|row| {
                Ok(UsageTotals {
                    group: if group.is_some() { row.try_get("grp").map_err(backend)? } else { None },
                    requests: unsigned(row, "requests")?,
                    input_tokens: unsigned(row, "input_tokens")?,
                    cached_input_tokens: unsigned(row, "cached_input_tokens")?,
                    output_tokens: unsigned(row, "output_tokens")?,
                    cost_micros: unsigned(row, "cost_micros")?,
                })
            })
            .collect()
    }

    async fn usage_by_model(&self) -> Result<Vec<(String, String, UsageTotals)>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, model, COUNT(*) AS requests, SUM(input_tokens) AS input_tokens,
             SUM(cached_input_tokens) AS cached_input_tokens, SUM(output_tokens) AS output_tokens,
             SUM(cost_micros) AS cost_micros FROM usage_records WHERE denial = '' GROUP BY provider, model
             ORDER BY provider, model",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let unsigned = |row: &sqlx::sqlite::SqliteRow, name: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name).map_err(backend)?).unwrap_or(0))
        };
        rows.iter()
            .map(|row| {
                let totals = UsageTotals {
                    group: None,
                    requests: unsigned(row, "requests")?,
                    input_tokens: unsigned(row, "input_tokens")?,
                    cached_input_tokens: unsigned(row, "cached_input_tokens")?,
                    output_tokens: unsigned(row, "output_tokens")?,
                    cost_micros: unsigned(row, "cost_micros")?,
                };
                Ok((row.try_get("provider").map_err(backend)?, row.try_get("model").map_err(backend)?, totals))
            })
            .collect()
    }

    async fn denials_by_type(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT denial, COUNT(*) AS n FROM usage_records WHERE denial != '' GROUP BY denial ORDER BY denial",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n").map_err(backend)?;
                Ok((row.try_get("denial").map_err(backend)?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}

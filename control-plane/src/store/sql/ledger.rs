//! [`LedgerStore`] on SQL.

use super::backend::{DbRow, Param, Sql, sql};
use super::{SqlStore, backend};
use crate::store::{LedgerStore, StoreError, UsageQuery, UsageTotals, WrittenUsage};
use async_trait::async_trait;
use std::collections::HashSet;
use warden_policy::ledger::UsageRecord;

/// Records per `INSERT`. Binding costs grow with the square of a statement's parameters in
/// sqlx's SQLite driver (each bind looks its name up in a list that SQLite scans): at 500
/// records (6,500 parameters) this binding took 86 % of the control plane's CPU under load
/// (`perf`). Sixteen records (208 parameters) keep one statement text, which both drivers
/// prepare once and cache.
const RECORDS_PER_STATEMENT: usize = 16;

const COLUMNS: &str = "id, at_ms, key_id, team_id, customer_id, provider, model, input_tokens, cached_input_tokens, \
                       output_tokens, cost_micros, status, denial, repeats";

/// The sums of a totals row. PostgreSQL sums BIGINTs into NUMERIC: cast back so both databases
/// answer BIGINT.
const SUMS: &str = "CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
                    CAST(COALESCE(SUM(cached_input_tokens), 0) AS BIGINT) AS cached_input_tokens, \
                    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
                    CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost_micros";

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// A record's values, in [`COLUMNS`] order.
fn values(r: &UsageRecord) -> [Param; 14] {
    [
        (&r.id).into(),
        signed(r.at_ms).into(),
        (&r.key_id).into(),
        non_empty(&r.team_id).into(),
        non_empty(&r.customer_id).into(),
        (&r.provider).into(),
        (&r.model).into(),
        signed(r.input_tokens).into(),
        signed(r.cached_input_tokens).into(),
        signed(r.output_tokens).into(),
        signed(r.cost_micros).into(),
        i64::from(r.status).into(),
        (&r.denial).into(),
        i64::from(r.repeats.max(1)).into(),
    ]
}

fn totals(row: &DbRow, group: Option<String>) -> Result<UsageTotals, StoreError> {
    Ok(UsageTotals {
        group,
        requests: row.unsigned("requests")?,
        input_tokens: row.unsigned("input_tokens")?,
        cached_input_tokens: row.unsigned("cached_input_tokens")?,
        output_tokens: row.unsigned("output_tokens")?,
        cost_micros: row.unsigned("cost_micros")?,
    })
}

#[async_trait]
impl LedgerStore for SqlStore {
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<WrittenUsage, StoreError> {
        // In id order: two replicas writing overlapping batches (a record resent to the other
        // one after a lost acknowledgement) then meet each other's rows in the same order, and
        // one waits for the other instead of both deadlocking (PostgreSQL).
        let mut sorted: Vec<&UsageRecord> = records.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut new = HashSet::new();
        let mut tx = self.pool.begin_write().await.map_err(backend)?;
        for chunk in sorted.chunks(RECORDS_PER_STATEMENT) {
            let mut insert = Sql::new(format!("INSERT INTO usage_records ({COLUMNS}) VALUES "));
            for (i, record) in chunk.iter().enumerate() {
                insert.push(if i == 0 { "" } else { ", " }).tuple(values(record));
            }
            // Both databases return only the rows actually inserted.
            insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            for row in tx.fetch_all(insert).await.map_err(backend)? {
                new.insert(row.get::<String>("id")?);
            }
        }
        tx.commit().await.map_err(backend)?;
        // In the batch's order; an id sent twice in one batch is new once.
        let fresh: Vec<&UsageRecord> = records.iter().filter(|r| new.remove(&r.id)).collect();
        Ok(WrittenUsage {
            ids: records.iter().map(|r| r.id.clone()).collect(),
            new_ids: fresh.iter().map(|r| r.id.clone()).collect(),
            new_denials: fresh.into_iter().filter(|r| !r.denial.is_empty()).cloned().collect(),
        })
    }

    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageTotals>, StoreError> {
        let group = q.group_by.map(|g| g.column());
        let mut sql = Sql::new(format!(
            "SELECT {} AS grp, COUNT(*) AS requests, {SUMS} FROM usage_records WHERE denial = ''",
            group.unwrap_or("NULL")
        ));
        let filters = [
            ("key_id", &q.key_id),
            ("team_id", &q.team_id),
            ("customer_id", &q.customer_id),
            ("model", &q.model),
            ("provider", &q.provider),
        ];
        for (column, value) in filters {
            if let Some(v) = value {
                sql.push(&format!(" AND {column} = ")).bind(v);
            }
        }
        if let Some(from) = q.from_ms {
            sql.push(" AND at_ms >= ").bind(signed(from));
        }
        if let Some(to) = q.to_ms {
            sql.push(" AND at_ms < ").bind(signed(to));
        }
        if let Some(column) = group {
            // NULLS FIRST: PostgreSQL sorts NULL last by default, SQLite first.
            sql.push(&format!(" GROUP BY {column} ORDER BY cost_micros DESC, grp NULLS FIRST"));
        }
        let rows = self.pool.fetch_all(sql).await.map_err(backend)?;
        rows.iter().map(|row| totals(row, if group.is_some() { row.get("grp")? } else { None })).collect()
    }

    async fn usage_by_model(&self) -> Result<Vec<(String, String, UsageTotals)>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT provider, model, COUNT(*) AS requests, {SUMS} FROM usage_records WHERE denial = ''
                 GROUP BY provider, model ORDER BY provider, model"
        ));
        let rows = self.pool.fetch_all(sql).await.map_err(backend)?;
        rows.iter().map(|row| Ok((row.get("provider")?, row.get("model")?, totals(row, None)?))).collect()
    }

    async fn denials_by_type(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let sql = sql!(
            "SELECT denial, CAST(SUM(repeats) AS BIGINT) AS n FROM usage_records WHERE denial <> '' GROUP BY denial ORDER BY denial"
        );
        let rows = self.pool.fetch_all(sql).await.map_err(backend)?;
        rows.iter().map(|row| Ok((row.get("denial")?, row.unsigned("n")?))).collect()
    }
}

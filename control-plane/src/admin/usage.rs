//! `GET /api/usage`: what was used and spent, from the ledger, by key, team, customer, model,
//! provider and time range; `GET /api/leases`: how budgets are shared among Envoys right now.

use super::AppState;
use super::error::ApiError;
use super::json::Query;
use crate::model::Invalid;
use crate::store::{GroupBy, UsageQuery, UsageTotals};
use axum::Json;
use axum::extract::State;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_policy::pricing::dollars;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    key_id: Option<String>,
    team_id: Option<String>,
    customer_id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    /// RFC 3339 or Unix milliseconds; inclusive.
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; exclusive.
    to: Option<String>,
    group_by: Option<GroupBy>,
}

fn instant(text: Option<String>, field: &str) -> Result<Option<u64>, Invalid> {
    let Some(text) = text else { return Ok(None) };
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Some(ms));
    }
    let at = DateTime::parse_from_rfc3339(&text)
        .map_err(|_| Invalid::new(field, "must be RFC 3339 or Unix milliseconds"))?;
    Ok(Some(u64::try_from(at.timestamp_millis()).unwrap_or(0)))
}

fn view(t: &UsageTotals) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    v["cost_usd"] = json!(dollars(t.cost_micros));
    v
}

pub async fn usage(State(state): State<AppState>, Query(p): Query<UsageParams>) -> Result<Json<Value>, ApiError> {
    let mut query = UsageQuery {
        key_id: p.key_id,
        team_id: p.team_id,
        customer_id: p.customer_id,
        model: p.model,
        provider: p.provider,
        from_ms: instant(p.from, "from")?,
        to_ms: instant(p.to, "to")?,
        group_by: None,
    };
    let totals = state.store.usage(&query).await?;
    let mut body = json!({"totals": totals.first().map(view).unwrap_or_else(|| view(&UsageTotals::default()))});
    if let Some(group) = p.group_by {
        query.group_by = Some(group);
        let groups: Vec<Value> = state.store.usage(&query).await?.iter().map(view).collect();
        body["groups"] = json!(groups);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseParams {
    /// Only budgets whose counter starts with this, e.g. `warden:budget:vk:<id>:`.
    counter: Option<String>,
}

/// `GET /api/leases`: every Envoy's share of every budget window, and what it reported spent.
pub async fn leases(State(state): State<AppState>, Query(p): Query<LeaseParams>) -> Result<Json<Value>, ApiError> {
    let rows = state.store.leases(p.counter.as_deref().unwrap_or("")).await?;
    Ok(Json(json!({ "leases": rows })))
}

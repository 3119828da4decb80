//! Bifrost's embedded relations on reads: a key answers with its `team` and `customer`, a team
//! with its `customer` and `virtual_keys`, a customer with its `teams` and `virtual_keys`. An
//! embedded entity is shown as itself (its budgets and limits), without relations of its own.

use super::AppState;
use super::error::ApiError;
use crate::model::{Customer, Team, VirtualKey};
use crate::store::{KeyQuery, TeamQuery};
use serde::Serialize;
use serde_json::Value;

/// An entity as JSON, the way every admin answer shows it.
pub fn plain(entity: &impl Serialize) -> Value {
    serde_json::to_value(entity).unwrap_or(Value::Null)
}

/// The contract's `budget_id` and `rate_limit_id` on an owner read: its first budget's id (the
/// one a single-budget client knows) and the id `/api/governance/rate-limits` lists its limit
/// under.
fn with_limit_ids(mut shown: Value, owner_field: &str, owner_id: &str) -> Value {
    shown["budget_id"] = shown["budgets"][0]["id"].clone();
    shown["rate_limit_id"] = match shown["rate_limit"].is_null() {
        true => Value::Null,
        false => Value::String(format!("{owner_field}:{owner_id}")),
    };
    shown
}

/// A key with its `team` and `customer` (`null` when it has none).
pub async fn key(state: &AppState, key: &VirtualKey) -> Result<Value, ApiError> {
    let mut shown = with_limit_ids(plain(key), "virtual_key_id", &key.id);
    let team = match &key.team_id {
        Some(id) => state.store.team(id).await?,
        None => None,
    };
    let customer = match &key.customer_id {
        Some(id) => state.store.customer(id).await?,
        None => None,
    };
    shown["team"] = team.as_ref().map_or(Value::Null, plain);
    shown["customer"] = customer.as_ref().map_or(Value::Null, plain);
    Ok(shown)
}

/// A team with its `customer` and `virtual_keys`.
pub async fn team(state: &AppState, team: &Team) -> Result<Value, ApiError> {
    let mut shown = with_limit_ids(plain(team), "team_id", &team.id);
    let customer = match &team.customer_id {
        Some(id) => state.store.customer(id).await?,
        None => None,
    };
    let query = KeyQuery { team_id: Some(team.id.clone()), ..KeyQuery::default() };
    let (keys, _) = state.store.virtual_keys(&query).await?;
    shown["customer"] = customer.as_ref().map_or(Value::Null, plain);
    shown["virtual_keys"] = keys.iter().map(plain).collect();
    Ok(shown)
}

/// A customer with its `teams` and `virtual_keys`.
pub async fn customer(state: &AppState, customer: &Customer) -> Result<Value, ApiError> {
    let mut shown = with_limit_ids(plain(customer), "customer_id", &customer.id);
    let (teams, _) =
        state.store.teams(&TeamQuery { customer_id: Some(customer.id.clone()), ..TeamQuery::default() }).await?;
    let query = KeyQuery { customer_id: Some(customer.id.clone()), ..KeyQuery::default() };
    let (keys, _) = state.store.virtual_keys(&query).await?;
    shown["teams"] = teams.iter().map(plain).collect();
    shown["virtual_keys"] = keys.iter().map(plain).collect();
    Ok(shown)
}

//! `/api/governance/virtual-keys`: Bifrost's paths and shapes (docs/admin-api.md), with two fixes:
//! a PUT that omits `team_id`/`customer_id` leaves them unchanged, and the singular `budget` is
//! honoured instead of silently dropped.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, Query, ValidJson, merge_budgets, page, present};
use super::references;
use super::relations::{self, plain};
use crate::model::{Budget, Invalid, McpConfig, ProviderConfig, RateLimit, VirtualKey, budget_ids};
use crate::store::KeyQuery;
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_policy::keys::KEY_PREFIX;
use warden_policy::{KeyHash, RecordKind};

/// Characters of the secret kept for display.
const DISPLAY_PREFIX_LEN: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    description: String,
    /// Import an existing secret instead of generating one.
    value: Option<String>,
    is_active: Option<bool>,
    #[serde(default)]
    provider_configs: Vec<ProviderConfig>,
    #[serde(default)]
    mcp_configs: Vec<McpConfig>,
    team_id: Option<String>,
    customer_id: Option<String>,
    #[serde(default)]
    budgets: Vec<Budget>,
    /// Legacy singular form; joins `budgets`.
    budget: Option<Budget>,
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    calendar_aligned: bool,
    #[serde(default)]
    allow_all_providers: bool,
    max_concurrent_requests: Option<u32>,
    #[serde(default)]
    prices: std::collections::BTreeMap<String, warden_policy::pricing::Price>,
    expires_at: Option<String>,
    delete_after_expire: Option<bool>,
    disable_content_logging: Option<bool>,
}

/// Absent fields stay as they are; `null` clears where clearing makes sense.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
    provider_configs: Option<Vec<ProviderConfig>>,
    mcp_configs: Option<Vec<McpConfig>>,
    #[serde(default, deserialize_with = "present")]
    team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    customer_id: Option<Option<String>>,
    budgets: Option<Vec<Budget>>,
    budget: Option<Budget>,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimit>>,
    calendar_aligned: Option<bool>,
    allow_all_providers: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    max_concurrent_requests: Option<Option<u32>>,
    prices: Option<std::collections::BTreeMap<String, warden_policy::pricing::Price>>,
    expires_at: Option<String>,
    #[serde(default, deserialize_with = "present")]
    delete_after_expire: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    disable_content_logging: Option<Option<bool>>,
    /// Zeroes the usage of every budget of the key; their windows stay as they are.
    #[serde(default)]
    reset_budget_usage: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    #[serde(default)]
    offset: u32,
    search: Option<String>,
    team_id: Option<String>,
    customer_id: Option<String>,
    /// Bifrost's flag; Warden always reads the store.
    #[serde(rename = "from_memory")]
    _from_memory: Option<bool>,
}

/// `expires_at`: RFC 3339 in the future; `""` means none.
fn expiry(text: Option<String>, now: DateTime<Utc>) -> Result<Option<Option<DateTime<Utc>>>, Invalid> {
    let Some(text) = text else { return Ok(None) };
    if text.is_empty() {
        return Ok(Some(None));
    }
    let at = DateTime::parse_from_rfc3339(&text)
        .map_err(|e| Invalid::new("expires_at", format!("must be an RFC 3339 time ({e})")))?
        .with_timezone(&Utc);
    if at <= now {
        return Err(Invalid::new("expires_at", "must lie in the future"));
    }
    Ok(Some(Some(at)))
}

fn new_secret() -> String {
    format!("{KEY_PREFIX}{}", uuid::Uuid::new_v4())
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let secret = match req.value {
        Some(v) if v.len() < 16 || v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(Invalid::new("value", "an imported key needs at least 16 characters and no white space").into());
        }
        Some(v) => v,
        None => new_secret(),
    };
    let mut key = VirtualKey {
        id: uuid::Uuid::new_v4().to_string(),
        name: req.name,
        description: req.description,
        is_active: req.is_active.unwrap_or(true),
        value_prefix: secret.chars().take(DISPLAY_PREFIX_LEN).collect(),
        value_hash: KeyHash::of(secret.as_bytes()).to_string(),
        provider_configs: req.provider_configs,
        mcp_configs: req.mcp_configs,
        team_id: req.team_id,
        customer_id: req.customer_id,
        budgets: merge_budgets(req.budgets, req.budget),
        rate_limit: req.rate_limit,
        calendar_aligned: req.calendar_aligned,
        allow_all_providers: req.allow_all_providers,
        max_concurrent_requests: req.max_concurrent_requests,
        prices: req.prices,
        expires_at: expiry(req.expires_at, now)?.flatten(),
        delete_after_expire: req.delete_after_expire,
        disable_content_logging: req.disable_content_logging,
        created_at: now,
        updated_at: now,
    };
    key.validate()?;
    budget_ids(key.provider_configs.iter_mut().flat_map(|pc| pc.budgets.iter_mut()));
    references::owners_exist(&state, key.team_id.as_deref(), key.customer_id.as_deref()).await?;
    state.store.insert_virtual_key(&key).await?;
    state.publisher.publish_keys(std::slice::from_ref(&key)).await?;
    tracing::info!(id = %key.id, name = %key.name, "virtual key created");
    let mut shown = plain(&key);
    shown["value"] = Value::String(secret);
    Ok((StatusCode::OK, Json(json!({"message": "Virtual key created successfully", "virtual_key": shown}))))
}

pub async fn list(State(state): State<AppState>, Query(params): Query<ListParams>) -> Result<Json<Value>, ApiError> {
    let query = KeyQuery {
        search: params.search,
        team_id: params.team_id,
        customer_id: params.customer_id,
        limit: params.limit,
        offset: params.offset,
    };
    let (keys, total) = state.store.virtual_keys(&query).await?;
    let mut shown = Vec::with_capacity(keys.len());
    for one in &keys {
        shown.push(relations::key(&state, one).await?);
    }
    Ok(Json(page("virtual_keys", shown, total, params.limit, params.offset)))
}

async fn existing(state: &AppState, id: &str) -> Result<VirtualKey, ApiError> {
    state.store.virtual_key(id).await?.ok_or_else(|| ApiError::NotFound("Virtual key not found".into()))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let key = existing(&state, &id).await?;
    Ok(Json(json!({"virtual_key": relations::key(&state, &key).await?})))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateKey>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut key = existing(&state, &id).await?;
    let before = Before(plain(&key));
    let now = Utc::now();
    // Only a new owner is checked: a key whose team predates the teams table stays editable.
    let owner_changed = req.team_id.is_some() || req.customer_id.is_some();
    if let Some(v) = req.name {
        key.name = v;
    }
    if let Some(v) = req.description {
        key.description = v;
    }
    if let Some(v) = req.is_active {
        key.is_active = v;
    }
    if let Some(v) = req.provider_configs {
        key.provider_configs = v;
    }
    if let Some(v) = req.mcp_configs {
        key.mcp_configs = v;
    }
    if let Some(v) = req.team_id {
        key.team_id = v;
    }
    if let Some(v) = req.customer_id {
        key.customer_id = v;
    }
    if req.budgets.is_some() || req.budget.is_some() {
        let mut budgets = merge_budgets(req.budgets.unwrap_or_default(), req.budget);
        // A budget sent again without `last_reset` keeps its reset: its usage does not come back.
        for budget in budgets.iter_mut().filter(|b| b.last_reset.is_none()) {
            let old = key.budgets.iter().find(|o| o.reset_duration == budget.reset_duration);
            budget.last_reset = old.and_then(|o| o.last_reset);
        }
        key.budgets = budgets;
    }
    if req.reset_budget_usage {
        key.budgets.iter_mut().for_each(|b| b.last_reset = Some(now));
    }
    if let Some(v) = req.rate_limit {
        key.rate_limit = v;
    }
    if let Some(v) = req.calendar_aligned {
        key.calendar_aligned = v;
    }
    if let Some(v) = req.allow_all_providers {
        key.allow_all_providers = v;
    }
    if let Some(v) = req.max_concurrent_requests {
        key.max_concurrent_requests = v;
    }
    if let Some(prices) = req.prices {
        key.prices = prices;
    }
    if let Some(v) = expiry(req.expires_at, now)? {
        key.expires_at = v;
    }
    if let Some(v) = req.delete_after_expire {
        key.delete_after_expire = v;
    }
    if let Some(v) = req.disable_content_logging {
        key.disable_content_logging = v;
    }
    key.updated_at = now;
    key.validate()?;
    budget_ids(key.provider_configs.iter_mut().flat_map(|pc| pc.budgets.iter_mut()));
    if owner_changed {
        references::owners_exist(&state, key.team_id.as_deref(), key.customer_id.as_deref()).await?;
    }
    if !state.store.update_virtual_key(&key).await? {
        return Err(ApiError::NotFound("Virtual key not found".into()));
    }
    state.publisher.publish_keys(std::slice::from_ref(&key)).await?;
    tracing::info!(id = %key.id, active = key.is_active, "virtual key updated");
    Ok((Extension(before), Json(json!({"message": "Virtual key updated successfully", "virtual_key": plain(&key)}))))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let key =
        state.store.delete_virtual_key(&id).await?.ok_or_else(|| ApiError::NotFound("Virtual key not found".into()))?;
    state.cache.remove(&RecordKind::VirtualKey.name(&key.value_hash));
    tracing::info!(id = %key.id, "virtual key deleted");
    Ok((Extension(Before(plain(&key))), Json(json!({"message": "Virtual key deleted successfully"}))))
}

//! `/api/providers`: upstream providers and their API keys. A key's value is accepted on
//! create and update and never shown again; each change re-publishes the provider's record to
//! the filters and its clusters (CDS) and secrets (SDS) to Envoy.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, ValidJson, merge_budgets, present};
use crate::model::{Budget, Invalid, Provider, ProviderKey, ProviderKind, RateLimit, Timeouts};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_policy::RecordKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    id: String,
    /// Required for a new id; omitted on update, the stored value stays.
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    name: String,
    kind: Option<ProviderKind>,
    base_url: String,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    keys: Vec<KeyInput>,
    #[serde(default)]
    timeouts: Option<Timeouts>,
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    budgets: Vec<Budget>,
    /// Legacy singular form; joins `budgets`.
    budget: Option<Budget>,
    #[serde(default)]
    calendar_aligned: bool,
}

/// Absent fields stay as they are; `keys` replaces the list (a listed id without a value keeps
/// its stored value); `rate_limit: null` clears the limit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    kind: Option<ProviderKind>,
    base_url: Option<String>,
    models: Option<Vec<String>>,
    keys: Option<Vec<KeyInput>>,
    timeouts: Option<Timeouts>,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimit>>,
    budgets: Option<Vec<Budget>>,
    budget: Option<Budget>,
    calendar_aligned: Option<bool>,
}

/// New key values where given, stored ones where not; an unknown id needs a value.
fn merge_keys(input: Vec<KeyInput>, stored: &[ProviderKey]) -> Result<Vec<ProviderKey>, Invalid> {
    input
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let value = match k.value {
                Some(v) => v,
                None => stored.iter().find(|s| s.id == k.id).map(|s| s.value.clone()).ok_or_else(|| {
                    Invalid::new(format!("keys[{i}].value"), format!("is required for the new key id '{}'", k.id))
                })?,
            };
            Ok(ProviderKey { id: k.id, value })
        })
        .collect()
}

fn view(p: &Provider) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let providers = state.store.providers().await?;
    let views: Vec<Value> = providers.iter().map(view).collect();
    Ok(Json(json!({"providers": views, "count": views.len()})))
}

pub async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let provider = state.store.provider(&name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(json!({"provider": view(&provider)})))
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateProvider>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let provider = Provider {
        name: req.name,
        kind: req.kind.unwrap_or(ProviderKind::Openai),
        base_url: req.base_url,
        models: req.models,
        keys: merge_keys(req.keys, &[])?,
        timeouts: req.timeouts.unwrap_or_default(),
        rate_limit: req.rate_limit,
        budgets: merge_budgets(req.budgets, req.budget),
        calendar_aligned: req.calendar_aligned,
        created_at: now,
        updated_at: now,
    };
    provider.validate()?;
    state.store.insert_provider(&provider).await.map_err(ApiError::on_write("provider"))?;
    publish(&state).await?;
    tracing::info!(name = %provider.name, keys = provider.keys.len(), "provider created");
    let body = json!({"message": "Provider created successfully", "provider": view(&provider)});
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<UpdateProvider>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut provider = state.store.provider(&name).await?.ok_or_else(|| not_found(&name))?;
    let before = Before(view(&provider));
    if let Some(kind) = req.kind {
        provider.kind = kind;
    }
    if let Some(url) = req.base_url {
        provider.base_url = url;
    }
    if let Some(models) = req.models {
        provider.models = models;
    }
    if let Some(keys) = req.keys {
        provider.keys = merge_keys(keys, &provider.keys)?;
    }
    if let Some(timeouts) = req.timeouts {
        provider.timeouts = timeouts;
    }
    if let Some(rate_limit) = req.rate_limit {
        provider.rate_limit = rate_limit;
    }
    if req.budgets.is_some() || req.budget.is_some() {
        provider.budgets = merge_budgets(req.budgets.unwrap_or_default(), req.budget);
    }
    if let Some(aligned) = req.calendar_aligned {
        provider.calendar_aligned = aligned;
    }
    provider.updated_at = Utc::now();
    provider.validate()?;
    if !state.store.update_provider(&provider).await? {
        return Err(not_found(&name));
    }
    publish(&state).await?;
    tracing::info!(name = %provider.name, "provider updated");
    Ok((Extension(before), Json(json!({"message": "Provider updated successfully", "provider": view(&provider)}))))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let gone = state.store.delete_provider(&name).await?.ok_or_else(|| not_found(&name))?;
    state.cache.remove(&RecordKind::Provider.name(&name));
    publish(&state).await?;
    tracing::info!(%name, "provider deleted");
    Ok((Extension(Before(view(&gone))), Json(json!({"message": "Provider deleted successfully"}))))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("Provider '{name}' not found"))
}

/// Publishes every provider from the store: records to the filters, clusters and secrets to
/// Envoy. Rebuilding all of them keeps one way of doing it; there are few providers.
async fn publish(state: &AppState) -> Result<(), ApiError> {
    let providers = state.store.providers().await?;
    state.publisher.publish_providers(&providers);
    Ok(())
}

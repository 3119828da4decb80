//! `/api/prices`: what each model costs. Warden ships defaults for common models
//! (`warden_policy::pricing::DEFAULT_PRICES`); an operator overrides them per model, per
//! provider (`<provider>/<model>`) or sets the fallback `*` for models without a price. Without
//! a fallback, a model with no price is refused (403 `price_unknown`) wherever a budget applies.

use super::AppState;
use super::error::ApiError;
use super::json::{Path, ValidJson};
use crate::store::Store;
use crate::xds::Cache;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use warden_policy::RecordKind;
use warden_policy::pricing::{DEFAULT_PRICES, Price};

/// Settings-table name of the operator's prices.
const PRICE_OVERRIDES: &str = "price_overrides";

async fn overrides(store: &dyn Store) -> Result<BTreeMap<String, Price>, ApiError> {
    match store.setting(PRICE_OVERRIDES).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| ApiError::Internal(format!("stored prices: {e}"))),
        None => Ok(BTreeMap::new()),
    }
}

/// The prices in force: the defaults, then the operator's on top.
fn effective(overrides: &BTreeMap<String, Price>) -> BTreeMap<String, Price> {
    let mut all: BTreeMap<String, Price> = DEFAULT_PRICES.iter().map(|(m, p)| ((*m).to_owned(), *p)).collect();
    all.extend(overrides.iter().map(|(n, p)| (n.clone(), *p)));
    all
}

/// Publishes the prices in force to every filter; `gone` names overrides just removed.
pub async fn publish_prices(cache: &Cache, store: &dyn Store, gone: Option<&str>) -> Result<(), ApiError> {
    let all = effective(&overrides(store).await?);
    if let Some(name) = gone.filter(|n| !all.contains_key(*n)) {
        cache.remove(&RecordKind::Price.name(name));
    }
    cache.upsert(all.iter().filter_map(|(n, p)| Some((RecordKind::Price.name(n), serde_json::to_vec(p).ok()?))));
    Ok(())
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let overrides = overrides(state.store.as_ref()).await?;
    let prices: Vec<Value> = effective(&overrides)
        .into_iter()
        .map(|(name, price)| {
            let source = if overrides.contains_key(&name) { "override" } else { "default" };
            json!({"name": name, "price": price, "source": source})
        })
        .collect();
    Ok(Json(json!({"prices": prices, "unit": "micro-dollars per million tokens"})))
}

pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(price): ValidJson<Price>,
) -> Result<Json<Value>, ApiError> {
    let valid_name = name == "*"
        || (!name.is_empty() && name.len() <= 200 && !name.chars().any(|c| c.is_whitespace() || c.is_control()));
    if !valid_name {
        return Err(crate::model::Invalid::new("name", "must be a model, provider/model, or * for the fallback").into());
    }
    let mut all = overrides(state.store.as_ref()).await?;
    all.insert(name.clone(), price);
    let text = serde_json::to_string(&all).map_err(|e| ApiError::Internal(e.to_string()))?;
    state.store.put_setting(PRICE_OVERRIDES, &text).await?;
    publish_prices(&state.cache, state.store.as_ref(), None).await?;
    tracing::info!(%name, "price set");
    Ok(Json(json!({"message": "Price set", "name": name, "price": price})))
}

pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let mut all = overrides(state.store.as_ref()).await?;
    if all.remove(&name).is_none() {
        return Err(ApiError::NotFound(format!("no price override for '{name}'")));
    }
    let text = serde_json::to_string(&all).map_err(|e| ApiError::Internal(e.to_string()))?;
    state.store.put_setting(PRICE_OVERRIDES, &text).await?;
    publish_prices(&state.cache, state.store.as_ref(), Some(&name)).await?;
    tracing::info!(%name, "price override removed");
    Ok(Json(json!({"message": "Price override removed; the default applies again where there is one"})))
}

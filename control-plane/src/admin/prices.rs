//! `/api/prices`: what each model costs. Warden ships defaults for common models
//! (`warden_policy::pricing::DEFAULT_PRICES`); an operator overrides them per model, per
//! provider (`<provider>/<model>`) or sets the fallback `*` for models without a price. Without
//! a fallback, a model with no price is refused (403 `price_unknown`) wherever a budget applies.

use super::AppState;
use super::error::ApiError;
use super::json::{Path, ValidJson};
use crate::publish::records::{prices_in_force, publish_prices};
use crate::store::settings::{price_overrides, put_price_overrides};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use warden_policy::pricing::Price;

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let overrides = price_overrides(state.store.as_ref()).await?;
    let prices: Vec<Value> = prices_in_force(&overrides)
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
    let mut all = price_overrides(state.store.as_ref()).await?;
    all.insert(name.clone(), price);
    put_price_overrides(state.store.as_ref(), &all).await?;
    publish_prices(&state.cache, state.store.as_ref(), None).await?;
    tracing::info!(%name, "price set");
    Ok(Json(json!({"message": "Price set", "name": name, "price": price})))
}

pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let mut all = price_overrides(state.store.as_ref()).await?;
    if all.remove(&name).is_none() {
        return Err(ApiError::NotFound(format!("no price override for '{name}'")));
    }
    put_price_overrides(state.store.as_ref(), &all).await?;
    publish_prices(&state.cache, state.store.as_ref(), Some(&name)).await?;
    tracing::info!(%name, "price override removed");
    Ok(Json(json!({"message": "Price override removed; the default applies again where there is one"})))
}

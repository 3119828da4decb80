//! `/api/governance/model-configs` (Bifrost's shapes): limits on a model name, optionally on one
//! provider. All configs of one model name travel as one record, so every write re-publishes
//! that model's record from the store.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, Query, ValidJson, merge_budgets, page, present};
use crate::model::{Budget, ModelConfig, RateLimit};
use crate::publish::records::publish_model;
use crate::store::{ModelConfigQuery, StoreError};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Orders reading a model's configs with publishing them. Without it, two writers on the same
/// model could publish out of order and leave the older aggregate in the cache. One lock for
/// all models: these writes are rare.
static MODEL_PUBLISH: Mutex<()> = Mutex::const_new(());

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateModelConfig {
    model_name: String,
    /// `None`: the limits apply on every provider.
    provider: Option<String>,
    #[serde(default)]
    budgets: Vec<Budget>,
    /// Legacy singular form; joins `budgets`.
    budget: Option<Budget>,
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    calendar_aligned: bool,
}

/// Absent fields stay as they are; `null` clears `provider` and `rate_limit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateModelConfig {
    model_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    provider: Option<Option<String>>,
    budgets: Option<Vec<Budget>>,
    budget: Option<Budget>,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimit>>,
    calendar_aligned: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    #[serde(default)]
    offset: u32,
    /// A substring of the model name.
    search: Option<String>,
    /// Exactly this model name.
    model_name: Option<String>,
}

fn view(config: &ModelConfig) -> Value {
    serde_json::to_value(config).unwrap_or(Value::Null)
}

fn not_found() -> ApiError {
    ApiError::NotFound("Model config not found".into())
}

async fn existing(state: &AppState, id: &str) -> Result<ModelConfig, ApiError> {
    state.store.model_config(id).await?.ok_or_else(not_found)
}

/// A unique clash names the pair that is taken.
fn write_failed(config: &ModelConfig) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict { .. } => ApiError::Conflict(format!(
            "model_name: a model config for '{}' on {} already exists",
            config.model_name,
            config.provider.as_ref().map_or_else(|| "every provider".to_owned(), |p| format!("provider '{p}'"))
        )),
        e => e.into(),
    }
}

/// Publishes `model`'s record as the store now has it, or withdraws it if no config is left.
async fn republish(state: &AppState, model: &str) -> Result<(), ApiError> {
    let _ordered = MODEL_PUBLISH.lock().await;
    let query = ModelConfigQuery { model_name: Some(model.to_owned()), ..ModelConfigQuery::default() };
    let (configs, _) = state.store.model_configs(&query).await?;
    publish_model(&state.cache, model, &configs);
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateModelConfig>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let config = ModelConfig {
        id: uuid::Uuid::new_v4().to_string(),
        model_name: req.model_name,
        provider: req.provider,
        budgets: merge_budgets(req.budgets, req.budget),
        rate_limit: req.rate_limit,
        calendar_aligned: req.calendar_aligned,
        created_at: now,
        updated_at: now,
    };
    config.validate()?;
    state.store.insert_model_config(&config).await.map_err(write_failed(&config))?;
    republish(&state, &config.model_name).await?;
    tracing::info!(id = %config.id, model = %config.model_name, "model config created");
    Ok((StatusCode::OK, Json(json!({"message": "Model config created successfully", "model_config": view(&config)}))))
}

pub async fn list(State(state): State<AppState>, Query(params): Query<ListParams>) -> Result<Json<Value>, ApiError> {
    let query = ModelConfigQuery {
        search: params.search,
        model_name: params.model_name,
        limit: params.limit,
        offset: params.offset,
    };
    let (configs, total) = state.store.model_configs(&query).await?;
    Ok(Json(page("model_configs", configs.iter().map(view).collect(), total, params.limit, params.offset)))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let config = existing(&state, &id).await?;
    Ok(Json(json!({"model_config": view(&config)})))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateModelConfig>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut config = existing(&state, &id).await?;
    let before = Before(view(&config));
    let previous_model = config.model_name.clone();
    if let Some(v) = req.model_name {
        config.model_name = v;
    }
    if let Some(v) = req.provider {
        config.provider = v;
    }
    if req.budgets.is_some() || req.budget.is_some() {
        config.budgets = merge_budgets(req.budgets.unwrap_or_default(), req.budget);
    }
    if let Some(v) = req.rate_limit {
        config.rate_limit = v;
    }
    if let Some(v) = req.calendar_aligned {
        config.calendar_aligned = v;
    }
    config.updated_at = Utc::now();
    config.validate()?;
    if !state.store.update_model_config(&config).await.map_err(write_failed(&config))? {
        return Err(not_found());
    }
    republish(&state, &config.model_name).await?;
    if previous_model != config.model_name {
        republish(&state, &previous_model).await?;
    }
    tracing::info!(id = %config.id, model = %config.model_name, "model config updated");
    Ok((
        Extension(before),
        Json(json!({"message": "Model config updated successfully", "model_config": view(&config)})),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let config = state.store.delete_model_config(&id).await?.ok_or_else(not_found)?;
    republish(&state, &config.model_name).await?;
    tracing::info!(id = %config.id, model = %config.model_name, "model config deleted");
    Ok((Extension(Before(view(&config))), Json(json!({"message": "Model config deleted successfully"}))))
}

//! `/api/mcp/virtual-mcps`: named bundles of tools served at `/mcp/<endpoint_slug>` to the keys
//! attached to them, as in Bifrost (docs/mcp.md). Every change republishes the keys' records, which
//! carry their bundles.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, Query, ValidJson, page};
use super::mcp::ListQuery;
use crate::model::{BundledTools, VirtualMcp};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVirtualMcp {
    name: String,
    endpoint_slug: String,
    #[serde(default)]
    description: String,
    enabled: Option<bool>,
    #[serde(default)]
    tools: Vec<BundledTools>,
}

/// Absent fields stay as they are; the slug cannot change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateVirtualMcp {
    name: Option<String>,
    endpoint_slug: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    tools: Option<Vec<BundledTools>>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Virtual MCP '{id}' not found"))
}

fn view(vmcp: &VirtualMcp) -> Value {
    serde_json::to_value(vmcp).unwrap_or(Value::Null)
}

/// Every bundled client must exist.
async fn clients_exist(state: &AppState, tools: &[BundledTools]) -> Result<(), ApiError> {
    let clients = state.store.mcp_clients().await?;
    match tools.iter().enumerate().find(|(_, t)| !clients.iter().any(|c| c.client_id == t.mcp_client_id)) {
        Some((i, t)) => {
            Err(ApiError::BadRequest(format!("tools[{i}].mcp_client_id: no MCP client '{}'", t.mcp_client_id)))
        }
        None => Ok(()),
    }
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let mut all = state.store.virtual_mcps().await?;
    if let Some(search) = q.search.as_deref().map(str::to_lowercase) {
        all.retain(|v| v.name.to_lowercase().contains(&search) || v.endpoint_slug.contains(&search));
    }
    let total = all.len() as u64;
    let shown = all.iter().skip(q.offset as usize).take(q.limit.map_or(usize::MAX, |l| l as usize)).map(view).collect();
    Ok(Json(page("virtual_mcps", shown, total, q.limit, q.offset)))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let vmcp = state.store.virtual_mcp(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(json!({"virtual_mcp": view(&vmcp)})))
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateVirtualMcp>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let vmcp = VirtualMcp {
        id: uuid::Uuid::new_v4().to_string(),
        name: req.name,
        endpoint_slug: req.endpoint_slug,
        description: req.description,
        enabled: req.enabled.unwrap_or(true),
        tools: req.tools,
        virtual_key_ids: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    vmcp.validate()?;
    clients_exist(&state, &vmcp.tools).await?;
    state.store.insert_virtual_mcp(&vmcp).await.map_err(ApiError::on_write("Virtual MCP"))?;
    tracing::info!(slug = %vmcp.endpoint_slug, "Virtual MCP created");
    Ok((StatusCode::CREATED, Json(json!({"message": "Virtual MCP created successfully", "virtual_mcp": view(&vmcp)}))))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateVirtualMcp>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut vmcp = state.store.virtual_mcp(&id).await?.ok_or_else(|| not_found(&id))?;
    let before = Before(view(&vmcp));
    if req.endpoint_slug.as_ref().is_some_and(|s| *s != vmcp.endpoint_slug) {
        return Err(ApiError::BadRequest(
            "endpoint_slug: the slug of a Virtual MCP cannot change; create a new one".into(),
        ));
    }
    if let Some(v) = req.name {
        vmcp.name = v;
    }
    if let Some(v) = req.description {
        vmcp.description = v;
    }
    if let Some(v) = req.enabled {
        vmcp.enabled = v;
    }
    if let Some(v) = req.tools {
        clients_exist(&state, &v).await?;
        vmcp.tools = v;
    }
    vmcp.updated_at = Utc::now();
    vmcp.validate()?;
    save(&state, &vmcp).await?;
    Ok((Extension(before), Json(json!({"message": "Virtual MCP updated successfully", "virtual_mcp": view(&vmcp)}))))
}

async fn save(state: &AppState, vmcp: &VirtualMcp) -> Result<(), ApiError> {
    if !state.store.update_virtual_mcp(vmcp).await.map_err(ApiError::on_write("Virtual MCP"))? {
        return Err(not_found(&vmcp.id));
    }
    state.publisher.publish_all_keys().await?;
    tracing::info!(slug = %vmcp.endpoint_slug, keys = vmcp.virtual_key_ids.len(), "Virtual MCP updated");
    Ok(())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let gone = state.store.delete_virtual_mcp(&id).await?.ok_or_else(|| not_found(&id))?;
    state.publisher.publish_all_keys().await?;
    tracing::info!(slug = %gone.endpoint_slug, "Virtual MCP deleted");
    Ok((Extension(Before(view(&gone))), Json(json!({"message": "Virtual MCP deleted successfully"}))))
}

/// `POST /api/mcp/virtual-mcps/{id}/virtual-keys/{vk_id}`.
pub async fn attach(
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut vmcp = state.store.virtual_mcp(&id).await?.ok_or_else(|| not_found(&id))?;
    if state.store.virtual_key(&key_id).await?.is_none() {
        return Err(ApiError::NotFound("Virtual key not found".into()));
    }
    if !vmcp.virtual_key_ids.contains(&key_id) {
        vmcp.virtual_key_ids.push(key_id);
        vmcp.updated_at = Utc::now();
        save(&state, &vmcp).await?;
    }
    Ok(Json(json!({"message": "Virtual key attached", "virtual_mcp": view(&vmcp)})))
}

/// `DELETE /api/mcp/virtual-mcps/{id}/virtual-keys/{vk_id}`.
pub async fn detach(
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut vmcp = state.store.virtual_mcp(&id).await?.ok_or_else(|| not_found(&id))?;
    let before = vmcp.virtual_key_ids.len();
    vmcp.virtual_key_ids.retain(|k| *k != key_id);
    if vmcp.virtual_key_ids.len() == before {
        return Err(ApiError::NotFound(format!("Virtual key '{key_id}' is not attached to this Virtual MCP")));
    }
    vmcp.updated_at = Utc::now();
    save(&state, &vmcp).await?;
    Ok(Json(json!({"message": "Virtual key detached", "virtual_mcp": view(&vmcp)})))
}

//! `/api/mcp/*`: the MCP servers the hub connects to, in Bifrost's paths and shapes (contract
//! §6.2, §7.1). Each change is stored, then the hub reconciles its connections with the store
//! and republishes the tool catalog.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, Query, ValidJson, page};
use crate::model::{ConnectionType, McpClient, REDACTED, StdioConfig, ToolManagerConfig};
use crate::store::{KeyQuery, settings};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// Optional: generated when absent.
    client_id: Option<String>,
    name: String,
    connection_type: ConnectionType,
    connection_string: Option<String>,
    stdio_config: Option<StdioConfig>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tools_to_execute: Vec<String>,
    #[serde(default)]
    tools_to_auto_execute: Vec<String>,
    #[serde(default)]
    is_code_mode_client: bool,
    #[serde(default)]
    tool_pricing: BTreeMap<String, f64>,
    #[serde(default)]
    allow_by_default: bool,
    is_ping_available: Option<bool>,
    tool_timeout_ms: Option<u64>,
    /// The connection's state, runtime only in Bifrost: accepted and ignored.
    #[serde(default)]
    state: Option<Value>,
}

/// Absent fields stay as they are. The connection (type, URL, command) is immutable, as in
/// Bifrost: delete and re-create the client to move it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    name: Option<String>,
    connection_type: Option<ConnectionType>,
    connection_string: Option<String>,
    stdio_config: Option<StdioConfig>,
    headers: Option<BTreeMap<String, String>>,
    tools_to_execute: Option<Vec<String>>,
    tools_to_auto_execute: Option<Vec<String>>,
    is_code_mode_client: Option<bool>,
    tool_pricing: Option<BTreeMap<String, f64>>,
    allow_by_default: Option<bool>,
    is_ping_available: Option<bool>,
    tool_timeout_ms: Option<u64>,
    #[serde(default)]
    state: Option<Value>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub(super) search: Option<String>,
    pub(super) limit: Option<u32>,
    #[serde(default)]
    pub(super) offset: u32,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("MCP client '{id}' not found"))
}

/// A client as listed: its config (secrets hidden), its tools and state, and the keys that name it.
fn view(state: &AppState, client: &McpClient, keys: &[crate::model::VirtualKey]) -> Value {
    let status = state.hub.connections.status(&client.client_id);
    let vk_configs: Vec<Value> = keys
        .iter()
        .filter_map(|k| {
            let grant = k.mcp_configs.iter().find(|g| g.mcp_client_name == client.name)?;
            Some(
                json!({"virtual_key_id": k.id, "virtual_key_name": k.name, "tools_to_execute": grant.tools_to_execute}),
            )
        })
        .collect();
    json!({
        "config": client.redacted(),
        "tools": status.as_ref().map(|s| s.tools.clone()).unwrap_or_default(),
        "state": status.as_ref().map(|s| s.state),
        "error": status.as_ref().and_then(|s| s.error.clone()),
        "protocol_version": status.and_then(|s| s.protocol_version),
        "vk_configs": vk_configs,
    })
}

async fn all_keys(state: &AppState) -> Result<Vec<crate::model::VirtualKey>, ApiError> {
    Ok(state.store.virtual_keys(&KeyQuery::default()).await?.0)
}

/// Makes the hub follow the store; keys' records name clients (through their Virtual MCPs).
async fn apply(state: &AppState) -> Result<(), ApiError> {
    state.hub.follow(state.store.as_ref()).await?;
    Ok(state.publisher.publish_all_keys().await?)
}

/// `GET /api/settings/mcp/tool-manager-config`.
pub async fn tool_manager(State(state): State<AppState>) -> Json<ToolManagerConfig> {
    Json(state.hub.tool_manager())
}

/// `PUT /api/settings/mcp/tool-manager-config`: absent fields take their defaults.
pub async fn put_tool_manager(
    State(state): State<AppState>,
    ValidJson(config): ValidJson<ToolManagerConfig>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    config.validate()?;
    let before = Before(serde_json::to_value(state.hub.tool_manager()).unwrap_or(Value::Null));
    settings::put_tool_manager(state.store.as_ref(), &config).await?;
    state.hub.set_tool_manager(config.clone());
    tracing::info!(?config, "tool manager settings updated");
    Ok((Extension(before), Json(json!({"message": "Tool manager settings updated", "config": config}))))
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let mut clients = state.store.mcp_clients().await?;
    if let Some(search) = q.search.as_deref().map(str::to_lowercase) {
        clients.retain(|c| c.name.to_lowercase().contains(&search));
    }
    let total = clients.len() as u64;
    let keys = all_keys(&state).await?;
    let shown: Vec<Value> = clients
        .iter()
        .skip(q.offset as usize)
        .take(q.limit.map_or(usize::MAX, |l| l as usize))
        .map(|c| view(&state, c, &keys))
        .collect();
    Ok(Json(page("clients", shown, total, q.limit, q.offset)))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let client = state.store.mcp_client(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(json!({"client": view(&state, &client, &all_keys(&state).await?)})))
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateClient>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let _ = req.state;
    let client = McpClient {
        client_id: req.client_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name: req.name,
        connection_type: req.connection_type,
        connection_string: req.connection_string,
        stdio_config: req.stdio_config,
        headers: req.headers,
        tools_to_execute: req.tools_to_execute,
        tools_to_auto_execute: req.tools_to_auto_execute,
        is_code_mode_client: req.is_code_mode_client,
        tool_pricing: req.tool_pricing,
        allow_by_default: req.allow_by_default,
        is_ping_available: req.is_ping_available.unwrap_or(true),
        tool_timeout_ms: req.tool_timeout_ms,
        created_at: now,
        updated_at: now,
    };
    client.validate()?;
    state.mcp_hosts.admit(&client)?;
    if state.store.mcp_client(&client.client_id).await?.is_some() {
        return Err(ApiError::Conflict(format!("client_id: an MCP client '{}' already exists", client.client_id)));
    }
    state.store.insert_mcp_client(&client).await.map_err(ApiError::on_write("MCP client"))?;
    apply(&state).await?;
    tracing::info!(name = %client.name, kind = ?client.connection_type, "MCP client created");
    let body = json!({"message": "MCP client created successfully", "client": view(&state, &client, &[])});
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateClient>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut client = state.store.mcp_client(&id).await?.ok_or_else(|| not_found(&id))?;
    let before = Before(serde_json::to_value(client.redacted()).unwrap_or(Value::Null));
    let _ = req.state;
    // What a GET showed comes back as it was: redacted values mean "unchanged".
    let shown = client.redacted();
    let connection_string = req.connection_string.filter(|s| Some(s) != shown.connection_string.as_ref());
    let immutable = [
        ("connection_type", req.connection_type.is_some_and(|t| t != client.connection_type)),
        ("connection_string", connection_string.as_ref().is_some_and(|s| Some(s) != client.connection_string.as_ref())),
        ("stdio_config", req.stdio_config.as_ref().is_some_and(|s| Some(s) != client.stdio_config.as_ref())),
    ];
    if let Some((field, _)) = immutable.iter().find(|(_, changed)| *changed) {
        return Err(ApiError::BadRequest(format!(
            "{field}: the connection of an MCP client cannot change; delete it and create a new one"
        )));
    }
    if let Some(v) = req.name {
        client.name = v;
    }
    if let Some(headers) = req.headers {
        let stored = std::mem::take(&mut client.headers);
        client.headers = headers
            .into_iter()
            .filter_map(|(name, value)| match value.as_str() {
                REDACTED => stored.get(&name).map(|v| (name, v.clone())),
                _ => Some((name, value)),
            })
            .collect();
    }
    if let Some(v) = req.tools_to_execute {
        client.tools_to_execute = v;
    }
    if let Some(v) = req.tools_to_auto_execute {
        client.tools_to_auto_execute = v;
    }
    if let Some(v) = req.is_code_mode_client {
        client.is_code_mode_client = v;
    }
    if let Some(v) = req.tool_pricing {
        client.tool_pricing = v;
    }
    if let Some(v) = req.allow_by_default {
        client.allow_by_default = v;
    }
    if let Some(v) = req.is_ping_available {
        client.is_ping_available = v;
    }
    if req.tool_timeout_ms.is_some() {
        client.tool_timeout_ms = req.tool_timeout_ms;
    }
    client.updated_at = Utc::now();
    client.validate()?;
    state.mcp_hosts.admit(&client)?;
    if !state.store.update_mcp_client(&client).await.map_err(ApiError::on_write("MCP client"))? {
        return Err(not_found(&id));
    }
    apply(&state).await?;
    tracing::info!(name = %client.name, "MCP client updated");
    let body = json!({"message": "MCP client updated successfully", "client": view(&state, &client, &all_keys(&state).await?)});
    Ok((Extension(before), Json(body)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let gone = state.store.delete_mcp_client(&id).await?.ok_or_else(|| not_found(&id))?;
    apply(&state).await?;
    tracing::info!(name = %gone.name, "MCP client deleted");
    let before = Before(serde_json::to_value(gone.redacted()).unwrap_or(Value::Null));
    Ok((Extension(before), Json(json!({"message": "MCP client deleted successfully"}))))
}

pub async fn reconnect(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if !state.hub.connections.reconnect(&id) {
        return Err(not_found(&id));
    }
    Ok(Json(json!({"message": "MCP client reconnecting"})))
}

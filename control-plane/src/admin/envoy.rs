//! `/api/envoy/*`: what every Envoy holds, and the filter's settings.

use super::AppState;
use super::error::ApiError;
use super::json::{Path, ValidJson};
use crate::pki::{SERVER_NAME, check_node_id};
use crate::store::settings;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use warden_policy::FilterSettings;

/// Each node's last ACKed and NACKed versions, and the versions being served.
pub async fn nodes(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "filter_version": state.cache.filter().map(|f| f.version),
        "policy_version": state.cache.policy_seq(),
        "policy_records": state.cache.policy_len(),
        "nodes": state.nodes.all(),
    }))
}

pub async fn filter_settings(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"settings": *state.publisher.filter_settings()}))
}

/// Replaces the filter's settings and pushes them over ECDS. Types and ranges are checked here,
/// as the filter checks them; each node's ACK or NACK shows in `GET /api/envoy/nodes` (a filter
/// rejecting settings, say from an older control plane, keeps serving the previous ones).
pub async fn put_filter_settings(
    State(state): State<AppState>,
    ValidJson(settings): ValidJson<FilterSettings>,
) -> Result<Json<Value>, ApiError> {
    settings.validate().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    settings::put_filter_settings(state.store.as_ref(), &settings).await?;
    let version = state.publisher.publish_filter_settings(settings);
    Ok(Json(json!({
        "message": "Filter settings pushed; see /api/envoy/nodes for each node's ACK or NACK",
        "filter_version": version,
    })))
}

/// Issues a certificate for the Envoy node `node_id`, the client side of the xDS port's mutual
/// TLS that `warden bootstrap` writes next to Envoy's bootstrap. Its private key is made here,
/// shown once and kept nowhere (the audit log redacts it).
pub async fn issue_certificate(
    State(state): State<AppState>,
    Path(node_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_id(&node_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let issued = state.authority.node(&node_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({
        "node_id": node_id,
        "certificate": issued.certificate,
        "private_key": issued.private_key,
        "ca_certificate": state.authority.certificate(),
        "server_name": SERVER_NAME,
    })))
}

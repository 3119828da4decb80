//! The admin API (axum). Every route but `/health` needs the admin token.

mod audit;
mod budgets;
mod customers;
mod envoy;
mod error;
mod json;
mod mcp;
mod metrics;
mod model_configs;
mod prices;
mod propagation;
mod providers;
mod quota;
mod references;
mod relations;
mod teams;
mod usage;
mod virtual_keys;
mod virtual_mcps;

#[cfg(test)]
mod governance_tests;
#[cfg(test)]
mod mcp_tests;
#[cfg(test)]
mod provider_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use error::ApiError;

use crate::publish::Publisher;
use crate::store::Store;
use crate::xds::{Cache, NodeRegistry};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    pub nodes: Arc<NodeRegistry>,
    /// Sends what a change altered to every filter and Envoy.
    pub publisher: Arc<Publisher>,
    /// SHA-256 of the admin token; the token itself is not kept.
    pub admin_token_sha256: [u8; 32],
    /// The MCP hub: connections to MCP servers and the tool catalog.
    pub hub: Arc<crate::hub::Hub>,
    /// Which MCP servers the admin API may configure.
    pub mcp_hosts: Arc<crate::model::McpHosts>,
    /// The xDS port's CA: issues the nodes' certificates.
    pub authority: Arc<crate::pki::Authority>,
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Marks a request the dashboard makes in process for a signed-in session (see `ui::admin_api`).
/// Only code can attach it: no request from a socket carries it.
#[derive(Debug, Clone, Copy)]
pub struct DashboardCaller;

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.extensions().get::<DashboardCaller>().is_some() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    // Comparing hashes keeps the comparison time independent of the token's content.
    match presented {
        Some(token) if token_hash(token.trim()) == state.admin_token_sha256 => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such admin route".into())
}

const TEAMS: &str = "/api/governance/teams";
const CUSTOMERS: &str = "/api/governance/customers";
const MODEL_CONFIGS: &str = "/api/governance/model-configs";

/// The admin API router.
pub fn router(state: AppState) -> Router {
    let keys = "/api/governance/virtual-keys";
    let protected = Router::new()
        .route(keys, get(virtual_keys::list).post(virtual_keys::create))
        .route(&format!("{keys}/{{id}}"), get(virtual_keys::get).put(virtual_keys::update).delete(virtual_keys::delete))
        .route(
            &format!("{keys}/{{id}}/budgets/{{budget_id}}/override"),
            axum::routing::put(budgets::put_override).delete(budgets::delete_override),
        )
        .route("/api/governance/budgets", get(budgets::list_budgets))
        .route("/api/governance/rate-limits", get(budgets::list_rate_limits))
        .route(TEAMS, get(teams::list).post(teams::create))
        .route(&format!("{TEAMS}/{{id}}"), get(teams::get).put(teams::update).delete(teams::delete))
        .route(CUSTOMERS, get(customers::list).post(customers::create))
        .route(&format!("{CUSTOMERS}/{{id}}"), get(customers::get).put(customers::update).delete(customers::delete))
        .route(MODEL_CONFIGS, get(model_configs::list).post(model_configs::create))
        .route(
            &format!("{MODEL_CONFIGS}/{{id}}"),
            get(model_configs::get).put(model_configs::update).delete(model_configs::delete),
        )
        .route("/api/usage", get(usage::usage))
        .route("/api/leases", get(usage::leases))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/verify", get(audit::verify))
        .route("/api/prices", get(prices::list))
        .route("/api/prices/{*name}", axum::routing::put(prices::put).delete(prices::delete))
        .route("/api/providers", get(providers::list).post(providers::create))
        .route("/api/providers/{name}", get(providers::get).put(providers::update).delete(providers::delete))
        .route("/api/mcp/clients", get(mcp::list))
        .route("/api/mcp/client", axum::routing::post(mcp::create))
        .route("/api/mcp/client/{id}", get(mcp::get).put(mcp::update).delete(mcp::delete))
        .route("/api/mcp/client/{id}/reconnect", axum::routing::post(mcp::reconnect))
        .route("/api/mcp/virtual-mcps", get(virtual_mcps::list).post(virtual_mcps::create))
        .route(
            "/api/mcp/virtual-mcps/{id}",
            get(virtual_mcps::get).put(virtual_mcps::update).delete(virtual_mcps::delete),
        )
        .route(
            "/api/mcp/virtual-mcps/{id}/virtual-keys/{vk_id}",
            axum::routing::post(virtual_mcps::attach).delete(virtual_mcps::detach),
        )
        .route("/api/settings/mcp/tool-manager-config", get(mcp::tool_manager).put(mcp::put_tool_manager))
        .route("/api/envoy/nodes", get(envoy::nodes))
        .route("/api/envoy/nodes/{node_id}/certificate", axum::routing::post(envoy::issue_certificate))
        .route("/api/envoy/filter-settings", get(envoy::filter_settings).put(envoy::put_filter_settings))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), propagation::wait_applied))
        // Layers run outside in, from the last: a change is replicated inside the audit (which
        // refuses an oversized body before anything runs) and around the wait for the Envoys.
        .route_layer(middleware::from_fn_with_state(state.clone(), propagation::replicate))
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        // Self-service, with the virtual key as the credential: routed before `{id}`.
        .route(&format!("{keys}/quota"), get(quota::quota))
        .merge(protected)
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .with_state(state)
}

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
mod publish;
mod quota;
mod references;
mod relations;
pub mod sync;
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
mod tests;

pub use error::ApiError;
pub use prices::publish_prices;
pub use providers::publish_providers;
pub use publish::publish_governance;

use crate::model::{Bundles, VirtualKey};
use crate::store::{KeyQuery, Store, StoreError};
use crate::xds::resources::filter_config;
use crate::xds::{Cache, NodeRegistry};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use warden_policy::{FilterSettings, RecordKind};

/// The filter's code location and current settings, from which the ECDS resource is built.
pub struct FilterSource {
    wasm_path: String,
    settings: RwLock<Arc<FilterSettings>>,
}

impl FilterSource {
    /// Publishes the initial filter configuration.
    pub fn new(wasm_path: String, settings: FilterSettings, cache: &Cache) -> FilterSource {
        cache.set_filter(filter_config(&wasm_path, &settings));
        FilterSource { wasm_path, settings: RwLock::new(Arc::new(settings)) }
    }

    pub fn settings(&self) -> Arc<FilterSettings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps the settings and publishes the new filter configuration; returns its version.
    pub fn replace(&self, settings: FilterSettings, cache: &Cache) -> String {
        let config = filter_config(&self.wasm_path, &settings);
        let version = config.version.clone();
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        cache.set_filter(config);
        version
    }
}

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    pub nodes: Arc<NodeRegistry>,
    pub filter: Arc<FilterSource>,
    /// SHA-256 of the admin token; the token itself is not kept.
    pub admin_token_sha256: [u8; 32],
    /// The CA bundle Envoy verifies https providers against (a path on Envoy's machine).
    pub provider_ca_file: Arc<str>,
    /// Keeps the snapshot in step with the store (several control planes on one database).
    pub publication: Arc<sync::Publication>,
    /// The MCP hub: connections to MCP servers and the tool catalog.
    pub hub: Arc<crate::mcp::Hub>,
    /// Which MCP servers the admin API may configure.
    pub mcp_hosts: Arc<crate::model::McpHosts>,
    /// The xDS port's CA: issues the nodes' certificates.
    pub authority: Arc<crate::pki::Authority>,
}

impl AppState {
    /// Sends keys' current records to every filter.
    pub async fn publish(&self, keys: &[VirtualKey]) -> Result<(), StoreError> {
        publish_keys(&self.cache, keys, &self.bundles().await?);
        Ok(())
    }

    /// Sends every key's record to every filter: after a change of the Virtual MCPs.
    pub async fn publish_all_keys(&self) -> Result<(), StoreError> {
        let (keys, _) = self.store.virtual_keys(&KeyQuery::default()).await?;
        self.publish(&keys).await
    }

    /// The Virtual MCPs, as the grants they give keys.
    pub async fn bundles(&self) -> Result<Bundles, StoreError> {
        Ok(Bundles::new(&self.store.virtual_mcps().await?, &self.store.mcp_clients().await?))
    }
}

/// Puts keys' records into the cache, named by the key hash.
pub fn publish_keys(cache: &Cache, keys: &[VirtualKey], bundles: &Bundles) {
    cache.upsert(keys.iter().filter_map(|k| {
        Some((RecordKind::VirtualKey.name(&k.value_hash), serde_json::to_vec(&k.record(bundles)).ok()?))
    }));
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
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

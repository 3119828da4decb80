//! The MCP hub: the process behind Envoy that serves MCP. It composes the connections to the
//! MCP servers and their catalog (`crate::mcp`), agent mode (`crate::agent`) and Code Mode
//! (`crate::codemode`), holds their shared state, and serves the routes Envoy sends it: tool
//! execution (`/v1/mcp/tool/execute`), Warden as an MCP server (`/mcp`, `/mcp/<slug>`) and agent
//! mode's chat.

mod execute;
mod server;
mod sessions;

use crate::agent::{self, Agent};
use crate::codemode::{self, CodeMode};
use crate::gateway::GatewayClient;
use crate::mcp::Connections;
use crate::model::ToolManagerConfig;
use crate::store::settings::{self, SettingError};
use crate::store::{Store, StoreError};
use crate::xds::Cache;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use warden_policy::Denial;

/// A tool call's or an agent chat's first byte, at the latest: past the longest
/// `tool_execution_timeout` the settings allow (an hour), so that only a hung hub reaches it.
const HUB_TIMEOUT: Duration = Duration::from_secs(3_900);

/// The hub's routes, each reached only through Envoy (see [`from_envoy`]).
pub fn router(hub: Arc<Hub>, allowed_origins: Vec<String>) -> Router {
    let timeout = |limit| TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, limit);
    Router::new()
        .route("/v1/mcp/tool/execute", post(execute::execute).layer(timeout(HUB_TIMEOUT)))
        .route(
            warden_policy::mcp::AGENT_PATH,
            post(agent::chat).with_state(hub.agent.clone()).layer(timeout(HUB_TIMEOUT)),
        )
        .merge(server::routes(hub.clone(), allowed_origins))
        // As large as the filter lets bodies be (`max_request_body_bytes` is at most 64 MiB).
        .layer(DefaultBodyLimit::max(64 << 20))
        .layer(middleware::from_fn_with_state(hub.clone(), from_envoy))
        .with_state(hub)
}

/// Refuses every caller but Envoy's Warden filter: Envoy adds the hub token from SDS to what
/// the filter routes here, after the filter has admitted the key and judged the request.
async fn from_envoy(
    axum::extract::State(hub): axum::extract::State<Arc<Hub>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = format!("Bearer {}", hub.endpoint.token);
    // Comparing hashes keeps the comparison time independent of the token's content.
    if Sha256::digest(presented.as_bytes()) != Sha256::digest(expected.as_bytes()) {
        let reason = "the MCP hub answers only Envoy's Warden filter; send requests to the gateway";
        let body = Denial::BadRequest(reason.into()).body();
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    next.run(request).await
}

/// Where Envoy reaches the hub, and the token it must present there.
pub struct HubEndpoint {
    /// `host:port` as seen from Envoy.
    pub advertise: String,
    /// Envoy injects it from an SDS secret (`authorization: Bearer …`); it is never logged.
    pub token: String,
}

/// What the hub's routes share.
pub struct Hub {
    /// The MCP servers and their tool catalog.
    pub connections: Connections,
    pub agent: Arc<Agent>,
    pub code_mode: CodeMode,
    /// The tool manager's settings as last set; agent mode and Code Mode each get their part.
    tool_manager: RwLock<ToolManagerConfig>,
    /// One reconciliation with the store at a time, so that an older read never wins.
    following: tokio::sync::Mutex<()>,
    /// The published policy records, which the hub judges with.
    cache: Arc<Cache>,
    pub endpoint: HubEndpoint,
    /// Cancelled at shutdown: ends `/mcp` sessions and streams.
    stopping: CancellationToken,
}

impl Hub {
    /// `gateway` is Envoy's listener as the hub reaches it (agent mode's steps and Code Mode's
    /// tool calls go there).
    pub fn new(cache: Arc<Cache>, advertise: String, gateway: &str) -> Hub {
        let token = format!("wdn-hub-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let gateway = GatewayClient::new(gateway);
        let tool_manager = ToolManagerConfig::default();
        Hub {
            connections: Connections::new(cache.clone()),
            agent: Arc::new(Agent::new(gateway.clone(), cache.clone(), agent::Config::from(&tool_manager))),
            code_mode: CodeMode::new(gateway, cache.clone(), codemode::Config::from(&tool_manager)),
            tool_manager: RwLock::new(tool_manager),
            following: tokio::sync::Mutex::new(()),
            cache,
            endpoint: HubEndpoint { advertise, token },
            stopping: CancellationToken::new(),
        }
    }

    /// Reads the MCP clients and the tool manager's settings from the store and serves exactly
    /// those clients (see [`Connections::apply`]).
    pub async fn follow(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.following.lock().await;
        self.connections.apply(store.mcp_clients().await?);
        match settings::tool_manager(store).await {
            Ok(config) => self.set_tool_manager(config.unwrap_or_default()),
            Err(SettingError::Store(e)) => return Err(e),
            Err(e) => tracing::error!(error = %e, "stored tool manager settings unreadable; kept the previous ones"),
        }
        Ok(())
    }

    /// The published policy records, which the hub judges with.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The tool manager's settings in force.
    pub fn tool_manager(&self) -> ToolManagerConfig {
        self.tool_manager.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts new tool manager settings in force, for agent mode and Code Mode alike.
    pub fn set_tool_manager(&self, config: ToolManagerConfig) {
        self.agent.set_config(agent::Config::from(&config));
        self.code_mode.set_config(codemode::Config::from(&config));
        *self.tool_manager.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Stops every connection (stdio children exit) and ends `/mcp` sessions.
    pub fn shutdown(&self) {
        self.stopping.cancel();
        self.connections.stop();
    }
}

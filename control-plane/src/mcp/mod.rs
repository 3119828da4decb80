//! The MCP hub: one supervised connection per configured MCP server, the tool catalog it
//! publishes to every filter (`mcp:<client>` records and the `mcp:*` index), and the routes
//! Envoy sends it: tool execution (`/v1/mcp/tool/execute`), Warden as an MCP server (`/mcp`,
//! `/mcp/<slug>`) and agent mode.

mod execute;
pub mod records;
mod server;
mod sessions;
mod upstream;

pub use execute::include_headers;
pub use upstream::{State, Status};

use crate::model::{McpClient, TOOL_MANAGER_SETTING, ToolManagerConfig};
use crate::store::{Store, StoreError};
use crate::xds::Cache;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use upstream::Upstream;
use warden_policy::mcp::{INDEX_ID, McpIndex, exposed_name};
use warden_policy::{Denial, RecordKind};

/// The hub's routes, each reached only through Envoy (see [`from_envoy`]).
/// A tool call's or an agent chat's first byte, at the latest: past the longest
/// `tool_execution_timeout` the settings allow (an hour), so that only a hung hub reaches it.
const HUB_TIMEOUT: Duration = Duration::from_secs(3_900);

pub fn router(hub: Arc<Hub>, allowed_origins: Vec<String>) -> Router {
    let timeout = |limit| TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, limit);
    Router::new()
        .route("/v1/mcp/tool/execute", post(execute::execute).layer(timeout(HUB_TIMEOUT)))
        .route(warden_policy::mcp::AGENT_PATH, post(crate::agent::chat).layer(timeout(HUB_TIMEOUT)))
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

pub struct Hub {
    /// By client id.
    upstreams: Mutex<BTreeMap<String, Arc<Upstream>>>,
    /// One reconciliation with the store at a time, so that an older read never wins.
    following: tokio::sync::Mutex<()>,
    cache: Arc<Cache>,
    pub endpoint: HubEndpoint,
    /// Cancelled at shutdown: ends `/mcp` sessions and streams.
    stopping: CancellationToken,
    pub agent: crate::agent::Agent,
    /// Code Mode programs running now, by key.
    pub programs: crate::codemode::ProgramSlots,
}

impl Hub {
    /// `gateway` is Envoy's listener as the hub reaches it (agent mode's steps go there).
    pub fn new(cache: Arc<Cache>, advertise: String, gateway: &str) -> Hub {
        let token = format!("wdn-hub-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Hub {
            upstreams: Mutex::default(),
            following: tokio::sync::Mutex::new(()),
            cache,
            endpoint: HubEndpoint { advertise, token },
            stopping: CancellationToken::new(),
            agent: crate::agent::Agent::new(gateway),
            programs: crate::codemode::ProgramSlots::default(),
        }
    }

    /// Reads the MCP clients and the tool manager's settings from the store and serves exactly
    /// those clients (see [`Hub::apply`]).
    pub async fn follow(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.following.lock().await;
        self.apply(store.mcp_clients().await?);
        let stored = store.setting(TOOL_MANAGER_SETTING).await?;
        match stored.map(|text| serde_json::from_str::<ToolManagerConfig>(&text)).transpose() {
            Ok(config) => self.agent.set_config(config.unwrap_or_default()),
            Err(e) => tracing::error!(error = %e, "stored tool manager settings unreadable; kept the previous ones"),
        }
        Ok(())
    }

    /// The published policy records, which the hub judges with.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Makes the hub serve exactly `clients`: starts new ones, reconnects those whose
    /// connection changed, adopts other changes in place, stops removed ones and withdraws
    /// their records. Then publishes the whole catalog.
    fn apply(&self, clients: Vec<McpClient>) {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = BTreeMap::new();
        for client in clients {
            let id = client.client_id.clone();
            match upstreams.remove(&id) {
                Some(u) if u.same_connection(&client) => {
                    if u.config().name != client.name {
                        self.cache.remove(&RecordKind::McpClient.name(&u.config().name));
                    }
                    u.update(client);
                    kept.insert(id, u);
                }
                old => {
                    if let Some(old) = old {
                        old.stop();
                    }
                    kept.insert(id, Upstream::start(client, self.cache.clone()));
                }
            }
        }
        for gone in upstreams.values() {
            gone.stop();
            self.cache.remove(&RecordKind::McpClient.name(&gone.config().name));
        }
        *upstreams = kept;
        drop(upstreams);
        self.publish();
    }

    /// Publishes every client's record and the index.
    pub fn publish(&self) {
        let upstreams: Vec<Arc<Upstream>> = self.all();
        for u in &upstreams {
            u.publish();
        }
        let allow_by_default =
            upstreams.iter().map(|u| u.config()).filter(|c| c.allow_by_default).map(|c| c.name).collect();
        if let Ok(body) = serde_json::to_vec(&McpIndex { allow_by_default }) {
            self.cache.upsert([(RecordKind::McpClient.name(INDEX_ID), body)]);
        }
    }

    fn all(&self) -> Vec<Arc<Upstream>> {
        self.upstreams.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn by_name(&self, name: &str) -> Option<Arc<Upstream>> {
        self.all().into_iter().find(|u| u.config().name == name)
    }

    /// A client's connection status, by id.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.upstreams.lock().unwrap_or_else(|p| p.into_inner()).get(id).map(|u| u.status())
    }

    /// Drops a client's connection and connects again now; `false` if there is no such client.
    pub fn reconnect(&self, id: &str) -> bool {
        let upstream = self.upstreams.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        upstream.map(|u| u.reconnect()).is_some()
    }

    /// Calls `tool` of `client` and returns the server's `CallToolResult` as JSON. A JSON-RPC
    /// error from the server becomes an `isError` result (the model can read it and retry); a
    /// dead server or a timeout is a [`Denial`].
    pub async fn call(&self, client: &str, tool: &str, arguments: Map<String, Value>) -> Result<Value, Denial> {
        let upstream = self
            .by_name(client)
            .ok_or_else(|| Denial::ToolUnavailable(format!("MCP client '{client}' is not configured on this hub")))?;
        // Callers see no error detail: it may name the server's URL; the admin API shows it.
        let Some((peer, generation)) = upstream.peer() else {
            return Err(Denial::ToolUnavailable(format!(
                "MCP server '{client}' is not connected; the hub keeps reconnecting"
            )));
        };
        let timeout = upstream.config().tool_timeout();
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => Err(Denial::ToolTimeout { tool: exposed_name(client, tool), ms: timeout.as_millis() as u64 }),
            Ok(Ok(result)) => serde_json::to_value(result)
                .map_err(|e| Denial::ToolUnavailable(format!("MCP server '{client}' sent an unreadable result: {e}"))),
            Ok(Err(ServiceError::McpError(e))) => Ok(json!({
                "content": [{"type": "text", "text": format!("MCP error {}: {}", e.code.0, e.message)}],
                "isError": true,
            })),
            Ok(Err(e)) => {
                tracing::warn!(%client, %tool, error = %upstream::scrub(e.to_string(), &upstream.config()), "MCP tool call failed");
                upstream.reconnect_if_current(generation);
                Err(Denial::ToolUnavailable(format!(
                    "MCP server '{client}' failed during the call; the hub reconnects"
                )))
            }
        }
    }

    /// Stops every connection (stdio children exit) and ends `/mcp` sessions.
    pub fn shutdown(&self) {
        self.stopping.cancel();
        for u in self.all() {
            u.stop();
        }
    }
}

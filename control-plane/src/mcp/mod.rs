//! The MCP servers the hub connects to: one supervised connection per configured server
//! ([`Connections`]), the tool catalog it publishes to every filter (`mcp:<client>` records and
//! the `mcp:*` index), and a tool call on one of them. The hub (`crate::hub`) serves them.

pub mod records;
mod upstream;

pub use upstream::{State, Status};

use crate::model::McpClient;
use crate::xds::Cache;
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use upstream::Upstream;
use warden_policy::mcp::{INDEX_ID, McpIndex, exposed_name};
use warden_policy::{Denial, RecordKind};

/// The connections to the configured MCP servers, by client id.
pub struct Connections {
    upstreams: Mutex<BTreeMap<String, Arc<Upstream>>>,
    /// Where the catalog is published.
    cache: Arc<Cache>,
}

impl Connections {
    pub fn new(cache: Arc<Cache>) -> Connections {
        Connections { upstreams: Mutex::default(), cache }
    }

    /// Serves exactly `clients`: starts new ones, reconnects those whose connection changed,
    /// adopts other changes in place, stops removed ones and withdraws their records. Then
    /// publishes the whole catalog.
    pub fn apply(&self, clients: Vec<McpClient>) {
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
    fn publish(&self) {
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

    /// Stops every connection (stdio children exit).
    pub fn stop(&self) {
        for u in self.all() {
            u.stop();
        }
    }
}

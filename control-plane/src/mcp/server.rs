//! Warden as an MCP server (`/mcp`, `/mcp/<slug>`), for Claude Desktop, the MCP Inspector and
//! any MCP client: rmcp's Streamable HTTP service speaks both eras on one endpoint (2025-11-25
//! sessions with `Mcp-Session-Id`, GET streams and DELETE; 2026-07-28 stateless requests with
//! `server/discover` and `subscriptions/listen`). Each request's key is the one the filter
//! admitted; it sees exactly the tools it may use, and every call is checked here again.

use super::Hub;
use super::records::{Caller, Published};
use axum::http::request::Parts;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, ErrorData, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use warden_policy::Denial;
use warden_policy::mcp::{self, exposed_name};

/// The Streamable HTTP service of `/mcp`. `allowed_origins` lists the browser origins that may
/// call it; any other `Origin` is refused with 403 (DNS-rebinding protection; clients that are
/// not browsers send none).
pub fn service(hub: Arc<Hub>, allowed_origins: Vec<String>) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_origins(allowed_origins)
        .enforce_origin_validation()
        // Envoy is the public face and rewrites Host to the hub's address; the hub token, not
        // the Host header, is what keeps other callers out.
        .disable_allowed_hosts()
        .with_cancellation_token(hub.stopping.clone());
    StreamableHttpService::new(move || Ok(McpServer::new(hub.clone())), Arc::default(), config)
}

/// One MCP session (2025-11-25) or one request (2026-07-28).
#[derive(Clone)]
pub struct McpServer {
    hub: Arc<Hub>,
    /// The key that opened the session: a session id is no credential, so another key's
    /// requests on it are refused.
    owner: Arc<OnceLock<String>>,
}

/// A refusal as a JSON-RPC error whose `data` carries the HTTP denial's `type`, `code` and
/// `status`, as the filter words its own refusals.
fn refusal(denial: &Denial) -> ErrorData {
    let code = match denial {
        Denial::BadRequest(_) | Denial::ToolUnknown(_) => ErrorCode::INVALID_PARAMS,
        _ => ErrorCode(-32001),
    };
    let data = json!({"type": denial.kind(), "code": denial.code(), "status": denial.status()});
    ErrorData::new(code, denial.message(), Some(data))
}

impl McpServer {
    fn new(hub: Arc<Hub>) -> McpServer {
        McpServer { hub, owner: Arc::default() }
    }

    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<Caller, ErrorData> {
        let unknown = || refusal(&Denial::KeyNotFound);
        let parts = extensions.get::<Parts>().ok_or_else(unknown)?;
        let caller = Caller::of(&parts.headers, parts.uri.path(), &self.hub.cache).ok_or_else(unknown)?;
        if *self.owner.get_or_init(|| caller.key_hash.clone()) != caller.key_hash {
            let why = "this MCP session was opened with another virtual key; initialize a session of your own";
            return Err(refusal(&Denial::BadRequest(why.into())));
        }
        Ok(caller)
    }

    /// The names this caller sees now: what a change notification is judged by.
    fn visible(&self, caller: &Caller) -> Vec<String> {
        caller
            .tools(&Published(&self.hub.cache))
            .unwrap_or_default()
            .iter()
            .map(|(c, t)| exposed_name(&c.name, &t.name))
            .collect()
    }

    /// Waits until what `caller` sees differs from `seen`; returns the new list.
    async fn next_change(&self, caller: &Caller, seen: &[String], changes: &mut tokio::sync::watch::Receiver<u64>) {
        loop {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if self.visible(caller) != seen {
                return;
            }
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The tools of the MCP servers behind Warden that this virtual key may use, named <server>-<tool>.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let tools = caller.tools(&Published(&self.hub.cache)).map_err(|d| refusal(&d))?;
        let tools = tools
            .iter()
            .filter_map(|(client, tool)| {
                let tool = json!({
                    "name": exposed_name(&client.name, &tool.name),
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                });
                serde_json::from_value::<Tool>(tool).ok()
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let name = request.name.to_string();
        let records = Published(&self.hub.cache);
        let visible = caller.tools(&records).map_err(|d| refusal(&d))?;
        let Some((client, tool)) = visible.iter().find(|(c, t)| exposed_name(&c.name, &t.name) == name) else {
            let known = name.split_once(mcp::SEPARATOR).and_then(|(c, t)| {
                use warden_policy::govern::Records as _;
                records.mcp_client(c).filter(|c| c.tools.iter().any(|x| x.name == t))
            });
            return Err(refusal(&match known {
                Some(_) => Denial::ToolBlocked(name, caller.key.name.clone()),
                None => Denial::ToolUnknown(name),
            }));
        };
        let result = self
            .hub
            .call(&client.name, &tool.name, request.arguments.unwrap_or_default())
            .await
            .map_err(|d| refusal(&d))?;
        let result: CallToolResult = serde_json::from_value(result).map_err(|e| {
            refusal(&Denial::ToolUnavailable(format!("MCP server '{}' sent an unreadable result: {e}", client.name)))
        })?;
        Ok(result.into())
    }

    /// 2025-11-25 sessions: tell the client when the tools it may use change, on its GET
    /// stream, for as long as the session lives.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let Ok(caller) = self.caller(&context.extensions) else { return };
        let server = self.clone();
        let peer = context.peer;
        tokio::spawn(async move {
            let mut changes = server.hub.cache.subscribe();
            let mut seen = server.visible(&caller);
            loop {
                tokio::select! {
                    () = server.next_change(&caller, &seen, &mut changes) => {}
                    // A session that ended without a DELETE is noticed here.
                    () = tokio::time::sleep(Duration::from_secs(30)) => {
                        if peer.is_transport_closed() { return }
                        continue;
                    }
                }
                seen = server.visible(&caller);
                if peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// 2026-07-28: `subscriptions/listen` may opt in to tool-list changes.
    fn accepted_subscription_filter(&self, _requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let caller = self.caller(&context.request_context().extensions)?;
        let mut changes = self.hub.cache.subscribe();
        let mut seen = self.visible(&caller);
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                () = self.next_change(&caller, &seen, &mut changes) => {}
            }
            seen = self.visible(&caller);
            if context.sink().notify_tool_list_changed().await.is_err() {
                return Ok(());
            }
        }
    }
}

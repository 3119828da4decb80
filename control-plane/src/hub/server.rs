//! Warden as an MCP server (`/mcp`, `/mcp/<slug>`), for Claude Desktop, the MCP Inspector and
//! any MCP client: rmcp's Streamable HTTP service speaks both eras on one endpoint (2025-11-25
//! sessions with `Mcp-Session-Id`, GET streams and DELETE; 2026-07-28 stateless requests with
//! `server/discover` and `subscriptions/listen`). Each request's key is the one the filter
//! admitted; it sees exactly the tools it may use, and every call is checked here again.

use super::Hub;
use super::execute::gateway_of;
use super::sessions::{self, Sessions};
use crate::codemode;
use crate::mcp::records::{Caller, Published};
use axum::Router;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, ErrorData, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use warden_policy::Denial;
use warden_policy::codemode::{META_TOOLS, is_meta, meta_tool};
use warden_policy::mcp::{self, exposed_name};
use warden_policy::records::Records;

/// The Streamable HTTP service of `/mcp`. `allowed_origins` lists the browser origins that may
/// call it; any other `Origin` is refused with 403 (DNS-rebinding protection; clients that are
/// not browsers send none).
fn service(
    hub: Arc<Hub>,
    allowed_origins: Vec<String>,
    sessions: Arc<LocalSessionManager>,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_origins(allowed_origins)
        .enforce_origin_validation()
        // Envoy is the public face and rewrites Host to the hub's address; the hub token, not
        // the Host header, is what keeps other callers out.
        .disable_allowed_hosts()
        .with_cancellation_token(hub.stopping.clone());
    StreamableHttpService::new(move || Ok(McpServer::new(hub.clone())), sessions, config)
}

/// `/mcp` and `/mcp/<slug>`, each session bound to the key that opened it.
pub fn routes<S: Clone + Send + Sync + 'static>(hub: Arc<Hub>, allowed_origins: Vec<String>) -> Router<S> {
    let cors = cors(&allowed_origins);
    let manager = Arc::new(LocalSessionManager::default());
    let mcp = service(hub, allowed_origins, manager.clone());
    Router::new()
        .route_service("/mcp", mcp.clone())
        .route_service("/mcp/{slug}", mcp)
        .layer(middleware::from_fn_with_state(Arc::new(Sessions::new(manager)), sessions::bind))
        .layer(cors)
}

/// CORS for the browser origins `/mcp` admits: preflights answered, the session header exposed.
fn cors(allowed_origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let headers = [
        "content-type",
        "accept",
        "authorization",
        "x-bf-vk",
        "x-api-key",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "x-bf-mcp-include-clients",
        "x-bf-mcp-include-tools",
    ];
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(headers.map(HeaderName::from_static))
        .expose_headers([HeaderName::from_static(sessions::SESSION_HEADER)])
}

/// One MCP session (2025-11-25) or one request (2026-07-28).
#[derive(Clone)]
pub struct McpServer {
    hub: Arc<Hub>,
}

/// A refusal as the JSON-RPC error the filter would have answered.
fn refusal(denial: &Denial) -> ErrorData {
    ErrorData::new(ErrorCode(denial.rpc_code() as i32), denial.message(), Some(denial.rpc_data()))
}

impl McpServer {
    fn new(hub: Arc<Hub>) -> McpServer {
        McpServer { hub }
    }

    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<Caller, ErrorData> {
        let unknown = || refusal(&Denial::KeyNotFound);
        let parts = extensions.get::<Parts>().ok_or_else(unknown)?;
        Caller::of(&parts.headers, parts.uri.path(), &self.hub.cache).ok_or_else(unknown)
    }

    /// The tools this caller is offered, as `tools/list` entries: its tools by exposed name,
    /// those of code-mode servers replaced by the meta-tools.
    fn offered(&self, caller: &Caller) -> Result<Vec<serde_json::Value>, Denial> {
        let tools = caller.tools(&Published(&self.hub.cache))?;
        let code_mode = tools.iter().any(|(c, _)| c.is_code_mode_client);
        let mut offered: Vec<serde_json::Value> = tools
            .iter()
            .filter(|(c, _)| !c.is_code_mode_client)
            .map(|(client, tool)| {
                let mut entry = json!({
                    "name": exposed_name(&client.name, &tool.name),
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                });
                if let Some(output) = &tool.output_schema {
                    entry["outputSchema"] = output.clone();
                }
                entry
            })
            .collect();
        if code_mode {
            offered.extend(META_TOOLS.iter().filter_map(|name| {
                let (description, schema) = meta_tool(name)?;
                Some(json!({"name": name, "description": description, "inputSchema": schema}))
            }));
        }
        Ok(offered)
    }

    /// A meta-tool call: its answer as a tool result (an error result for a failed program).
    async fn call_meta(
        &self,
        caller: &Caller,
        extensions: &rmcp::model::Extensions,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallToolResponse, ErrorData> {
        if codemode::servers(&self.hub.cache, caller).is_empty() {
            return Err(refusal(&Denial::ToolBlocked(name.to_owned(), caller.key.name.clone())));
        }
        let gateway = extensions.get::<Parts>().and_then(|p| gateway_of(&p.headers));
        let (text, is_error) =
            self.hub.code_mode.call(caller, gateway, name, &arguments).await.map_err(|d| refusal(&d))?;
        let content = vec![rmcp::model::ContentBlock::text(text)];
        Ok(if is_error { CallToolResult::error(content) } else { CallToolResult::success(content) }.into())
    }

    /// The names this caller is offered now (its key's grants and bundles as they are now):
    /// what a change notification is judged by. None once the key is gone.
    fn visible(&self, caller: &Caller) -> Vec<String> {
        let Some(caller) = caller.refreshed(&self.hub.cache) else { return Vec::new() };
        let offered = self.offered(&caller).unwrap_or_default();
        offered.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
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
        let tools = self.offered(&caller).map_err(|d| refusal(&d))?;
        let tools = tools.into_iter().filter_map(|tool| serde_json::from_value::<Tool>(tool).ok()).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context.extensions)?;
        let name = request.name.to_string();
        if is_meta(&name) {
            return self.call_meta(&caller, &context.extensions, &name, request.arguments.unwrap_or_default()).await;
        }
        let records = Published(&self.hub.cache);
        let visible = caller.tools(&records).map_err(|d| refusal(&d))?;
        let Some((client, tool)) = visible.iter().find(|(c, t)| exposed_name(&c.name, &t.name) == name) else {
            let known = name.split_once(mcp::SEPARATOR).and_then(|(c, t)| {
                records.get::<mcp::McpClientRecord>(c).filter(|c| c.tools.iter().any(|x| x.name == t))
            });
            return Err(refusal(&match known {
                Some(_) => Denial::ToolBlocked(name, caller.key.name.clone()),
                None => Denial::ToolUnknown(name),
            }));
        };
        let result = self
            .hub
            .connections
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

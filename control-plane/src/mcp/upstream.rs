//! One MCP server as the hub sees it: a supervised connection (connect, list tools, watch for
//! changes, health-check, reconnect with backoff) and its last known tools.

use crate::model::{ConnectionType, McpClient};
use crate::xds::Cache;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientRequest, Implementation, PingRequest, ProtocolVersion, SubscriptionFilter,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, Peer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceError};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warden_policy::RecordKind;
use warden_policy::mcp::McpTool;

/// Health checks: every 10 s; three failures in a row and the server counts as gone.
const HEALTH_EVERY: Duration = Duration::from_secs(10);
const HEALTH_FAILURES: u32 = 3;
/// The longest a `tools/list` (all pages) may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// `tools/list` again this often even without `list_changed`.
const RESYNC_EVERY: Duration = Duration::from_secs(600);
/// Reconnect backoff: 1 s, doubling, at most 30 s (Bifrost's).
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often a closed transport (a child that exited) is looked for.
const CLOSED_CHECK_EVERY: Duration = Duration::from_millis(250);
/// The variables every stdio child gets, besides those its config passes.
const CHILD_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TMPDIR"];

/// The contract's connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Connecting,
    Connected,
    Disconnected,
    Error,
}

/// What the admin API shows of a connection.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    /// Why it is not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The protocol revision negotiated (`2026-07-28`, `2025-11-25`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The server's tools, kept while it is away so that calls get a clear error, not a 404.
    pub tools: Vec<McpTool>,
}

/// One configured server and its supervisor task.
pub struct Upstream {
    config: RwLock<McpClient>,
    status: Mutex<Status>,
    peer: Mutex<Option<Peer<RoleClient>>>,
    /// A reconnect was asked for (admin API, or a call that hit a dead transport).
    reconnect: Notify,
    /// The server said its tools changed.
    tools_changed: Arc<Notify>,
    stop: CancellationToken,
    /// Held while publishing and while stopping, so that a stopped upstream never publishes.
    gate: Mutex<()>,
    /// Counts connections, so that a failed call only drops the connection it used.
    generation: AtomicU64,
    cache: Arc<Cache>,
}

enum End {
    Stop,
    Reconnect,
    Lost(String),
}

impl Upstream {
    /// Starts supervising `config`'s server.
    pub fn start(config: McpClient, cache: Arc<Cache>) -> Arc<Upstream> {
        let upstream = Arc::new(Upstream {
            config: RwLock::new(config),
            status: Mutex::new(Status { state: State::Connecting, error: None, protocol_version: None, tools: vec![] }),
            peer: Mutex::new(None),
            reconnect: Notify::new(),
            tools_changed: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
            gate: Mutex::new(()),
            generation: AtomicU64::new(0),
            cache,
        });
        tokio::spawn(upstream.clone().supervise());
        upstream
    }

    pub fn config(&self) -> McpClient {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The live connection and its generation, if there is one.
    pub fn peer(&self) -> Option<(Peer<RoleClient>, u64)> {
        let peer = self.peer.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some((peer, self.generation.load(Ordering::Acquire)))
    }

    /// Whether `other` reaches the server the same way (no reconnect needed to adopt it).
    pub fn same_connection(&self, other: &McpClient) -> bool {
        let c = self.config.read().unwrap_or_else(|p| p.into_inner());
        (c.connection_type, &c.connection_string, &c.stdio_config, &c.headers, c.is_ping_available)
            == (
                other.connection_type,
                &other.connection_string,
                &other.stdio_config,
                &other.headers,
                other.is_ping_available,
            )
    }

    /// Adopts a config that reaches the server the same way, and republishes the record.
    pub fn update(&self, config: McpClient) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        self.publish();
    }

    pub fn reconnect(&self) {
        self.reconnect.notify_one();
    }

    /// Reconnects if connection `generation` is still the current one: calls that failed on a
    /// connection already replaced must not drop its successor.
    pub fn reconnect_if_current(&self, generation: u64) {
        if self.generation.load(Ordering::Acquire) == generation {
            self.reconnect.notify_one();
        }
    }

    /// Stops the supervisor; the connection (and a stdio child) closes.
    pub fn stop(&self) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.stop.cancel();
    }

    /// Puts this client's record, with its last known tools, in every filter's policy.
    pub fn publish(&self) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if self.stop.is_cancelled() {
            return;
        }
        let config = self.config();
        let record = config.record(self.status().tools);
        if let Ok(body) = serde_json::to_vec(&record) {
            self.cache.upsert([(RecordKind::McpClient.name(&config.name), body)]);
        }
    }

    fn set(&self, state: State, error: Option<String>) {
        let error = error.map(|e| scrub(e, &self.config()));
        if let Some(why) = &error {
            tracing::warn!(client = %self.config().name, state = ?state, %why, "MCP server unavailable");
        }
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.state = state;
        status.error = error;
    }

    async fn supervise(self: Arc<Self>) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            self.set(State::Connecting, None);
            let config = self.config();
            let connected = tokio::select! {
                _ = self.stop.cancelled() => return,
                c = connect(&config, self.tools_changed.clone()) => c,
            };
            match connected {
                Ok(service) => {
                    backoff = BACKOFF_FIRST;
                    let end = self.serve(&service).await;
                    *self.peer.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    drop(service);
                    match end {
                        End::Stop => return,
                        End::Reconnect => continue,
                        End::Lost(why) => self.set(State::Disconnected, Some(why)),
                    }
                }
                Err(why) => self.set(State::Error, Some(why)),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.reconnect.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Runs one connection until it ends.
    async fn serve(&self, service: &RunningService<RoleClient, Watcher>) -> End {
        let peer = service.peer().clone();
        tokio::select! {
            _ = self.stop.cancelled() => return End::Stop,
            synced = self.sync_tools(&peer) => if let Err(why) = synced {
                return End::Lost(why);
            },
        }
        let info = peer.peer_info();
        let version = info.as_ref().map(|i| i.protocol_version.clone());
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.protocol_version = version.as_ref().map(|v| v.to_string());
            status.state = State::Connected;
            status.error = None;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.peer.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer.clone());
        tracing::info!(client = %self.config().name, version = ?version, "MCP server connected");
        // Stateless servers send `list_changed` only on a subscription stream.
        let listens =
            info.as_ref().and_then(|i| i.capabilities.tools.as_ref()).and_then(|t| t.list_changed) == Some(true);
        let listener = (version == Some(ProtocolVersion::V_2026_07_28) && listens)
            .then(|| tokio::spawn(listen(peer.clone(), self.tools_changed.clone())));
        let end = self.watch(&peer).await;
        if let Some(task) = listener {
            task.abort();
        }
        end
    }

    async fn watch(&self, peer: &Peer<RoleClient>) -> End {
        let mut health = tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC_EVERY, RESYNC_EVERY);
        let mut closed = tokio::time::interval(CLOSED_CHECK_EVERY);
        let mut failures = 0;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return End::Stop,
                _ = self.reconnect.notified() => return End::Reconnect,
                _ = self.tools_changed.notified() => {
                    if let Err(why) = self.sync_tools(peer).await {
                        tracing::warn!(client = %self.config().name, %why, "re-listing tools after list_changed failed");
                    }
                }
                _ = resync.tick() => {
                    if let Err(why) = self.sync_tools(peer).await {
                        tracing::warn!(client = %self.config().name, %why, "periodic tools/list failed");
                    }
                }
                _ = health.tick() => match self.check(peer).await {
                    Ok(()) => failures = 0,
                    Err(why) => {
                        failures += 1;
                        if failures >= HEALTH_FAILURES {
                            return End::Lost(format!("{failures} health checks failed, the last: {why}"));
                        }
                    }
                },
                _ = closed.tick() => if peer.is_transport_closed() {
                    return End::Lost("the server closed the connection".into());
                },
            }
        }
    }

    async fn check(&self, peer: &Peer<RoleClient>) -> Result<(), String> {
        let probe = async {
            if self.config().is_ping_available {
                let ping = PingRequest { method: Default::default(), extensions: Default::default() };
                peer.send_request(ClientRequest::PingRequest(ping)).await.map(drop)
            } else {
                peer.list_tools(None).await.map(drop)
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            // Any answer proves the server alive: 2026-07-28 servers may not know `ping`.
            Ok(Ok(())) | Ok(Err(ServiceError::McpError(_))) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5 s".into()),
        }
    }

    /// Lists every page of tools and republishes the record if they changed.
    async fn sync_tools(&self, peer: &Peer<RoleClient>) -> Result<(), String> {
        let listed = match tokio::time::timeout(LIST_TIMEOUT, peer.list_all_tools()).await {
            Ok(listed) => listed.map_err(|e| format!("tools/list failed: {e}"))?,
            Err(_) => return Err(format!("tools/list did not answer within {} s", LIST_TIMEOUT.as_secs())),
        };
        let tools: Vec<McpTool> = listed
            .into_iter()
            .filter(|t| valid_tool_name(&t.name))
            .map(|t| McpTool {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: serde_json::Value::Object((*t.input_schema).clone()),
                output_schema: t.output_schema.map(|o| serde_json::Value::Object((*o).clone())),
            })
            .collect();
        let changed = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let changed = status.tools != tools;
            status.tools = tools;
            changed
        };
        if changed {
            tracing::info!(client = %self.config().name, tools = self.status().tools.len(), "MCP tools listed");
            self.publish();
        }
        Ok(())
    }
}

/// MCP tool names: 1-128 of `[A-Za-z0-9_.-]` (the spec's rule); others are skipped.
fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Relays `list_changed` from a 2026-07-28 subscription stream.
async fn listen(peer: Peer<RoleClient>, changed: Arc<Notify>) {
    let filter = SubscriptionFilter::builder().tools_list_changed().build();
    let Ok(mut subscription) = peer.listen(filter).await else { return };
    while let Ok(Some(_)) = subscription.next().await {
        changed.notify_one();
    }
}

/// The hub's side of a connection: it only needs to hear that tools changed.
#[derive(Clone)]
pub struct Watcher {
    changed: Arc<Notify>,
}

impl ClientHandler for Watcher {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("warden", env!("CARGO_PKG_VERSION")))
    }
}

/// Error text without what may carry credentials: the server's resolved URL (whose query or
/// user part may hold a token; HTTP errors print it) and its header values.
pub(super) fn scrub(text: String, config: &McpClient) -> String {
    let mut secrets: Vec<String> = config.headers.values().filter_map(|v| resolve(v).ok()).collect();
    secrets.extend(config.connection_string.as_deref().and_then(|u| resolve(u).ok()));
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = secrets.iter().fold(text, |t, s| t.replace(s.as_str(), "<redacted>"));
    // reqwest names the URL as it parsed it, which may differ from the configured text.
    while let Some(start) = text.find("url (http") {
        let end = text[start..].find(')').map_or(text.len(), |e| start + e + 1);
        text.replace_range(start..end, "url (<redacted>)");
    }
    text
}

/// `env.VAR` → the variable's value; anything else as it is.
fn resolve(value: &str) -> Result<String, String> {
    match value.strip_prefix("env.") {
        Some(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set")),
        None => Ok(value.to_owned()),
    }
}

/// Connects and completes the handshake, in whichever era the server speaks: `server/discover`
/// first (2026-07-28), `initialize` (2025-11-25) when the server is older.
async fn connect(config: &McpClient, changed: Arc<Notify>) -> Result<RunningService<RoleClient, Watcher>, String> {
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let watcher = Watcher { changed };
    let handshake = Duration::from_secs(30);
    let connected = match config.connection_type {
        ConnectionType::Http => {
            let url = resolve(config.connection_string.as_deref().unwrap_or_default())?;
            let mut headers = std::collections::HashMap::new();
            for (name, value) in &config.headers {
                let name =
                    axum::http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
                let value = axum::http::HeaderValue::from_str(&resolve(value)?)
                    .map_err(|_| format!("header {name}: the value is not a valid header value"))?;
                headers.insert(name, value);
            }
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
            );
            tokio::time::timeout(handshake, watcher.serve_with_lifecycle(transport, lifecycle)).await
        }
        ConnectionType::Stdio => {
            let stdio = config.stdio_config.as_ref().ok_or("stdio_config is missing")?;
            let mut command = tokio::process::Command::new(&stdio.command);
            command.args(&stdio.args).env_clear();
            for var in CHILD_ENV.iter().copied().chain(stdio.envs.iter().map(String::as_str)) {
                if let Ok(value) = std::env::var(var) {
                    command.env(var, value);
                }
            }
            let (transport, _) = TokioChildProcess::builder(command)
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start '{}': {e}", stdio.command))?;
            tokio::time::timeout(handshake, watcher.serve_with_lifecycle(transport, lifecycle)).await
        }
        ConnectionType::Sse => return Err("the legacy SSE transport is not supported".into()),
    };
    match connected {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(format!("handshake failed: {e}")),
        Err(_) => Err(format!("no handshake within {} s", handshake.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_resolve_from_the_environment() {
        assert_eq!(resolve("env.PATH"), Ok(std::env::var("PATH").unwrap()));
        assert_eq!(resolve("Bearer literal"), Ok("Bearer literal".to_owned()));
        assert_eq!(
            resolve("env.WARDEN_SURELY_UNSET_VAR"),
            Err("environment variable WARDEN_SURELY_UNSET_VAR is not set".into())
        );
        assert!(valid_tool_name("get-sum.v2_x") && !valid_tool_name("") && !valid_tool_name("a b"));
    }

    #[test]
    fn errors_lose_urls_and_header_values() {
        let config: McpClient = serde_json::from_value(serde_json::json!({
            "client_id": "c", "name": "x", "connection_type": "http",
            "connection_string": "https://mcp.example.com/mcp?key=s3cret-key",
            "headers": {"authorization": "Bearer tok-123"},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let text =
            "error sending request for url (https://mcp.example.com/mcp?key=s3cret-key): refused; sent Bearer tok-123";
        let clean = scrub(text.into(), &config);
        assert!(!clean.contains("s3cret") && !clean.contains("tok-123"), "{clean}");
        assert_eq!(scrub("for url (http://h/x?k=v) failed".into(), &config), "for url (<redacted>) failed");
    }
}

//! Code Mode (docs/code-mode.md): the tools of code-mode clients hide behind four meta-tools. The
//! model lists and reads TypeScript declarations generated from exactly the tools its key may
//! use, then sends one program that calls many of them; the program runs in a QuickJS sandbox,
//! and each of its tool calls goes back through the gateway as the caller, judged, priced and
//! written to the ledger like a direct call.

mod files;
#[cfg(test)]
mod fuzz_tests;
mod sandbox;
mod slots;
mod typescript;
pub mod worker;

pub use files::ToolFiles;
pub use sandbox::{Failure, Limits, Outcome, ToolCaller};

use crate::gateway::GatewayClient;
use crate::mcp::records::{Caller, Published};
use crate::model::{BindingLevel, ToolManagerConfig};
use crate::xds::Cache;
use axum::http::HeaderValue;
use serde_json::{Map, Value, json};
use slots::ProgramSlots;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use warden_policy::Denial;
use warden_policy::codemode::{EXECUTE_TOOL_CODE, GET_TOOL_DOCS, LIST_TOOL_FILES, READ_TOOL_FILE};
use warden_policy::mcp::{self, McpTool, exposed_name};
use warden_policy::records::Records;

/// Code Mode's part of the tool manager's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// One `.d.ts` file per server, or per tool.
    pub binding_level: BindingLevel,
    /// How long one program may run, its tool calls included.
    pub timeout: Duration,
}

impl From<&ToolManagerConfig> for Config {
    fn from(settings: &ToolManagerConfig) -> Config {
        Config {
            binding_level: settings.code_mode_binding_level,
            timeout: settings.tool_timeout().unwrap_or(Limits::default().timeout),
        }
    }
}

/// Code Mode on the hub: its settings, the programs running now, what it judges with and where
/// programs' tool calls go.
pub struct CodeMode {
    gateway: GatewayClient,
    /// The published policy records.
    cache: Arc<Cache>,
    config: RwLock<Config>,
    programs: ProgramSlots,
}

/// The code-mode servers a caller may use, with their tools.
pub fn servers(cache: &Cache, caller: &Caller) -> Vec<(String, Vec<McpTool>)> {
    let tools = caller.tools(&Published(cache)).unwrap_or_default();
    let mut servers: Vec<(String, Vec<McpTool>)> = Vec::new();
    for (client, tool) in tools.into_iter().filter(|(c, _)| c.is_code_mode_client) {
        match servers.iter_mut().find(|(name, _)| *name == client.name) {
            Some((_, list)) => list.push(tool),
            None => servers.push((client.name.clone(), vec![tool])),
        }
    }
    servers
}

/// Where a program's tool calls go: the gateway, as the caller.
pub struct Gateway {
    pub secret: String,
    /// The caller's include headers.
    pub include: Vec<(&'static str, HeaderValue)>,
    /// Agent mode runs the program unasked: only auto-executable tools may be called.
    pub unattended: bool,
}

/// Tool calls of one program in flight at once, at most.
const MAX_CALLS_IN_FLIGHT: usize = 8;
/// A tool call's arguments, at most.
const MAX_ARGUMENT_BYTES: usize = 1 << 20;
/// A tool's answer read by a program, at most.
const MAX_ANSWER_BYTES: usize = 4 << 20;

impl CodeMode {
    /// `gateway`: where programs' tool calls go; `cache`: the published records.
    pub fn new(gateway: GatewayClient, cache: Arc<Cache>, config: Config) -> CodeMode {
        CodeMode { gateway, cache, config: RwLock::new(config), programs: ProgramSlots::default() }
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Runs one meta-tool for `caller`: its text answer, and whether it is an error the model
    /// should read (a bad file name, a failed program). `gateway` is needed by `executeToolCode`.
    pub async fn call(
        &self,
        caller: &Caller,
        gateway: Option<Gateway>,
        name: &str,
        arguments: &Map<String, Value>,
    ) -> Result<(String, bool), Denial> {
        let servers = servers(&self.cache, caller);
        let config = self.config.read().unwrap_or_else(|p| p.into_inner()).clone();
        let files = || ToolFiles::new(&servers, config.binding_level);
        let text = |field: &str| arguments.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let line = |field: &str| arguments.get(field).and_then(Value::as_u64);
        Ok(match name {
            LIST_TOOL_FILES => (files().list(), false),
            READ_TOOL_FILE => match files().read(&text("fileName"), line("startLine"), line("endLine")) {
                Ok(content) => (content, false),
                Err(why) => (why, true),
            },
            GET_TOOL_DOCS => match files().docs(&text("server"), &text("tool")) {
                Ok(content) => (content, false),
                Err(why) => (why, true),
            },
            EXECUTE_TOOL_CODE => {
                let code = text("code");
                if code.trim().is_empty() {
                    return Err(Denial::BadRequest("executeToolCode needs 'code'".into()));
                }
                let gateway = gateway.ok_or(Denial::KeyRequired)?;
                let _running = match self.programs.take(&caller.key.id) {
                    Ok(slot) => slot,
                    Err(busy) => return Ok((busy, true)),
                };
                let names: Vec<(String, Vec<String>)> = servers
                    .iter()
                    .map(|(s, tools)| (s.clone(), tools.iter().map(|t| t.name.clone()).collect()))
                    .collect();
                let callable = callable(&self.cache, caller, &servers, gateway.unattended);
                let limits = Limits { timeout: config.timeout, ..Limits::default() };
                let tools = tool_caller(&self.gateway, caller, gateway, callable);
                // This very binary, even if its file was replaced since it started.
                let warden = std::path::Path::new("/proc/self/exe");
                let outcome = worker::run_isolated(warden, code, names.clone(), tools, limits).await;
                render(&outcome, &names)
            }
            _ => return Err(Denial::ToolUnknown(name.to_owned())),
        })
    }
}

/// The exposed names a program may call: the caller's code-mode tools in this scope, and only
/// the auto-executable ones when agent mode runs it unasked.
fn callable(cache: &Cache, caller: &Caller, servers: &[(String, Vec<McpTool>)], unattended: bool) -> HashSet<String> {
    let records = Published(cache);
    servers
        .iter()
        .flat_map(|(server, tools)| tools.iter().map(move |t| (server, t)))
        .filter(|(server, tool)| {
            !unattended
                || records
                    .get::<mcp::McpClientRecord>(server)
                    .is_some_and(|client| mcp::auto_executes(caller.key.grants(), &client, &tool.name, &caller.include))
        })
        .map(|(server, tool)| exposed_name(server, &tool.name))
        .collect()
}

/// Each call of the program: checked against what it may call, then `/v1/mcp/tool/execute` on
/// the gateway with the caller's key, where it is judged and priced like a direct call.
fn tool_caller(client: &GatewayClient, caller: &Caller, gateway: Gateway, callable: HashSet<String>) -> ToolCaller {
    let client = client.clone();
    let key_name = caller.key.name.clone();
    let shared = Arc::new((gateway, callable, Semaphore::new(MAX_CALLS_IN_FLIGHT)));
    Arc::new(move |name: String, arguments: String| {
        let (client, shared, key_name) = (client.clone(), shared.clone(), key_name.clone());
        Box::pin(async move {
            let (gateway, callable, in_flight) = &*shared;
            if !callable.contains(&name) {
                let why = match gateway.unattended {
                    true => format!(
                        "MCP tool '{name}' is not auto-executable; agent mode runs only programs whose every call is"
                    ),
                    false => Denial::ToolBlocked(name, key_name).message(),
                };
                return Err(why);
            }
            if arguments.len() > MAX_ARGUMENT_BYTES {
                return Err(format!("tool '{name}': arguments over {MAX_ARGUMENT_BYTES} bytes"));
            }
            let _slot = in_flight.acquire().await.map_err(|e| e.to_string())?;
            let call =
                json!({"id": "codemode", "type": "function", "function": {"name": name, "arguments": arguments}});
            let mut request =
                client.post("/v1/mcp/tool/execute?format=chat&structured=true", &gateway.secret, &gateway.include);
            request = request.json(&call);
            let mut response =
                request.send().await.map_err(|_| format!("tool '{name}': the gateway could not be reached"))?;
            let ok = response.status().is_success();
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| format!("tool '{name}': {e}"))? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_ANSWER_BYTES {
                    return Err(format!("tool '{name}': its answer is over {MAX_ANSWER_BYTES} bytes"));
                }
            }
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if !ok {
                return Err(body["error"]["message"].as_str().unwrap_or("the tool call was refused").to_owned());
            }
            let content = body["content"].as_str().unwrap_or_default().to_owned();
            if body["is_error"].as_bool() == Some(true) {
                return Err(content);
            }
            // The structured result when there is one (the declared output type), else the text.
            Ok(body.get("structured_content").map(Value::to_string).unwrap_or(content))
        })
    })
}

/// The contract's text for an execution: console output, then the returned value or the
/// failure with hints.
fn render(outcome: &Outcome, servers: &[(String, Vec<String>)]) -> (String, bool) {
    let mut out = String::new();
    if !outcome.console.is_empty() {
        out.push_str("Console output:\n");
        out.push_str(&outcome.console.join("\n"));
        out.push_str("\n\n");
    }
    match &outcome.result {
        Ok(value) => {
            out.push_str(&format!("Execution completed successfully.\nReturn value: {value}"));
            (out, false)
        }
        Err((failure, message)) => {
            let available: Vec<String> = servers
                .iter()
                .map(|(s, tools)| {
                    format!("{s} ({})", tools.iter().map(|t| exposed_name(s, t)).collect::<Vec<_>>().join(", "))
                })
                .collect();
            out.push_str(&format!("Execution {} error: {message}\n\nHints:\n", failure.name()));
            out.push_str(&format!(
                "- Tools you can call: {}. Call one as `await server.tool({{...}})`; `return` the result.\n",
                if available.is_empty() { "none".to_owned() } else { available.join("; ") }
            ));
            out.push_str("- listToolFiles and readToolFile show each tool's input and output types.\n");
            if *failure == Failure::Limit || *failure == Failure::Timeout {
                out.push_str("- Do less per execution: fewer calls, smaller results (filter before returning).\n");
            }
            (out, true)
        }
    }
}

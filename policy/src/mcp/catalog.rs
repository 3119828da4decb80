//! The catalog as the hub publishes it: one record per connected MCP server with its tools,
//! the index of the clients every key may use, and a key's grants.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `mcp:<client name>`: one connected MCP server and the tools it offers now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpClientRecord {
    /// The client's name: the prefix of its tools' exposed names.
    pub name: String,
    /// The ceiling: the tools any key may use (`*` = all; empty = none).
    #[serde(default)]
    pub tools_to_execute: Vec<String>,
    /// Usable by every key without an entry in its `mcp_configs`.
    #[serde(default)]
    pub allow_by_default: bool,
    /// Its tools hide behind the Code Mode meta-tools.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_code_mode_client: bool,
    /// The tools agent mode runs by itself (`*` = all); only those also in `tools_to_execute`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_to_auto_execute: Vec<String>,
    /// Price per call, µ$, by tool name (as the server names it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_pricing: BTreeMap<String, u64>,
    /// The server's tools, in its order.
    #[serde(default)]
    pub tools: Vec<McpTool>,
}

/// One tool as the server describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpTool {
    /// The server's name for it.
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// Its arguments: a JSON Schema object.
    #[serde(default = "empty_object_schema")]
    pub input_schema: Value,
    /// Its structured result, when the server declares one (Code Mode types results with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// `mcp:*`: the clients every key may use without a grant. Kept apart so that a request whose
/// key has no MCP grant reads one small record, not the whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct McpIndex {
    /// Names of the `allow_by_default` clients.
    #[serde(default)]
    pub allow_by_default: Vec<String>,
}

impl crate::records::Record for McpIndex {
    const KIND: crate::RecordKind = crate::RecordKind::McpClient;
}

impl crate::records::Record for McpClientRecord {
    const KIND: crate::RecordKind = crate::RecordKind::McpClient;
}

/// A key's grant on one client (the contract's `mcp_configs` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpGrant {
    /// The client.
    pub mcp_client_name: String,
    /// `*` = all of the client's tools, a list = those, empty = none.
    #[serde(default)]
    pub tools_to_execute: Vec<String>,
    /// Calls per window this key may make, by tool name (as the server names it), as request
    /// limits so that they are counted and leased like every other limit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_call_limits: BTreeMap<String, crate::RateLimit>,
}

/// At most `max_calls` calls per `reset_duration` window: the admin API's shape of a tool call
/// limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallLimit {
    /// The most calls per window.
    pub max_calls: u64,
    /// The window, e.g. `1h` (same grammar as budgets).
    pub reset_duration: String,
}

impl ToolCallLimit {
    /// The limit as a request limit, the form the counting and leasing code takes.
    pub fn as_rate_limit(&self) -> crate::RateLimit {
        crate::RateLimit {
            request_max_limit: Some(self.max_calls),
            request_reset_duration: Some(self.reset_duration.clone()),
            ..Default::default()
        }
    }
}

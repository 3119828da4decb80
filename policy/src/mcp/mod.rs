//! MCP tools: the catalog the control plane's hub sends every filter, which tools a key may see
//! and call (three filters, intersected), and the shapes of `/v1/mcp/tool/execute`.
//!
//! A tool is exposed as `<client>-<tool>`, as in Bifrost. Client names have no `-`, so the first
//! `-` splits the two unambiguously.
//!
//! | file | what |
//! |---|---|
//! | `catalog.rs` | the records: each client with its tools, the index, a key's grants |
//! | `access.rs` | the access rule: client ceiling ∩ grants ∩ include headers |
//! | `wire.rs` | tools in request bodies, and `/v1/mcp/tool/execute`'s call |
//! | `render.rs` | a tool's result as the caller reads it |

mod access;
mod catalog;
mod render;
mod wire;

pub use access::{
    Grants, INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER, IncludeHeaders, allowed_tools, allows, auto_executes,
    candidate_clients,
};
pub use catalog::{McpClientRecord, McpGrant, McpIndex, McpTool, ToolCallLimit};
pub use render::ToolOutput;
pub use wire::{ExecuteFormat, ToolCall, ToolShape, call_is_charged, function_definition, inject};

/// Between the client's name and the tool's in an exposed tool name.
pub const SEPARATOR: char = '-';

/// The id of the catalog index record (`mcp:*`); no client can be named `*`.
pub const INDEX_ID: &str = "*";

/// The Envoy cluster of the control plane's MCP hub, which executes tools.
pub const HUB_CLUSTER: &str = "warden-hub";

/// The header in which the filter tells the hub which key's record (`vk:<hash>`) scopes an
/// `/mcp` request or an agent-mode chat. Trusted: the filter removes every client `x-warden-*`.
pub const KEY_HASH_HEADER: &str = "x-warden-vk-hash";

/// The caller's virtual key, handed to the hub for agent mode: its steps go back through the
/// gateway as the caller, governed and billed like any request of that key.
pub const AGENT_KEY_HEADER: &str = "x-warden-agent-key";

/// The hub's route for chats that agent mode runs.
pub const AGENT_PATH: &str = "/v1/agent/chat/completions";

/// Set on the chats the hub sends through Envoy for each agent step, so that they go to the
/// model and not back to the hub. A caller that sets it only opts out of agent mode.
pub const AGENT_STEP_HEADER: &str = "x-warden-agent-step";

/// The ledger's provider for tool calls; their model is the tool's exposed name, so model and
/// tool spend sit in one ledger.
pub const LEDGER_PROVIDER: &str = "mcp";

/// The exposed name of a client's tool.
pub fn exposed_name(client: &str, tool: &str) -> String {
    format!("{client}{SEPARATOR}{tool}")
}

#[cfg(test)]
mod tests;

//! MCP tools: the catalog the control plane's hub sends every filter, which tools a key may see
//! and call (three filters, intersected), and the shapes of `/v1/mcp/tool/execute`.
//!
//! A tool is exposed as `<client>-<tool>` (contract §7.2). Client names have no `-`, so the first
//! `-` splits the two unambiguously.

use crate::Denial;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::borrow::Borrow;
use std::collections::BTreeMap;

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

/// Whether a tool call that ended with the hub's `status` is charged its price: when it ran,
/// and when it timed out (the server may have done the work; cancellation is only a request).
/// Calls refused or failed before they reached the server are not.
pub fn call_is_charged(status: u16) -> bool {
    status < 400 || status == 504
}

/// A whitelist: `*` = all, names = those, empty = none.
fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|t| t == "*" || t == name)
}

/// The request's `x-bf-mcp-include-clients` and `x-bf-mcp-include-tools` headers. Each narrows
/// what the key may see; neither can widen it. An absent header narrows nothing; a present but
/// empty one leaves nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncludeHeaders {
    clients: Option<Vec<String>>,
    tools: Option<Vec<String>>,
}

/// The header naming the clients a request may use.
pub const INCLUDE_CLIENTS_HEADER: &str = "x-bf-mcp-include-clients";
/// The header naming the tools (`client-tool`, `client-*`, `*`) a request may use.
pub const INCLUDE_TOOLS_HEADER: &str = "x-bf-mcp-include-tools";

impl IncludeHeaders {
    /// Reads the two headers' values (`None` when absent).
    pub fn parse(clients: Option<&[u8]>, tools: Option<&[u8]>) -> IncludeHeaders {
        let list = |v: &[u8]| {
            String::from_utf8_lossy(v).split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        };
        IncludeHeaders { clients: clients.map(list), tools: tools.map(list) }
    }

    /// Whether these headers admit `tool` of `client`; `None` for "any tool of `client`".
    fn admits(&self, client: &str, tool: Option<&str>) -> bool {
        let client_ok = self.clients.as_ref().is_none_or(|l| l.iter().any(|c| c == "*" || c == client));
        let tools_ok = self.tools.as_ref().is_none_or(|l| {
            l.iter().any(|entry| {
                entry == "*"
                    || entry
                        .split_once(SEPARATOR)
                        .is_some_and(|(c, t)| c == client && (t == "*" || tool.is_none_or(|tool| t == tool)))
            })
        });
        client_ok && tools_ok
    }
}

/// The grants a request is judged by: a key's own, where a client without an entry falls back on
/// its `allow_by_default`; or a Virtual MCP's bundle, which is exactly what it lists.
#[derive(Debug, Clone, Copy)]
pub struct Grants<'g> {
    list: &'g [McpGrant],
    defaults: bool,
}

impl<'g> Grants<'g> {
    /// A key's own grants.
    pub fn key(list: &'g [McpGrant]) -> Grants<'g> {
        Grants { list, defaults: true }
    }

    /// A Virtual MCP's bundle.
    pub fn bundle(list: &'g [McpGrant]) -> Grants<'g> {
        Grants { list, defaults: false }
    }

    fn of(&self, client: &str) -> Option<&'g McpGrant> {
        self.list.iter().find(|g| g.mcp_client_name == client)
    }
}

/// Whether agent mode may run `tool` of `client` by itself: it may be called under `grants`, and
/// the client lists it in `tools_to_auto_execute`.
pub fn auto_executes(grants: Grants<'_>, client: &McpClientRecord, tool: &str, headers: &IncludeHeaders) -> bool {
    listed(&client.tools_to_auto_execute, tool) && allows(grants, client, tool, headers)
}

/// Whether `tool` of `client` may be called under `grants` and these headers: the client's
/// ceiling ∩ the grant (or the client's `allow_by_default`, for a key's own grants) ∩ the headers.
pub fn allows(grants: Grants<'_>, client: &McpClientRecord, tool: &str, headers: &IncludeHeaders) -> bool {
    let ceiling = listed(&client.tools_to_execute, tool);
    let granted = match grants.of(&client.name) {
        Some(grant) => listed(&grant.tools_to_execute, tool),
        None => grants.defaults && client.allow_by_default,
    };
    ceiling && granted && headers.admits(&client.name, Some(tool))
}

/// The clients whose tools may be seen under `grants`: those granted and (for a key's own grants)
/// the `allow_by_default` ones, narrowed by the headers, without duplicates.
pub fn candidate_clients(grants: Grants<'_>, index: &McpIndex, headers: &IncludeHeaders) -> Vec<String> {
    let defaults = if grants.defaults { index.allow_by_default.as_slice() } else { &[] };
    let mut names: Vec<String> = grants
        .list
        .iter()
        .filter(|g| !g.tools_to_execute.is_empty())
        .map(|g| g.mcp_client_name.clone())
        .chain(defaults.iter().filter(|c| grants.of(c).is_none()).cloned())
        .filter(|c| headers.admits(c, None))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The exposed name of a client's tool.
pub fn exposed_name(client: &str, tool: &str) -> String {
    format!("{client}{SEPARATOR}{tool}")
}

/// Every tool of `clients` usable under `grants` and these headers, as `(client, tool)` pairs in
/// client then catalog order.
pub fn allowed_tools<'c, C: Borrow<McpClientRecord>>(
    grants: Grants<'_>,
    clients: &'c [C],
    headers: &IncludeHeaders,
) -> Vec<(&'c McpClientRecord, &'c McpTool)> {
    clients
        .iter()
        .map(Borrow::borrow)
        .flat_map(|c| c.tools.iter().map(move |t| (c, t)))
        .filter(|(c, t)| allows(grants, c, &t.name, headers))
        .collect()
}

/// The shape tools take in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolShape {
    /// Chat completions: `{"type":"function","function":{name, description, parameters}}`.
    Chat,
    /// Responses: `{"type":"function", name, description, parameters}`.
    Responses,
}

/// The tool as an OpenAI function definition in `shape`.
pub fn function_definition(client: &McpClientRecord, tool: &McpTool, shape: ToolShape) -> Value {
    let name = exposed_name(&client.name, &tool.name);
    match shape {
        ToolShape::Chat => json!({"type": "function", "function": {
            "name": name, "description": tool.description, "parameters": tool.input_schema,
        }}),
        ToolShape::Responses => json!({
            "type": "function", "name": name, "description": tool.description, "parameters": tool.input_schema,
        }),
    }
}

/// The name a body's tool entry goes by, in either shape.
fn defined_name(tool: &Value) -> Option<&str> {
    tool.get("function").and_then(|f| f.get("name")).or_else(|| tool.get("name")).and_then(Value::as_str)
}

/// Appends `definitions` to the body's `tools`, skipping names already there. Returns whether
/// anything was added.
pub fn inject(body: &mut Map<String, Value>, definitions: Vec<Value>) -> bool {
    if definitions.is_empty() {
        return false;
    }
    let tools = body.entry("tools").or_insert_with(|| Value::Array(Vec::new()));
    if !tools.is_array() {
        *tools = Value::Array(Vec::new());
    }
    let Value::Array(tools) = tools else { return false };
    let before = tools.len();
    for definition in definitions {
        let name = defined_name(&definition).map(str::to_owned);
        if !tools.iter().any(|t| defined_name(t) == name.as_deref()) {
            tools.push(definition);
        }
    }
    tools.len() > before
}

/// The answer format of `/v1/mcp/tool/execute` (`?format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecuteFormat {
    /// A chat tool message.
    Chat,
    /// A Responses `function_call_output` item.
    Responses,
}

impl ExecuteFormat {
    /// Reads `format` from a query string; absent = chat.
    pub fn of_query(query: &str) -> Result<ExecuteFormat, Denial> {
        let format = query.split('&').find_map(|pair| pair.strip_prefix("format="));
        match format {
            None | Some("chat") => Ok(ExecuteFormat::Chat),
            Some("responses") => Ok(ExecuteFormat::Responses),
            Some(_) => Err(Denial::BadRequest("Invalid format value, must be 'chat' or 'responses'".into())),
        }
    }

    /// Whether the query asks for the server's `structuredContent` too (`structured=true`, a
    /// Warden extension: Code Mode programs receive typed results through it).
    pub fn wants_structured(query: &str) -> bool {
        query.split('&').any(|pair| pair == "structured=true")
    }

    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecuteFormat::Chat => "chat",
            ExecuteFormat::Responses => "responses",
        }
    }
}

/// A tool call as `/v1/mcp/tool/execute` receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call's id, echoed in the answer.
    pub call_id: String,
    /// The exposed name, `client-tool`.
    pub name: String,
    /// The arguments object.
    pub arguments: Map<String, Value>,
}

impl ToolCall {
    /// Reads a chat tool call (`{"id","type":"function","function":{"name","arguments"}}`) or a
    /// Responses function call (`{"call_id","name","arguments"}`). `arguments` is a JSON string
    /// (as models emit it) or an object.
    pub fn parse(format: ExecuteFormat, body: &[u8]) -> Result<ToolCall, Denial> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Denial::BadRequest(format!("the request body is not valid JSON: {e}")))?;
        let Value::Object(call) = value else {
            return Err(Denial::BadRequest("the request body must be a JSON object".into()));
        };
        let (id_field, function) = match format {
            ExecuteFormat::Chat => ("id", call.get("function").and_then(Value::as_object)),
            ExecuteFormat::Responses => ("call_id", Some(&call)),
        };
        let function = function.ok_or_else(|| Denial::BadRequest("Tool function name is required".into()))?;
        let name = function.get("name").and_then(Value::as_str).map(str::trim).unwrap_or_default();
        if name.is_empty() {
            return Err(Denial::BadRequest("Tool function name is required".into()));
        }
        let arguments = match function.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
            Some(Value::String(s)) => match serde_json::from_str(s) {
                Ok(Value::Object(o)) => o,
                _ => return Err(Denial::BadRequest("the tool call's 'arguments' must be a JSON object".into())),
            },
            Some(_) => return Err(Denial::BadRequest("the tool call's 'arguments' must be a JSON object".into())),
        };
        let call_id = call.get(id_field).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(ToolCall { call_id, name: name.to_owned(), arguments })
    }

    /// The client and tool names, if the name has the `client-tool` form.
    pub fn split(&self) -> Option<(&str, &str)> {
        self.name.split_once(SEPARATOR).filter(|(c, t)| !c.is_empty() && !t.is_empty())
    }
}

/// What a tool call produced, rendered for the caller: text blocks joined, other blocks as the
/// contract's markers.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The rendered content.
    pub content: String,
    /// The server reported a tool error (`isError`).
    pub is_error: bool,
    /// The server's `structuredContent`, passed on as `structured_content` when asked for
    /// ([`ExecuteFormat::wants_structured`]).
    pub structured: Option<Value>,
}

impl ToolOutput {
    /// Renders an MCP `CallToolResult` (as JSON).
    pub fn of_result(result: &Value) -> ToolOutput {
        let blocks = result.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut parts: Vec<String> = blocks.iter().map(render_block).collect();
        if parts.is_empty()
            && let Some(structured) = result.get("structuredContent")
        {
            parts.push(structured.to_string());
        }
        ToolOutput {
            content: parts.join("\n"),
            is_error: result.get("isError").and_then(Value::as_bool).unwrap_or(false),
            structured: result.get("structuredContent").filter(|v| !v.is_null()).cloned(),
        }
    }

    /// The answer body in `format`, for the call it answers.
    pub fn body(&self, format: ExecuteFormat, call: &ToolCall) -> Value {
        let mut answer = match format {
            ExecuteFormat::Chat => {
                json!({"role": "tool", "content": self.content, "tool_call_id": call.call_id})
            }
            ExecuteFormat::Responses => {
                json!({"type": "function_call_output", "call_id": call.call_id, "output": self.content})
            }
        };
        if let Value::Object(o) = &mut answer {
            if self.is_error {
                o.insert("is_error".into(), Value::Bool(true));
            }
            if let Some(structured) = &self.structured {
                o.insert("structured_content".into(), structured.clone());
            }
        }
        answer
    }
}

fn render_block(block: &Value) -> String {
    let field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "text" => field("text").to_owned(),
        "image" => format!("[Image Response: {}, {} bytes base64]", field("mimeType"), field("data").len()),
        "audio" => format!("[Audio Response: {}, {} bytes base64]", field("mimeType"), field("data").len()),
        "resource_link" => format!("[Resource Link: {} ({})]", field("uri"), field("name")),
        "resource" => {
            let resource = block.get("resource").unwrap_or(&Value::Null);
            let uri = resource.get("uri").and_then(Value::as_str).unwrap_or_default();
            match resource.get("text").and_then(Value::as_str) {
                Some(text) => format!("[Resource: {uri}]\n{text}"),
                None => format!("[Resource: {uri}, binary]"),
            }
        }
        _ => block.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, ceiling: &[&str], by_default: bool, tools: &[&str]) -> McpClientRecord {
        McpClientRecord {
            name: name.into(),
            tools_to_execute: ceiling.iter().map(|s| s.to_string()).collect(),
            allow_by_default: by_default,
            tools_to_auto_execute: Vec::new(),
            is_code_mode_client: false,
            tool_pricing: BTreeMap::new(),
            tools: tools
                .iter()
                .map(|t| McpTool {
                    name: t.to_string(),
                    description: String::new(),
                    input_schema: json!({}),
                    output_schema: None,
                })
                .collect(),
        }
    }

    fn grant(client: &str, tools: &[&str]) -> McpGrant {
        McpGrant {
            mcp_client_name: client.into(),
            tools_to_execute: tools.iter().map(|s| s.to_string()).collect(),
            tool_call_limits: BTreeMap::new(),
        }
    }

    fn headers(clients: Option<&str>, tools: Option<&str>) -> IncludeHeaders {
        IncludeHeaders::parse(clients.map(str::as_bytes), tools.map(str::as_bytes))
    }

    fn names(grants: &[McpGrant], clients: &[McpClientRecord], h: &IncludeHeaders) -> Vec<String> {
        allowed_tools(Grants::key(grants), clients, h)
            .into_iter()
            .map(|(c, t)| exposed_name(&c.name, &t.name))
            .collect()
    }

    /// Every combination of a client's ceiling, a key's grant and the two headers, against the
    /// documented rule: ceiling ∩ grant (or allow_by_default) ∩ headers, headers never widening.
    #[test]
    fn every_combination_is_the_intersection() {
        let tools = ["read", "write"];
        let ceilings: [&[&str]; 4] = [&["*"], &["read"], &[], &["read", "write"]];
        let grants: [Option<&[&str]>; 4] = [None, Some(&["*"]), Some(&["write"]), Some(&[])];
        let client_headers = [None, Some(""), Some("*"), Some("fs"), Some("other"), Some(" fs , other ")];
        let tool_headers =
            [None, Some(""), Some("*"), Some("fs-*"), Some("fs-read"), Some("other-read"), Some("fs-write,x")];
        let mut checked = 0;
        for ceiling in ceilings {
            for by_default in [false, true] {
                let fs = client("fs", ceiling, by_default, &tools);
                for g in grants {
                    let key: Vec<McpGrant> = g.map(|t| grant("fs", t)).into_iter().collect();
                    for ch in client_headers {
                        for th in tool_headers {
                            let h = headers(ch, th);
                            let expected: Vec<String> = tools
                                .iter()
                                .filter(|t| ceiling.contains(&"*") || ceiling.contains(t))
                                .filter(|t| match g {
                                    Some(list) => list.contains(&"*") || list.contains(t),
                                    None => by_default,
                                })
                                .filter(|_| match ch {
                                    None => true,
                                    Some(v) => v.split(',').map(str::trim).any(|c| c == "*" || c == "fs"),
                                })
                                .filter(|t| match th {
                                    None => true,
                                    Some(v) => v
                                        .split(',')
                                        .map(str::trim)
                                        .any(|e| e == "*" || e == "fs-*" || e == format!("fs-{t}")),
                                })
                                .map(|t| format!("fs-{t}"))
                                .collect();
                            assert_eq!(
                                names(&key, std::slice::from_ref(&fs), &h),
                                expected,
                                "ceiling {ceiling:?}, default {by_default}, grant {g:?}, clients {ch:?}, tools {th:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 2 * 4 * 6 * 7);
    }

    #[test]
    fn headers_narrow_but_never_widen() {
        let fs = client("fs", &["*"], false, &["read"]);
        // No grant and not allow_by_default: no header can open it.
        assert!(!allows(Grants::key(&[]), &fs, "read", &headers(Some("*"), Some("fs-read"))));
        // A grant on another client does not open this one.
        assert!(!allows(Grants::key(&[grant("git", &["*"])]), &fs, "read", &headers(None, None)));
        assert!(allows(Grants::key(&[grant("fs", &["read"])]), &fs, "read", &headers(None, None)));
        assert!(!allows(Grants::key(&[grant("fs", &["read"])]), &fs, "read", &headers(Some(""), None)));
    }

    #[test]
    fn candidates_are_granted_and_default_clients_narrowed_by_headers() {
        let index = McpIndex { allow_by_default: vec!["time".into(), "fs".into()] };
        let grants = [grant("fs", &[]), grant("git", &["*"])];
        // An explicit empty grant closes an allow_by_default client.
        assert_eq!(candidate_clients(Grants::key(&grants), &index, &headers(None, None)), ["git", "time"]);
        assert_eq!(candidate_clients(Grants::key(&grants), &index, &headers(Some("git"), None)), ["git"]);
        assert_eq!(candidate_clients(Grants::key(&grants), &index, &headers(None, Some("time-*"))), ["time"]);
        assert!(candidate_clients(Grants::key(&grants), &index, &headers(None, Some(""))).is_empty());
    }

    #[test]
    fn injection_appends_and_skips_existing_names() {
        let fs = client("fs", &["*"], true, &["read", "write"]);
        let defs: Vec<Value> = fs.tools.iter().map(|t| function_definition(&fs, t, ToolShape::Chat)).collect();
        let mut body: Map<String, Value> = serde_json::from_str(
            r#"{"model":"m","tools":[{"type":"function","function":{"name":"fs-read","parameters":{}}}]}"#,
        )
        .unwrap();
        assert!(inject(&mut body, defs.clone()));
        let names: Vec<&str> = body["tools"].as_array().unwrap().iter().filter_map(defined_name).collect();
        assert_eq!(names, ["fs-read", "fs-write"]);
        assert!(!inject(&mut body, defs));
        let mut responses = Map::new();
        let def = function_definition(&fs, &fs.tools[0], ToolShape::Responses);
        assert!(inject(&mut responses, vec![def]));
        assert_eq!(responses["tools"][0]["name"], "fs-read");
        assert_eq!(responses["tools"][0]["type"], "function");
    }

    #[test]
    fn tool_calls_parse_in_both_formats() {
        let chat = br#"{"id":"call_1","type":"function","function":{"name":"fs-read","arguments":"{\"path\":\".\"}"}}"#;
        let call = ToolCall::parse(ExecuteFormat::Chat, chat).unwrap();
        assert_eq!((call.call_id.as_str(), call.split()), ("call_1", Some(("fs", "read"))));
        assert_eq!(call.arguments["path"], ".");
        let responses = br#"{"type":"function_call","call_id":"c2","name":"time-now","arguments":{}}"#;
        let call = ToolCall::parse(ExecuteFormat::Responses, responses).unwrap();
        assert_eq!((call.call_id.as_str(), call.name.as_str()), ("c2", "time-now"));
        let err = |f, b: &[u8]| ToolCall::parse(f, b).unwrap_err().message();
        assert_eq!(err(ExecuteFormat::Chat, br#"{"function":{}}"#), "Tool function name is required");
        assert!(err(ExecuteFormat::Chat, b"{").contains("not valid JSON"));
        assert!(err(ExecuteFormat::Chat, br#"{"function":{"name":"a-b","arguments":"[1]"}}"#).contains("arguments"));
        assert_eq!(ExecuteFormat::of_query("x=1&format=responses"), Ok(ExecuteFormat::Responses));
        assert_eq!(ExecuteFormat::of_query(""), Ok(ExecuteFormat::Chat));
        assert!(ExecuteFormat::of_query("format=xml").is_err());
    }

    #[test]
    fn results_render_as_the_contract_says() {
        let result = json!({"content": [
            {"type": "text", "text": "a"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///x", "text": "body"}},
            {"type": "resource_link", "uri": "file:///y", "name": "y"},
        ], "isError": true});
        let out = ToolOutput::of_result(&result);
        assert_eq!(
            out.content,
            "a\n[Image Response: image/png, 4 bytes base64]\n[Resource: file:///x]\nbody\n[Resource Link: file:///y (y)]"
        );
        let call = ToolCall { call_id: "c".into(), name: "fs-read".into(), arguments: Map::new() };
        let chat = out.body(ExecuteFormat::Chat, &call);
        assert_eq!(
            (chat["role"].as_str(), chat["tool_call_id"].as_str(), chat["is_error"].as_bool()),
            (Some("tool"), Some("c"), Some(true))
        );
        let responses = ToolOutput { content: "ok".into(), is_error: false, structured: None }
            .body(ExecuteFormat::Responses, &call);
        assert_eq!(responses, json!({"type": "function_call_output", "call_id": "c", "output": "ok"}));
        let structured = ToolOutput::of_result(&json!({"content": [], "structuredContent": {"t": 1}}));
        assert_eq!(structured.content, r#"{"t":1}"#);
    }
}

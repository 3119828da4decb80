//! `/mcp` as the filter and the hub read it: which JSON-RPC message a POST carries, whether its
//! `Mcp-Method`/`Mcp-Name` headers agree with it, refusals as JSON-RPC errors, and what a
//! `tools/call` answer means for its price.

use crate::Denial;
use crate::mcp::ToolCall;
use serde_json::{Map, Value, json};

/// The 2026-07-28 header that mirrors a request's method.
pub const METHOD_HEADER: &str = "mcp-method";
/// The 2026-07-28 header that mirrors a `tools/call`'s tool name.
pub const NAME_HEADER: &str = "mcp-name";
/// JSON-RPC: invalid params (also the MCP spec's answer to an unknown tool).
const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: the body is not a JSON-RPC message.
const INVALID_REQUEST: i64 = -32600;
/// 2026-07-28: a mirrored header disagrees with the body.
const HEADER_MISMATCH: i64 = -32020;
/// Warden refused the request (governance); `data` says why, as the HTTP denial would.
const REFUSED: i64 = -32001;

/// Where an `/mcp` request goes: the whole catalog the key may see, or one Virtual MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpScope<'p> {
    /// `/mcp`.
    All,
    /// `/mcp/<slug>`.
    Virtual(&'p str),
}

impl McpScope<'_> {
    /// The scope of a path (query ignored); `None` if it is not an `/mcp` path.
    pub fn of(path: &[u8]) -> Option<McpScope<'_>> {
        let path = path.split(|b| *b == b'?').next().unwrap_or_default();
        let path = std::str::from_utf8(path).ok()?;
        let path = path.strip_suffix('/').unwrap_or(path);
        match path.strip_prefix("/mcp")? {
            "" => Some(McpScope::All),
            rest => {
                let slug = rest.strip_prefix('/')?;
                (!slug.is_empty() && !slug.contains('/')).then_some(McpScope::Virtual(slug))
            }
        }
    }
}

/// One JSON-RPC message POSTed to `/mcp`, as far as governance needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage {
    /// The request id; `None` for a notification or a response.
    pub id: Option<Value>,
    /// The method; `None` for a response (to a server request).
    pub method: Option<String>,
    /// A `tools/call`'s tool and arguments.
    pub call: Option<ToolCall>,
}

/// Why an `/mcp` POST is refused before it is judged: a bad message, or headers that disagree
/// with it. Carries the HTTP status and the JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRefusal {
    /// 400.
    pub status: u16,
    /// The JSON-RPC error body.
    pub body: Vec<u8>,
}

impl RpcMessage {
    /// Reads a POST body, and checks the `Mcp-Method`/`Mcp-Name` headers against it when they
    /// are present: a modern client that mirrors its method must mirror it truthfully, or an
    /// intermediary judging the headers alone would be fooled.
    pub fn parse(
        body: &[u8],
        method_header: Option<&[u8]>,
        name_header: Option<&[u8]>,
    ) -> Result<RpcMessage, RpcRefusal> {
        let refuse = |code: i64, message: String, id: &Value| RpcRefusal {
            status: 400,
            body: error_body(id, code, &message, None),
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| refuse(INVALID_REQUEST, format!("the body is not JSON: {e}"), &Value::Null))?;
        let Value::Object(message) = value else {
            let why = "the body must be one JSON-RPC message (an object); batches are not part of MCP";
            return Err(refuse(INVALID_REQUEST, why.into(), &Value::Null));
        };
        let id = message.get("id").filter(|id| !id.is_null()).cloned();
        let reply_id = id.clone().unwrap_or(Value::Null);
        let method = message.get("method").and_then(Value::as_str).map(str::to_owned);
        let header = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).trim().to_owned());
        if let Some(claimed) = header(method_header)
            && method.as_deref() != Some(claimed.as_str())
        {
            let why = "mcp-method header does not match the request body's 'method'".to_owned();
            return Err(refuse(HEADER_MISMATCH, why, &reply_id));
        }
        let call = match method.as_deref() {
            Some("tools/call") => {
                let params = message.get("params").and_then(Value::as_object);
                let name = params.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or_default();
                if name.is_empty() {
                    return Err(refuse(INVALID_PARAMS, "tools/call needs params.name".into(), &reply_id));
                }
                if let Some(claimed) = header(name_header)
                    && claimed != name
                {
                    let why = "mcp-name header does not match the request body's 'name' parameter".to_owned();
                    return Err(refuse(HEADER_MISMATCH, why, &reply_id));
                }
                let arguments = match params.and_then(|p| p.get("arguments")) {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(o)) => o.clone(),
                    Some(_) => {
                        let why = "tools/call params.arguments must be an object".to_owned();
                        return Err(refuse(INVALID_PARAMS, why, &reply_id));
                    }
                };
                let call_id = id.as_ref().map(|id| id.to_string()).unwrap_or_default();
                Some(ToolCall { call_id, name: name.to_owned(), arguments })
            }
            _ => None,
        };
        Ok(RpcMessage { id, method, call })
    }
}

/// A JSON-RPC error answer.
fn error_body(id: &Value, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let mut error = json!({"code": code, "message": message});
    if let (Some(data), Value::Object(e)) = (data, &mut error) {
        e.insert("data".into(), data);
    }
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "error": error})).unwrap_or_default()
}

impl Denial {
    /// The refusal's JSON-RPC error code.
    pub fn rpc_code(&self) -> i64 {
        match self {
            Denial::BadRequest(_) | Denial::ToolUnknown(_) => INVALID_PARAMS,
            _ => REFUSED,
        }
    }

    /// The refusal's JSON-RPC error `data`: the HTTP denial's `type`, `code` and `status`, so an
    /// MCP client learns exactly what a REST client would.
    pub fn rpc_data(&self) -> Value {
        json!({"type": self.kind(), "code": self.code(), "status": self.status()})
    }

    /// The refusal as a JSON-RPC error answering request `id`.
    pub fn rpc_body(&self, id: &Value) -> Vec<u8> {
        error_body(id, self.rpc_code(), &self.message(), Some(self.rpc_data()))
    }
}

/// The HTTP status a `tools/call` answer stands for, read from the hub's answer (JSON, or SSE
/// whose events carry JSON-RPC messages): 200 for a result, the `data.status` of a refusal (400
/// without one). `None` when the answer holds neither: it did not arrive, or only its first part
/// was kept and that part does not say (see [`result_leads`]). It decides whether the call is
/// charged ([`crate::mcp::call_is_charged`]).
pub fn call_outcome(body: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(body);
    let messages =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).chain(std::iter::once(text.trim()));
    for message in messages {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(message) else { continue };
        if m.contains_key("result") {
            return Some(200);
        }
        if let Some(error) = m.get("error") {
            let status = error.get("data").and_then(|d| d.get("status")).and_then(Value::as_u64);
            return Some(status.and_then(|s| u16::try_from(s).ok()).unwrap_or(400));
        }
    }
    result_leads(&text).then_some(200)
}

/// Whether a cut-off answer is a result: JSON-RPC answers name `result` or `error` before any
/// content of their own, and refusals are small enough to be read whole.
fn result_leads(text: &str) -> bool {
    match (text.find("\"result\""), text.find("\"error\"")) {
        (Some(result), Some(error)) => result < error,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_paths() {
        assert_eq!(McpScope::of(b"/mcp"), Some(McpScope::All));
        assert_eq!(McpScope::of(b"/mcp/?x=1"), Some(McpScope::All));
        assert_eq!(McpScope::of(b"/mcp/dev-tools"), Some(McpScope::Virtual("dev-tools")));
        assert_eq!(McpScope::of(b"/mcpx"), None);
        assert_eq!(McpScope::of(b"/mcp/a/b"), None);
        assert_eq!(McpScope::of(b"/v1/mcp/tool/execute"), None);
    }

    #[test]
    fn tool_calls_are_read_and_headers_must_agree() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs-read","arguments":{"p":1}}}"#;
        let m = RpcMessage::parse(body, None, None).unwrap();
        let call = m.call.unwrap();
        assert_eq!((call.name.as_str(), call.call_id.as_str(), &call.arguments["p"]), ("fs-read", "7", &json!(1)));
        assert!(RpcMessage::parse(body, Some(b"tools/call"), Some(b"fs-read")).is_ok());
        let lie = RpcMessage::parse(body, Some(b"tools/call"), Some(b"fs-list")).unwrap_err();
        let error: Value = serde_json::from_slice(&lie.body).unwrap();
        assert_eq!((lie.status, &error["error"]["code"], &error["id"]), (400, &json!(-32020), &json!(7)));
        assert!(RpcMessage::parse(body, Some(b"tools/list"), None).is_err());
        // Not a call: nothing to judge beyond the method.
        let list = RpcMessage::parse(br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#, None, None).unwrap();
        assert_eq!((list.method.as_deref(), list.call), (Some("tools/list"), None));
        let note = RpcMessage::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, None, None);
        assert_eq!(note.unwrap().id, None);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a-b","arguments":[1]}}"#,
        ] {
            assert_eq!(RpcMessage::parse(bad, None, None).unwrap_err().status, 400);
        }
    }

    #[test]
    fn refusals_and_outcomes() {
        let body: Value =
            serde_json::from_slice(&Denial::ToolBlocked("fs-write".into(), "k".into()).rpc_body(&json!(3))).unwrap();
        assert_eq!(body["id"], 3);
        assert_eq!(
            body["error"]["data"],
            json!({"type": "mcp_tool_blocked", "code": "mcp_tool_blocked", "status": 403})
        );
        let timeout = Denial::ToolTimeout { tool: "a-b".into(), ms: 5 }.rpc_body(&json!(1));
        assert_eq!(call_outcome(&timeout), Some(504));
        let sse =
            b"id: 0\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";
        assert_eq!(call_outcome(sse), Some(200));
        assert_eq!(call_outcome(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#), Some(400));
        // The first 64 KiB of a large result: cut off, but a result.
        let cut = br#"data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"aaaa"#;
        assert_eq!(call_outcome(cut), Some(200));
        assert_eq!(call_outcome(b""), None);
    }
}

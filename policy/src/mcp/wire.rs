//! Tools in request bodies (OpenAI function definitions appended to `tools`), the call
//! `/v1/mcp/tool/execute` receives, and whether a call is charged.

use super::{McpClientRecord, McpTool, SEPARATOR, exposed_name};
use crate::Denial;
use serde_json::{Map, Value, json};

/// Whether a tool call that ended with the hub's `status` is charged its price: when it ran,
/// and when it timed out (the server may have done the work; cancellation is only a request).
/// Calls refused or failed before they reached the server are not.
pub fn call_is_charged(status: u16) -> bool {
    status < 400 || status == 504
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
pub(super) fn defined_name(tool: &Value) -> Option<&str> {
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

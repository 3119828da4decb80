//! A tool's result as the caller reads it.

use super::{ExecuteFormat, ToolCall};
use serde_json::{Value, json};

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

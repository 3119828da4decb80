//! Code Mode's meta-tools (docs/code-mode.md): the tools of code-mode clients are hidden behind
//! these four, whose names and shapes Bifrost's callers know. The hub implements them; the filter
//! injects them and lets through keys that see a code-mode tool.

use crate::mcp::ToolShape;
use serde_json::{Value, json};

/// Lists the declaration files.
pub const LIST_TOOL_FILES: &str = "listToolFiles";
/// Reads one declaration file, or some of its lines.
pub const READ_TOOL_FILE: &str = "readToolFile";
/// One tool's declaration.
pub const GET_TOOL_DOCS: &str = "getToolDocs";
/// Runs a program that calls tools.
pub const EXECUTE_TOOL_CODE: &str = "executeToolCode";

/// The four, in the order they are offered.
pub const META_TOOLS: [&str; 4] = [LIST_TOOL_FILES, READ_TOOL_FILE, GET_TOOL_DOCS, EXECUTE_TOOL_CODE];

/// Whether a tool name is a meta-tool.
pub fn is_meta(name: &str) -> bool {
    META_TOOLS.contains(&name)
}

/// A meta-tool's description and argument schema.
pub fn meta_tool(name: &str) -> Option<(&'static str, Value)> {
    Some(match name {
        LIST_TOOL_FILES => (
            "List the TypeScript declaration files (.d.ts) of the MCP servers you can call from executeToolCode, one per server (or per tool).",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        READ_TOOL_FILE => (
            "Read a declaration file from listToolFiles (e.g. servers/github.d.ts), optionally lines startLine..endLine (1-based, inclusive), to learn the tools' inputs and outputs.",
            json!({"type": "object", "required": ["fileName"], "properties": {
                "fileName": {"type": "string", "description": "A path from listToolFiles"},
                "startLine": {"type": "integer", "minimum": 1},
                "endLine": {"type": "integer", "minimum": 1}}}),
        ),
        GET_TOOL_DOCS => (
            "The declaration of one tool of one server: its input type, output type and description.",
            json!({"type": "object", "required": ["server", "tool"], "properties": {
                "server": {"type": "string"}, "tool": {"type": "string"}}}),
        ),
        EXECUTE_TOOL_CODE => (
            "Run a TypeScript or JavaScript program that calls the servers' tools, e.g. `const r = await github.list_issues({repo: \"a/b\"}); return r.items.length;`. Each server is a global object whose tools return Promises (use Promise.all to run calls together). `return` the result; console.log output is captured. No network, files, timers or modules.",
            json!({"type": "object", "required": ["code"], "properties": {
                "code": {"type": "string", "description": "The program's body; it may use await and must return its result"}}}),
        ),
        _ => return None,
    })
}

/// The meta-tools as function definitions in `shape`.
pub fn definitions(shape: ToolShape) -> Vec<Value> {
    META_TOOLS
        .iter()
        .filter_map(|name| {
            let (description, parameters) = meta_tool(name)?;
            Some(match shape {
                ToolShape::Chat => json!({"type": "function", "function": {
                    "name": name, "description": description, "parameters": parameters}}),
                ToolShape::Responses => {
                    json!({"type": "function", "name": name, "description": description, "parameters": parameters})
                }
            })
        })
        .collect()
}

/// The `server.tool` calls a program makes that can be seen without running it (`fs.read(`,
/// `fs["read-x"](`), for deciding whether agent mode may run it by itself. A program that builds
/// names at run time shows none it can be trusted on: see [`calls_are_static`].
pub fn static_calls<'c>(code: &'c str, servers: &[&str]) -> Vec<(&'c str, String)> {
    let mut found = Vec::new();
    for server in servers {
        let mut rest = code;
        while let Some(at) = rest.find(server) {
            let before = code.len() - rest.len() + at;
            rest = &rest[at + server.len()..];
            let boundary = code[..before]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'));
            if !boundary {
                continue;
            }
            let tool = if let Some(after) = rest.strip_prefix('.') {
                after.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).next().map(str::to_owned)
            } else if let Some(after) = rest.strip_prefix("[\"").or_else(|| rest.strip_prefix("['")) {
                after.split(['"', '\'']).next().map(str::to_owned)
            } else {
                None
            };
            if let Some(tool) = tool.filter(|t| !t.is_empty()) {
                found.push((&code[before..before + server.len()], tool));
            }
        }
    }
    found
}

/// Whether every use of a server object in `code` is a call spelled out (`server.tool` or
/// `server["tool"]`): a bare `server` passed around or indexed by a variable could call anything.
pub fn calls_are_static(code: &str, servers: &[&str]) -> bool {
    servers.iter().all(|server| {
        let mut rest = code;
        while let Some(at) = rest.find(server) {
            let before = code.len() - rest.len() + at;
            rest = &rest[at + server.len()..];
            let boundary_before = code[..before]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'));
            let boundary_after = rest.chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'));
            if boundary_before
                && boundary_after
                && !(rest.starts_with('.') || rest.starts_with("[\"") || rest.starts_with("['"))
            {
                return false;
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_tools_in_both_shapes() {
        let chat = definitions(ToolShape::Chat);
        assert_eq!(chat.len(), 4);
        assert_eq!(chat[3]["function"]["name"], "executeToolCode");
        assert_eq!(definitions(ToolShape::Responses)[1]["parameters"]["required"][0], "fileName");
        assert!(is_meta("readToolFile") && !is_meta("fs-read"));
    }

    #[test]
    fn calls_found_without_running_the_code() {
        let code = r#"const [a, b] = await Promise.all([fs.read_file({p: 1}), time["get-now"]({})]);
            const prefs = myfs.write({}); return a + b;"#;
        let calls = static_calls(code, &["fs", "time"]);
        assert_eq!(calls, [("fs", "read_file".to_owned()), ("time", "get-now".to_owned())]);
        assert!(calls_are_static(code, &["fs", "time"]));
        assert!(!calls_are_static("const s = fs; await s.write({})", &["fs"]));
        assert!(!calls_are_static("await fs[name]({})", &["fs"]));
    }
}

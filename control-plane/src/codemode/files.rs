//! Code Mode's virtual file system: one `.d.ts` per server (`servers/<client>.d.ts`) or per tool
//! (`servers/<client>/<tool>.d.ts`), generated from exactly the tools the caller may use, in a
//! stable order, and the three read-only meta-tools over it.

use super::typescript::{Types, is_identifier, jsdoc, property_name};
use crate::model::BindingLevel;
use serde_json::Value;
use std::collections::BTreeMap;
use warden_policy::mcp::McpTool;

/// The tree: path → content.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolFiles {
    files: BTreeMap<String, String>,
    /// `(server, tool)` → that tool's declaration, for `getToolDocs`.
    docs: BTreeMap<(String, String), String>,
}

/// `get-sum` → `GetSum`.
fn pascal(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// One tool's types and method signature.
struct Declaration {
    types: String,
    method: String,
}

/// `base` is unique within the server's file (`get-sum` and `get_sum` both make `GetSum`).
fn declare(tool: &McpTool, base: String) -> Declaration {
    let input = Types::new(&tool.input_schema).of(&tool.input_schema, 0);
    let output = match &tool.output_schema {
        Some(schema) => Types::new(schema).of(schema, 0),
        None => "unknown".into(),
    };
    let mut types = String::new();
    types.push_str(&format!("type {base}Input = {input};\n"));
    types.push_str(&format!("type {base}Output = {output};\n"));
    let description = Value::from(tool.description.clone());
    let doc = jsdoc(&serde_json::json!({"description": description}), "  ").unwrap_or_default();
    let method = format!("{doc}  {}(input: {base}Input): Promise<{base}Output>;\n", property_name(&tool.name));
    Declaration { types, method }
}

fn header(server: &str, example_tool: &str) -> String {
    let call = if is_identifier(example_tool) {
        format!("{server}.{example_tool}")
    } else {
        format!("{server}[{}]", Value::from(example_tool))
    };
    format!(
        "// Tools of the MCP server \"{server}\" that this key may use. In executeToolCode:\n\
         //   const result = await {call}({{ ... }});\n\
         // Each call returns the tool's structured result, else its text parsed as JSON, else the\n\
         // text; a tool error throws an Error with its message.\n\n"
    )
}

impl ToolFiles {
    /// The files for these servers and their tools (each list already filtered for the caller).
    pub fn new(servers: &[(String, Vec<McpTool>)], level: BindingLevel) -> ToolFiles {
        let mut out = ToolFiles::default();
        for (server, tools) in servers.iter().filter(|(_, t)| !t.is_empty()) {
            let mut tools: Vec<&McpTool> = tools.iter().collect();
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            let mut bases: Vec<String> = Vec::new();
            let declared: Vec<(&McpTool, Declaration)> = tools
                .iter()
                .map(|t| {
                    let pascal = pascal(&t.name);
                    let mut base = if pascal.starts_with(|c: char| c.is_ascii_digit()) || pascal.is_empty() {
                        format!("T{pascal}")
                    } else {
                        pascal
                    };
                    let stem = base.clone();
                    let mut n = 2;
                    while bases.contains(&base) {
                        base = format!("{stem}{n}");
                        n += 1;
                    }
                    bases.push(base.clone());
                    (*t, declare(t, base))
                })
                .collect();
            for (tool, d) in &declared {
                let docs = format!("{}declare const {server}: {{\n{}}};\n", d.types, d.method);
                out.docs.insert((server.clone(), tool.name.clone()), docs.clone());
                if level == BindingLevel::Tool {
                    // `-` becomes `_` in file names; a name that then collides gets a number.
                    let stem = format!("servers/{server}/{}", tool.name.replace('-', "_"));
                    let mut path = format!("{stem}.d.ts");
                    let mut n = 2;
                    while out.files.contains_key(&path) {
                        path = format!("{stem}_{n}.d.ts");
                        n += 1;
                    }
                    out.files.insert(path, header(server, &tool.name) + &docs);
                }
            }
            if level == BindingLevel::Server {
                let mut file = header(server, &tools[0].name);
                for (_, d) in &declared {
                    file.push_str(&d.types);
                }
                file.push_str(&format!("\ndeclare const {server}: {{\n"));
                for (_, d) in &declared {
                    file.push_str(&d.method);
                }
                file.push_str("};\n");
                out.files.insert(format!("servers/{server}.d.ts"), file);
            }
        }
        out
    }

    /// `listToolFiles`: the tree, two spaces per level.
    pub fn list(&self) -> String {
        let mut out = String::from("servers/\n");
        let mut last_dir = String::new();
        for path in self.files.keys() {
            let rest = path.trim_start_matches("servers/");
            match rest.split_once('/') {
                Some((dir, file)) => {
                    if dir != last_dir {
                        out.push_str(&format!("  {dir}/\n"));
                        last_dir = dir.to_owned();
                    }
                    out.push_str(&format!("    {file}\n"));
                }
                None => out.push_str(&format!("  {rest}\n")),
            }
        }
        out
    }

    /// `readToolFile`: a file, or lines `start..=end` of it (1-based); a bad name or range is an
    /// error message that says what is valid.
    pub fn read(&self, name: &str, start: Option<u64>, end: Option<u64>) -> Result<String, String> {
        let path = self.resolve(name)?;
        let content = &self.files[&path];
        let lines: Vec<&str> = content.lines().collect();
        let total = lines.len() as u64;
        let (from, to) = (start.unwrap_or(1), end.unwrap_or(total).min(total));
        if from < 1 || from > to {
            return Err(format!("invalid line range {from}..{to}: {path} has lines 1..{total}"));
        }
        Ok(lines[(from - 1) as usize..to as usize].join("\n") + "\n")
    }

    /// `getToolDocs`: one tool's declaration.
    pub fn docs(&self, server: &str, tool: &str) -> Result<String, String> {
        let found = self.docs.iter().find(|((s, t), _)| s.eq_ignore_ascii_case(server) && t.eq_ignore_ascii_case(tool));
        found.map(|(_, d)| d.clone()).ok_or_else(|| {
            let known: Vec<String> = self.docs.keys().map(|(s, t)| format!("{s}.{t}")).collect();
            format!("no tool '{tool}' on server '{server}'; available: {}", known.join(", "))
        })
    }

    /// Case-insensitive; `servers/` and `.d.ts` optional; `..` refused.
    fn resolve(&self, name: &str) -> Result<String, String> {
        if name.contains("..") {
            return Err("file names may not contain '..'".into());
        }
        let wanted = name.trim().trim_start_matches("./").trim_start_matches("servers/").trim_end_matches(".d.ts");
        let matches: Vec<&String> = self
            .files
            .keys()
            .filter(|p| p.trim_start_matches("servers/").trim_end_matches(".d.ts").eq_ignore_ascii_case(wanted))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(format!(
                "no file '{name}'; the files are: {}",
                self.files.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, description: &str, schema: Value) -> McpTool {
        McpTool { name: name.into(), description: description.into(), input_schema: schema, output_schema: None }
    }

    fn servers() -> Vec<(String, Vec<McpTool>)> {
        let add = json!({"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "number", "description": "First number"}, "b": {"type": "number"}}});
        vec![
            (
                "math".into(),
                vec![
                    tool("add", "Adds two numbers", add),
                    tool("get-sum", "", json!({"type": "object"})),
                    tool("get_sum", "", json!({"type": "object"})),
                ],
            ),
            ("empty".into(), vec![]),
        ]
    }

    #[test]
    fn server_files_declare_every_tool() {
        let files = ToolFiles::new(&servers(), BindingLevel::Server);
        assert_eq!(files.list(), "servers/\n  math.d.ts\n");
        let text = files.read("MATH", None, None).unwrap();
        assert!(text.contains("type AddInput = {\n  /** First number */\n  a: number;\n  b: number;\n};"), "{text}");
        assert!(
            text.contains(
                "declare const math: {\n  /** Adds two numbers */\n  add(input: AddInput): Promise<AddOutput>;"
            ),
            "{text}"
        );
        assert!(text.contains("\"get-sum\"(input: GetSumInput)"), "{text}");
        assert!(text.contains("get_sum(input: GetSum2Input)"), "{text}");
        assert_eq!(
            files.read("servers/math.d.ts", Some(1), Some(1)).unwrap(),
            "// Tools of the MCP server \"math\" that this key may use. In executeToolCode:\n"
        );
        assert!(files.read("math", Some(5), Some(2)).unwrap_err().contains("invalid line range"));
        assert!(files.read("../etc/passwd", None, None).is_err());
        assert!(files.read("nope", None, None).unwrap_err().contains("servers/math.d.ts"));
        assert!(files.docs("math", "add").unwrap().contains("add(input: AddInput)"));
        assert!(files.docs("math", "mul").unwrap_err().contains("math.add"));
    }

    #[test]
    fn tool_files_one_per_tool_and_stable() {
        let files = ToolFiles::new(&servers(), BindingLevel::Tool);
        assert_eq!(files.list(), "servers/\n  math/\n    add.d.ts\n    get_sum.d.ts\n    get_sum_2.d.ts\n");
        assert!(files.read("math/get_sum", None, None).unwrap().contains("math[\"get-sum\"]"));
        assert_eq!(files, ToolFiles::new(&servers(), BindingLevel::Tool));
    }
}

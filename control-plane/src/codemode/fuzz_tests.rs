//! A bounded fuzz pass over Code Mode's parsers of outside bytes, run by `make test` (2,000
//! cases each; `PROPTEST_CASES` for longer, `make fuzz`): the JSON-Schema → TypeScript converter
//! (schemas come from MCP servers) and the checks and type stripping a model-written program
//! goes through. None may panic or grow without bound.

use super::files::ToolFiles;
use super::sandbox::{MAX_CODE_BYTES, strip_types};
use super::typescript::Types;
use crate::model::BindingLevel;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use warden_policy::mcp::McpTool;

/// Schema-shaped JSON: the keywords the converter reads, nested, with hostile values mixed in
/// (`$ref` cycles and dangling refs, huge enums, wrong types where objects are expected).
fn schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": ["integer", "null"]})),
        Just(json!({"$ref": "#"})),
        Just(json!({"$ref": "#/$defs/loop"})),
        Just(json!({"$ref": "#/definitions/missing"})),
        Just(json!({"$ref": "http://elsewhere/x.json"})),
        Just(json!({"enum": (0..100).collect::<Vec<u32>>()})),
        Just(json!({"const": {"a": [1, "x", null]}})),
        Just(json!(true)),
        Just(json!(false)),
        Just(json!(17)),
        Just(json!({"type": "object", "properties": [], "required": "a"})),
        "[a-z\"\\\\\\u{0}-\\u{1f}\\u{2028}*/]{0,12}".prop_map(|s| json!({"description": s, "type": "string"})),
    ];
    leaf.prop_recursive(6, 256, 8, |inner| {
        let name = "[a-zA-Z0-9_$ \"'-]{0,10}";
        prop_oneof![
            prop::collection::vec((name, inner.clone()), 0..8).prop_map(|props| {
                let required: Vec<Value> = props.iter().map(|(n, _)| json!(n)).collect();
                let properties: Map<String, Value> = props.into_iter().collect();
                json!({"type": "object", "properties": properties, "required": required})
            }),
            inner.clone().prop_map(|items| json!({"type": "array", "items": items})),
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| json!({"anyOf": v})),
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| json!({"allOf": v})),
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| json!({"oneOf": v})),
            inner.clone().prop_map(|extra| json!({"type": "object", "additionalProperties": extra})),
            inner.prop_map(|def| json!({"$defs": {"loop": def}, "$ref": "#/$defs/loop", "nullable": true})),
        ]
    })
}

/// Text that is often almost a program: TypeScript and JavaScript fragments, spliced.
fn codeish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "const ",
        "let x",
        " = ",
        "await ",
        "fs.read({})",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "`",
        "${",
        "'",
        "\"",
        "\\",
        "//",
        "/*",
        "*/",
        "!",
        "=>",
        ";",
        "\n",
        "enum E { A }",
        "namespace N {",
        "type T = ",
        "<T>",
        "as any",
        "interface I {",
        "return ",
        "function f(",
        "class C {",
        "#x",
        "\u{0}",
        "\u{feff}",
        "é",
        "\u{2028}",
    ]);
    prop::collection::vec(pieces, 0..200).prop_map(|parts| parts.concat())
}

/// 2,000 cases each, or `PROPTEST_CASES` (`make fuzz`): an explicit count would override it.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_schema_becomes_bounded_typescript(root in schema()) {
        let typed = Types::new(&root).of(&root, 0);
        prop_assert!(!typed.is_empty());
        prop_assert!(typed.len() < 1 << 20, "{} bytes of TypeScript", typed.len());
    }

    #[test]
    fn any_tool_list_renders_its_files(schemas in prop::collection::vec((schema(), schema()), 0..4)) {
        let tools: Vec<McpTool> = schemas
            .into_iter()
            .enumerate()
            .map(|(i, (input, output))| McpTool {
                name: format!("tool_{i}"),
                description: "a tool */ with a comment breaker".into(),
                input_schema: input,
                output_schema: Some(output),
            })
            .collect();
        let servers = vec![("srv".to_owned(), tools)];
        for level in [BindingLevel::Server, BindingLevel::Tool] {
            let files = ToolFiles::new(&servers, level);
            prop_assert!(!files.list().is_empty());
            let _ = files.read("srv.d.ts", None, None);
            let _ = files.docs("srv", "tool_0");
        }
    }
}

#[test]
fn any_program_text_is_stripped_or_refused_never_a_panic() {
    // The stripper recurses per nesting level: the program thread's stack, as in the sandbox.
    let run = || {
        let mut runner =
            proptest::test_runner::TestRunner::new(ProptestConfig { cases: cases(), ..ProptestConfig::default() });
        runner
            .run(&codeish(), |code| {
                let _ = strip_types(&code);
                Ok(())
            })
            .map_err(|e| e.to_string())
    };
    let outcome = std::thread::Builder::new().stack_size(256 << 20).spawn(run).unwrap().join().unwrap();
    assert_eq!(outcome, Ok(()));
    let oversized = "x".repeat(MAX_CODE_BYTES + 1);
    assert!(strip_types(&oversized).unwrap_err().1.contains("at most 65536"));
}

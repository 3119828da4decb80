//! The access rule, the wire shapes and rendering.

use super::wire::defined_name;
use super::*;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

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
    allowed_tools(Grants::key(grants), clients, h).into_iter().map(|(c, t)| exposed_name(&c.name, &t.name)).collect()
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
    let responses =
        ToolOutput { content: "ok".into(), is_error: false, structured: None }.body(ExecuteFormat::Responses, &call);
    assert_eq!(responses, json!({"type": "function_call_output", "call_id": "c", "output": "ok"}));
    let structured = ToolOutput::of_result(&json!({"content": [], "structuredContent": {"t": 1}}));
    assert_eq!(structured.content, r#"{"t":1}"#);
}

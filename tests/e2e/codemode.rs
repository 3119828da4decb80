//! Code Mode through real Envoy: a code-mode MCP server's tools hide behind the four
//! meta-tools in chat bodies and on `/mcp`; the files show exactly the key's tools; a program
//! calls several tools at once, each call judged, priced and in the ledger; a tool the key may
//! not use throws inside the program with the gateway's reason.

use super::mcp::edge_clients;
use super::mcp_server::{names, python_client};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use warden_tests::stack::{MOCK_PROVIDER, Stack};

async fn meta(stack: &Stack, key: &str, name: &str, arguments: Value) -> Value {
    let call = json!({"id": "m", "type": "function", "function": {"name": name, "arguments": arguments.to_string()}});
    let response = reqwest::Client::new()
        .post(stack.gateway("/v1/mcp/tool/execute?format=chat"))
        .bearer_auth(key)
        .json(&call)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{name}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn code_mode_hides_tools_behind_meta_tools_and_governs_every_call() {
    let stack = Stack::start().await;
    let (_edge, edge) = edge_clients(&stack, json!({"is_code_mode_client": true}), true).await;
    let key = stack
        .create_key(json!({"name": "coder", "mcp_configs": [
            {"mcp_client_name": "edge", "tools_to_execute": ["add", "slow"]},
            {"mcp_client_name": "time", "tools_to_execute": ["*"]}]}))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(10)).await;

    // The chat carries time's tools and the meta-tools, not edge's.
    let http = reqwest::Client::new();
    let chat =
        json!({"model": format!("{MOCK_PROVIDER}/gpt-4o-mini"), "messages": [{"role": "user", "content": "hi"}]});
    let response =
        http.post(stack.gateway("/v1/chat/completions")).bearer_auth(&key.secret).json(&chat).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let tools: BTreeSet<String> = seen.as_array().unwrap().last().unwrap()["body"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    let expected = [
        "executeToolCode",
        "getToolDocs",
        "listToolFiles",
        "readToolFile",
        "time-convert_time",
        "time-get_current_time",
    ];
    assert_eq!(tools, expected.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>());

    // The files show exactly the key's edge tools.
    let listed = meta(&stack, &key.secret, "listToolFiles", json!({})).await;
    assert_eq!(listed["content"], "servers/\n  edge.d.ts\n", "{listed}");
    let file = meta(&stack, &key.secret, "readToolFile", json!({"fileName": "edge"})).await;
    let text = file["content"].as_str().unwrap();
    assert!(text.contains("add(input: AddInput): Promise<AddOutput>;"), "{text}");
    assert!(text.contains("slow(input: SlowInput)") && !text.contains("fail("), "{text}");
    let docs = meta(&stack, &key.secret, "getToolDocs", json!({"server": "edge", "tool": "add"})).await;
    assert!(docs["content"].as_str().unwrap().contains("type AddInput = {\n  a: number;\n  b: number;\n};"), "{docs}");
    let missing = meta(&stack, &key.secret, "readToolFile", json!({"fileName": "servers/github.d.ts"})).await;
    assert_eq!(missing["is_error"], true, "{missing}");

    // One program, two tools at once; each call priced like a direct one.
    let program = "const [a, b] = await Promise.all([edge.add({a: 1, b: 2}), edge.add({a: 3, b: 4})]);\n\
                   console.log('sum', a.result + b.result);\nreturn {a: a.result, b: b.result};";
    let ran = meta(&stack, &key.secret, "executeToolCode", json!({"code": program})).await;
    assert_eq!(
        ran["content"], "Console output:\nsum 10\n\nExecution completed successfully.\nReturn value: {\"a\":3,\"b\":7}",
        "{ran}"
    );
    let spend = format!("/api/usage?key_id={}&provider=mcp&model=edge-add", key.id);
    stack
        .wait_for("the program's two calls in the ledger", Duration::from_secs(20), || async {
            let (_, usage) = stack.admin_call(Method::GET, &spend, None).await;
            usage["totals"]["requests"] == 2 && usage["totals"]["cost_micros"] == 20_000
        })
        .await;
    // A tool the key may not use throws inside the program, with the gateway's reason.
    let denied = "try { await edge.fail({message: 'x'}); } catch (e) { return e.message; }";
    let ran = meta(&stack, &key.secret, "executeToolCode", json!({"code": denied})).await;
    assert_eq!(
        ran["content"],
        "Execution completed successfully.\nReturn value: \"MCP tool 'edge-fail' is not allowed for virtual key 'coder'\"",
        "{ran}"
    );
    // A failed program is an error result with its kind and hints.
    let broken = meta(&stack, &key.secret, "executeToolCode", json!({"code": "return edge.add({a: 1, b: 2}"})).await;
    let text = broken["content"].as_str().unwrap();
    assert_eq!(broken["is_error"], true);
    assert!(text.starts_with("Execution syntax error:") && text.contains("edge (edge-add, edge-slow)"), "{text}");
    // On /mcp too: the meta-tools instead of edge's tools, and a program runs.
    let code = r#"{"code": "return (await edge.add({a: 20, b: 22})).result;"}"#;
    let report =
        python_client(&stack, &key.secret, "modern", "/mcp", &["--call", "executeToolCode", "--args", code]).await;
    let offered = [
        "time-convert_time",
        "time-get_current_time",
        "listToolFiles",
        "readToolFile",
        "getToolDocs",
        "executeToolCode",
    ];
    assert_eq!(names(&report, "tools"), offered, "{report}");
    assert_eq!(report["call"]["text"], "Execution completed successfully.\nReturn value: 42", "{report}");
    // Limits trip through the gateway too, with their kind, and the next program runs.
    let settings = json!({"tool_execution_timeout": "2s"});
    let (status, body) = stack.admin_call(Method::PUT, "/api/settings/mcp/tool-manager-config", Some(settings)).await;
    assert_eq!(status, 200, "{body}");
    for (code, kind) in [("while (true) {}", "timeout"), ("let s = 'x'; while (true) { s = s + s; }", "limit")] {
        let ran = meta(&stack, &key.secret, "executeToolCode", json!({"code": code})).await;
        let text = ran["content"].as_str().unwrap();
        assert!(ran["is_error"] == true && text.starts_with(&format!("Execution {kind} error:")), "{ran}");
    }
    let ran = meta(&stack, &key.secret, "executeToolCode", json!({"code": "return 1 + 1;"})).await;
    assert_eq!(ran["content"], "Execution completed successfully.\nReturn value: 2");

    // Agent mode runs a program by itself when every tool it spells out is auto-executable.
    let auto = json!({"tools_to_auto_execute": ["add"]});
    let (status, body) = stack.admin_call(Method::PUT, &format!("/api/mcp/client/{edge}"), Some(auto)).await;
    assert_eq!(status, 200, "{body}");
    let agent_chat = || async {
        http.post(stack.gateway("/v1/chat/completions")).bearer_auth(&key.secret).json(&chat).send().await.unwrap()
    };
    stack
        .wait_for("agent mode for the key", Duration::from_secs(10), || async {
            agent_chat().await.headers().contains_key("x-warden-agent-steps")
        })
        .await;
    let program = |code: &str| json!({"id": "p1", "type": "function", "function": {"name": "executeToolCode", "arguments": json!({"code": code}).to_string()}});
    let script = |replies: Value| {
        let (http, stack) = (&http, &stack);
        async move {
            http.delete(stack.mock("/mock/requests")).send().await.unwrap();
            http.post(stack.mock("/mock/script")).json(&replies).send().await.unwrap();
        }
    };
    script(json!([{"tool_calls": [program("return (await edge.add({a: 2, b: 2})).result;")]}, {"content": "four"}]))
        .await;
    let answered = agent_chat().await;
    assert_eq!(answered.headers()["x-warden-agent-steps"], "2");
    let body: Value = answered.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "four", "{body}");
    let seen: Value = http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let result = &seen[1]["body"]["messages"].as_array().unwrap().last().unwrap()["content"];
    assert_eq!(result, "Execution completed successfully.\nReturn value: 4");
    // `slow` is not auto-executable: the program goes back to the caller unrun.
    script(json!([{"tool_calls": [program("return await edge.slow({seconds: 0});")]}])).await;
    let answered = agent_chat().await;
    assert_eq!(answered.headers()["x-warden-agent-steps"], "1");
    let body: Value = answered.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");

    // A program that hides its call from that check runs, but may call only auto tools.
    script(json!([{"tool_calls": [program("return await globalThis.edge.slow({seconds: 0});")]}, {"content": "held"}]))
        .await;
    let answered = agent_chat().await;
    assert_eq!(answered.headers()["x-warden-agent-steps"], "2");
    let seen: Value = http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let result =
        seen[1]["body"]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(result.contains("'edge-slow' is not auto-executable"), "{result}");

    // A key without a code-mode server may not call the meta-tools.
    let other = stack
        .create_key(json!({"name": "plain", "mcp_configs": [{"mcp_client_name": "time", "tools_to_execute": ["*"]}]}))
        .await;
    stack.wait_for_status(&other.secret, 200, Duration::from_secs(10)).await;
    let call = json!({"id": "m", "type": "function", "function": {"name": "listToolFiles", "arguments": "{}"}});
    let refused =
        http.post(stack.gateway("/v1/mcp/tool/execute")).bearer_auth(&other.secret).json(&call).send().await.unwrap();
    assert_eq!(refused.status(), 403);
}

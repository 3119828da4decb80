//! An admin change applies the moment its call returns, on every Envoy: a new key serves its
//! first request, a raised budget is spendable at once, and the refusal before it told the truth.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use warden_tests::stack::{MOCK_PROVIDER, Options, Stack};

fn hello() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]})
}

/// A chat with `secret` through the Envoy listening on `port`: its status and body.
async fn chat_on(client: &reqwest::Client, port: u16, secret: &str, body: &Value) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let resp = client.post(url).bearer_auth(secret).json(body).send().await.expect("Envoy answers");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// A key's creation and its first request on each Envoy.
struct FirstUse {
    key: usize,
    /// The creation's `x-warden-applied` header.
    applied: String,
    /// Status and body of the first request on each Envoy.
    answers: Vec<(u16, Value)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_keys_created_at_once_each_serve_their_first_request_on_every_envoy() {
    let stack = Stack::start_with(Options { envoys: 2, ..Options::default() }).await;
    let ports = stack.gateway_ports();
    // Fresh connections: each request may land on any worker of its Envoy.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let grant = json!([{"provider": MOCK_PROVIDER, "weight": 1.0, "allowed_models": ["*"], "key_ids": ["*"]}]);
    let firsts: Vec<FirstUse> = futures::stream::iter(0..50)
        .map(|i| {
            let (stack, client, ports, grant) = (&stack, client.clone(), ports.clone(), grant.clone());
            async move {
                // One in five has a budget: its first request needs a lease too.
                let mut body = json!({"name": format!("user-{i}"), "provider_configs": grant});
                if i % 5 == 0 {
                    body["budgets"] = json!([{"max_limit": 1.0, "reset_duration": "1d"}]);
                }
                let resp = stack
                    .http
                    .post(stack.admin("/api/governance/virtual-keys"))
                    .bearer_auth(warden_tests::stack::ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("admin API answers");
                assert_eq!(resp.status(), 200);
                let applied = resp.headers()["x-warden-applied"].to_str().unwrap().to_owned();
                let created: Value = resp.json().await.unwrap();
                let secret = created["virtual_key"]["value"].as_str().unwrap().to_owned();
                let mut answers = Vec::new();
                for port in ports {
                    answers.push(chat_on(&client, port, &secret, &hello()).await);
                }
                FirstUse { key: i, applied, answers }
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    for FirstUse { key, applied, answers } in firsts {
        assert!(applied.starts_with("2/2 envoys in "), "key {key}: x-warden-applied: {applied}");
        for (status, body) in answers {
            assert_eq!(status, 200, "key {key}'s first request: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_budget_is_spendable_the_moment_the_change_returns() {
    // One Envoy (two workers), so that it holds the whole small budget and its refusal is final.
    let stack = Stack::start().await;
    // Each request costs exactly $0.002; the budget holds two.
    let price = json!({"input_per_mtok": 0, "output_per_mtok": 0, "per_request": 2_000});
    let budget = |dollars: f64| json!([{"max_limit": dollars, "reset_duration": "1d"}]);
    let key =
        stack.create_key(json!({"name": "raise-me", "budgets": budget(0.004), "prices": {"gpt-4o-mini": price}})).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let port = stack.gateway_ports()[0];
    let mut served = 0;
    let refused = loop {
        match chat_on(&client, port, &key.secret, &hello()).await {
            (200, _) => served += 1,
            (402, body) => break body,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(served, 2, "two requests of $0.002 fill $0.004");
    // The refusal reports the spend that happened, not the budget's other shares.
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("0.006000 >= 0.004000 dollars (spent 0.004000 + this request's estimate 0.002000)"),
        "{message}"
    );

    let (status, _) = stack
        .admin_call(
            Method::PUT,
            &format!("/api/governance/virtual-keys/{}", key.id),
            Some(json!({"budgets": budget(10.0)})),
        )
        .await;
    assert_eq!(status, 200);
    // At once, on every Envoy.
    for port in stack.gateway_ports() {
        let (status, body) = chat_on(&client, port, &key.secret, &hello()).await;
        assert_eq!(status, 200, "port {port} right after the raise: {body}");
    }
    // And the lease now holds the new budget.
    let (_, leases) =
        stack.admin_call(Method::GET, &format!("/api/leases?counter=warden:budget:vk:{}:", key.id), None).await;
    let rows = leases["leases"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["max_micros"] == 10_000_000), "{leases}");
}

//! Governance through real Envoy (`--concurrency 2`): exact request limits under concurrency,
//! token limits from the provider's usage, concurrency slots, weighted routing, model RBAC,
//! `/v1/models`, teams, and the provider key kept out of sight.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use warden_tests::stack::{MOCK_PROVIDER_KEY, Stack};

/// `n` chat completions at once over fresh connections (so both workers serve them); the
/// statuses and the responses' headers and bodies.
async fn burst(stack: &Stack, key: &str, body: Value, n: usize) -> Vec<(u16, reqwest::header::HeaderMap, Value)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    futures::stream::iter(0..n)
        .map(|_| {
            let req = client
                .post(stack.gateway("/v1/chat/completions"))
                .bearer_auth(key)
                .header("x-warden-include-cost", "true")
                .json(&body);
            async move {
                let resp = req.send().await.expect("Envoy reachable");
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                (status, headers, resp.json().await.unwrap_or(Value::Null))
            }
        })
        .buffer_unordered(n)
        .collect()
        .await
}

fn hello() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]})
}

fn count(results: &[(u16, reqwest::header::HeaderMap, Value)], status: u16) -> usize {
    results.iter().filter(|(s, _, _)| *s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_limit_of_100_admits_exactly_100_of_300_concurrent_requests() {
    let stack = Stack::start().await;
    let key = stack
        .create_key(
            json!({"name": "hundred", "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h"}}),
        )
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let results = burst(&stack, &key.secret, hello(), 300).await;
    assert_eq!((count(&results, 200), count(&results, 429)), (100, 200));
    let (_, headers, body) = results.iter().find(|(s, _, _)| *s == 429).unwrap();
    assert_eq!(body["type"], "request_limited");
    assert_eq!(body["status_code"], 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("request limit exceeded"), "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3_000..=3_600).contains(&retry), "retry-after {retry}");
    assert_eq!(headers["x-ratelimit-limit-requests"], "100");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    // Every admitted request carries its headroom; together they count down 99..0.
    let mut remaining: Vec<u64> = results
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, h, _)| h["x-ratelimit-remaining-requests"].to_str().unwrap().parse().unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..100).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limit_trips_after_the_tokens_the_provider_reports() {
    let stack = Stack::start().await;
    let key = stack
        .create_key(json!({"name": "tokens", "rate_limit": {"token_max_limit": 40, "token_reset_duration": "1d"}}))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    // The mock reports 9 tokens for this chat (2 prompt + 7 completion); streams count alike.
    let mut used = 0;
    let mut served = 0;
    loop {
        let stream = served % 2 == 1;
        let mut body = hello();
        body["stream"] = json!(stream);
        let resp = stack
            .http
            .post(stack.gateway("/v1/chat/completions"))
            .bearer_auth(&key.secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["type"], "token_limited");
            assert!(body["error"]["message"].as_str().unwrap().contains(&format!("({used}/40,")), "{body}");
            break;
        }
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap(),
            (40u64.saturating_sub(used)).to_string()
        );
        let text = resp.text().await.unwrap();
        if stream {
            assert!(!text.contains("usage"), "the client did not ask for usage: {text}");
        }
        used += 9;
        served += 1;
        assert!(served < 10, "the token limit never tripped");
    }
    // 9, 18, 27, 36 < 40 admit; 45 ≥ 40 refuses: the crossing request was served.
    assert_eq!((served, used), (5, 45));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_requests_caps_requests_in_flight() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "two-at-once", "max_concurrent_requests": 2})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let slow =
        json!([{"delay_ms": 1500}, {"delay_ms": 1500}, {"delay_ms": 1500}, {"delay_ms": 1500}, {"delay_ms": 1500}]);
    stack.http.post(stack.mock("/mock/script")).json(&slow).send().await.unwrap();
    let results = burst(&stack, &key.secret, hello(), 5).await;
    assert_eq!(
        (count(&results, 200), count(&results, 429)),
        (2, 3),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let (_, headers, body) = results.iter().find(|(s, _, _)| *s == 429).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["error"]["code"].as_str()),
        (Some("rate_limited"), Some("concurrency_limited"))
    );
    assert_eq!(headers["retry-after"], "1");
    // Finished requests give their slots back.
    let (status, _) = stack.chat(&key.secret).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_half_and_half_split_within_statistical_bounds() {
    let stack = Stack::start().await;
    let provider = json!({"name": "mock-b", "base_url": stack.mock("/v1"), "keys": [{"id": "b", "value": "sk-provider-b-0123456789"}]});
    let (status, body) = stack.admin_call(Method::POST, "/api/providers", Some(provider)).await;
    assert_eq!(status, 201, "{body}");
    let all = |p: &str| json!({"provider": p, "weight": 0.5, "allowed_models": ["*"], "key_ids": ["*"]});
    let key = stack.create_key(json!({"name": "split", "provider_configs": [all("mock"), all("mock-b")]})).await;
    stack
        .wait_for("the second provider's secret", Duration::from_secs(10), || async {
            stack.config_dump("dynamic_active_secrets").await.contains("warden-provider-key/mock-b/b")
        })
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();
    let results = burst(&stack, &key.secret, hello(), 100).await;
    assert_eq!(count(&results, 200), 100);
    let seen: Value = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for request in seen.as_array().unwrap() {
        *by_key.entry(request["headers"]["authorization"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let a = by_key.get(&format!("Bearer {MOCK_PROVIDER_KEY}")).copied().unwrap_or(0);
    let b = by_key.get("Bearer sk-provider-b-0123456789").copied().unwrap_or(0);
    assert_eq!(a + b, 100, "{by_key:?}");
    // Binomial(100, 0.5): 50 ± 4 standard deviations.
    assert!((30..=70).contains(&a), "{a} of 100 went to the first provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_providers_are_refused_by_name_and_models_list_is_filtered() {
    let stack = Stack::start().await;
    let catalog = json!({"name": "catalog", "base_url": stack.mock("/v1"), "models": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"], "keys": [{"id": "c", "value": "sk-catalog-0123456789"}]});
    assert_eq!(stack.admin_call(Method::POST, "/api/providers", Some(catalog)).await.0, 201);
    let config = json!({"provider": "catalog", "weight": 1, "allowed_models": ["gpt-4o-mini", "regex:gpt-4\\.1.*", "o3-mini"], "blacklisted_models": ["o3-mini"], "key_ids": ["*"]});
    let key = stack.create_key(json!({"name": "narrow", "provider_configs": [config]})).await;
    stack
        .wait_for("the catalog secret", Duration::from_secs(10), || async {
            stack.config_dump("dynamic_active_secrets").await.contains("warden-provider-key/catalog/c")
        })
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let models: Value = stack
        .http
        .get(stack.gateway("/v1/models"))
        .bearer_auth(&key.secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["catalog/gpt-4.1", "catalog/gpt-4o-mini"]);

    let chat = |model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
        let req = stack.http.post(stack.gateway("/v1/chat/completions")).bearer_auth(&key.secret).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = chat("catalog/gpt-4.1").await;
    assert_eq!((status, body["model"].as_str()), (200, Some("gpt-4.1")), "{body}");
    let (status, body) = chat("o3-mini").await;
    assert_eq!((status, body["type"].as_str()), (403, Some("model_blocked")));
    assert_eq!(body["error"]["message"], "Model 'o3-mini' is not allowed for this virtual key");
    let (status, body) = chat("mock/gpt-4o-mini").await;
    assert_eq!((status, body["type"].as_str()), (403, Some("provider_blocked")));
    assert_eq!(body["error"]["message"], "Provider 'mock' is not allowed for this virtual key");

    let raw = |body: &'static str| {
        let req = stack.http.post(stack.gateway("/v1/chat/completions")).bearer_auth(&key.secret).body(body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = raw("this is not json").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("the request body is not valid JSON"));
    let (status, body) = raw(r#"{"messages":[]}"#).await;
    assert_eq!((status, body["error"]["message"].as_str()), (400, Some("the request body has no 'model'")));
    let huge = format!(r#"{{"model":"gpt-4o-mini","pad":"{}"}}"#, "x".repeat(5 << 20));
    let resp = stack
        .http
        .post(stack.gateway("/v1/chat/completions"))
        .bearer_auth(&key.secret)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("exceeds Warden's limit"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_limit_holds_across_its_keys() {
    let stack = Stack::start().await;
    let (status, team) = stack
        .admin_call(
            Method::POST,
            "/api/governance/teams",
            Some(json!({"name": "ml", "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}})),
        )
        .await;
    assert_eq!(status, 200, "{team}");
    let team_id = team["team"]["id"].as_str().unwrap();
    let a = stack.create_key(json!({"name": "a", "team_id": team_id})).await;
    let b = stack.create_key(json!({"name": "b", "team_id": team_id})).await;
    stack.wait_for_status(&b.secret, 200, Duration::from_secs(5)).await;
    for secret in [&a.secret, &b.secret, &a.secret] {
        let (status, body) = stack.chat(secret).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = stack.chat(&b.secret).await;
    assert_eq!((status, body["type"].as_str()), (429, Some("request_limited")));
    assert!(body["error"]["message"].as_str().unwrap().contains("team 'ml'"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_key_reaches_the_provider_and_nothing_else() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "k"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();
    let mut streamed = hello();
    streamed["stream"] = json!(true);
    assert_eq!(burst(&stack, &key.secret, streamed, 3).await.iter().filter(|r| r.0 == 200).count(), 3);
    let seen: Value = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen[0]["headers"]["authorization"], format!("Bearer {MOCK_PROVIDER_KEY}"));

    let (_, providers) = stack.admin_call(Method::GET, "/api/providers", None).await;
    assert_eq!(providers["providers"][0]["keys"], json!([{"id": "main"}]));
    let envoy_admin = |path: &str| format!("http://127.0.0.1:{}{path}", stack.envoy_admin_port);
    let mut seen_by_operators = String::new();
    for path in ["/config_dump?include_eds", "/stats", "/clusters"] {
        seen_by_operators += &stack.http.get(envoy_admin(path)).send().await.unwrap().text().await.unwrap();
    }
    assert!(seen_by_operators.contains("warden-provider/mock/main"), "the provider cluster is served over CDS");
    seen_by_operators += &providers.to_string();
    for log in ["warden.log", "envoy.log", "mock-provider.log"] {
        seen_by_operators += &std::fs::read_to_string(stack.log_dir().join(log)).unwrap_or_default();
    }
    assert!(!seen_by_operators.contains(MOCK_PROVIDER_KEY), "the provider key leaked");
    assert!(!seen_by_operators.contains(&key.secret), "the virtual key leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_wide_and_model_wide_limits_hold_for_every_key() {
    let stack = Stack::start().await;
    let limit = |n: u64| json!({"request_max_limit": n, "request_reset_duration": "1h"});
    let (status, body) =
        stack.admin_call(Method::PUT, "/api/providers/mock", Some(json!({"rate_limit": limit(5)}))).await;
    assert_eq!(status, 200, "{body}");
    let model = json!({"model_name": "gpt-4o", "rate_limit": limit(2)});
    let (status, body) = stack.admin_call(Method::POST, "/api/governance/model-configs", Some(model)).await;
    assert_eq!(status, 200, "{body}");
    let a = stack.create_key(json!({"name": "a"})).await;
    let b = stack.create_key(json!({"name": "b"})).await;
    stack.wait_for_status(&b.secret, 200, Duration::from_secs(5)).await;
    let chat = |secret: &str, model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
        let req = stack.http.post(stack.gateway("/v1/chat/completions")).bearer_auth(secret).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // gpt-4o: two a day for everyone, whichever key.
    assert_eq!(chat(&a.secret, "gpt-4o").await.0, 200);
    assert_eq!(chat(&b.secret, "gpt-4o").await.0, 200);
    let (status, body) = chat(&a.secret, "gpt-4o").await;
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("Model:gpt-4o"), "{body}");
    // The provider: five in all; two gpt-4o went through, so three more of anything.
    for secret in [&a.secret, &b.secret, &a.secret] {
        assert_eq!(chat(secret, "gpt-4o-mini").await.0, 200);
    }
    let (status, body) = chat(&b.secret, "gpt-4o-mini").await;
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("provider 'mock'"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_provider_becomes_a_verified_tls_cluster_that_envoy_accepts() {
    let stack = Stack::start().await;
    let provider = json!({"name": "openai", "base_url": "https://api.openai.com/v1",
                          "keys": [{"id": "prod", "value": "sk-openai-secret-0123456789"}]});
    assert_eq!(stack.admin_call(Method::POST, "/api/providers", Some(provider)).await.0, 201);
    stack
        .wait_for("the TLS cluster", Duration::from_secs(10), || async {
            stack.config_dump("dynamic_active_clusters").await.contains("warden-provider/openai/prod")
        })
        .await;
    let clusters = stack.config_dump("dynamic_active_clusters").await;
    assert!(clusters.contains("\"sni\": \"api.openai.com\""), "{clusters}");
    assert!(clusters.contains("ca-certificates.crt"), "the upstream certificate is verified");
    let (_, nodes) = stack.admin_call(Method::GET, "/api/envoy/nodes", None).await;
    let node = &nodes["nodes"][0];
    assert!(node["resources"]["clusters"]["nack"].is_null(), "{node}");
    assert!(node["resources"]["secrets"]["nack"].is_null(), "{node}");
    assert!(!stack.config_dump("").await.contains("sk-openai-secret-0123456789"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_governed_like_chats() {
    let stack = Stack::start().await;
    let key = stack
        .create_key(json!({"name": "embed", "rate_limit": {"token_max_limit": 1, "token_reset_duration": "1h"}}))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let embed = || {
        let body = json!({"model": "text-embedding-3-small", "input": "hello world"});
        stack.http.post(stack.gateway("/v1/embeddings")).bearer_auth(&key.secret).json(&body).send()
    };
    let first = embed().await.unwrap();
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() >= 1, "{body}");
    let second = embed().await.unwrap();
    assert_eq!(second.status(), 429, "the embedding's tokens were counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dollar_budget_holds_under_concurrency_and_every_answer_says_its_cost() {
    let stack = Stack::start().await;
    // $0.00005 a day. gpt-4o-mini at the default $0.15 / $0.60 per 1M tokens: the mock's 9-token
    // answer (2 in, 7 out) costs 4.5 µ$ → 5 µ$; with max_tokens 10 the reservation is larger.
    let key = stack
        .create_key(json!({"name": "fifty-micro-dollars", "budgets": [{"max_limit": 0.00005, "reset_duration": "1d"}]}))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let mut body = hello();
    body["max_tokens"] = json!(10);
    // Bursts until the budget is spent: a burst past this Envoy's lease is told to retry shortly
    // (429) while the leader renews it.
    let mut results = Vec::new();
    for _ in 0..20 {
        let round = burst(&stack, &key.secret, body.clone(), 40).await;
        let done = round.iter().any(|r| r.0 == 402);
        assert!(round.iter().all(|r| [200, 402, 429].contains(&r.0)), "{round:?}");
        let pending = round.iter().filter(|r| r.0 == 429);
        assert!(pending.clone().all(|r| r.2["error"]["code"] == "budget_lease_pending"), "{round:?}");
        results.extend(round);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let served: Vec<&reqwest::header::HeaderMap> = results.iter().filter(|r| r.0 == 200).map(|r| &r.1).collect();
    assert!(served.len() >= 4, "{} served", served.len());
    let mut spent = 0.0;
    for headers in &served {
        assert_eq!(headers["x-warden-cost-usd"], "0.000005");
        spent += 0.000005;
    }
    assert!(spent <= 0.00005 + 1e-12, "spent ${spent} of a $0.00005 budget");
    let (_, headers, refused) = results.iter().find(|r| r.0 == 402).expect("the budget ran out");
    assert_eq!(refused["type"], "budget_exceeded");
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("Budget exceeded: VK budget exceeded"));
    assert!(headers.contains_key("retry-after"));
    // Streams are settled too: the cost arrives as a closing SSE comment.
    let key =
        stack.create_key(json!({"name": "streamer", "budgets": [{"max_limit": 1.0, "reset_duration": "1d"}]})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let mut body = hello();
    body["stream"] = json!(true);
    let resp = stack
        .http
        .post(stack.gateway("/v1/chat/completions"))
        .bearer_auth(&key.secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-warden-budget-remaining-usd"].to_str().unwrap().len(), 8);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with(": x-warden-cost-usd 0.000005\n\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responses_api_is_governed_and_its_tokens_counted() {
    let stack = Stack::start().await;
    let key = stack
        .create_key(json!({"name": "responses", "rate_limit": {"token_max_limit": 25, "token_reset_duration": "1h"}}))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    // "Hello" is 2 input tokens; the answer's 7 words are 7 output tokens: 9 a request.
    let respond = |stream: bool| {
        let body = json!({"model": "gpt-4o-mini", "input": "Hello", "stream": stream});
        stack.http.post(stack.gateway("/v1/responses")).bearer_auth(&key.secret).json(&body).send()
    };
    let first = respond(false).await.unwrap();
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["usage"]["total_tokens"], 9);
    let streamed = respond(true).await.unwrap();
    assert_eq!(streamed.headers()["x-ratelimit-remaining-tokens"], "16");
    let events = streamed.text().await.unwrap();
    assert!(events.contains("response.completed"), "{events}");
    // 18 tokens used: the third request (18 < 25) passes, the fourth (27 ≥ 25) does not.
    assert_eq!(respond(false).await.unwrap().status(), 200);
    let refused = respond(false).await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "token_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_is_read_for_its_usage_and_passed_on_whole() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "large"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    // 30,000 embeddings make an answer of about 3 MB, above Envoy's default 1 MiB buffer.
    let inputs: Vec<String> = (0..30_000).map(|i| format!("text {i}")).collect();
    let body = json!({"model": "text-embedding-3-small", "input": inputs});
    let resp = stack
        .http
        .post(stack.gateway("/v1/embeddings"))
        .bearer_auth(&key.secret)
        .header("x-warden-include-cost", "true")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-warden-cost-usd"));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 30_000);
}

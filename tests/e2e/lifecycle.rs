use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use warden_tests::stack::{Options, Stack, stat};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_through_envoy() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "team-a"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;

    let (status, body) = stack.chat(&key.secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["usage"]["total_tokens"], 9);
    stack
        .wait_for("the policy gauges", Duration::from_secs(3), || async {
            stack.envoy_stat("wasmcustom.warden_policy_version").await >= Some(1)
                && stack.envoy_stat("wasmcustom.warden_policy_age_ms").await < Some(2_000)
        })
        .await;
    // Admissions reach Envoy's counter at each VM's next tick.
    stack
        .wait_for("the admitted counter", Duration::from_secs(3), || async {
            stack.envoy_stat("wasmcustom.warden_requests_admitted").await >= Some(1)
        })
        .await;

    stack.update_key(&key.id, json!({"is_active": false})).await;
    let took = stack.wait_for_status(&key.secret, 403, Duration::from_secs(1)).await;
    eprintln!("deactivation enforced on every worker after {took:?}");
    let (status, body) = stack.chat(&key.secret).await;
    assert_eq!(status, 403);
    assert_eq!(body["type"], "virtual_key_blocked");
    assert_eq!(body["error"]["message"], "Virtual key is inactive");

    stack.update_key(&key.id, json!({"is_active": true})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(1)).await;

    stack.delete_key(&key.id).await;
    stack.wait_for_status(&key.secret, 401, Duration::from_secs(1)).await;
    let (status, body) = stack.chat(&key.secret).await;
    assert_eq!(status, 401);
    assert_eq!(body["type"], "virtual_key_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_sees_neither_the_key_nor_any_x_warden_header() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "headers"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();

    let resp = stack
        .http
        .post(stack.gateway("/v1/chat/completions"))
        .header("x-bf-vk", &key.secret)
        .header("x-warden-vk-id", "forged-id")
        .header("x-warden-anything", "forged")
        .header("x-request-tag", "kept")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let headers = &seen[0]["headers"];
    let internal: Vec<&String> =
        headers.as_object().unwrap().keys().filter(|name| name.starts_with("x-warden-")).collect();
    assert!(internal.is_empty(), "x-warden-* reached the provider: {internal:?}");
    assert!(headers.get("x-bf-vk").is_none(), "{headers}");
    assert_eq!(headers["x-request-tag"], "kept");
    assert!(!seen.to_string().contains(&key.secret), "the secret reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_key_comes_from_sds_and_is_never_shown() {
    let provider_key = "sk-provider-secret-from-sds-0123";
    let stack = Stack::start_with(Options { provider_key: Some(provider_key.into()), ..Options::default() }).await;
    let key = stack.create_key(json!({"name": "with-provider-key"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();

    let (status, _) = stack.chat(&key.secret).await;
    assert_eq!(status, 200);
    let seen: Value = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen[0]["headers"]["authorization"], format!("Bearer {provider_key}"));
    assert!(!seen.to_string().contains(&key.secret));

    let dump_url = format!("http://127.0.0.1:{}/config_dump?include_eds", stack.envoy_admin_port);
    let dump = stack.http.get(dump_url).send().await.unwrap().text().await.unwrap();
    assert!(dump.contains("provider-key") && !dump.contains(provider_key), "the provider key is in the config dump");
    let stats_url = format!("http://127.0.0.1:{}/stats", stack.envoy_admin_port);
    assert!(!stack.http.get(stats_url).send().await.unwrap().text().await.unwrap().contains(provider_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_shape() {
    let stack = Stack::start().await;
    let expired_soon = chrono_in(2);
    let active = stack.create_key(json!({"name": "active"})).await;
    let expiring = stack.create_key(json!({"name": "expiring", "expires_at": expired_soon})).await;
    stack.wait_for_status(&active.secret, 200, Duration::from_secs(5)).await;

    type Headers<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(Headers, u16, &str)> = vec![
        (vec![], 401, "virtual_key_required"),
        (vec![("authorization", "Bearer sk-proj-provider-key".into())], 401, "virtual_key_required"),
        (vec![("authorization", "Bearer sk-bf-00000000-unknown".into())], 401, "virtual_key_not_found"),
        (vec![("x-api-key", active.secret.clone())], 200, ""),
        (vec![("x-goog-api-key", active.secret.clone())], 200, ""),
        (vec![("api-key", active.secret.clone())], 200, ""),
        (
            vec![("x-bf-vk", "sk-bf-unknown".into()), ("authorization", format!("Bearer {}", active.secret))],
            401,
            "virtual_key_not_found",
        ),
    ];
    for (headers, status, kind) in cases {
        let mut req = stack.http.get(stack.gateway("/v1/models"));
        for (name, value) in &headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{headers:?}");
        if status != 200 {
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["type"], kind, "{headers:?}");
            assert_eq!(body["error"]["type"], kind);
            assert_eq!(body["status_code"], status);
        }
    }

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, body) = stack.chat(&expiring.secret).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("virtual_key_expired")), "{body}");
    let (status, _) = stack.admin_call(Method::GET, "/api/governance/virtual-keys", None).await;
    assert_eq!(status, 200);
}

/// An RFC 3339 time `seconds` from now.
fn chrono_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_never_internal_and_its_envoy_control_headers_do_nothing() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "edge"})).await;
    stack.http.post(stack.mock("/mock/script")).json(&json!([{"delay_ms": 300}])).send().await.unwrap();
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();
    let resp = stack
        .http
        .post(stack.gateway("/v1/chat/completions"))
        .bearer_auth(&key.secret)
        // Honoured from an internal client, this would cut the 300 ms answer off with a 504.
        .header("x-envoy-upstream-rq-timeout-ms", "1")
        .header("x-forwarded-for", "10.1.2.3")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap().json().await.unwrap();
    let headers = &seen[0]["headers"];
    assert!(headers.get("x-envoy-upstream-rq-timeout-ms").is_none(), "{headers}");
    // The client's claim is kept as a claim; the peer Envoy saw is appended after it.
    let forwarded = headers["x-forwarded-for"].as_str().unwrap_or_default();
    assert_eq!(forwarded.split(',').next(), Some("10.1.2.3"), "{forwarded}");
    assert_eq!(forwarded.split(',').count(), 2, "{forwarded}");
}

/// The reproduction: a plaintext HTTP/2 POST to the ADS method, with no credential, was
/// answered 200. Now the port speaks only TLS with a node certificate, and Envoy's own xDS
/// connection is such a handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xds_port_answers_no_one_without_a_node_certificate() {
    let stack = Stack::start().await;
    let plain = reqwest::Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(5)).build().unwrap();
    let ads = format!(
        "http://127.0.0.1:{}/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        stack.xds_port
    );
    let answer = plain.post(&ads).header("content-type", "application/grpc").body(vec![0u8; 5]).send().await;
    assert!(answer.is_err(), "a plaintext ADS call was answered: {:?}", answer.map(|r| r.status()));
    let handshakes = stat(&stack.http, stack.envoy_admin_port, "cluster.warden_xds.ssl.handshake").await;
    assert!(handshakes.is_some_and(|n| n > 0), "Envoy's xDS connection is not TLS: {handshakes:?}");
    let (_, nodes) = stack.admin_call(Method::GET, "/api/envoy/nodes", None).await;
    assert!(nodes["nodes"].to_string().contains("e2e-node"), "{nodes}");
}

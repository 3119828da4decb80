//! The usage ledger end to end: every answered request lands in the control plane's store once,
//! also across a control plane killed with SIGKILL and restarted mid-load.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use warden_tests::stack::Stack;

/// `n` chats at once; how many were answered 200.
async fn chats(stack: &Stack, key: &str, n: usize) -> usize {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    futures::stream::iter(0..n)
        .map(|_| {
            let req = client.post(stack.gateway("/v1/chat/completions")).bearer_auth(key).json(&body);
            async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(16)
        .filter(|s| std::future::ready(*s == 200))
        .count()
        .await
}

async fn usage(stack: &Stack, query: &str) -> Value {
    let (status, body) = stack.admin_call(Method::GET, &format!("/api/usage?{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_in_the_ledger_once_across_a_control_plane_crash() {
    let mut stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "metered"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    let query = format!("key_id={}", key.id);

    let before = chats(&stack, &key.secret, 40).await;
    assert_eq!(before, 40);
    stack
        .wait_for("40 records in the ledger", Duration::from_secs(10), || async {
            usage(&stack, &query).await["totals"]["requests"] == 40
        })
        .await;
    let totals = usage(&stack, &query).await["totals"].clone();
    // The mock answers this chat with 2 prompt and 7 completion tokens; gpt-4o-mini's default
    // price makes that 4.5 µ$, rounded up to 5.
    assert_eq!((totals["input_tokens"].as_u64(), totals["output_tokens"].as_u64()), (Some(80), Some(280)));
    assert_eq!((totals["cost_micros"].as_u64(), totals["cost_usd"].as_str()), (Some(200), Some("0.000200")));

    // SIGKILL mid-load; Envoy keeps serving on its last policy and keeps the records.
    let during = {
        let load = chats(&stack, &key.secret, 60);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stack.kill_warden_now();
        };
        let (served, ()) = tokio::join!(load, kill);
        served
    };
    assert!(during > 0);
    let while_down = chats(&stack, &key.secret, 20).await;
    stack.start_warden().await;
    let served = (before + during + while_down) as u64;
    stack
        .wait_for("every served request in the ledger", Duration::from_secs(15), || async {
            usage(&stack, &query).await["totals"]["requests"].as_u64() == Some(served)
        })
        .await;
    // Resends after the restart were not counted twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let totals = usage(&stack, &query).await["totals"].clone();
    assert_eq!(totals["requests"].as_u64(), Some(served));
    assert_eq!(totals["cost_micros"].as_u64(), Some(served * 5));

    // The same figures for Prometheus, without a token and without key ids.
    let metrics = stack.http.get(stack.admin("/metrics")).send().await.unwrap().text().await.unwrap();
    let label = r#"{provider="mock",model="gpt-4o-mini"}"#;
    assert!(metrics.contains(&format!("warden_requests_total{label} {served}")), "{metrics}");
    assert!(metrics.contains(&format!("warden_cost_micro_dollars_total{label} {}", served * 5)), "{metrics}");
    assert!(!metrics.contains(&key.id));

    let by_model = usage(&stack, "group_by=model").await;
    assert_eq!(by_model["groups"][0]["group"], "gpt-4o-mini");
    let (status, _) = stack.admin_call(Method::GET, "/api/usage?from=yesterday", None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reads_its_own_quota_from_the_ledger() {
    let stack = Stack::start().await;
    let key = stack
        .create_key(json!({
            "name": "self-service",
            "budgets": [{"max_limit": 1.0, "reset_duration": "1d"}],
            "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h", "token_max_limit": 1000, "token_reset_duration": "1h"},
        }))
        .await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    assert_eq!(chats(&stack, &key.secret, 3).await, 3);
    let quota = |secret: Option<&str>| {
        let mut req = stack.http.get(stack.admin("/api/governance/virtual-keys/quota"));
        if let Some(s) = secret {
            req = req.header("x-bf-vk", s);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    stack
        .wait_for("the ledger", Duration::from_secs(10), || async {
            quota(Some(&key.secret)).await.1["rate_limits"]["requests"]["current_usage"] == 3
        })
        .await;
    let (status, body) = quota(Some(&key.secret)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["virtual_key_name"], "self-service");
    assert_eq!(body["budgets"][0]["current_usage"], "0.000015");
    assert_eq!(body["rate_limits"]["tokens"]["current_usage"], 27);
    assert_eq!(quota(None).await.0, 401);
    assert_eq!(quota(Some("sk-bf-not-a-key")).await.1["type"], "virtual_key_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_and_a_tampered_row_is_detected() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "audited"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    stack.update_key(&key.id, json!({"is_active": false})).await;
    // A refusal by the filter reaches the same log through the ledger.
    stack.wait_for_status(&key.secret, 403, Duration::from_secs(5)).await;
    stack
        .wait_for("the refusal in the audit log", Duration::from_secs(10), || async {
            let (_, log) = stack.admin_call(Method::GET, "/api/audit", None).await;
            log["entries"].as_array().is_some_and(|entries| {
                entries.iter().any(|e| {
                    e["actor"] == "filter"
                        && e["action"] == "denied virtual_key_blocked/virtual_key_inactive"
                        && e["target"] == format!("virtual key {}", key.id)
                })
            })
        })
        .await;
    let data = stack.log_dir().join("data");
    let verify = || {
        std::process::Command::new(warden_tests::warden_bin())
            .arg("audit-verify")
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("warden audit-verify")
    };
    let intact = verify();
    assert!(intact.status.success(), "{}", String::from_utf8_lossy(&intact.stderr));
    // The provider, the key, its update, and the refusals since.
    assert!(String::from_utf8_lossy(&intact.stdout).contains("audit log intact"));
    let tamper = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); \
                  db.execute(\"UPDATE audit_log SET status = 500 WHERE seq = 2\"); db.commit()";
    let done = std::process::Command::new(warden_tests::python_bin())
        .args(["-c", tamper])
        .arg(data.join("warden.db"))
        .status()
        .unwrap();
    assert!(done.success());
    let broken = verify();
    assert!(!broken.status.success());
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("broken at entry 2"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
}

//! Budgets across a fleet: several Envoys spend one dollar budget under leases from the
//! control plane, and the spend ends within the documented bound (docs/budgets.md, "The bound").

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use warden_tests::stack::{Key, Options, Stack};

/// Each request costs exactly this (a per-request price, no token price): 500 fill $1.00.
const PER_REQUEST_MICROS: u64 = 2_000;
const BUDGET_MICROS: u64 = 1_000_000;
const CLIENTS_PER_ENVOY: usize = 64;

/// A key with a daily budget of `dollars`, every request costing exactly [`PER_REQUEST_MICROS`].
async fn priced_key(stack: &Stack, name: &str, dollars: f64) -> Key {
    let price = json!({"input_per_mtok": 0, "output_per_mtok": 0, "per_request": PER_REQUEST_MICROS});
    let budgets = json!([{"max_limit": dollars, "reset_duration": "1d"}]);
    stack.create_key(json!({"name": name, "budgets": budgets, "prices": {"gpt-4o-mini": price}})).await
}

/// What a fleet did with its budget.
struct Spend {
    /// Answers the clients got, by status.
    served: u64,
    pending: u64,
    refused: u64,
    /// Requests the provider answered.
    upstream: u64,
}

/// `CLIENTS_PER_ENVOY` clients on every Envoy send chats until their Envoy says the budget is
/// spent (402), retrying when it says its lease is being renewed (429).
async fn spend_the_budget(stack: &Stack) -> Spend {
    let key = priced_key(stack, "fleet-dollar", 1.0).await;
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]});
    let deadline = Instant::now() + Duration::from_secs(120);
    let clients = stack.gateway_ports().into_iter().flat_map(|port| std::iter::repeat_n(port, CLIENTS_PER_ENVOY));
    let tallies: Vec<[u64; 3]> = futures::stream::iter(clients)
        .map(|port| {
            let (client, body, secret) = (client.clone(), body.clone(), key.secret.clone());
            async move {
                let mut tally = [0u64; 3];
                while Instant::now() < deadline {
                    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
                    let resp = client.post(url).bearer_auth(&secret).json(&body).send().await.expect("Envoy answers");
                    match resp.status().as_u16() {
                        200 => tally[0] += 1,
                        429 => {
                            tally[1] += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        402 => {
                            tally[2] += 1;
                            break;
                        }
                        other => panic!(
                            "unexpected {other} from the Envoy on port {port} {} ms before the deadline: {}",
                            deadline.saturating_duration_since(Instant::now()).as_millis(),
                            resp.text().await.unwrap_or_default()
                        ),
                    }
                }
                tally
            }
        })
        .buffer_unordered(usize::MAX)
        .collect()
        .await;
    let sum = |i: usize| tallies.iter().map(|t| t[i]).sum::<u64>();
    let seen = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap();
    let upstream: u64 = seen.headers()["x-mock-requests-total"].to_str().unwrap().parse().unwrap();
    assert_eq!(sum(2), tallies.len() as u64, "every client ended on a 402 before the deadline");

    // One ledger: every answer reaches the control plane's usage, once.
    let query = format!("/api/usage?key_id={}", key.id);
    let took = stack
        .wait_for("the ledger to hold every answer", Duration::from_secs(60), || async {
            let (_, usage) = stack.admin_call(Method::GET, &query, None).await;
            eprintln!("ledger {} of {upstream}", usage["totals"]["requests"]);
            usage["totals"]["requests"].as_u64() == Some(upstream)
        })
        .await;
    eprintln!("fleet: the ledger held every answer {took:?} after the load");
    let (_, usage) = stack.admin_call(Method::GET, &query, None).await;
    assert_eq!(usage["totals"]["cost_micros"].as_u64(), Some(upstream * PER_REQUEST_MICROS));
    Spend { served: sum(0), pending: sum(1), refused: sum(2), upstream }
}

fn check(what: &str, envoys: u64, spend: &Spend) {
    let spent = spend.upstream * PER_REQUEST_MICROS;
    let over = spent as f64 / BUDGET_MICROS as f64 - 1.0;
    eprintln!(
        "fleet ({what}): spent ${:.6} of $1.00 ({:+.2} %): {} served, {} told to retry while leases renewed, {} refused",
        spent as f64 / 1e6,
        over * 100.0,
        spend.served,
        spend.pending,
        spend.refused,
    );
    assert_eq!(spend.served, spend.upstream, "every answer the clients got came from the provider");
    // The bound (docs/budgets.md): no overshoot while responses cost what was reserved.
    assert!(spent <= BUDGET_MICROS, "spent {spent} µ$ of {BUDGET_MICROS}");
    // And leases strand little: each Envoy less than one request's cost.
    assert!(spent + envoys * PER_REQUEST_MICROS > BUDGET_MICROS, "only {spent} µ$ of {BUDGET_MICROS} spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_envoys_spend_one_dollar_budget_and_not_a_cent_more() {
    let _alone = warden_tests::heavy_or_timed().await;
    let stack = Stack::start_with(Options { envoys: 3, budget_admission: Some("reserve"), ..Options::default() }).await;
    let spend = spend_the_budget(&stack).await;
    check("3 Envoys, 1 control plane", 3, &spend);
    let (_, leases) = stack.admin_call(Method::GET, "/api/leases?counter=warden:budget:vk:", None).await;
    let rows = leases["leases"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "one lease per Envoy: {leases}");
    assert_eq!(rows.iter().map(|r| r["granted"].as_u64().unwrap()).sum::<u64>(), BUDGET_MICROS, "{leases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_on_postgresql_share_the_budget_and_lose_no_usage_when_one_dies() {
    let _alone = warden_tests::heavy_or_timed().await;
    let url = tokio::task::spawn_blocking(warden_test_support::fresh_database).await.unwrap();
    let options = Options {
        envoys: 3,
        control_planes: 2,
        database_url: Some(url),
        budget_admission: Some("reserve"),
        ..Options::default()
    };
    let stack = Stack::start_with(options).await;
    // The second control plane dies by SIGKILL a moment into the load: its Envoys' calls go to
    // the first, and what it had acknowledged is in the shared database.
    let replica = stack.replicas[0].proc.pid();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let _ = std::process::Command::new("kill").args(["-KILL", &replica.to_string()]).status();
    });
    let spend = spend_the_budget(&stack).await;
    killer.await.unwrap();
    check("3 Envoys, 2 control planes on PostgreSQL, one killed", 3, &spend);
    // Both control planes served lease and usage calls before one died.
    let mut served_by = [0u64; 2];
    for admin_port in std::iter::once(stack.envoy_admin_port).chain(stack.fleet.iter().map(|e| e.admin_port)) {
        let clusters = stack.http.get(format!("http://127.0.0.1:{admin_port}/clusters")).send().await.unwrap();
        let text = clusters.text().await.unwrap();
        for (i, port) in [stack.xds_port, stack.replicas[0].xds_port].into_iter().enumerate() {
            let prefix = format!("warden_xds::127.0.0.1:{port}::rq_success::");
            served_by[i] += text.lines().find_map(|l| l.strip_prefix(&prefix)?.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    assert!(served_by.iter().all(|&n| n > 0), "calls answered by each control plane: {served_by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_control_plane_an_envoy_spends_its_lease_then_refuses() {
    let mut stack =
        Stack::start_with(Options { envoys: 2, budget_admission: Some("reserve"), ..Options::default() }).await;
    // Both Envoys have called in (a heartbeat at start): the control plane shares between them.
    let key = priced_key(&stack, "lease-then-deny", 0.1).await;
    let query = format!("/api/leases?counter=warden:budget:vk:{}:", key.id);
    let (_, leases) = stack.admin_call(Method::GET, &query, None).await;
    let mine = leases["leases"].as_array().unwrap().iter().find(|l| l["node"] == "e2e-node").unwrap();
    let granted = mine["granted"].as_u64().unwrap();
    assert!(granted > 0 && granted < 100_000, "a share of the budget, not all of it: {leases}");
    stack.kill_warden_now();
    // Three heartbeats without the control plane.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let mut served = 0;
    let refusal = loop {
        let (status, body) = stack.chat(&key.secret).await;
        if status != 200 {
            break (status, body);
        }
        served += 1;
        assert!(served <= 50, "served past the whole budget");
    };
    assert_eq!(served, granted / PER_REQUEST_MICROS, "exactly what the lease holds");
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "budget_unavailable");
    let without = stack.envoy_stat("wasmcustom.warden_decisions_without_control_plane").await.unwrap_or(0);
    assert_eq!(without, served + 1, "every decision taken without the control plane is counted");
    assert!(stack.envoy_stat("wasmcustom.warden_budget_unleased_decisions").await.unwrap_or(0) >= 1);

    // Back again: the lease is renewed and the key spends the rest.
    stack.kill_warden();
    stack.start_warden().await;
    stack
        .wait_for("a renewed lease", Duration::from_secs(15), || async { stack.chat(&key.secret).await.0 == 200 })
        .await;
}

/// Chats until the budget refuses with 402, retrying while leases are renewed; returns how many
/// were served.
async fn chat_until_spent(stack: &Stack, secret: &str) -> u64 {
    let mut served = 0;
    for _ in 0..200 {
        match stack.chat(secret).await {
            (200, _) => served += 1,
            (429, _) => tokio::time::sleep(Duration::from_millis(100)).await,
            (402, _) => return served,
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    panic!("the budget never ran out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_budget_usage_zeroes_the_spend_and_keeps_the_window() {
    let stack = Stack::start().await;
    let key = priced_key(&stack, "resettable", 0.006).await;
    assert_eq!(chat_until_spent(&stack, &key.secret).await, 3);
    let (status, updated) = stack
        .admin_call(
            Method::PUT,
            &format!("/api/governance/virtual-keys/{}", key.id),
            Some(json!({"reset_budget_usage": true})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let budget = &updated["virtual_key"]["budgets"][0];
    assert!(budget["last_reset"].is_string(), "{updated}");
    stack.wait_for_leases(&format!("warden:budget:vk:{}:1d@", key.id)).await;
    assert_eq!(chat_until_spent(&stack, &key.secret).await, 3, "the whole budget again");
    // The self-service quota counts from the reset, in the same window: three answers, once the
    // ledger has them.
    let quota = || async {
        let req = stack.http.get(stack.admin("/api/governance/virtual-keys/quota")).header("x-bf-vk", &key.secret);
        req.send().await.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    stack
        .wait_for("the quota to count from the reset", Duration::from_secs(10), || async {
            quota().await["budgets"][0]["current_usage"] == "0.006000"
        })
        .await;
    // Sent again without `last_reset`, the budget keeps its reset.
    let body = json!({"budgets": [{"max_limit": 0.008, "reset_duration": "1d"}]});
    stack.update_key(&key.id, body).await;
    let (_, fetched) = stack.admin_call(Method::GET, &format!("/api/governance/virtual-keys/{}", key.id), None).await;
    assert_eq!(fetched["virtual_key"]["budgets"][0]["last_reset"], budget["last_reset"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_envoys_admit_a_request_limit_exactly() {
    let stack = Stack::start_with(Options { envoys: 3, budget_admission: Some("reserve"), ..Options::default() }).await;
    let limit = json!({"request_max_limit": 300, "request_reset_duration": "1h"});
    let key = stack.create_key(json!({"name": "fleet-requests", "rate_limit": limit})).await;
    stack.wait_for_leases(&format!("warden:rl:vk:{}:", key.id)).await;
    stack.http.delete(stack.mock("/mock/requests")).send().await.unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
    let deadline = Instant::now() + Duration::from_secs(60);
    let clients = stack.gateway_ports().into_iter().flat_map(|port| std::iter::repeat_n(port, CLIENTS_PER_ENVOY));
    let served: Vec<u64> = futures::stream::iter(clients)
        .map(|port| {
            let (client, body, secret) = (client.clone(), body.clone(), key.secret.clone());
            async move {
                let mut served = 0;
                while Instant::now() < deadline {
                    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
                    let resp = client.post(url).bearer_auth(&secret).json(&body).send().await.expect("Envoy answers");
                    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    match (resp.status().as_u16(), retry.as_deref()) {
                        (200, _) => served += 1,
                        // This Envoy's share is being renewed.
                        (429, Some("1")) => tokio::time::sleep(Duration::from_millis(50)).await,
                        (429, _) => break,
                        (other, _) => panic!("unexpected {other}"),
                    }
                }
                served
            }
        })
        .buffer_unordered(usize::MAX)
        .collect()
        .await;
    let seen = stack.http.get(stack.mock("/mock/requests")).send().await.unwrap();
    let upstream: u64 = seen.headers()["x-mock-requests-total"].to_str().unwrap().parse().unwrap();
    eprintln!("fleet: a limit of 300 requests across 3 Envoys admitted {upstream}");
    assert_eq!(served.iter().sum::<u64>(), upstream);
    assert_eq!(upstream, 300, "exactly the limit, across the fleet");
}

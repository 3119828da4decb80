use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use warden_tests::stack::{Key, Stack};

const KEYS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_stay_correct() {
    let stack = Stack::start().await;
    let start = Instant::now();
    let keys: Vec<Key> = futures::stream::iter(0..KEYS)
        .map(|i| stack.create_key(json!({"name": format!("key-{i:05}")})))
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!("created {KEYS} keys in {:?}", start.elapsed());

    let (_, nodes) = stack.admin_call(Method::GET, "/api/envoy/nodes", None).await;
    // The keys, the mock provider, the default prices and the (empty) MCP catalog's index.
    assert_eq!(nodes["policy_records"], KEYS + 1 + warden_policy::pricing::DEFAULT_PRICES.len() + 1);
    for key in keys.iter().step_by(KEYS / 25) {
        stack.wait_for_status(&key.secret, 200, Duration::from_secs(10)).await;
    }
    let revoked = &keys[KEYS / 2];
    stack.update_key(&revoked.id, json!({"is_active": false})).await;
    let took = stack.wait_for_status(&revoked.secret, 403, Duration::from_secs(1)).await;
    eprintln!("with {KEYS} keys, a deactivation reached every worker in {took:?}");
    assert_eq!(stack.status_for(&keys[KEYS / 2 + 1].secret).await, 200);
    assert_eq!(stack.status_for(&keys[KEYS - 1].secret).await, 200);
    assert_eq!(stack.status_for("sk-bf-not-one-of-the-ten-thousand").await, 401);
}

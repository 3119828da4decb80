use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use warden_tests::stack::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_keeps_enforcing_without_the_control_plane_and_resyncs_after_its_restart() {
    let mut stack = Stack::start().await;
    let good = stack.create_key(json!({"name": "good"})).await;
    let blocked = stack.create_key(json!({"name": "blocked", "is_active": false})).await;
    stack.wait_for_status(&good.secret, 200, Duration::from_secs(5)).await;
    stack.wait_for_status(&blocked.secret, 403, Duration::from_secs(1)).await;

    stack.kill_warden();
    for _ in 0..10 {
        assert_eq!(stack.status_for(&good.secret).await, 200);
        assert_eq!(stack.status_for(&blocked.secret).await, 403);
        assert_eq!(stack.status_for("sk-bf-never-created-key").await, 401);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stack.start_warden().await;
    stack.update_key(&good.id, json!({"is_active": false})).await;
    let took = stack.wait_for_status(&good.secret, 403, Duration::from_secs(10)).await;
    eprintln!("after the control plane's restart, a change arrived in {took:?}");
    let fresh = stack.create_key(json!({"name": "fresh"})).await;
    stack.wait_for_status(&fresh.secret, 200, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_filter_settings_are_nacked_and_the_old_ones_keep_serving() {
    let mut stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "k"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;

    // The admin API refuses settings the filter would refuse…
    let bad = json!({"control_plane_cluster": "warden_xds", "staleness_bound_ms": 0});
    let (status, body) = stack.admin_call(Method::PUT, "/api/envoy/filter-settings", Some(bad.clone())).await;
    assert_eq!((status, body["status_code"].clone()), (400, json!(400)), "{body}");
    // …so they can only come from elsewhere (a store written by hand, an older control plane):
    // the filter refuses them and Envoy NACKs them.
    stack.kill_warden();
    let database = stack.log_dir().join("data/warden.db");
    let script = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); \
                  db.execute('INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)', ('filter_settings', sys.argv[2])); \
                  db.commit()";
    let written = std::process::Command::new(warden_tests::python_bin())
        .args(["-c", script])
        .arg(&database)
        .arg(bad.to_string())
        .status()
        .expect("python runs");
    assert!(written.success());
    stack.start_warden().await;
    let (_, settings) = stack.admin_call(Method::GET, "/api/envoy/filter-settings", None).await;
    let bad_version = settings["filter_version"].as_str().unwrap_or_default().to_owned();
    stack
        .wait_for("the NACK", Duration::from_secs(10), || async {
            let (_, nodes) = stack.admin_call(Method::GET, "/api/envoy/nodes", None).await;
            let nack = &node(&nodes)["resources"]["filter"]["nack"];
            nack.is_object() && (bad_version.is_empty() || nack["version"] == bad_version.as_str())
        })
        .await;
    assert!(stack.envoy_stat("extension_config_discovery.http_filter.warden.update_rejected").await >= Some(1));
    for _ in 0..6 {
        assert_eq!(stack.status_for(&key.secret).await, 200);
    }
    // Revocation still flows while the bad settings are parked.
    stack.update_key(&key.id, json!({"is_active": false})).await;
    stack.wait_for_status(&key.secret, 403, Duration::from_secs(1)).await;

    let (status, body) = stack
        .admin_call(Method::PUT, "/api/envoy/filter-settings", Some(json!({"control_plane_cluster": "warden_xds"})))
        .await;
    assert_eq!(status, 200);
    let good_version = body["filter_version"].as_str().unwrap().to_owned();
    stack
        .wait_for("the ACK", Duration::from_secs(10), || async {
            let (_, nodes) = stack.admin_call(Method::GET, "/api/envoy/nodes", None).await;
            node(&nodes)["resources"]["filter"]["acked_version"] == good_version.as_str()
                && node(&nodes)["resources"]["filter"]["nack"].is_null()
        })
        .await;
}

fn node(nodes: &Value) -> &Value {
    nodes["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == "e2e-node")).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_envoy_is_fully_governed_again() {
    let mut stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "k"})).await;
    let blocked = stack.create_key(json!({"name": "b", "is_active": false})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;

    stack.kill_envoy();
    stack.start_envoy().await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
    assert_eq!(stack.status_for(&blocked.secret).await, 403);
    assert_eq!(stack.status_for("sk-bf-not-a-key-at-all").await, 401);
    stack.update_key(&key.id, json!({"is_active": false})).await;
    stack.wait_for_status(&key.secret, 403, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_flow_again_after_the_stream_holding_vm_crashes() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "k"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;

    // Only the VM holding the policy stream panics; the others answer 409. Connections held
    // open together are spread over both workers (exact balance), so one reaches the leader.
    let crash = stack
        .wait_for("the leader VM to crash", Duration::from_secs(10), || async {
            let attempts = (0..4).map(|_| async {
                let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
                let resp = client.get(stack.gateway("/v1/models")).header("x-warden-test-crash", "1").send().await;
                resp.map(|r| r.status().as_u16())
            });
            futures::future::join_all(attempts).await.into_iter().any(|status| !matches!(status, Ok(409)))
        })
        .await;
    eprintln!("leader crashed after {crash:?} of trying");
    let envoy_log = stack.envoy.as_ref().unwrap();
    stack
        .wait_for("the panic in Envoy's log", Duration::from_secs(5), || async {
            envoy_log.log().contains("panicked at")
        })
        .await;

    stack.update_key(&key.id, json!({"is_active": false})).await;
    let took = stack.wait_for_status(&key.secret, 403, Duration::from_secs(5)).await;
    eprintln!("after the crash, a change reached every worker in {took:?}");
    stack.update_key(&key.id, json!({"is_active": true})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_older_than_the_staleness_bound_is_refused() {
    let mut stack = Stack::start_with(Options { staleness_bound_ms: Some(2_000), ..Options::default() }).await;
    let key = stack.create_key(json!({"name": "k"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;

    stack.kill_warden();
    stack.wait_for_status(&key.secret, 503, Duration::from_secs(6)).await;
    let (status, body) = stack.chat(&key.secret).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "policy_stale", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("bound 2000 ms"));

    stack.start_warden().await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(10)).await;
}

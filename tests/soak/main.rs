//! The soak: mixed load on a fleet (2 Envoys, 2 control planes on PostgreSQL) while a schedule
//! SIGKILLs and restarts each `warden` replica, an Envoy and PostgreSQL in turn. `make test`
//! runs one round of the four faults (about a minute); `make soak` runs rounds for
//! `WARDEN_SOAK_SECONDS` (default 300).
//!
//! It asserts what a user of the gateway relies on:
//! - the ledger holds every answered chat, stream and tool call exactly once;
//! - a budget is never overspent;
//! - chats and streams never get a 5xx; tool calls and admin writes get one only while the
//!   replica serving them, or the database, is down (the documented fail modes);
//! - every killed process is back and serving within [`RECOVERY_BOUND`].

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_tests::mcp_server_bin;
use warden_tests::stack::{Key, Options, Stack};

/// The longest a killed process may take to serve again (docs/operations.md, "The soak").
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// After a fault ends, a 5xx of what depended on it still counts as that fault's.
const SETTLE: Duration = Duration::from_secs(5);
/// The budget key's price per request and budget: 25 requests' worth.
const PER_REQUEST_MICROS: u64 = 2_000;
const BUDGET_MICROS: u64 = 50_000;
/// A tool call's price.
const TOOL_MICROS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL the first `warden` (whose admin API the test reads), then restart it.
    FirstControlPlane,
    /// SIGKILL the second `warden`, then restart it.
    SecondControlPlane,
    /// Drain the second Envoy, SIGKILL it, restart it.
    Envoy,
    /// SIGKILL PostgreSQL; its supervisor restarts it.
    Database,
}

const SCHEDULE: [Fault; 4] = [Fault::SecondControlPlane, Fault::Database, Fault::Envoy, Fault::FirstControlPlane];

/// When each fault was in force (from the kill to the restarted process serving).
#[derive(Default)]
struct Windows(Mutex<Vec<(Fault, Instant, Option<Instant>)>>);

impl Windows {
    fn open(&self, fault: Fault) {
        self.0.lock().unwrap().push((fault, Instant::now(), None));
    }
    fn close(&self) {
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            last.2 = Some(Instant::now());
        }
    }
    /// Whether `at` falls in a window of one of `faults`, or within [`SETTLE`] after it.
    fn covers(&self, at: Instant, faults: &[Fault]) -> bool {
        self.0.lock().unwrap().iter().any(|(fault, start, end)| {
            faults.contains(fault) && at >= *start && end.is_none_or(|end| at <= end + SETTLE)
        })
    }
}

/// What one kind of load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    spent: AtomicU64,
    unreachable: AtomicU64,
    /// 5xx answers: when, which status, what body.
    errors: Mutex<Vec<(Instant, u16, String)>>,
}

impl Tally {
    fn count(&self, status: u16, body: String) {
        match status {
            200 | 201 | 204 => self.ok.fetch_add(1, Ordering::Relaxed),
            429 => self.limited.fetch_add(1, Ordering::Relaxed),
            402 => self.spent.fetch_add(1, Ordering::Relaxed),
            _ => {
                self.errors.lock().unwrap().push((Instant::now(), status, body));
                0
            }
        };
    }
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
}

struct Load {
    stop: AtomicBool,
    /// The second Envoy is being drained or is down: send it nothing.
    second_envoy_out: AtomicBool,
    gateways: Vec<u16>,
    admin_ports: Vec<u16>,
    http: reqwest::Client,
}

impl Load {
    fn ports(&self) -> Vec<u16> {
        let out = self.second_envoy_out.load(Ordering::Relaxed);
        self.gateways.iter().enumerate().filter(|(i, _)| *i == 0 || !out).map(|(_, p)| *p).collect()
    }
}

/// Sends `body` to `path` on each live Envoy in turn until the load stops, counting each answer
/// in `tally`; a budget client stops at its 402.
async fn drive(load: Arc<Load>, tally: Arc<Tally>, path: &'static str, secret: String, body: Value, stream: bool) {
    let mut turn = 0usize;
    while !load.stop.load(Ordering::Relaxed) {
        let ports = load.ports();
        let port = ports[turn % ports.len()];
        turn += 1;
        let url = format!("http://127.0.0.1:{port}{path}");
        match load.http.post(url).bearer_auth(&secret).json(&body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                // A stream counts as answered only when it ended properly.
                let status = if stream && status == 200 && !text.contains("[DONE]") { 599 } else { status };
                tally.count(status, text);
                if status == 402 {
                    return;
                }
                if status == 429 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(_) => {
                tally.unreachable.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Admin writes through either control plane, alternating.
async fn administer(load: Arc<Load>, tally: Arc<Tally>, key_id: String) {
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let port = load.admin_ports[n as usize % load.admin_ports.len()];
        let url = format!("http://127.0.0.1:{port}/api/governance/virtual-keys/{key_id}");
        let sent = load
            .http
            .request(Method::PUT, url)
            .bearer_auth(warden_tests::stack::ADMIN_TOKEN)
            .json(&json!({"description": format!("soak write {n}")}))
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                tally.count(status, resp.text().await.unwrap_or_default());
            }
            Err(_) => {
                tally.unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `fault` and waits until everything it touched serves again; returns how long that took.
async fn inject(stack: &mut Stack, load: &Load, windows: &Windows, fault: Fault, round: usize) -> Duration {
    let postgres = warden_test_support::Postgres::shared();
    let probe = stack.create_key(json!({"name": format!("probe-{round}")})).await;
    if fault == Fault::Envoy {
        // Its unreported usage would die with it: drained first, the ledger check stays exact.
        load.second_envoy_out.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    windows.open(fault);
    let killed = Instant::now();
    match fault {
        Fault::FirstControlPlane => {
            stack.kill_warden();
            stack.start_warden().await;
        }
        Fault::SecondControlPlane => {
            stack.restart_replica(0).await;
        }
        Fault::Envoy => {
            stack.restart_fleet_envoy(0).await;
            load.second_envoy_out.store(false, Ordering::Relaxed);
        }
        Fault::Database => {
            postgres.kill_server();
            stack
                .wait_for("PostgreSQL back", RECOVERY_BOUND, || async {
                    let ready = tokio::task::spawn_blocking(|| warden_test_support::Postgres::shared().is_ready());
                    ready.await.unwrap_or(false)
                })
                .await;
        }
    }
    // Serving again: an admin read through each control plane and a request through each Envoy.
    let key = probe;
    stack
        .wait_for("every process serving again", RECOVERY_BOUND, || async {
            let mut ok = true;
            for port in std::iter::once(stack.admin_port).chain(stack.replicas.iter().map(|r| r.admin_port)) {
                let url = format!("http://127.0.0.1:{port}/api/governance/virtual-keys/{}", key.id);
                let resp = stack.http.get(url).bearer_auth(warden_tests::stack::ADMIN_TOKEN).send().await;
                ok &= resp.is_ok_and(|r| r.status() == 200);
                // A restarted replica serves tool calls once its hub has its MCP server again.
                let url = format!("http://127.0.0.1:{port}/api/mcp/clients");
                let resp = stack.http.get(url).bearer_auth(warden_tests::stack::ADMIN_TOKEN).send().await;
                let clients: Value = match resp {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
                ok &= clients["clients"].as_array().is_some_and(|c| c.iter().all(|c| c["state"] == "connected"));
            }
            for port in stack.gateway_ports() {
                let url = format!("http://127.0.0.1:{port}/v1/models");
                ok &= stack.http.get(url).bearer_auth(&key.secret).send().await.is_ok_and(|r| r.status() == 200);
            }
            ok
        })
        .await;
    windows.close();
    killed.elapsed()
}

async fn ledger(stack: &Stack, key: &Key) -> (u64, u64) {
    let (_, usage) = stack.admin_call(Method::GET, &format!("/api/usage?key_id={}", key.id), None).await;
    (usage["totals"]["requests"].as_u64().unwrap_or(0), usage["totals"]["cost_micros"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_loses_nothing_while_its_processes_are_killed() {
    let seconds: u64 = std::env::var("WARDEN_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let url = tokio::task::spawn_blocking(warden_test_support::fresh_database).await.unwrap();
    let options = Options {
        envoys: 2,
        control_planes: 2,
        database_url: Some(url),
        budget_admission: Some("reserve"),
        ..Options::default()
    };
    let mut stack = Stack::start_with(options).await;
    let time = mcp_server_bin("WARDEN_MCP_TIME", "venv/bin/mcp-server-time");
    let client = json!({"name": "time", "connection_type": "stdio",
        "stdio_config": {"command": time, "args": ["--local-timezone", "UTC"]},
        "tools_to_execute": ["*"], "tool_pricing": {"get_current_time": TOOL_MICROS as f64 / 1e6}});
    let (status, body) = stack.admin_call(Method::POST, "/api/mcp/client", Some(client)).await;
    assert_eq!(status, 201, "{body}");
    let tools = json!([{"mcp_client_name": "time", "tools_to_execute": ["*"]}]);
    let chatter = stack.create_key(json!({"name": "soak-chat"})).await;
    let streamer = stack.create_key(json!({"name": "soak-stream"})).await;
    let tool_user = stack.create_key(json!({"name": "soak-tools", "mcp_configs": tools})).await;
    let price = json!({"input_per_mtok": 0, "output_per_mtok": 0, "per_request": PER_REQUEST_MICROS});
    let spender = stack
        .create_key(json!({"name": "soak-budget", "prices": {"gpt-4o-mini": price},
                           "budgets": [{"max_limit": BUDGET_MICROS as f64 / 1e6, "reset_duration": "1d"}]}))
        .await;
    let admin_target = stack.create_key(json!({"name": "soak-admin"})).await;
    let tool_call = json!({"id": "c1", "type": "function",
                           "function": {"name": "time-get_current_time", "arguments": "{\"timezone\":\"UTC\"}"}});
    stack
        .wait_for("the time tool on both control planes", Duration::from_secs(30), || async {
            let url = format!("http://127.0.0.1:{}/v1/mcp/tool/execute?format=chat", stack.gateway_port);
            let resp = stack.http.post(url).bearer_auth(&tool_user.secret).json(&tool_call).send().await;
            resp.is_ok_and(|r| r.status() == 200)
        })
        .await;
    // The readiness call's record, once it is in: the load's are counted on top of it.
    stack
        .wait_for("the first tool call in the ledger", Duration::from_secs(30), || async {
            ledger(&stack, &tool_user).await.1 == TOOL_MICROS
        })
        .await;
    let (before_tools, _) = ledger(&stack, &tool_user).await;

    let load = Arc::new(Load {
        stop: AtomicBool::new(false),
        second_envoy_out: AtomicBool::new(false),
        gateways: stack.gateway_ports(),
        admin_ports: std::iter::once(stack.admin_port).chain(stack.replicas.iter().map(|r| r.admin_port)).collect(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
    });
    let [chats, streams, calls, budget, admin] = std::array::from_fn(|_| Arc::new(Tally::default()));
    let chat = json!({"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]});
    let mut stream_body = chat.clone();
    stream_body["stream"] = json!(true);
    // (clients, their tally, path, key, body, streamed)
    let clients = [
        (3, &chats, "/v1/chat/completions", &chatter, &chat, false),
        (1, &streams, "/v1/chat/completions", &streamer, &stream_body, true),
        (1, &calls, "/v1/mcp/tool/execute?format=chat", &tool_user, &tool_call, false),
        (2, &budget, "/v1/chat/completions", &spender, &chat, false),
    ];
    let mut tasks = Vec::new();
    for (n, tally, path, key, body, stream) in clients {
        for _ in 0..n {
            let (load, tally, secret, body) = (load.clone(), tally.clone(), key.secret.clone(), body.clone());
            tasks.push(tokio::spawn(drive(load, tally, path, secret, body, stream)));
        }
    }
    tasks.push(tokio::spawn(administer(load.clone(), admin.clone(), admin_target.id.clone())));

    let windows = Windows::default();
    let started = Instant::now();
    let mut recoveries = Vec::new();
    for (round, fault) in SCHEDULE.iter().cycle().enumerate() {
        if round >= SCHEDULE.len() && started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let took = inject(&mut stack, &load, &windows, *fault, round).await;
        eprintln!("soak: {fault:?} killed, everything serving again after {took:?}");
        recoveries.push((*fault, took));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop.store(true, Ordering::Relaxed);
    join_all(tasks).await;
    let ran = started.elapsed();

    // 5xx: never for chats and streams; for tool calls and admin writes only in a fault.
    for (what, tally) in [("chat", &chats), ("stream", &streams), ("budget chat", &budget)] {
        let errors = tally.errors.lock().unwrap();
        assert!(errors.is_empty(), "{what}: {} failures, first {:?}", errors.len(), errors.first());
    }
    let stray = |tally: &Tally, faults: &[Fault]| -> Vec<(u16, String)> {
        let errors = tally.errors.lock().unwrap();
        errors.iter().filter(|(at, ..)| !windows.covers(*at, faults)).map(|(_, s, b)| (*s, b.clone())).collect()
    };
    let hub_faults = [Fault::FirstControlPlane, Fault::SecondControlPlane];
    assert_eq!(stray(&calls, &hub_faults), [], "tool-call failures outside a control plane's fault");
    assert_eq!(stray(&admin, &[Fault::Database, Fault::FirstControlPlane]), [], "admin failures outside a fault");

    // The ledger: every answer once, none lost or doubled.
    for (key, served) in [(&chatter, chats.ok()), (&streamer, streams.ok())] {
        let what = format!("the ledger to hold the {served} answers of {}", key.id);
        stack.wait_for(&what, Duration::from_secs(60), || async { ledger(&stack, key).await.0 == served }).await;
    }
    // Tool calls: every answered one charged its price once; a failed one costs nothing (the
    // ledger records it at $0 when its answer passed through the filter).
    let failed_calls = calls.errors.lock().unwrap().len() as u64;
    let charged = (1 + calls.ok()) * TOOL_MICROS;
    stack
        .wait_for("every answered tool call charged once", Duration::from_secs(60), || async {
            ledger(&stack, &tool_user).await.1 == charged
        })
        .await;
    let (recorded, _) = ledger(&stack, &tool_user).await;
    let answered = before_tools + calls.ok();
    assert!((answered..=answered + failed_calls).contains(&recorded), "{recorded} tool-call records");
    let (requests, spent) = ledger(&stack, &spender).await;
    assert_eq!(requests, budget.ok());
    assert_eq!(spent, requests * PER_REQUEST_MICROS);
    assert!(spent <= BUDGET_MICROS, "the budget was overspent: {spent} µ$ of {BUDGET_MICROS}");
    for (fault, took) in &recoveries {
        assert!(*took <= RECOVERY_BOUND, "{fault:?}: serving again after {took:?}");
    }
    eprintln!(
        "soak: {:?}, {} faults; served {} chats, {} streams, {} tool calls ({} failed in faults), \
         {} budget chats (spent {spent} of {BUDGET_MICROS} µ$), {} admin writes ({} failed in faults); \
         clients found an Envoy or replica down {} times",
        ran,
        recoveries.len(),
        chats.ok(),
        streams.ok(),
        calls.ok(),
        failed_calls,
        budget.ok(),
        admin.ok(),
        admin.errors.lock().unwrap().len(),
        [&chats, &streams, &calls, &budget, &admin].iter().map(|t| t.unreachable.load(Ordering::Relaxed)).sum::<u64>(),
    );
}

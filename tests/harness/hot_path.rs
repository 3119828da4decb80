//! The hot path's crossing budget: one warm, fully governed chat, counted crossing by crossing
//! and held to `hot_path.budget`. Counts, never timings: on Envoy's V8 what costs is crossing
//! the VM boundary (a hostcall that returns data re-enters the VM to allocate its copy, a pause
//! holds the stream, an enqueue wakes another thread), and the harness counts each exactly.

use crate::*;
use std::collections::BTreeMap;
use warden_policy::RateLimit;
use warden_policy::pricing::Price;
use warden_policy::records::BudgetLimit;

const K: &str = "sk-bf-aaaaaaaa-0000-4000-8000-0000000000b0";
const BUDGET: &str = include_str!("hot_path.budget");

/// The figures of `hot_path.budget`, by name.
fn budget() -> BTreeMap<&'static str, u64> {
    BUDGET
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, n) = l.split_once(' ').unwrap_or_else(|| panic!("budget line {l:?}"));
            (name, n.trim().parse().unwrap_or_else(|_| panic!("budget line {l:?}")))
        })
        .collect()
}

/// The bench's Warden row: two weighted providers, a model allow-list with a regex, request and
/// token limits on the key and on each provider config (never reached); plus a daily budget
/// leased from the control plane and a price, so the answer is priced, settled and recorded.
fn governed() -> (Proxy, Vm) {
    let limits = RateLimit {
        request_max_limit: Some(1 << 40),
        request_reset_duration: Some("1h".into()),
        token_max_limit: Some(1 << 50),
        token_reset_duration: Some("1d".into()),
    };
    let mut key = record("vk-bench", true, None);
    key.limits.rate_limit = Some(limits.clone());
    key.limits.budgets = vec![BudgetLimit {
        max_micros: 1 << 40,
        reset_duration: "1d".into(),
        reset_at_ms: 0,
        ..BudgetLimit::default()
    }];
    key.provider_configs = ["mock", "mock-b"]
        .map(|p| {
            let mut g = grant(p, Some(0.5));
            g.allowed_models = vec!["gpt-4o".into(), "regex:gpt-4o-mini.*".into()];
            g.blacklisted_models = vec!["gpt-4o-realtime".into()];
            g.rate_limit = Some(limits.clone());
            g
        })
        .to_vec();
    let price =
        Price { input_per_mtok: 150_000, output_per_mtok: 600_000, cached_input_per_mtok: None, per_request: 0 };
    let (proxy, mut vm, token) = with_keys(&[(K, key)]);
    let records = vec![named("provider:mock-b", &provider("mock-b")), named("price:gpt-4o-mini", &price)];
    vm.deliver(token, &response("2", records, vec![])).unwrap();
    answer_leases(&mut vm, |w| (w.max, 0));
    (proxy, vm)
}

fn chat(vm: &mut Vm) -> Outcome {
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(900)}]})
        .to_string();
    let bearer = format!("Bearer {K}");
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    let exchange = Exchange::request(&headers, body.as_bytes()).respond(
        200,
        "application/json",
        vec![USAGE_BODY.as_bytes().to_vec()],
    );
    vm.exchange(exchange).unwrap()
}

#[test]
fn a_warm_governed_chat_stays_within_its_crossing_budget() {
    let (_proxy, mut vm) = governed();
    // The first requests pay one-off costs (allocator growth, compiled patterns) and take this
    // VM's blocks of the counters of both providers drawn.
    for _ in 0..4 {
        chat(&mut vm);
    }
    // Which provider a chat draws moves its instructions a little: their mean over several
    // warm chats is the figure; every chat's crossings count.
    const MEASURED: u64 = 8;
    let outs: Vec<Outcome> = (0..MEASURED).map(|_| chat(&mut vm)).collect();
    for out in &outs {
        assert!(out.forwarded && out.status() == 200, "{:?}", out.reply);
    }
    let most = |count: fn(&Outcome) -> u64| outs.iter().map(count).max().unwrap_or(0);
    let measured = [
        ("instructions", outs.iter().map(Outcome::total_instructions).sum::<u64>() / MEASURED),
        ("data_returns", most(|o| o.data_returns)),
        ("other_hostcalls", most(Outcome::other_hostcalls)),
        ("pauses", most(|o| o.pauses)),
        ("enqueues", most(Outcome::enqueues)),
    ];
    let out = &outs[0];
    for (phase, n) in &out.instructions {
        eprintln!("hot path: {phase:<28} {n:>9} wasm instructions (the first measured chat)");
    }
    eprintln!("hot path: hostcalls {:?}", out.hostcalls);
    let budget = budget();
    let mut failures = Vec::new();
    for (name, n) in measured {
        let allowed = budget.get(name).copied().unwrap_or_else(|| panic!("hot_path.budget has no {name}"));
        eprintln!("hot path: {name:<16} {n:>9} (budget {allowed})");
        // Instructions move a little with the compiler; crossings do not move at all.
        let floor = if name == "instructions" { allowed - allowed / 10 } else { allowed };
        if n > allowed {
            failures.push(format!("{name}: {n} > the budget of {allowed}"));
        } else if n < floor {
            failures.push(format!("{name}: {n}, well under the budget of {allowed}: lower hot_path.budget to {n}"));
        }
    }
    assert!(failures.is_empty(), "tests/harness/hot_path.budget: {}", failures.join("; "));
}

/// Blocks (`warden_policy::blocks`) let a warm request count with no crossing, yet a limit
/// stays exact across workers: far from the cap a VM takes 16 requests ahead, near it every
/// request is counted, and a block idles for at most a tick.
#[test]
fn blocks_keep_a_request_limit_exact_across_vms() {
    const N: u64 = 16 * 64 + 40;
    let mut key = record("vk-blocks", true, None);
    key.limits.rate_limit = Some(RateLimit {
        request_max_limit: Some(N),
        request_reset_duration: Some("1h".into()),
        ..RateLimit::default()
    });
    let (proxy, mut leader, _) = with_keys(&[(K, key)]);
    let (mut worker, _) = proxy.vm(SETTINGS).unwrap();
    worker.tick().unwrap();
    let bearer = format!("Bearer {K}");
    let headers = [("authorization", bearer.as_str())];
    let admitted = |vm: &mut Vm| crate::chat(vm, &headers).unwrap().status() == 200;

    // The worker takes one request and a block of 16 ahead; the leader gets the rest.
    assert!(admitted(&mut worker));
    let mut served = 1;
    while admitted(&mut leader) {
        served += 1;
    }
    assert_eq!(served, N - 16, "the worker's block is spent to others until it is given back");
    // The worker's tick gives its block back: the leader serves exactly up to the cap.
    worker.tick().unwrap();
    while admitted(&mut leader) {
        served += 1;
    }
    assert_eq!(served, N);
    assert!(!admitted(&mut worker) && !admitted(&mut leader));
}

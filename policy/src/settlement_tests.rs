use super::*;
use crate::counter::tests::Map;
use crate::govern::Charged;
use crate::limits::Scope;
use crate::pricing::Price;
use crate::records::{BudgetLimit, RateLimit};
use crate::settings::{BudgetAdmission, FailMode};

const ESTIMATE: u64 = 500;

fn provider() -> Upstream {
    Upstream::Provider { cluster: "warden-provider/openai/k1".into() }
}

/// A request reserved in a token limit and a $1 daily budget, priced at $1/$2 per 1M tokens.
fn admitted(map: &Map, upstream: Upstream) -> Dispatch {
    let tokens =
        RateLimit { token_max_limit: Some(1_000), token_reset_duration: Some("1d".into()), ..RateLimit::default() };
    let budgets =
        [BudgetLimit { max_micros: 1_000_000, reset_duration: "1d".into(), reset_at_ms: 0, ..BudgetLimit::default() }];
    let scope = Scope {
        entity: "VK".into(),
        id: "vk:k".into(),
        rate_limit: Some(&tokens),
        budgets: &budgets,
        calendar_aligned: false,
        anchor_ms: 0,
    };
    let scopes = [scope];
    let reservation = limits::reserve(&scopes, map, 0, true).1.unwrap();
    let held = budgets::reserve(&scopes, ESTIMATE, map, 0, (FailMode::Local, BudgetAdmission::Reserve), true).unwrap();
    Dispatch {
        upstream,
        path: "/v1/chat/completions".into(),
        timeout_ms: None,
        body: None,
        reservation,
        holds_slot: false,
        stream: false,
        hide_usage_chunk: false,
        price: Some(Price { input_per_mtok: 1_000_000, output_per_mtok: 2_000_000, ..Price::default() }),
        budgets: held,
        estimate_micros: ESTIMATE,
        charged: Charged { key_id: "k".into(), model: "gpt-4o".into(), ..Charged::default() },
        acts_as_caller: false,
    }
}

fn spent(map: &Map) -> u64 {
    let budget = BudgetLimit { max_micros: 0, reset_duration: "1d".into(), reset_at_ms: 0, ..BudgetLimit::default() };
    let window = crate::window::Window { start_ms: 0, end_ms: 86_400_000 };
    crate::counter::read(map, &budgets::budget_key("vk:k", &budget)).count_in(window)
}

#[test]
fn priced_usage_replaces_the_estimate_and_counts_its_tokens() {
    let map = Map::default();
    let d = admitted(&map, provider());
    assert_eq!(spent(&map), ESTIMATE);
    let usage = Usage { input_tokens: 100, cached_input_tokens: 0, output_tokens: 50 };
    let settled = settle(&d, Answer { status: 200, usage: Some(usage), rpc: None }, &map, 10);
    assert_eq!(settled.cost, Some(200), "100 in at $1/M + 50 out at $2/M");
    assert_eq!(spent(&map), 200);
    let r = &settled.record;
    assert_eq!((r.key_id.as_str(), r.input_tokens, r.output_tokens, r.cost_micros, r.status), ("k", 100, 50, 200, 200));
    let tokens = crate::counter::read(&map, "warden:rl:vk:k:tok");
    assert_eq!(tokens.count_in(crate::window::Window { start_ms: 0, end_ms: 86_400_000 }), 150);
}

#[test]
fn no_usage_keeps_the_estimate_unless_the_answer_failed() {
    let map = Map::default();
    let ok = settle(&admitted(&map, provider()), Answer { status: 200, ..Answer::default() }, &map, 10);
    assert_eq!((ok.cost, ok.record.cost_micros, spent(&map)), (None, ESTIMATE, ESTIMATE));
    let failed = settle(&admitted(&map, provider()), Answer { status: 502, ..Answer::default() }, &map, 10);
    assert_eq!((failed.cost, spent(&map)), (Some(0), ESTIMATE));
}

#[test]
fn a_tool_call_costs_its_price_unless_it_failed_and_never_counts_tokens() {
    let map = Map::default();
    let usage = Some(Usage { input_tokens: 10, cached_input_tokens: 0, output_tokens: 10 });
    let ok = settle(&admitted(&map, Upstream::Hub), Answer { status: 200, usage, rpc: None }, &map, 10);
    assert_eq!((ok.cost, ok.record.input_tokens), (Some(ESTIMATE), 0));
    // An /mcp call answers 200 whatever happened: its JSON-RPC error says it failed.
    let error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#;
    let failed = settle(&admitted(&map, Upstream::Hub), Answer { status: 200, usage, rpc: Some(error) }, &map, 10);
    assert_eq!((failed.cost, failed.record.status), (Some(0), 400));
    assert_eq!(spent(&map), ESTIMATE);
}

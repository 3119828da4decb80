//! The decision of whole requests: routing, limits, budgets, prices, tool calls.

use super::*;
use crate::RecordKind;
use crate::records::Record;
use crate::records::{Limits, ModelConfigRecord, ProviderGrant};
use crate::settings::{BudgetAdmission, FailMode};
use std::any::Any;
use std::sync::LazyLock;

/// Budgets here are judged within one Envoy, and reserve (`budgets.rs` tests both
/// admissions); leases have their own tests.
static SETTINGS: LazyLock<FilterSettings> = LazyLock::new(|| FilterSettings {
    budget_fail_mode: FailMode::Local,
    budget_admission: BudgetAdmission::Reserve,
    ..FilterSettings::for_cluster("warden")
});
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
struct World {
    providers: Vec<ProviderRecord>,
    models: Vec<ModelRecord>,
    teams: Vec<TeamRecord>,
    customers: Vec<CustomerRecord>,
    prices: Vec<(String, Price)>,
    mcp: Vec<McpClientRecord>,
    counters: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

static NO_HEADERS: LazyLock<IncludeHeaders> = LazyLock::new(IncludeHeaders::default);

impl Records for World {
    fn get<T: Record>(&self, id: &str) -> Option<Arc<T>> {
        let found: Option<Box<dyn Any>> = match T::KIND {
            RecordKind::Provider => self.providers.iter().find(|p| p.name == id).cloned().map(boxed),
            RecordKind::Model => self.models.iter().find(|m| m.model == id).cloned().map(boxed),
            RecordKind::Team => self.teams.iter().find(|t| t.id == id).cloned().map(boxed),
            RecordKind::Customer => self.customers.iter().find(|c| c.id == id).cloned().map(boxed),
            RecordKind::Price => self.prices.iter().find(|(n, _)| n == id).map(|(_, p)| boxed(*p)),
            RecordKind::McpClient if id == crate::mcp::INDEX_ID => {
                let allow_by_default = self.mcp.iter().filter(|c| c.allow_by_default).map(|c| c.name.clone()).collect();
                Some(boxed(McpIndex { allow_by_default }))
            }
            RecordKind::McpClient => self.mcp.iter().find(|c| c.name == id).cloned().map(boxed),
            RecordKind::VirtualKey => None,
        };
        found?.downcast::<T>().ok().map(|record| Arc::new(*record))
    }
}

fn boxed<T: Any>(record: T) -> Box<dyn Any> {
    Box::new(record)
}

/// The context of a decision at `now_ms`, control plane up, no include headers.
fn cx(w: &World, now_ms: u64) -> Context<'_, World, World> {
    Context { records: w, counters: w, now_ms, settings: &SETTINGS, control_plane_up: true, include: &NO_HEADERS }
}

impl Counters for World {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        self.counters.borrow().get(key).map_or((None, 0), |(v, c)| (Some(v.clone()), *c))
    }
    fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
        let mut map = self.counters.borrow_mut();
        let current = map.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return false;
        }
        map.insert(key.to_owned(), (value.to_vec(), current + 1));
        true
    }
}

fn per_minute(n: u64) -> Option<RateLimit> {
    Some(RateLimit { request_max_limit: Some(n), request_reset_duration: Some("1m".into()), ..Default::default() })
}

fn world() -> World {
    World {
        providers: vec![ProviderRecord {
            name: "openai".into(),
            models: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
            key_ids: vec!["k1".into()],
            base_path: "/v1beta/openai/".into(),
            request_timeout_ms: Some(30_000),
            limits: Limits::default(),
        }],
        ..World::default()
    }
}

fn key() -> VirtualKeyRecord {
    let mut k = VirtualKeyRecord::new("vk1", "team-a", true);
    k.provider_configs = vec![ProviderGrant {
        provider: "openai".into(),
        weight: Some(1.0),
        allowed_models: vec!["*".into()],
        blacklisted_models: vec![],
        key_ids: vec!["*".into()],
        rate_limit: None,
        budgets: vec![],
    }];
    k
}

const CHAT: &[u8] = br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn routes_to_the_provider_key_cluster_with_the_model_renamed() {
    let w = world();
    let (_, d) = inference(&key(), Endpoint::ChatCompletions, "a=1", CHAT, 0, &cx(&w, 0));
    let d = d.unwrap();
    assert_eq!(d.upstream.cluster(), "warden-provider/openai/k1");
    assert_eq!(d.path, "/v1beta/openai/chat/completions?a=1");
    assert_eq!(d.timeout_ms, Some(30_000));
    let body: serde_json::Value = serde_json::from_slice(&d.body.unwrap()).unwrap();
    assert_eq!(body["model"], "gpt-4o");
}

#[test]
fn refusals_in_order() {
    let w = world();
    let k = key();
    let run = |k: &VirtualKeyRecord, body: &[u8]| {
        inference(k, Endpoint::ChatCompletions, "", body, 0, &cx(&w, 0)).1.unwrap_err().kind()
    };
    assert_eq!(run(&k, b"nope"), "invalid_request_error");
    assert_eq!(run(&k, br#"{"model":"o3"}"#), "model_blocked");
    assert_eq!(run(&VirtualKeyRecord::new("x", "x", true), CHAT), "provider_blocked");
}

#[test]
fn levels_are_checked_provider_model_key_customer_team() {
    let mut w = world();
    w.providers[0].limits.rate_limit = per_minute(5);
    w.models.push(ModelRecord {
        model: "gpt-4o".into(),
        configs: vec![ModelConfigRecord {
            id: "m1".into(),
            provider: None,
            limits: Limits { rate_limit: per_minute(4), ..Default::default() },
        }],
    });
    w.customers.push(CustomerRecord {
        id: "c".into(),
        name: "acme".into(),
        limits: Limits { rate_limit: per_minute(2), ..Default::default() },
    });
    w.teams.push(TeamRecord {
        id: "t".into(),
        name: "ml".into(),
        customer_id: Some("c".into()),
        limits: Limits { rate_limit: per_minute(3), ..Default::default() },
    });
    let mut k = key();
    k.team_id = Some("t".into());
    k.limits.rate_limit = per_minute(10);
    let entity = |n: u64| match inference(&k, Endpoint::ChatCompletions, "", CHAT, 0, &cx(&w, n)).1 {
        Err(Denial::RateLimited(v)) => v.entity,
        other => format!("{:?}", other.map(|d| d.upstream.cluster().to_owned())),
    };
    assert_eq!(entity(1), "Ok(\"warden-provider/openai/k1\")");
    assert_eq!(entity(2), "Ok(\"warden-provider/openai/k1\")");
    // The customer (2/min, reached through the team) refuses the third request.
    assert_eq!(entity(3), "customer 'acme'");
}

#[test]
fn concurrency_slot_refusal_rolls_back_the_request_count() {
    let w = world();
    let mut k = key();
    k.max_concurrent_requests = Some(1);
    k.limits.rate_limit = per_minute(10);
    let (_, first) = inference(&k, Endpoint::ChatCompletions, "", CHAT, 0, &cx(&w, 0));
    assert!(first.unwrap().holds_slot);
    let (report, second) = inference(&k, Endpoint::ChatCompletions, "", CHAT, 0, &cx(&w, 0));
    assert_eq!(second.unwrap_err(), Denial::ConcurrencyLimited { max: 1 });
    // 10 per minute, one admitted: the refused request was given back.
    assert_eq!(report.of(&limits::REQUESTS).map(|h| h.remaining), Some(8));
    let (report, _) = inference(&k, Endpoint::ChatCompletions, "", b"{}", 0, &cx(&w, 0));
    assert_eq!(report, RateReport::default());
    limits::release_slot("vk1", &w);
    let (report, third) = inference(&k, Endpoint::ChatCompletions, "", CHAT, 0, &cx(&w, 0));
    assert!(third.is_ok());
    assert_eq!(report.of(&limits::REQUESTS).map(|h| h.remaining), Some(8));
}

#[test]
fn budgets_reserve_the_estimate_and_need_a_price() {
    use crate::records::BudgetLimit;
    let mut w = world();
    let mut k = key();
    // $0.001 a day for the key.
    k.limits.budgets =
        vec![BudgetLimit { max_micros: 1_000, reset_duration: "1d".into(), reset_at_ms: 0, ..BudgetLimit::default() }];
    let run = |w: &World, k: &VirtualKeyRecord, body: &[u8]| {
        inference(k, Endpoint::ChatCompletions, "", body, 0, &cx(w, 0)).1
    };
    assert_eq!(run(&w, &k, CHAT).unwrap_err(), Denial::PriceUnknown("gpt-4o".into()));
    // $1 and $4 per 1M tokens: 22 prompt tokens (86 bytes / 4, rounded up) + 100 output
    // tokens at 4 µ$ = 422 µ$.
    w.prices
        .push(("gpt-4o".into(), Price { input_per_mtok: 1_000_000, output_per_mtok: 4_000_000, ..Price::default() }));
    let body = br#"{"model":"openai/gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let d = run(&w, &k, body).unwrap();
    assert_eq!(d.budgets.remaining_micros, Some(578));
    assert_eq!(run(&w, &k, body).unwrap().budgets.remaining_micros, Some(156));
    let Err(Denial::BudgetExceeded(v)) = run(&w, &k, body) else { panic!() };
    assert_eq!((v.entity.as_str(), v.spent_micros, v.estimate_micros), ("VK", 844, 422));
    // Settling the first request to its actual cost makes room again.
    budgets::settle(&d.budgets, 10, &w, 0);
    assert!(run(&w, &k, body).is_ok());
    // Without a max_tokens the default output cap is reserved: 4096 output tokens > $0.001.
    assert!(matches!(run(&w, &k, CHAT), Err(Denial::BudgetExceeded(_))));
    // A fallback price serves models without one.
    w.prices = vec![("*".into(), Price::default())];
    assert!(run(&w, &k, CHAT).is_ok());
    // The key's own price wins over every other: $1,000 per 1M output tokens is too dear.
    k.prices.insert("gpt-4o".into(), Price { output_per_mtok: 1_000_000_000, ..Price::default() });
    assert!(matches!(run(&w, &k, body), Err(Denial::BudgetExceeded(_))));
}

fn fs_client(price_micros: u64) -> McpClientRecord {
    let tool = |name: &str| crate::mcp::McpTool {
        name: name.into(),
        description: format!("{name} a file"),
        input_schema: serde_json::json!({"type": "object"}),
        output_schema: None,
    };
    McpClientRecord {
        name: "fs".into(),
        tools_to_execute: vec!["*".into()],
        allow_by_default: false,
        tool_pricing: [("read".to_owned(), price_micros)].into(),
        tools_to_auto_execute: vec!["read".into()],
        is_code_mode_client: false,
        tools: vec![tool("read"), tool("write")],
    }
}

fn grant(tools: &[&str]) -> crate::mcp::McpGrant {
    crate::mcp::McpGrant {
        mcp_client_name: "fs".into(),
        tools_to_execute: tools.iter().map(|t| t.to_string()).collect(),
        tool_call_limits: Default::default(),
    }
}

#[test]
fn chat_and_responses_get_the_allowed_tools_appended() {
    let mut w = world();
    w.mcp.push(fs_client(0));
    let mut k = key();
    k.mcp_configs = vec![grant(&["read"])];
    let run = |endpoint, body: &[u8], include: &IncludeHeaders| {
        let d = inference(&k, endpoint, "", body, 0, &Context { include, ..cx(&w, 0) }).1.unwrap();
        d.body.map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
    };
    let chat = run(Endpoint::ChatCompletions, CHAT, &NO_HEADERS).unwrap();
    assert_eq!(
        chat["tools"],
        serde_json::json!([{"type": "function", "function": {
        "name": "fs-read", "description": "read a file", "parameters": {"type": "object"}}}])
    );
    let responses = run(Endpoint::Responses, CHAT, &NO_HEADERS).unwrap();
    assert_eq!(responses["tools"][0]["name"], "fs-read");
    // Embeddings never get tools; a header that leaves nothing leaves the body untouched.
    let untouched = br#"{"model":"gpt-4o","messages":[]}"#;
    assert_eq!(run(Endpoint::Embeddings, untouched, &NO_HEADERS), None);
    let none = IncludeHeaders::parse(Some(b""), None);
    assert_eq!(run(Endpoint::ChatCompletions, untouched, &none), None);
}

#[test]
fn tool_calls_are_checked_limited_and_priced() {
    use crate::records::BudgetLimit;
    let mut w = world();
    w.mcp.push(fs_client(300));
    let mut k = key();
    k.limits.budgets =
        vec![BudgetLimit { max_micros: 1_000, reset_duration: "1d".into(), reset_at_ms: 0, ..BudgetLimit::default() }];
    let mut g = grant(&["read"]);
    g.tool_call_limits.insert(
        "read".into(),
        RateLimit { request_max_limit: Some(2), request_reset_duration: Some("1m".into()), ..Default::default() },
    );
    k.mcp_configs = vec![g];
    let call =
        |name: &str| format!(r#"{{"id":"c1","type":"function","function":{{"name":"{name}","arguments":"{{}}"}}}}"#);
    let run = |k: &VirtualKeyRecord, name: &str, now: u64| {
        tool_execute(k, "format=chat", call(name).as_bytes(), &cx(&w, now)).1
    };
    let d = run(&k, "fs-read", 0).unwrap();
    assert_eq!((d.upstream.cluster(), d.path.as_str()), ("warden-hub", "/v1/mcp/tool/execute?format=chat"));
    assert_eq!((d.estimate_micros, d.budgets.remaining_micros), (300, Some(700)));
    assert_eq!((d.charged.provider.as_str(), d.charged.model.as_str()), ("mcp", "fs-read"));
    assert!(run(&k, "fs-read", 0).is_ok());
    // The call limit (2 a minute) trips on the third call, before the budget is touched.
    let Err(Denial::RateLimited(v)) = run(&k, "fs-read", 0) else { panic!() };
    assert_eq!(v.entity, "tool 'fs-read'");
    // Next minute: the budget ($0.001, 600 µ$ spent) has no room for another 300 µ$ call…
    assert!(run(&k, "fs-read", 60_000).is_ok());
    assert!(matches!(run(&k, "fs-read", 120_000), Err(Denial::BudgetExceeded(_))));
    assert_eq!(run(&k, "fs-write", 0).unwrap_err(), Denial::ToolBlocked("fs-write".into(), "team-a".into()));
    assert_eq!(run(&k, "fs-delete", 0).unwrap_err(), Denial::ToolUnknown("fs-delete".into()));
    assert_eq!(run(&k, "nohyphen", 0).unwrap_err().status(), 404);
    // Two days on: a fresh budget window.
    let later = cx(&w, 2 * 86_400_000);
    let structured = tool_execute(&k, "format=chat&structured=true", call("fs-read").as_bytes(), &later);
    assert_eq!(structured.1.unwrap().path, "/v1/mcp/tool/execute?format=chat&structured=true");
    let bad = tool_execute(&k, "format=xml", b"{}", &cx(&w, 0)).1;
    assert_eq!(bad.unwrap_err().status(), 400);
}

#[test]
fn code_mode_meta_tools_count_as_requests_of_the_key() {
    let mut w = world();
    let mut coded = fs_client(0);
    coded.is_code_mode_client = true;
    w.mcp.push(coded);
    let mut k = key();
    k.mcp_configs = vec![grant(&["read"])];
    k.limits.rate_limit = per_minute(2);
    let call = |name: &str| ToolCall { call_id: "1".into(), name: name.into(), arguments: Default::default() };
    let run = |name: &str, now: u64| mcp_tool_call(&k, "/mcp", &call(name), &cx(&w, now)).1;
    assert!(run("listToolFiles", 0).is_ok());
    assert!(run("executeToolCode", 0).unwrap().acts_as_caller);
    let Err(Denial::RateLimited(v)) = run("readToolFile", 0) else { panic!("a third request in the minute") };
    assert_eq!(v.entity, "VK");
    assert!(run("executeToolCode", 60_000).is_ok(), "the next minute");
    // A key whose tokens are spent still may: meta-tools spend none.
    let mut spent = k.clone();
    spent.limits.rate_limit =
        Some(RateLimit { token_max_limit: Some(1), token_reset_duration: Some("1d".into()), ..RateLimit::default() });
    let held = limits::reserve(&[spent.scope().unwrap()], &w, 0, true).1.unwrap();
    limits::charge_tokens(&held, 5, &w, 0);
    let refused = limits::reserve(&[spent.scope().unwrap()], &w, 0, true).1;
    assert!(matches!(refused, Err(Denial::RateLimited(_))), "the key's tokens are spent");
    let meta = mcp_tool_call(&spent, "/mcp", &call("listToolFiles"), &cx(&w, 0)).1;
    assert!(meta.is_ok(), "{meta:?}");
}

#[test]
fn mcp_calls_are_scoped_to_the_key_or_its_virtual_mcp() {
    let mut w = world();
    w.mcp.push(fs_client(300));
    let mut k = key();
    k.mcp_configs = vec![grant(&["read", "write"])];
    k.virtual_mcps.insert("readers".into(), vec![grant(&["read"])]);
    let call = |name: &str| ToolCall { call_id: "1".into(), name: name.into(), arguments: Default::default() };
    let run = |path: &str, name: &str| mcp_tool_call(&k, path, &call(name), &cx(&w, 0)).1.map(|d| d.path);
    assert_eq!(run("/mcp", "fs-write").unwrap(), "/mcp");
    assert_eq!(run("/mcp/readers", "fs-read").unwrap(), "/mcp/readers");
    assert_eq!(run("/mcp/readers", "fs-write").unwrap_err().kind(), "mcp_tool_blocked");
    assert_eq!(run("/mcp/writers", "fs-read").unwrap_err().kind(), "virtual_mcp_blocked");
    // A bundle is exactly what it lists: no allow_by_default client leaks into it.
    let mut open = fs_client(0);
    open.name = "open".into();
    open.allow_by_default = true;
    w.mcp.push(open);
    let run = |path: &str, name: &str| mcp_tool_call(&k, path, &call(name), &cx(&w, 0)).1.map(|d| d.path);
    assert!(run("/mcp", "open-read").is_ok());
    assert_eq!(run("/mcp/readers", "open-read").unwrap_err().kind(), "mcp_tool_blocked");
}

#[test]
fn agent_mode_needs_a_tool_the_key_may_run_by_itself() {
    let mut w = world();
    w.mcp.push(fs_client(0));
    let mut k = key();
    assert!(!agent_mode(&k, &w, &NO_HEADERS));
    k.mcp_configs = vec![grant(&["write"])];
    // `read` is auto-executed by the client, but this key may not call it.
    assert!(!agent_mode(&k, &w, &NO_HEADERS));
    k.mcp_configs = vec![grant(&["read"])];
    assert!(agent_mode(&k, &w, &NO_HEADERS));
    assert!(!agent_mode(&k, &w, &IncludeHeaders::parse(None, Some(b"fs-write"))));
}

#[test]
fn models_body_lists_provider_slash_model() {
    let w = world();
    let body: serde_json::Value = serde_json::from_slice(&models_body(&key(), &w)).unwrap();
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["openai/gpt-4o", "openai/gpt-4o-mini"]);
    assert_eq!(body["data"][0]["owned_by"], "openai");
}

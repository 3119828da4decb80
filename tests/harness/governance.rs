//! Governance in the real filter on a controlled clock: routing and body rewrites, windows that
//! reset exactly on time, tokens counted from JSON and from server-sent events however they are
//! chunked, and the 400s for bodies the filter cannot judge.

use crate::*;
use warden_policy::RateLimit;
use warden_policy::records::{Limits, TeamRecord};

const K: &str = "sk-bf-aaaaaaaa-0000-4000-8000-00000000000a";

fn limited(requests: Option<(u64, &str)>, tokens: Option<(u64, &str)>) -> VirtualKeyRecord {
    let mut r = record("vk-limited", true, None);
    r.limits = Limits {
        budgets: vec![],
        rate_limit: Some(RateLimit {
            request_max_limit: requests.map(|r| r.0),
            request_reset_duration: requests.map(|r| r.1.to_owned()),
            token_max_limit: tokens.map(|t| t.0),
            token_reset_duration: tokens.map(|t| t.1.to_owned()),
        }),
        calendar_aligned: false,
        anchor_ms: T0,
    };
    r
}

fn stream_exchange(body: &str, chunks: Vec<Vec<u8>>) -> Exchange {
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    Exchange::request(&headers, body.as_bytes()).respond(200, "text/event-stream", chunks)
}

const SSE: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn routes_to_the_key_cluster_and_rewrites_model_path_and_length() {
    let mut gemini = provider("gemini");
    gemini.base_path = "/v1beta/openai".into();
    gemini.key_ids = vec!["g1".into(), "g2".into()];
    gemini.request_timeout_ms = Some(42_000);
    let mut key = record("vk", true, None);
    key.provider_configs.push(grant("gemini", None));
    key.provider_configs[1].key_ids = vec!["g2".into()];
    let (_proxy, mut vm, token) = with_keys(&[(K, key)]);
    vm.deliver(token, &response("2", vec![named("provider:gemini", &gemini)], vec![])).unwrap();

    let body = r#"{"model":"gemini/gemini-2.0-flash","messages":[]}"#;
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions?trace=1"), ("x-bf-vk", K)];
    let out = vm.exchange(Exchange::request(&headers, body.as_bytes())).unwrap();
    assert!(out.forwarded, "{:?}", out.reply);
    assert_eq!(out.header("x-warden-cluster").as_deref(), Some("warden-provider/gemini/g2"));
    assert_eq!(out.header(":path").as_deref(), Some("/v1beta/openai/chat/completions?trace=1"));
    assert_eq!(out.header("x-envoy-upstream-rq-timeout-ms").as_deref(), Some("42000"));
    let sent: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(sent["model"], "gemini-2.0-flash");
    assert_eq!(out.header("content-length"), Some(out.body.len().to_string()));
    // Setting the routing header is what makes Envoy choose the route again.
    assert!(out.foreign_calls.is_empty(), "{:?}", out.foreign_calls);

    // A bare model goes by weight: gemini has none (null), so always the mock.
    let out = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    assert_eq!(out.header("x-warden-cluster").as_deref(), Some("warden-provider/mock/main"));
    assert_eq!(out.body, CHAT_BODY.as_bytes(), "an unchanged body is not rewritten");
    assert_eq!(out.header(":path").as_deref(), Some("/v1/chat/completions"), "an unchanged path is kept");
}

#[test]
fn bodies_the_filter_cannot_judge_get_a_400_that_says_why() {
    let (_proxy, mut vm, _) = with_keys(&[(K, record("vk", true, None))]);
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    let cases: [(&[u8], &str); 4] = [
        (b"{not json", "the request body is not valid JSON"),
        (b"[]", "the request body must be a JSON object"),
        (br#"{"messages":[]}"#, "the request body has no 'model'"),
        (&vec![b' '; (4 << 20) + 1], "exceeds Warden's limit of 4194304 bytes"),
    ];
    for (body, message) in cases {
        let out = vm.exchange(Exchange::request(&headers, body)).unwrap();
        assert_eq!(out.status(), 400);
        assert!(out.json()["error"]["message"].as_str().unwrap().contains(message), "{}", out.json());
        assert_eq!(out.json()["type"], "invalid_request_error");
    }
    let no_body = vm.exchange(Exchange::request(&headers, b"")).unwrap();
    assert_eq!(no_body.status(), 400);
    let get = vm.exchange(Exchange::request(&[(":method", "GET"), (":path", "/admin"), ("x-bf-vk", K)], b"")).unwrap();
    assert_eq!((get.status(), get.json()["type"].as_str()), (404, Some("not_found")));
    // A body split in chunks is read whole.
    let mut chunked = Exchange::request(&headers, b"");
    chunked.request_body = CHAT_BODY.as_bytes().chunks(5).map(<[u8]>::to_vec).collect();
    assert!(vm.exchange(chunked).unwrap().forwarded);
}

#[test]
fn a_request_window_resets_exactly_on_time() {
    let (proxy, mut vm, token) = with_keys(&[(K, limited(Some((2, "1m")), None))]);
    // The clock moves past the staleness bound: the control plane keeps beating.
    let advance = |vm: &mut Vm, ms: u64| {
        proxy.advance_ms(ms);
        vm.deliver(token, &heartbeat("1")).unwrap();
    };
    assert!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().forwarded);
    let second = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    assert_eq!(second.response_header("x-ratelimit-remaining-requests").as_deref(), Some("0"));
    assert_eq!(second.response_header("x-ratelimit-limit-requests").as_deref(), Some("2"));
    advance(&mut vm, 15_000);
    let refused = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    let reply = refused.reply.expect("the third request is refused");
    assert_eq!((reply.status, reply.json()["type"].as_str()), (429, Some("request_limited")));
    let header = |name: &str| reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(header("retry-after").as_deref(), Some("45"));
    assert_eq!(header("x-ratelimit-reset-requests").as_deref(), Some("45s"));
    assert_eq!(
        reply.json()["error"]["message"],
        "Rate limit check failed: rate limit violated for VK: [request limit exceeded (3/2, resets every 1m)]"
    );
    advance(&mut vm, 44_999);
    assert_eq!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().status(), 429, "1 ms before the reset");
    advance(&mut vm, 1);
    assert!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().forwarded, "at the reset");
}

#[test]
fn an_unreadable_counter_fails_closed_and_is_counted() {
    let (proxy, mut vm, _) = with_keys(&[(K, limited(Some((100, "1h")), Some((1_000, "1h"))))]);
    assert!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().forwarded);
    // A value no worker can read: never taken as zero.
    proxy.set_shared_data("warden:rl:vk:vk-limited:req", b"\xff garbage");
    let refused = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    assert_eq!((refused.status(), refused.json()["type"].as_str()), (429, Some("request_limited")));
    let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("the request counter could not be updated"), "{message}");
    assert_eq!(proxy.shared_data("warden:rl:vk:vk-limited:req").as_deref(), Some(&b"\xff garbage"[..]));
    proxy.set_shared_data("warden:rl:vk:vk-limited:tok", b"1 2 3");
    let refused = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("the token counter is unreadable"));
    assert!(proxy.metric("warden_counter_unreadable") >= 2);
}

#[test]
fn tokens_from_json_responses_trip_the_token_limit() {
    let (_proxy, mut vm, _) = with_keys(&[(K, limited(None, Some((20, "1h"))))]);
    // Each answer reports 12 tokens: 12 < 20 admits the second, 24 ≥ 20 refuses the third.
    assert!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().forwarded);
    let second = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    assert_eq!(second.response_header("x-ratelimit-remaining-tokens").as_deref(), Some("8"));
    let third = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
    assert_eq!((third.status(), third.json()["type"].as_str()), (429, Some("token_limited")));
    assert!(
        third.json()["error"]["message"].as_str().unwrap().contains("token limit exceeded (24/20, resets every 1h)")
    );
}

#[test]
fn tokens_from_streams_split_anywhere_are_counted_and_the_added_usage_chunk_hidden() {
    for size in [1, 3, 17, 64, SSE.len()] {
        let (_proxy, mut vm, _) = with_keys(&[(K, limited(None, Some((100, "1h"))))]);
        let chunks: Vec<Vec<u8>> = SSE.as_bytes().chunks(size).map(<[u8]>::to_vec).collect();
        let out = vm.exchange(stream_exchange(r#"{"model":"gpt-4o-mini","stream":true}"#, chunks.clone())).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true, "Warden asks for usage");
        assert_eq!(out.response_header("content-length"), None);
        let client = String::from_utf8(out.response_body).unwrap();
        assert!(!client.contains("usage"), "size {size}: the client did not ask for usage: {client}");
        assert!(client.contains("\"Hel\"") && client.ends_with("data: [DONE]\n\n"), "size {size}: {client}");
        // A client that asks for usage gets it; both streams were counted (11 + 11).
        let asked = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#;
        let out = vm.exchange(stream_exchange(asked, chunks)).unwrap();
        assert!(String::from_utf8(out.response_body).unwrap().contains("\"total_tokens\":11"));
        let next = chat(&mut vm, &[("x-bf-vk", K)]).unwrap();
        assert_eq!(next.response_header("x-ratelimit-remaining-tokens").as_deref(), Some("78"), "size {size}");
    }
}

#[test]
fn a_team_limit_spans_its_keys_and_names_the_team() {
    let other = "sk-bf-bbbbbbbb-0000-4000-8000-00000000000b";
    let team = TeamRecord {
        id: "t1".into(),
        name: "ml-research".into(),
        customer_id: None,
        limits: Limits {
            budgets: vec![],
            rate_limit: Some(RateLimit {
                request_max_limit: Some(3),
                request_reset_duration: Some("1h".into()),
                ..RateLimit::default()
            }),
            calendar_aligned: true,
            anchor_ms: 0,
        },
    };
    let mut a = record("vk-a", true, None);
    a.team_id = Some("t1".into());
    let mut b = record("vk-b", true, None);
    b.team_id = Some("t1".into());
    let (_proxy, mut vm, token) = with_keys(&[(K, a), (other, b)]);
    vm.deliver(token, &response("2", vec![named("team:t1", &team)], vec![])).unwrap();
    for secret in [K, other, K] {
        assert!(chat(&mut vm, &[("x-bf-vk", secret)]).unwrap().forwarded);
    }
    let refused = chat(&mut vm, &[("x-bf-vk", other)]).unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("team 'ml-research'"));
}

#[test]
fn models_lists_only_what_the_key_may_use() {
    let mut catalog = provider("catalog");
    catalog.models = vec!["gpt-4o".into(), "gpt-4o-mini".into(), "o3-mini".into()];
    let mut key = record("vk", true, None);
    key.provider_configs = vec![grant("catalog", Some(1.0))];
    key.provider_configs[0].blacklisted_models = vec!["o3-mini".into()];
    let (_proxy, mut vm, token) = with_keys(&[(K, key)]);
    vm.deliver(token, &response("2", vec![named("provider:catalog", &catalog)], vec![])).unwrap();
    let out =
        vm.exchange(Exchange::request(&[(":method", "GET"), (":path", "/v1/models"), ("x-bf-vk", K)], b"")).unwrap();
    let ids: Vec<String> =
        out.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["catalog/gpt-4o", "catalog/gpt-4o-mini"]);
    let blocked = vm
        .exchange(Exchange::request(
            &[(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)],
            br#"{"model":"o3-mini"}"#,
        ))
        .unwrap();
    assert_eq!((blocked.status(), blocked.json()["type"].as_str()), (403, Some("model_blocked")));
    assert_eq!(blocked.json()["error"]["message"], "Model 'o3-mini' is not allowed for this virtual key");
}

/// A leader holding key `K` (id `id`) with a daily budget of `max_micros`, and gpt-4o-mini at
/// $0.1 per 1M tokens in and out: a 12-token answer costs 1.2 µ$, rounded up to 2.
fn budgeted(id: &str, max_micros: u64) -> (Proxy, Vm) {
    use warden_policy::pricing::Price;
    use warden_policy::records::BudgetLimit;
    let mut key = record(id, true, None);
    key.limits.budgets = vec![BudgetLimit { max_micros, reset_duration: "1d".into(), ..BudgetLimit::default() }];
    let price =
        Price { input_per_mtok: 100_000, output_per_mtok: 100_000, cached_input_per_mtok: None, per_request: 0 };
    let (proxy, mut vm, token) = with_keys(&[(K, key)]);
    vm.deliver(token, &response("2", vec![named("price:gpt-4o-mini", &price)], vec![])).unwrap();
    (proxy, vm)
}

#[test]
fn budgets_reserve_settle_and_report_the_cost() {
    // Five micro-dollars a day.
    let (_proxy, mut vm) = budgeted("vk-budget", 5);
    // This Envoy alone: the control plane leases it the whole budget.
    answer_leases(&mut vm, |w| (w.max, 0));
    let body = r#"{"model":"gpt-4o-mini","max_tokens":4,"messages":[]}"#;
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    let exchange = |headers: &[(&str, &str)]| {
        Exchange::request(headers, body.as_bytes()).respond(
            200,
            "application/json",
            vec![USAGE_BODY.as_bytes().to_vec()],
        )
    };
    // Estimate: 14 prompt tokens (55 bytes / 4) + 4 output = 18 tokens → 2 µ$ reserved. The
    // client asks for the cost header: the answer's headers wait for its usage.
    let asking = [headers.as_slice(), &[("x-warden-include-cost", "true")]].concat();
    let first = vm.exchange(exchange(&asking)).unwrap();
    assert!(first.forwarded);
    assert_eq!(first.pauses, 2, "the request for its body, the answer for its cost");
    assert_eq!(first.response_header("x-warden-budget-remaining-usd").as_deref(), Some("0.000003"));
    assert_eq!(first.response_header("x-warden-cost-usd").as_deref(), Some("0.000002"), "12 tokens at $0.1/M");
    // Unasked, the answer passes without a pause and is charged all the same; a cost header the
    // upstream made up does not reach the client.
    let mut spoofed = exchange(&headers);
    spoofed.response_headers.push(("x-warden-cost-usd".into(), b"0.000000".to_vec()));
    let second = vm.exchange(spoofed).unwrap();
    assert!(second.forwarded);
    assert_eq!((second.pauses, second.response_header("x-warden-cost-usd")), (1, None));
    assert_eq!(second.response_header("x-warden-budget-remaining-usd").as_deref(), Some("0.000001"));
    // 4 µ$ spent, below the 5 µ$ budget: the third is admitted though its estimate (2 µ$) passes
    // the 1 µ$ left (admission `spent`, Bifrost's), and the budget ends 1 µ$ past its limit.
    assert_eq!(vm.exchange(exchange(&headers)).unwrap().status(), 200);
    let refused = vm.exchange(exchange(&headers)).unwrap();
    assert_eq!((refused.status(), refused.json()["type"].as_str()), (402, Some("budget_exceeded")));
    let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("Budget exceeded: VK budget exceeded: 0.000008 >= 0.000005 dollars"), "{message}");
    let retry = refused.reply.unwrap().headers.into_iter().find(|(n, _)| n == "retry-after").map(|(_, v)| v);
    assert!(retry.is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    // A model without a price is refused while a budget applies.
    let unpriced = vm.exchange(Exchange::request(&headers, br#"{"model":"mystery-model"}"#)).unwrap();
    assert_eq!((unpriced.status(), unpriced.json()["type"].as_str()), (403, Some("price_unknown")));
}

#[test]
fn a_stream_reports_its_cost_in_a_closing_comment() {
    use warden_policy::pricing::Price;
    let price =
        Price { input_per_mtok: 1_000_000, output_per_mtok: 1_000_000, cached_input_per_mtok: None, per_request: 0 };
    let (_proxy, mut vm, token) = with_keys(&[(K, record("vk", true, None))]);
    vm.deliver(token, &response("2", vec![named("price:gpt-4o-mini", &price)], vec![])).unwrap();
    let chunks: Vec<Vec<u8>> = SSE.as_bytes().chunks(7).map(<[u8]>::to_vec).collect();
    let out = vm.exchange(stream_exchange(r#"{"model":"gpt-4o-mini","stream":true}"#, chunks)).unwrap();
    let client = String::from_utf8(out.response_body).unwrap();
    assert!(client.ends_with("data: [DONE]\n\n: x-warden-cost-usd 0.000011\n\n"), "{client}");
}

#[test]
fn usage_is_reported_until_acknowledged_and_never_lost() {
    use prost::Message;
    use warden_policy::ledger::{UsageAck, UsageBatch};
    let (proxy, mut vm, _) = with_keys(&[(K, record("vk-ledger", true, None))]);
    for _ in 0..3 {
        assert!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().forwarded);
    }
    let report = |vm: &mut Vm| -> (u32, UsageBatch) {
        vm.tick().unwrap();
        let (token, (name, message)) = vm.calls().iter().next_back().map(|(t, c)| (*t, c.clone())).expect("a report");
        assert_eq!(name, "warden.v1.Ledger/Report");
        (token, UsageBatch::decode(message.as_slice()).unwrap())
    };
    let (token, batch) = report(&mut vm);
    assert_eq!(batch.records.len(), 3);
    let first = &batch.records[0];
    assert_eq!(
        (first.key_id.as_str(), first.provider.as_str(), first.model.as_str()),
        ("vk-ledger", "mock", "gpt-4o-mini")
    );
    assert_eq!((first.input_tokens, first.output_tokens, first.status), (7, 5, 200));
    let ids: std::collections::BTreeSet<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "every record has its own idempotency id");
    // No second report while one is in flight.
    vm.tick().unwrap();
    let reports = |vm: &Vm| vm.calls().values().filter(|(name, _)| name == "warden.v1.Ledger/Report").count();
    assert_eq!(reports(&vm), 1);

    // Two acknowledged: the third goes again at once, alone.
    let ack = UsageAck { ids: batch.records[..2].iter().map(|r| r.id.clone()).collect() };
    vm.answer_call(token, Ok(&ack.encode_to_vec())).unwrap();
    assert_eq!(proxy.metric("warden_usage_reported"), 2);
    let (token, (_, message)) = vm.calls().iter().next_back().map(|(t, c)| (*t, c.clone())).unwrap();
    let again = UsageBatch::decode(message.as_slice()).unwrap();
    assert_eq!(again.records, batch.records[2..]);

    // A failed report loses nothing: it goes again with what arrived meanwhile.
    assert!(chat(&mut vm, &[("x-bf-vk", K)]).unwrap().forwarded);
    vm.answer_call(token, Err(14)).unwrap();
    let (token, retry) = report(&mut vm);
    assert_eq!(retry.records.len(), 2);
    assert_eq!(retry.records[0], again.records[0]);
    let ack = UsageAck { ids: retry.records.iter().map(|r| r.id.clone()).collect() };
    vm.answer_call(token, Ok(&ack.encode_to_vec())).unwrap();
    vm.tick().unwrap();
    assert_eq!(reports(&vm), 3, "nothing left to report");
    assert_eq!(proxy.metric("warden_usage_reported"), 4);
}

#[test]
fn refusals_are_reported_for_the_audit_log() {
    use prost::Message;
    use warden_policy::ledger::UsageBatch;
    let (proxy, mut vm, _) = with_keys(&[(K, record("vk-denied", true, None))]);
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    let blocked = vm.exchange(Exchange::request(&headers, br#"{"model":"mock/gpt-4o","x":1}"#)).unwrap();
    assert!(blocked.forwarded);
    let refused = vm.exchange(Exchange::request(&headers, b"not json")).unwrap();
    assert_eq!(refused.status(), 400);
    // 300 requests that name no known key: counted, and written as one record per minute and
    // reason once the minute is over, not one row each.
    for _ in 0..150 {
        assert_eq!(chat(&mut vm, &[("x-bf-vk", "sk-bf-unknown-key")]).unwrap().status(), 401);
        assert_eq!(chat(&mut vm, &[]).unwrap().status(), 401);
    }
    proxy.advance_ms(60_000);
    vm.tick().unwrap();
    let (_, (_, message)) = vm.calls().iter().next_back().expect("a report");
    let batch = UsageBatch::decode(message.as_slice()).unwrap();
    let denials: Vec<(&str, u32, &str, u32)> = batch
        .records
        .iter()
        .filter(|r| !r.denial.is_empty())
        .map(|r| (r.denial.as_str(), r.status, r.key_id.as_str(), r.repeats))
        .collect();
    assert_eq!(
        denials,
        [
            ("invalid_request_error/invalid_request", 400, "vk-denied", 0),
            ("virtual_key_not_found/virtual_key_not_found", 401, "", 150),
            ("virtual_key_required/virtual_key_required", 401, "", 150),
        ]
    );
    assert_eq!(proxy.metric("warden_requests_denied"), 301, "every refusal is counted");
}

#[test]
fn a_budget_is_spent_within_the_lease_the_control_plane_grants() {
    // Every request below reserves 2 µ$ and costs 2 µ$.
    let (proxy, mut vm) = budgeted("vk-lease", 10);
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    let send =
        |vm: &mut Vm| {
            let exchange = Exchange::request(&headers, br#"{"model":"gpt-4o-mini","max_tokens":4,"messages":[]}"#)
                .respond(200, "application/json", vec![USAGE_BODY.as_bytes().to_vec()]);
            let out = vm.exchange(exchange).unwrap();
            (out.status(), out.json()["error"]["code"].as_str().unwrap_or_default().to_owned())
        };
    // No lease yet and the default fail mode: refused, and counted as decided without one.
    assert_eq!(send(&mut vm), (503, "budget_unavailable".to_owned()));
    assert_eq!(proxy.metric("warden_budget_unleased_decisions"), 1);

    // The leader asks for a share of the budget, naming it and the window.
    let wants = answer_leases(&mut vm, |_| (4, 6));
    assert_eq!(wants.len(), 1);
    let want = &wants[0];
    assert_eq!((want.counter.as_str(), want.max, want.used, want.more), ("warden:budget:vk:vk-lease:1d", 10, 0, true));
    assert!(want.window_end_ms > want.window_start_ms && want.window_start_ms <= T0);
    // Four µ$ granted: two requests, then "retry shortly" while more is free at the control plane.
    assert_eq!(send(&mut vm).0, 200);
    assert_eq!(send(&mut vm).0, 200);
    assert_eq!(send(&mut vm), (429, "budget_lease_pending".to_owned()));

    // Half of it spent: the next tick asks for more, reporting the spend.
    let wants = answer_leases(&mut vm, |_| (8, 0));
    assert_eq!((wants[0].used, wants[0].more), (4, true));
    assert_eq!(send(&mut vm).0, 200);
    assert_eq!(send(&mut vm).0, 200);
    // Nothing left anywhere: the budget is spent.
    assert_eq!(send(&mut vm), (402, "budget_exceeded".to_owned()));
    assert_eq!(proxy.metric("warden_budget_unleased_decisions"), 1, "every later decision had a lease");
}

#[test]
fn an_envoy_gives_back_what_it_does_not_need_when_the_control_plane_asks() {
    let (_proxy, mut vm) = budgeted("vk-idle", 100);
    answer_leases(&mut vm, |_| (40, 0));
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    let exchange = Exchange::request(&headers, br#"{"model":"gpt-4o-mini","max_tokens":4,"messages":[]}"#).respond(
        200,
        "application/json",
        vec![USAGE_BODY.as_bytes().to_vec()],
    );
    assert_eq!(vm.exchange(exchange.clone()).unwrap().status(), 200);
    // The spend moved: reported (no more wanted, 2 of 40 spent); another Envoy wants some.
    let wants = answer_leases_with(&mut vm, |_| (40, 0), true);
    assert_eq!((wants[0].used, wants[0].more, wants[0].keep), (2, false, None));
    // Asked back, it keeps its spend and one tick's worth (none: idle since), and says so.
    let wants = answer_leases(&mut vm, |w| (w.keep.unwrap_or(40), 38));
    assert_eq!((wants[0].used, wants[0].keep), (2, Some(2)));
    // And it no longer spends what it gave back: "retry shortly", since the fleet has some free.
    let out = vm.exchange(exchange).unwrap();
    assert_eq!((out.status(), out.json()["error"]["code"].as_str()), (429, Some("budget_lease_pending")));
}

#[test]
fn a_raised_budget_is_spendable_once_its_change_is_acknowledged() {
    use warden_policy::pricing::Price;
    use warden_policy::records::BudgetLimit;
    let budget = |max_micros| vec![BudgetLimit { max_micros, reset_duration: "1d".into(), ..BudgetLimit::default() }];
    let mut key = record("vk-raise", true, None);
    key.limits.budgets = budget(4);
    let price =
        Price { input_per_mtok: 100_000, output_per_mtok: 100_000, cached_input_per_mtok: None, per_request: 0 };
    let (_proxy, mut vm, token) = with_keys(&[(K, key.clone())]);
    vm.deliver(token, &response("2", vec![named("price:gpt-4o-mini", &price)], vec![])).unwrap();
    answer_leases(&mut vm, |w| (w.max, 0));
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", K)];
    let send =
        |vm: &mut Vm| {
            let exchange = Exchange::request(&headers, br#"{"model":"gpt-4o-mini","max_tokens":4,"messages":[]}"#)
                .respond(200, "application/json", vec![USAGE_BODY.as_bytes().to_vec()]);
            vm.exchange(exchange).unwrap()
        };
    // Each request reserves and costs 2 µ$: two pass, the third is refused with the true spend.
    assert_eq!((send(&mut vm).status(), send(&mut vm).status()), (200, 200));
    let refused = send(&mut vm);
    assert_eq!((refused.status(), refused.json()["error"]["code"].as_str()), (402, Some("budget_exceeded")));
    let message = refused.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("spent 0.000004 +"), "{message}");

    // The budget is raised to 1,000 µ$: the leader asks again at once under the new limit, and
    // acknowledges the change only once that lease is granted.
    key.limits.budgets = budget(1_000);
    let acks = vm.streams()[&token].sent.len();
    vm.deliver(token, &response("3", vec![resource(K, &key)], vec![])).unwrap();
    assert_eq!(vm.streams()[&token].sent.len(), acks, "no acknowledgement before the lease");
    // The call in flight was made when the records arrived.
    let wants = answer_lease_call(&mut vm, |w| (w.max, 0), false);
    assert_eq!((wants[0].max, wants[0].used, wants[0].more), (1_000, 4, true));
    let ack = last_sent(&vm, token);
    assert_eq!((ack.response_nonce.as_str(), ack.error_detail.is_none()), ("3", true));
    assert_eq!(send(&mut vm).status(), 200, "spendable once acknowledged");
}

//! The request phases natively, against `fake_host`: what a client sees (status, headers, body)
//! and what the ledger gets, step by step.

use super::*;
use crate::fake_host::{self, LocalReply};
use prost::Message;
use warden_policy::KeyHash;
use warden_policy::pricing::Price;
use warden_policy::records::{Limits, ProviderGrant, ProviderRecord, RateLimit, record_limits};

const SECRET: &str = "sk-bf-0b8f4a52-2c8e-4c39-9d7c-5e1f6a7b8c9d";
const NOW: u64 = 1_800_000_000_000;
const CHAT: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const USAGE: &[u8] = br#"{"id":"c1","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;

/// Writes a record as the leader would: its counters first, then the record.
fn publish(name: &str, record: &impl serde::Serialize) {
    let json = serde_json::to_vec(record).unwrap_or_default();
    for counter in record_limits(name, &json).counters {
        shared::ensure_counter(&counter);
    }
    assert!(shared::put_record(name, &json).is_ok());
}

/// A fresh policy: one provider, a price for every model, and a key allowed two requests a
/// minute on it. The ledger's queue exists (a leader has run).
fn policy() {
    fake_host::with(|s| s.now_ms = NOW);
    assert!(host::register_queue("warden:usage").is_some());
    let provider = ProviderRecord {
        name: "openai".into(),
        models: vec!["gpt-4o-mini".into()],
        key_ids: vec!["k1".into()],
        base_path: "/v1".into(),
        request_timeout_ms: Some(30_000),
        limits: Limits::default(),
    };
    publish("provider:openai", &provider);
    publish("price:*", &Price { input_per_mtok: 1_000_000, output_per_mtok: 2_000_000, ..Price::default() });
    let mut key = VirtualKeyRecord::new("vk1", "key one", true);
    key.provider_configs = vec![ProviderGrant {
        provider: "openai".into(),
        weight: Some(1.0),
        allowed_models: vec!["*".into()],
        blacklisted_models: vec![],
        key_ids: vec!["*".into()],
        rate_limit: None,
        budgets: vec![],
    }];
    key.limits.rate_limit = Some(RateLimit {
        request_max_limit: Some(2),
        request_reset_duration: Some("1m".into()),
        ..RateLimit::default()
    });
    publish(&format!("vk:{}", KeyHash::of(SECRET.as_bytes()).to_hex()), &key);
    shared::heard(NOW, "1".into(), true);
}

fn request() -> WardenRequest {
    let settings = FilterSettings::for_cluster("warden");
    WardenRequest::new(Some(Rc::new(settings)), Rc::new(Metrics::define()))
}

/// Sends a chat's headers and body; returns what each phase answered.
fn send(request: &mut WardenRequest, headers: &[(&str, &str)], body: &[u8]) -> (Action, Action) {
    fake_host::with(|s| {
        s.local_reply = None;
        s.request_headers = headers.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect();
        s.request_body = body.to_vec();
    });
    let at_headers = request.on_http_request_headers(headers.len(), false);
    let at_body = request.on_http_request_body(body.len(), true);
    (at_headers, at_body)
}

fn chat_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("authorization", "Bearer sk-bf-0b8f4a52-2c8e-4c39-9d7c-5e1f6a7b8c9d"),
        ("x-warden-cluster", "warden-provider/evil/k9"),
    ]
}

/// Answers the dispatched request with `status` and a JSON body.
fn answer(request: &mut WardenRequest, status: &str, body: &[u8]) -> (Action, Action) {
    fake_host::with(|s| {
        s.response_headers =
            vec![(":status".into(), status.into()), ("content-type".into(), b"application/json".to_vec())];
        s.response_body = body.to_vec();
    });
    let at_headers = request.on_http_response_headers(2, false);
    let at_body = request.on_http_response_body(body.len(), true);
    request.on_log();
    (at_headers, at_body)
}

/// The usage records this VM has put on the ledger's queue.
fn ledger() -> Vec<UsageRecord> {
    assert_eq!(ledger::enqueue_held(), 0);
    let items = fake_host::with(|s| std::mem::take(&mut s.queues[0].1));
    let mut records = Vec::new();
    for item in items {
        let mut bytes = item.as_slice();
        while let Ok(record) = UsageRecord::decode_length_delimited(&mut bytes) {
            records.push(record);
        }
    }
    records
}

fn reply() -> Option<LocalReply> {
    fake_host::with(|s| s.local_reply.clone())
}

#[test]
fn an_admitted_chat_goes_to_its_provider_key_without_the_virtual_key_and_is_charged() {
    policy();
    let mut chat = request();
    assert_eq!(send(&mut chat, &chat_headers(), CHAT), (Action::Pause, Action::Continue));
    assert_eq!(reply(), None);
    fake_host::with(|s| {
        assert_eq!(s.request_header(CLUSTER_HEADER).as_deref(), Some("warden-provider/openai/k1"));
        assert_eq!(s.request_header(KEY_ID_HEADER).as_deref(), Some("vk1"));
        assert_eq!(s.request_header("authorization"), None, "the virtual key stays in Envoy");
        assert_eq!(s.request_header("x-envoy-upstream-rq-timeout-ms").as_deref(), Some("30000"));
    });
    assert_eq!(answer(&mut chat, "200", USAGE), (Action::Continue, Action::Continue));
    fake_host::with(|s| {
        assert_eq!(s.response_header("x-ratelimit-limit-requests").as_deref(), Some("2"));
        assert_eq!(s.response_header("x-ratelimit-remaining-requests").as_deref(), Some("1"));
        assert_eq!(s.response_header(COST_HEADER), None, "not asked for");
    });
    let records = ledger();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.key_id.as_str(), r.provider.as_str(), r.model.as_str()), ("vk1", "openai", "gpt-4o-mini"));
    assert_eq!((r.input_tokens, r.output_tokens, r.status), (10, 5, 200));
    // $1 per 1M input tokens and $2 per 1M output: 10 + 10 µ$.
    assert_eq!(r.cost_micros, 20);
    assert_eq!(r.id.len(), 28);
}

#[test]
fn the_third_request_of_a_two_a_minute_key_is_refused_with_retry_after() {
    policy();
    for _ in 0..2 {
        assert_eq!(send(&mut request(), &chat_headers(), CHAT).1, Action::Continue);
    }
    assert_eq!(send(&mut request(), &chat_headers(), CHAT).1, Action::Pause);
    let refused = reply().unwrap_or_else(|| panic!("no local reply"));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["type"], "request_limited");
    let header = |name: &str| refused.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert!(header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s))));
    assert_eq!(header("x-ratelimit-remaining-requests").as_deref(), Some("0"));
    // The refusal is in the ledger, for the audit trail; the two admitted are not answered yet.
    let records = ledger();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].status, records[0].denial.as_str()), (429, "request_limited/request_limited"));
}

#[test]
fn a_request_without_a_key_is_refused_before_its_body() {
    policy();
    let mut headers = chat_headers();
    headers.retain(|(n, _)| *n != "authorization");
    let mut anonymous = request();
    fake_host::with(|s| {
        s.request_headers = headers.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect();
    });
    assert_eq!(anonymous.on_http_request_headers(headers.len(), false), Action::Pause);
    let refused = reply().unwrap_or_else(|| panic!("no local reply"));
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"]["type"], "virtual_key_required");
    assert_eq!(fake_host::with(|s| s.metric("warden_requests_denied")), 1);
    // A flood of anonymous refusals is counted, not written one by one.
    assert!(ledger().is_empty());
}

#[test]
fn a_client_that_asks_for_the_cost_gets_it_once_the_answer_has_ended() {
    policy();
    let mut chat = request();
    let mut headers = chat_headers();
    headers.push((WANT_COST_HEADER, "true"));
    assert_eq!(send(&mut chat, &headers, CHAT).1, Action::Continue);
    fake_host::with(|s| {
        s.response_headers =
            vec![(":status".into(), b"200".to_vec()), ("content-type".into(), b"application/json".to_vec())];
        s.response_body = USAGE.to_vec();
    });
    // Held until the cost is known.
    assert_eq!(chat.on_http_response_headers(2, false), Action::Pause);
    assert_eq!(chat.on_http_response_body(USAGE.len() / 2, false), Action::Pause);
    assert_eq!(chat.on_http_response_body(USAGE.len(), true), Action::Continue);
    assert_eq!(fake_host::with(|s| s.response_header(COST_HEADER)).as_deref(), Some("0.000020"));
}

#[test]
fn a_body_over_the_limit_is_refused_and_counts_no_request() {
    policy();
    // Over the default limit of 4 MiB.
    let big = vec![b' '; 5 << 20];
    let mut chat = request();
    assert_eq!(send(&mut chat, &chat_headers(), &big).1, Action::Pause);
    let refused = reply().unwrap_or_else(|| panic!("no local reply"));
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["error"]["message"].as_str().is_some_and(|m| m.contains("max_request_body_bytes")),
        "{}",
        refused.json()
    );
    // Both requests of the minute are still there.
    for _ in 0..2 {
        assert_eq!(send(&mut request(), &chat_headers(), CHAT).1, Action::Continue);
    }
}

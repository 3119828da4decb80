//! A bounded fuzz pass, run by `make test`: arbitrary and near-valid bytes through every parser
//! that sees client, upstream, control-plane or shared-data bytes. None may panic; each answers
//! with a value or an error (the filter denies `panic`, and a panic would trap the Envoy worker).
//! `PROPTEST_CASES` makes a run longer.

use proptest::prelude::*;
use warden_policy::counter::Counter;
use warden_policy::inference::{Endpoint, InferenceBody, SseUsage, json_usage};
use warden_policy::keys::find_key;
use warden_policy::records::{check_record, record_limits};
use warden_policy::rpc::RpcMessage;
use warden_policy::{FilterSettings, ResetDuration, SyncStatus};

/// Bytes that are often almost JSON: fragments of the shapes the parsers expect, spliced.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "\\u",
        "d800",
        "\"model\"",
        "\"gpt-4o\"",
        "\"stream\"",
        "true",
        "\"usage\"",
        "\"prompt_tokens\"",
        "12",
        "-1",
        "1e999",
        "18446744073709551616",
        "null",
        "\"messages\"",
        "\"tools\"",
        "\"jsonrpc\"",
        "\"2.0\"",
        "\"method\"",
        "\"tools/call\"",
        "\"params\"",
        "\"name\"",
        "\"id\"",
        "\"max_tokens\"",
        "\"n\"",
        "data: ",
        "\n\n",
        "event: ",
        "[DONE]",
        "\u{0}",
        "\u{ff}",
        "é",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(pieces, 0..64).prop_map(|p| p.concat().into_bytes()),
    ]
}

/// 2,000 cases each, or `PROPTEST_CASES` (`make fuzz`): an explicit count would override it.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn request_bodies(bytes in jsonish()) {
        if let Ok(body) = InferenceBody::parse(&bytes) {
            let _ = body.estimated_usage(4096, 0);
            for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses] {
                let _ = body.rewrite(endpoint, "m", Vec::new());
                let _ = body.hide_usage_chunk(endpoint);
            }
        }
    }

    #[test]
    fn answers_json_and_sse(bytes in jsonish(), split in 0usize..512, hide in any::<bool>()) {
        let _ = json_usage(&bytes);
        let mut sse = SseUsage::new(hide);
        let at = split.min(bytes.len());
        let _ = sse.feed(&bytes[..at], false);
        let _ = sse.feed(&bytes[at..], true);
    }

    #[test]
    fn json_rpc(bytes in jsonish(), method in prop::option::of(jsonish()), name in prop::option::of(jsonish())) {
        let _ = RpcMessage::parse(&bytes, method.as_deref(), name.as_deref());
    }

    #[test]
    fn key_headers(headers in prop::collection::vec((".{0,24}", prop::collection::vec(any::<u8>(), 0..96)), 0..8)) {
        let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let _ = find_key(pairs.iter().copied());
    }

    #[test]
    fn policy_records(kind in prop::sample::select(vec!["vk", "team", "customer", "provider", "model", "price", "mcp", "x"]), id in ".{0,16}", body in jsonish()) {
        let name = format!("{kind}:{id}");
        let _ = check_record(&name, &body);
        let _ = record_limits(&name, &body);
    }

    #[test]
    fn shared_data_values(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        "(v2 )?[0-9 ]{0,80}".prop_map(String::into_bytes),
    ]) {
        let counter = Counter::parse(Some(&bytes));
        let _ = counter.encode();
        let _ = SyncStatus::decode(&bytes);
    }

    #[test]
    fn reset_durations_and_settings(text in ".{0,24}", digits in "[0-9.e]{1,24}[smhdwMQY]{1,2}", settings in jsonish()) {
        let _ = ResetDuration::parse(&text);
        if let Ok(span) = ResetDuration::parse(&digits) {
            for now in [0, 1_800_000_000_000, u64::MAX / 2] {
                let window = span.window(now, 1_700_000_000_000, true);
                prop_assert!(window.start_ms <= window.end_ms);
            }
        }
        let _ = FilterSettings::parse(&settings);
    }
}

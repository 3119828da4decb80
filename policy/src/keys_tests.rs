use super::*;
use proptest::prelude::*;

fn find(headers: &[(&str, &str)]) -> Option<PresentedKey> {
    find_key(headers.iter().map(|(n, v)| (*n, v.as_bytes())))
}

#[test]
fn precedence_follows_bifrost() {
    let all = [
        ("api-key", "sk-bf-5"),
        ("x-goog-api-key", "sk-bf-4"),
        ("x-api-key", "sk-bf-3"),
        ("authorization", "Bearer sk-bf-2"),
        ("x-bf-vk", "sk-bf-1"),
    ];
    for skip in 0..all.len() {
        let present = &all[..all.len() - skip];
        let winner = present.last().unwrap();
        let found = find(present).unwrap();
        assert_eq!(found.source.header(), winner.0);
        let key = winner.1.trim_start_matches("Bearer ");
        assert_eq!(found.hash, KeyHash::of(key.as_bytes()));
    }
}

#[test]
fn only_x_bf_vk_takes_unprefixed_keys() {
    assert_eq!(find(&[("x-bf-vk", "legacy-key")]).unwrap().source, KeySource::BifrostHeader);
    let bearer = [("authorization", &b"Bearer  sk-bf-abc "[..])];
    assert_eq!(presented_secret(bearer, KeySource::Authorization), Some(&b"sk-bf-abc"[..]));
    assert_eq!(find(&[("authorization", "Bearer sk-openai-123")]), None);
    assert_eq!(find(&[("x-api-key", "legacy-key")]), None);
}

#[test]
fn a_provider_key_in_authorization_does_not_hide_a_later_virtual_key() {
    let found = find(&[("authorization", "Bearer sk-proj-abc"), ("x-api-key", "sk-bf-xyz")]).unwrap();
    assert_eq!(found.source, KeySource::XApiKey);
}

#[test]
fn scheme_and_prefix_are_case_insensitive() {
    let lower = find(&[("authorization", "bearer sk-bf-abc")]).unwrap();
    let upper = find(&[("authorization", "BEARER SK-BF-abc")]).unwrap();
    assert_eq!(lower.hash, upper.hash);
    assert_eq!(lower.hash, KeyHash::of(b"sk-bf-abc"));
    assert_ne!(lower.hash, KeyHash::of(b"sk-bf-ABC"));
}

#[test]
fn empty_and_bare_prefix_values_are_not_keys() {
    assert_eq!(find(&[("x-bf-vk", "  ")]), None);
    assert_eq!(find(&[("authorization", "Bearer sk-bf-")]), None);
    assert_eq!(find(&[("authorization", "Bearer")]), None);
    assert_eq!(find(&[("authorization", "Basic dXNlcjpwYXNz")]), None);
}

#[test]
fn non_utf8_values_are_handled() {
    let raw: &[u8] = b"sk-bf-\xff\xfe";
    let found = find_key([("x-api-key", raw)]).unwrap();
    assert_eq!(found.hash, KeyHash::of(raw));
}

#[test]
fn every_header_carrying_a_key_is_named() {
    let headers = [
        ("x-bf-vk", "legacy"),
        ("authorization", "Bearer sk-bf-other"),
        ("x-api-key", "sk-ant-provider"),
        ("api-key", "sk-bf-third"),
    ];
    let names: Vec<&str> = key_headers(headers.iter().map(|(n, v)| (*n, v.as_bytes()))).collect();
    assert_eq!(names, ["x-bf-vk", "authorization", "api-key"]);
}

#[test]
fn hex_round_trip() {
    let h = KeyHash::of(b"sk-bf-abc");
    assert_eq!(KeyHash::from_hex(&h.to_string()), Some(h));
    assert_eq!(KeyHash::from_hex("zz"), None);
    assert_eq!(KeyHash::from_hex(&"G".repeat(64)), None);
}

proptest! {
    #[test]
    fn find_key_never_panics(headers in proptest::collection::vec(
        (prop_oneof![Just("x-bf-vk"), Just("authorization"), Just("x-api-key"), Just("api-key"), Just("other")],
         proptest::collection::vec(any::<u8>(), 0..40)), 0..6)) {
        let _ = find_key(headers.iter().map(|(n, v)| (*n, v.as_slice())));
    }

    #[test]
    fn prefix_case_never_changes_the_hash(rest in "[a-zA-Z0-9-]{1,40}", mask in any::<u8>()) {
        let prefix: String = KEY_PREFIX.chars().enumerate()
            .map(|(i, c)| if mask & (1 << (i % 8)) != 0 { c.to_ascii_uppercase() } else { c }).collect();
        prop_assert_eq!(KeyHash::of(format!("{prefix}{rest}").as_bytes()), KeyHash::of(format!("sk-bf-{rest}").as_bytes()));
    }
}

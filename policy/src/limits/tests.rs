//! Limits checked, reserved, leased and reported.

use super::reservations::count_of;
use super::*;
use crate::counter::Counters;
use crate::counter::tests::{Map, grant};
use crate::records::RateLimit;
use crate::{Denial, Window};

fn limit(requests: Option<(u64, &str)>, tokens: Option<(u64, &str)>) -> RateLimit {
    RateLimit {
        request_max_limit: requests.map(|r| r.0),
        request_reset_duration: requests.map(|r| r.1.to_owned()),
        token_max_limit: tokens.map(|t| t.0),
        token_reset_duration: tokens.map(|t| t.1.to_owned()),
    }
}

fn scope<'r>(entity: &str, rl: &'r RateLimit) -> Scope<'r> {
    Scope {
        entity: entity.into(),
        id: entity.to_lowercase(),
        rate_limit: Some(rl),
        budgets: &[],
        calendar_aligned: false,
        anchor_ms: 0,
    }
}

const T: u64 = 1_000_000;

#[test]
fn a_lease_caps_the_requests_and_tokens_this_envoy_counts() {
    use crate::counter::put_grant;
    let map = Map::default();
    let rl = limit(Some((10, "1m")), Some((100, "1m")));
    let s = [scope("VK", &rl)];
    let start = 960_000;
    put_grant(&map, "warden:rl:vk:req", grant(start, 2, 5, 1));
    assert!(reserve(&s, &map, T, true).1.is_ok());
    assert!(reserve(&s, &map, T, true).1.is_ok());
    let (_, outcome) = reserve(&s, &map, T, true);
    let Err(Denial::RateLimited(v)) = outcome else { panic!("{outcome:?}") };
    assert_eq!(v.retry_after_s, 1, "the share is renewing: {}", v.message());
    assert!(v.message().contains("this gateway's share of the request limit is used (2, renewing)"));
    // The control plane unreachable: past its lease this Envoy counts up to the whole limit.
    assert!(reserve(&s, &map, T, false).1.is_ok());
    // Tokens: refused once this Envoy's share is used.
    put_grant(&map, "warden:rl:vk:tok", grant(start, 50, 0, 1));
    let held = reserve(&s, &map, T + 1, false).1.unwrap();
    charge_tokens(&held, 60, &map, T + 1);
    let (_, outcome) = reserve(&s, &map, T + 2, true);
    let Err(Denial::RateLimited(v)) = outcome else { panic!("{outcome:?}") };
    assert!(v.message().contains("token limit exceeded (60/100"), "{}", v.message());
}

#[test]
fn request_limit_admits_exactly_max_per_window_and_resets_on_time() {
    let map = Map::default();
    let rl = limit(Some((3, "1m")), None);
    let s = [scope("VK", &rl)];
    for i in 0..3 {
        let (report, outcome) = reserve(&s, &map, T + i, true);
        assert!(outcome.is_ok());
        assert_eq!(report.of(&REQUESTS).unwrap().remaining, 2 - i);
    }
    let (report, outcome) = reserve(&s, &map, T + 10, true);
    let Err(Denial::RateLimited(v)) = outcome else { panic!("{outcome:?}") };
    assert_eq!(v.kind, RateKind::Requests);
    assert_eq!(
        v.message(),
        "Rate limit check failed: rate limit violated for VK: [request limit exceeded (4/3, resets every 1m)]"
    );
    // The window is [960_000, 1_020_000): 20 s left at T + 10 ms.
    assert_eq!(v.retry_after_s, 20);
    assert_eq!(report.of(&REQUESTS).unwrap().remaining, 0);
    // One millisecond before the reset: still refused; at the reset: admitted.
    assert!(reserve(&s, &map, 1_019_999, true).1.is_err());
    assert!(reserve(&s, &map, 1_020_000, true).1.is_ok());
}

#[test]
fn first_violation_wins_and_earlier_reservations_roll_back() {
    let map = Map::default();
    let wide = limit(Some((10, "1h")), None);
    let narrow = limit(Some((1, "1h")), None);
    let s = [scope("provider 'p'", &wide), scope("VK", &narrow)];
    assert!(reserve(&s, &map, T, true).1.is_ok());
    let (_, outcome) = reserve(&s, &map, T, true);
    let Err(Denial::RateLimited(v)) = outcome else { panic!() };
    assert_eq!(v.entity, "VK");
    // The provider-wide counter was given back: 1 used, not 2.
    assert_eq!(count_of(&map, "warden:rl:provider 'p':req", Window { start_ms: 0, end_ms: 3_600_000 }), 1);
}

#[test]
fn tokens_refuse_once_used_reaches_max_and_both_gives_rate_limited() {
    let map = Map::default();
    let rl = limit(Some((1, "1h")), Some((100, "1h")));
    let s = [scope("VK", &rl)];
    let (_, first) = reserve(&s, &map, T, true);
    let held = first.unwrap();
    charge_tokens(&held, 150, &map, T + 5);
    let (report, outcome) = reserve(&s, &map, T + 6, true);
    assert_eq!(report.of(&TOKENS).unwrap().remaining, 0);
    let Err(Denial::RateLimited(v)) = outcome else { panic!() };
    assert_eq!(v.kind, RateKind::Both);
    assert_eq!(Denial::RateLimited(v.clone()).kind(), "rate_limited");
    assert!(v.message().contains("token limit exceeded (150/100, resets every 1h)"), "{}", v.message());
    let only_tokens = limit(None, Some((100, "1h")));
    let (_, outcome) = reserve(&[scope("VK", &only_tokens)], &map, T + 7, true);
    assert_eq!(outcome.unwrap_err().kind(), "token_limited");
}

#[test]
fn concurrency_slots() {
    let map = Map::default();
    assert!(acquire_slot("k", 2, &map).is_ok());
    assert!(acquire_slot("k", 2, &map).is_ok());
    assert_eq!(acquire_slot("k", 2, &map), Err(Denial::ConcurrencyLimited { max: 2 }));
    release_slot("k", &map);
    assert!(acquire_slot("k", 2, &map).is_ok());
    release_slot("other", &map);
    assert_eq!(map.read(&concurrency_key("other")).0, None, "releasing an unknown slot writes nothing");
}

#[test]
fn headers_name_the_tightest_limit() {
    let map = Map::default();
    let loose = limit(Some((100, "1h")), Some((10_000, "1d")));
    let tight = limit(Some((5, "1m")), None);
    let (report, _) = reserve(&[scope("a", &loose), scope("b", &tight)], &map, 30_000, true);
    let h = report.headers(30_000);
    assert!(h.contains(&("x-ratelimit-limit-requests", "5".into())));
    assert!(h.contains(&("x-ratelimit-remaining-requests", "4".into())));
    assert!(h.contains(&("x-ratelimit-reset-requests", "30s".into())));
    assert!(h.contains(&("x-ratelimit-remaining-tokens", "10000".into())));
}

#[test]
fn exhausted_reads_without_counting() {
    let map = Map::default();
    let rl = limit(Some((1, "1h")), None);
    let s = scope("pc", &rl);
    assert!(!exhausted(&s, &map, T));
    assert!(reserve(std::slice::from_ref(&s), &map, T, true).1.is_ok());
    assert!(exhausted(&s, &map, T));
    assert!(exhausted(&s, &map, T));
}

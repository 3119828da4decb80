use super::*;
use proptest::prelude::*;

fn provider(name: &str, models: &[&str], keys: &[&str]) -> ProviderRecord {
    ProviderRecord {
        name: name.into(),
        models: models.iter().map(|m| m.to_string()).collect(),
        key_ids: keys.iter().map(|k| k.to_string()).collect(),
        base_path: "/v1".into(),
        request_timeout_ms: None,
        limits: Default::default(),
    }
}

fn grant(name: &str, weight: Option<f64>, allowed: &[&str], blacklisted: &[&str], keys: &[&str]) -> ProviderGrant {
    ProviderGrant {
        provider: name.into(),
        weight,
        allowed_models: allowed.iter().map(|m| m.to_string()).collect(),
        blacklisted_models: blacklisted.iter().map(|m| m.to_string()).collect(),
        key_ids: keys.iter().map(|k| k.to_string()).collect(),
        rate_limit: None,
        budgets: vec![],
    }
}

fn key(grants: Vec<ProviderGrant>) -> VirtualKeyRecord {
    let mut k = VirtualKeyRecord::new("vk", "team-a", true);
    k.provider_configs = grants;
    k
}

fn providers() -> Vec<ProviderRecord> {
    vec![
        provider("openai", &["gpt-4o", "gpt-4o-mini", "o3"], &["k1", "k2"]),
        provider("anthropic", &["claude-sonnet-4", "claude-haiku-4"], &["a1"]),
        provider("local", &[], &["l1"]),
    ]
}

#[test]
fn patterns_exact_star_regex_and_blacklist() {
    let catalogue = vec!["gpt-4o".to_string(), "gpt-4o-mini".to_string()];
    let g = grant("openai", Some(1.0), &["*"], &["gpt-4o-mini"], &["*"]);
    assert!(grant_admits(&g, "gpt-4o", &catalogue));
    assert!(!grant_admits(&g, "gpt-4o-mini", &catalogue), "the blacklist wins");
    assert!(!grant_admits(&g, "o1", &catalogue), "* means the catalogue");
    assert!(grant_admits(&g, "anything", &[]), "* with no catalogue means any name");
    let g = grant("openai", Some(1.0), &["regex:GPT-4O.*"], &[], &["*"]);
    assert!(grant_admits(&g, "gpt-4o-mini", &catalogue), "regex is case-insensitive");
    assert!(!grant_admits(&g, "my-gpt-4o", &catalogue), "regex matches the whole name");
    let g = grant("openai", Some(1.0), &[], &[], &["*"]);
    assert!(!grant_admits(&g, "gpt-4o", &catalogue), "empty allow-list admits nothing");
    assert!(ModelPattern::parse("regex:(").is_err());
    assert!(ModelPattern::parse("regex:a)|(b").is_err(), "a pattern may not break out of its anchors");
    let g = grant("openai", Some(1.0), &["regex:a)|(b"], &[], &["*"]);
    assert!(!grant_admits(&g, "anything-b", &catalogue), "an unanchorable entry admits nothing");
}

#[test]
fn remembered_regex_verdicts_stay_per_pattern_and_per_model() {
    let even = grant("p", Some(1.0), &["regex:m-[0-9]*[02468]"], &[], &["*"]);
    let odd = grant("p", Some(1.0), &["regex:m-[0-9]*[13579]"], &[], &["*"]);
    // Three rounds over more models than a pattern remembers: asked, remembered, forgotten.
    for _ in 0..3 {
        for n in 0..(VERDICTS_PER_PATTERN as u32 + 7) {
            let model = format!("m-{n}");
            assert_eq!(grant_admits(&even, &model, &[]), n % 2 == 0, "{model}");
            assert_eq!(grant_admits(&odd, &model, &[]), n % 2 == 1, "{model}");
        }
    }
}

#[test]
fn explicit_provider_needs_a_grant_or_allow_all() {
    let ps = providers();
    let k = key(vec![grant("openai", None, &["gpt-4o"], &[], &["*"])]);
    let r = choose(&k, "openai/gpt-4o", &ps, |_| false, 0).unwrap();
    assert_eq!((r.provider.name.as_str(), r.model.as_str()), ("openai", "gpt-4o"));
    assert_eq!(choose(&k, "openai/o3", &ps, |_| false, 0), Err(Denial::ModelBlocked("openai/o3".into())));
    assert_eq!(
        choose(&k, "anthropic/claude-sonnet-4", &ps, |_| false, 0),
        Err(Denial::ProviderBlocked("anthropic".into()))
    );
    let mut all = k.clone();
    all.allow_all_providers = true;
    let r = choose(&all, "anthropic/claude-sonnet-4", &ps, |_| false, 0).unwrap();
    assert_eq!((r.provider.name.as_str(), r.grant, r.key_id.as_str()), ("anthropic", None, "a1"));
    // A slash that does not name a provider is part of the model name.
    let hf = key(vec![grant("local", Some(1.0), &["meta-llama/Llama-3"], &[], &["*"])]);
    assert_eq!(choose(&hf, "meta-llama/Llama-3", &ps, |_| false, 0).unwrap().model, "meta-llama/Llama-3");
}

#[test]
fn empty_provider_list_denies_everything() {
    let ps = providers();
    let k = key(vec![]);
    assert_eq!(choose(&k, "gpt-4o", &ps, |_| false, 0), Err(Denial::ModelBlocked("gpt-4o".into())));
    assert_eq!(choose(&k, "openai/gpt-4o", &ps, |_| false, 0), Err(Denial::ProviderBlocked("openai".into())));
}

#[test]
fn null_weight_is_never_drawn_and_exhausted_grants_leave_the_draw() {
    let ps = providers();
    let k = key(vec![grant("openai", None, &["*"], &[], &["*"]), grant("local", Some(1.0), &["gpt-4o"], &[], &["*"])]);
    for r in [0, u64::MAX / 3, u64::MAX] {
        assert_eq!(choose(&k, "gpt-4o", &ps, |_| false, r).unwrap().provider.name, "local");
    }
    let k =
        key(vec![grant("openai", Some(1.0), &["*"], &[], &["*"]), grant("local", Some(1.0), &["gpt-4o"], &[], &["*"])]);
    for r in [0, u64::MAX / 3, u64::MAX] {
        assert_eq!(choose(&k, "gpt-4o", &ps, |g| g.provider == "openai", r).unwrap().provider.name, "local");
    }
    // Every candidate exhausted: still routed, so the limit check can refuse with its 429.
    assert!(choose(&k, "gpt-4o", &ps, |_| true, 0).is_ok());
}

#[test]
fn key_ids_narrow_the_provider_keys() {
    let ps = providers();
    let only_k2 = key(vec![grant("openai", Some(1.0), &["*"], &[], &["k2"])]);
    for r in 0..8 {
        assert_eq!(choose(&only_k2, "gpt-4o", &ps, |_| false, r).unwrap().key_id, "k2");
    }
    let none = key(vec![grant("openai", Some(1.0), &["*"], &[], &[])]);
    assert_eq!(choose(&none, "gpt-4o", &ps, |_| false, 0), Err(Denial::NoProviderKey("openai".into())));
    let all = key(vec![grant("openai", Some(1.0), &["*"], &[], &["*"])]);
    let used: std::collections::BTreeSet<String> =
        (0..64u64).map(|r| choose(&all, "gpt-4o", &ps, |_| false, r << 32).unwrap().key_id).collect();
    assert_eq!(used.into_iter().collect::<Vec<_>>(), ["k1", "k2"]);
}

#[test]
fn models_list_shows_only_what_the_key_may_use() {
    let ps = providers();
    let k = key(vec![
        grant("openai", Some(1.0), &["*"], &["o3"], &["*"]),
        grant("anthropic", None, &["regex:claude-haiku.*"], &[], &["*"]),
        grant("local", Some(1.0), &["llama", "regex:x.*"], &[], &["*"]),
    ]);
    assert_eq!(
        visible_models(&k, &ps),
        ["anthropic/claude-haiku-4", "local/llama", "openai/gpt-4o", "openai/gpt-4o-mini"]
    );
}

#[test]
fn weights_split_as_configured() {
    // Deterministic sweep of the random space: the split equals the weights.
    let weights = [0.25, 0.75, 0.0];
    let mut hits = [0u32; 3];
    let n = 10_000u64;
    for i in 0..n {
        hits[weighted_pick(&weights, (i * (u64::MAX / n)).wrapping_add(1))] += 1;
    }
    assert_eq!(hits[2], 0, "weight 0 stays in the pool but is never drawn against positive weights");
    assert!((2_400..=2_600).contains(&hits[0]), "{hits:?}");
    assert_eq!(weighted_pick(&[0.0, 0.0], 3), 1, "all-zero weights draw uniformly");
}

proptest! {
    #[test]
    fn pick_is_in_range_and_never_a_zero_weight(
        weights in proptest::collection::vec(prop_oneof![Just(0.0), 0.001f64..100.0], 1..8),
        random in any::<u64>(),
    ) {
        let i = weighted_pick(&weights, random);
        prop_assert!(i < weights.len());
        if weights.iter().any(|w| *w > 0.0) {
            prop_assert!(weights[i] > 0.0);
        }
    }

    #[test]
    fn uniform_random_gives_proportional_split(a in 0.1f64..10.0, b in 0.1f64..10.0, seed in any::<u64>()) {
        // xorshift stream: a statistical check with a bound far beyond 5 sigma.
        let mut x = seed | 1;
        let n = 4_000;
        let mut first = 0;
        for _ in 0..n {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            if weighted_pick(&[a, b], x) == 0 { first += 1; }
        }
        let p = a / (a + b);
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        prop_assert!((first as f64 - n as f64 * p).abs() < 6.0 * sd + 1.0, "{first} of {n}, p {p}");
    }
}

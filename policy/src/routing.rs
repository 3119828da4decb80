//! Which provider, model and provider key a request goes to: model RBAC and weighted routing
//! (contract §2.2 and §4.1).

use crate::Denial;
use crate::records::{ProviderGrant, ProviderRecord, VirtualKeyRecord};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;

/// One entry of `allowed_models` or `blacklisted_models`.
#[derive(Debug, Clone)]
pub enum ModelPattern<'e> {
    /// `*`: every model of the provider's catalogue (any name when it has none).
    Any,
    /// An exact model name.
    Exact(&'e str),
    /// `regex:<pattern>`: a full, case-insensitive match.
    Regex(regex_lite::Regex),
}

impl<'e> ModelPattern<'e> {
    /// Parses an entry; a `regex:` that does not compile is refused with the reason.
    pub fn parse(entry: &'e str) -> Result<ModelPattern<'e>, String> {
        match entry.strip_prefix("regex:") {
            // The pattern must stand alone before it is anchored: `a)|(b` would otherwise close
            // the anchoring group and match any name that starts with `a` or ends with `b`.
            Some(pattern) => regex_lite::Regex::new(pattern)
                .and_then(|_| regex_lite::Regex::new(&format!("(?i)^(?:{pattern})$")))
                .map(ModelPattern::Regex)
                .map_err(|e| format!("'{entry}' is not a valid regular expression: {e}")),
            None if entry == "*" => Ok(ModelPattern::Any),
            None => Ok(ModelPattern::Exact(entry)),
        }
    }

    fn matches(&self, model: &str, catalogue: &[String]) -> bool {
        match self {
            ModelPattern::Any => catalogue.is_empty() || catalogue.iter().any(|m| m == model),
            ModelPattern::Exact(name) => *name == model,
            ModelPattern::Regex(re) => re.is_match(model),
        }
    }
}

/// How many compiled `regex:` patterns a thread keeps; beyond it the cache starts afresh.
const COMPILED_PATTERNS: usize = 256;
/// How many models' verdicts a compiled pattern remembers; beyond it they start afresh.
const VERDICTS_PER_PATTERN: usize = 64;

/// A `regex:` entry, compiled (`None` if it does not compile), and the verdicts it gave.
struct CompiledPattern {
    regex: Option<regex_lite::Regex>,
    verdicts: HashMap<String, bool>,
}

thread_local! {
    // Compiling a pattern costs far more than matching it, and matching costs more than the
    // rest of a request's routing: a filter VM (one thread) sees the same few patterns and
    // models on every request, so it keeps each pattern compiled and each verdict.
    static COMPILED: RefCell<HashMap<String, CompiledPattern>> = RefCell::new(HashMap::new());
}

/// Whether a `regex:` entry matches a model, remembered per thread.
fn regex_matches(entry: &str, model: &str) -> bool {
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        // The warm case first, with one lookup of each string (each hashes it).
        if let Some(verdict) = cache.get(entry).and_then(|c| c.verdicts.get(model)) {
            return *verdict;
        }
        if !cache.contains_key(entry) {
            if cache.len() >= COMPILED_PATTERNS {
                cache.clear();
            }
            let regex = match ModelPattern::parse(entry) {
                Ok(ModelPattern::Regex(regex)) => Some(regex),
                _ => None,
            };
            cache.insert(entry.to_owned(), CompiledPattern { regex, verdicts: HashMap::new() });
        }
        let Some(compiled) = cache.get_mut(entry) else { return false };
        let verdict = compiled.regex.as_ref().is_some_and(|re| re.is_match(model));
        if compiled.verdicts.len() >= VERDICTS_PER_PATTERN {
            compiled.verdicts.clear();
        }
        compiled.verdicts.insert(model.to_owned(), verdict);
        verdict
    })
}

/// Whether any entry of `list` matches; an entry that does not parse matches nothing (the
/// admin API refuses such entries, so this only guards against a hand-made record).
fn any_matches(list: &[String], model: &str, catalogue: &[String]) -> bool {
    list.iter().any(|entry| match entry.strip_prefix("regex:") {
        None => ModelPattern::parse(entry).is_ok_and(|p| p.matches(model, catalogue)),
        Some(_) => regex_matches(entry, model),
    })
}

/// Whether a grant admits a model: the blacklist wins, then the allow-list decides.
pub fn grant_admits(grant: &ProviderGrant, model: &str, catalogue: &[String]) -> bool {
    !any_matches(&grant.blacklisted_models, model, catalogue) && any_matches(&grant.allowed_models, model, catalogue)
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route<'r> {
    /// The provider's record.
    pub provider: &'r ProviderRecord,
    /// The key's grant for it; `None` when the provider is reached through
    /// `allow_all_providers` (no per-provider limits then).
    pub grant: Option<&'r ProviderGrant>,
    /// The model name to send upstream (without any `provider/` prefix).
    pub model: String,
    /// The provider API key to use.
    pub key_id: String,
}

/// Chooses the provider, model and provider key of a request, or refuses it.
///
/// - `provider/model` names the provider; the key needs a grant for it (or
///   `allow_all_providers`), and the grant must admit the model.
/// - A bare model is load-balanced: the candidates are the key's grants with a weight whose
///   provider is known and which admit the model; grants that `exhausted` says are out of
///   quota leave the draw unless every candidate is exhausted (the limit check then refuses
///   with the right 429). A grant with a `null` weight is never drawn.
/// - `providers` finds a provider's record by name.
/// - `random` is a uniformly random number; the choice of grant and of provider key derive
///   from it, so tests can pin them.
pub fn choose<'r, P: Borrow<ProviderRecord>>(
    key: &'r VirtualKeyRecord,
    requested: &str,
    providers: &'r [P],
    exhausted: impl Fn(&ProviderGrant) -> bool,
    random: u64,
) -> Result<Route<'r>, Denial> {
    let find = |name: &str| providers.iter().map(Borrow::borrow).find(|p: &&ProviderRecord| p.name == name);
    if let Some((name, model)) = requested.split_once('/')
        && let Some(provider) = find(name)
    {
        let grant = key.provider_configs.iter().find(|g| g.provider == name);
        match grant {
            Some(g) if !grant_admits(g, model, &provider.models) => return Err(Denial::ModelBlocked(requested.into())),
            None if !key.allow_all_providers => return Err(Denial::ProviderBlocked(name.into())),
            _ => {}
        }
        return route(provider, grant, model, random);
    }
    let candidates: Vec<(&ProviderGrant, &ProviderRecord)> = key
        .provider_configs
        .iter()
        .filter(|g| g.weight.is_some())
        .filter_map(|g| Some((g, find(&g.provider)?)))
        .filter(|(g, p)| grant_admits(g, requested, &p.models))
        .collect();
    if candidates.is_empty() {
        return Err(Denial::ModelBlocked(requested.into()));
    }
    // Draw, and look at the drawn grant's counters only: an exhausted one leaves the pool and
    // the draw is repeated among the rest. The same outcome as filtering first, with counters
    // read for one grant in the common case instead of all.
    let mut pool = candidates;
    let mut draw = random;
    let (grant, provider) = loop {
        let weights: Vec<f64> = pool.iter().map(|(g, _)| g.weight.unwrap_or(0.0)).collect();
        let pick = weighted_pick(&weights, draw);
        if pool.len() == 1 || !exhausted(pool[pick].0) {
            break pool[pick];
        }
        pool.swap_remove(pick);
        draw = draw.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    };
    route(provider, Some(grant), requested, random.rotate_left(32))
}

fn route<'r>(
    provider: &'r ProviderRecord,
    grant: Option<&'r ProviderGrant>,
    model: &str,
    random: u64,
) -> Result<Route<'r>, Denial> {
    let usable: Vec<&String> = match grant {
        Some(g) if g.key_ids.iter().any(|k| k == "*") => provider.key_ids.iter().collect(),
        Some(g) => provider.key_ids.iter().filter(|k| g.key_ids.contains(k)).collect(),
        None => provider.key_ids.iter().collect(),
    };
    if usable.is_empty() {
        return Err(Denial::NoProviderKey(provider.name.clone()));
    }
    let key_id = usable[(random % usable.len() as u64) as usize].clone();
    Ok(Route { provider, grant, model: model.to_owned(), key_id })
}

/// Picks an index with probability proportional to its weight; all-zero weights draw
/// uniformly. `weights` must not be empty.
pub fn weighted_pick(weights: &[f64], random: u64) -> usize {
    let total: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
    if total <= 0.0 {
        return (random % weights.len().max(1) as u64) as usize;
    }
    // 53 random bits give a uniform float in [0, 1).
    let mut point = (random >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (i, w) in weights.iter().enumerate() {
        let w = if w.is_finite() && *w > 0.0 { *w } else { 0.0 };
        if point < w {
            return i;
        }
        point -= w;
    }
    weights.iter().rposition(|w| w.is_finite() && *w > 0.0).unwrap_or(0)
}

/// The models a key may use, as `provider/model` ids for `/v1/models`: each granted provider's
/// catalogue filtered by the grant, plus the grant's exact names when the provider has no
/// catalogue. Sorted, without duplicates.
pub fn visible_models<P: Borrow<ProviderRecord>>(key: &VirtualKeyRecord, providers: &[P]) -> Vec<String> {
    let mut ids = Vec::new();
    for grant in &key.provider_configs {
        let Some(provider) = providers.iter().map(Borrow::borrow).find(|p: &&ProviderRecord| p.name == grant.provider)
        else {
            continue;
        };
        let names: Vec<&String> = if provider.models.is_empty() {
            grant.allowed_models.iter().filter(|m| *m != "*" && !m.starts_with("regex:")).collect()
        } else {
            provider.models.iter().collect()
        };
        ids.extend(
            names
                .into_iter()
                .filter(|m| grant_admits(grant, m, &provider.models))
                .map(|m| format!("{}/{m}", provider.name)),
        );
    }
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
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
        let k =
            key(vec![grant("openai", None, &["*"], &[], &["*"]), grant("local", Some(1.0), &["gpt-4o"], &[], &["*"])]);
        for r in [0, u64::MAX / 3, u64::MAX] {
            assert_eq!(choose(&k, "gpt-4o", &ps, |_| false, r).unwrap().provider.name, "local");
        }
        let k = key(vec![
            grant("openai", Some(1.0), &["*"], &[], &["*"]),
            grant("local", Some(1.0), &["gpt-4o"], &[], &["*"]),
        ]);
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
}

//! Which provider, model and provider key a request goes to: model RBAC and weighted routing
//! over a key's provider configs, as Bifrost does.

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
#[path = "routing_tests.rs"]
mod tests;

//! Request, token and concurrency limits, counted exactly across an Envoy's workers.
//!
//! Counters live in a compare-and-swap store ([`Counters`]; shared data in the filter, a map in
//! tests). Each is `"<window start ms> <count>"`: a count from an older window reads as zero, so
//! windows reset exactly on time with no sweeper. Requests are counted at admission with a
//! check-and-reserve (`count + 1 > max` refuses), rolled back if a later level refuses; tokens
//! are added when the response reports its usage, and a token limit refuses once
//! `used ≥ max` (contract §4.2).

use crate::blocks;
use crate::counter::{self, Counters};
use crate::lease::{LeasedLimit, leased, share_spent};
use crate::records::{
    BudgetLimit, CustomerRecord, Limits, ModelRecord, ProviderGrant, ProviderRecord, RateLimit, TeamRecord,
    VirtualKeyRecord,
};
use crate::text::concat;
use crate::window::{ResetDuration, Window};
use crate::{Denial, routing::Route};

/// Which limits a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    /// The request limit.
    Requests,
    /// The token limit.
    Tokens,
    /// Both at once.
    Both,
}

/// A refused request: which owner, which limits, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateViolation {
    /// Which limits.
    pub kind: RateKind,
    /// The owner, as the contract names it: `VK`, `team 'x'`, `Model:gpt-4o`, …
    pub entity: String,
    /// One entry per exceeded limit, e.g. `request limit exceeded (101/100, resets every 1m)`.
    pub details: Vec<String>,
    /// Seconds until the exceeded window resets (at least 1).
    pub retry_after_s: u64,
}

impl RateViolation {
    /// The contract's message.
    pub fn message(&self) -> String {
        format!("Rate limit check failed: rate limit violated for {}: [{}]", self.entity, self.details.join(", "))
    }
}

/// One owner's limits, ready to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope<'r> {
    /// The owner in messages.
    pub entity: String,
    /// Names its counters (see [`counter_key`]).
    pub id: String,
    /// Request and token limits.
    pub rate_limit: Option<&'r RateLimit>,
    /// Dollar budgets.
    pub budgets: &'r [BudgetLimit],
    /// Window layout.
    pub calendar_aligned: bool,
    /// Where rolling windows start.
    pub anchor_ms: u64,
}

/// The dimension a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Requests.
    Requests,
    /// Tokens.
    Tokens,
}

/// The shared-data key of one counter.
pub fn counter_key(scope_id: &str, dimension: Dimension) -> String {
    let suffix = match dimension {
        Dimension::Requests => "req",
        Dimension::Tokens => "tok",
    };
    concat(&["warden:rl:", scope_id, ":", suffix])
}

/// The shared-data key of a key's in-flight counter.
pub fn concurrency_key(key_id: &str) -> String {
    concat(&["warden:inflight:", key_id])
}

fn scope<'r>(entity: String, id: String, limits: &'r Limits) -> Option<Scope<'r>> {
    if limits.rate_limit.is_none() && limits.budgets.is_empty() {
        return None;
    }
    Some(Scope {
        entity,
        id,
        rate_limit: limits.rate_limit.as_ref(),
        budgets: &limits.budgets,
        calendar_aligned: limits.calendar_aligned,
        anchor_ms: limits.anchor_ms,
    })
}

impl VirtualKeyRecord {
    /// The key's own limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope("VK".into(), concat(&["vk:", &self.id]), &self.limits)
    }

    /// The key's call limit on one MCP tool (`client-tool`); windows laid out like the key's.
    pub fn tool_scope<'r>(&'r self, tool: &str, limit: &'r RateLimit) -> Scope<'r> {
        Scope {
            entity: format!("tool '{tool}'"),
            id: format!("tool:{}:{tool}", self.id),
            rate_limit: Some(limit),
            budgets: &[],
            calendar_aligned: self.limits.calendar_aligned,
            anchor_ms: self.limits.anchor_ms,
        }
    }

    /// The limits of the key's grant for one provider; windows laid out like the key's.
    pub fn grant_scope<'r>(&'r self, grant: &'r ProviderGrant) -> Option<Scope<'r>> {
        if grant.rate_limit.is_none() && grant.budgets.is_empty() {
            return None;
        }
        Some(Scope {
            entity: concat(&["provider config '", &grant.provider, "'"]),
            id: concat(&["pc:", &self.id, ":", &grant.provider]),
            rate_limit: grant.rate_limit.as_ref(),
            budgets: &grant.budgets,
            calendar_aligned: self.limits.calendar_aligned,
            anchor_ms: self.limits.anchor_ms,
        })
    }
}

impl TeamRecord {
    /// The team's limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(concat(&["team '", &self.name, "'"]), concat(&["team:", &self.id]), &self.limits)
    }
}

impl CustomerRecord {
    /// The customer's limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(concat(&["customer '", &self.name, "'"]), concat(&["customer:", &self.id]), &self.limits)
    }
}

impl ProviderRecord {
    /// The provider-wide limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(concat(&["provider '", &self.name, "'"]), concat(&["provider:", &self.name]), &self.limits)
    }
}

impl ModelRecord {
    /// The model-wide limits that apply on `provider`: those of configs for every provider and
    /// those for this one.
    pub fn scopes<'r>(&'r self, provider: &'r str) -> impl Iterator<Item = Scope<'r>> + 'r {
        self.configs.iter().filter(move |c| c.provider.as_deref().is_none_or(|p| p == provider)).filter_map(|c| {
            let entity = match &c.provider {
                Some(p) => format!("Model:{}:Provider:{p}", self.model),
                None => format!("Model:{}", self.model),
            };
            scope(entity, format!("model:{}", c.id), &c.limits)
        })
    }
}

impl ModelRecord {
    /// The limits of every config, whichever provider it is for (unnamed in messages).
    pub(crate) fn every_scope(&self) -> impl Iterator<Item = Scope<'_>> {
        self.configs.iter().filter_map(|c| scope(String::new(), format!("model:{}", c.id), &c.limits))
    }
}

/// The levels of a routed request above its key, in the contract's order (§4.2): provider-wide,
/// model-wide, the key's provider config. The key, its customer and its team follow.
pub fn route_scopes<'r>(
    key: &'r VirtualKeyRecord,
    route: &Route<'r>,
    model: Option<&'r ModelRecord>,
) -> Vec<Scope<'r>> {
    let mut all = Vec::new();
    all.extend(route.provider.scope());
    if let Some(model) = model {
        all.extend(model.scopes(&route.provider.name));
    }
    all.extend(route.grant.and_then(|g| key.grant_scope(g)));
    all
}

/// The counters an owner's limits use: the leader creates them before the record is visible, so
/// that workers only ever compare-and-swap existing counters (creating one is not atomic).
pub fn counter_keys(scope: &Scope<'_>) -> Vec<String> {
    let mut keys = Vec::new();
    if scope.rate_limit.and_then(RateLimit::requests).is_some() {
        keys.push(counter_key(&scope.id, Dimension::Requests));
    }
    if scope.rate_limit.and_then(RateLimit::tokens).is_some() {
        keys.push(counter_key(&scope.id, Dimension::Tokens));
    }
    keys.extend(scope.budgets.iter().map(|b| crate::budgets::budget_key(&scope.id, b)));
    keys
}

/// What a policy record's limits need before the record is written: the counters to create
/// (see [`counter_keys`]) and the budgets to lease from the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordLimits {
    /// Counters to create.
    pub counters: Vec<String>,
    /// Budgets to lease.
    pub leased: Vec<LeasedLimit>,
}

impl RecordLimits {
    /// What the limits of these owners need.
    pub(crate) fn of<'r>(scopes: impl IntoIterator<Item = Scope<'r>>) -> RecordLimits {
        let mut limits = RecordLimits::default();
        scopes.into_iter().for_each(|s| limits.add(&s));
        limits
    }

    fn add(&mut self, scope: &Scope<'_>) {
        self.counters.extend(counter_keys(scope));
        let rate = scope.rate_limit.into_iter().flat_map(|rl| {
            let requests =
                rl.request_max_limit.zip(rl.request_reset_duration.clone()).map(|l| (Dimension::Requests, l));
            let tokens = rl.token_max_limit.zip(rl.token_reset_duration.clone()).map(|l| (Dimension::Tokens, l));
            requests.into_iter().chain(tokens)
        });
        self.leased.extend(rate.map(|(dimension, (max, reset_duration))| LeasedLimit {
            counter: counter_key(&scope.id, dimension),
            max,
            reset_duration,
            calendar_aligned: scope.calendar_aligned,
            anchor_ms: scope.anchor_ms,
            override_micros: 0,
            override_until_ms: 0,
        }));
        self.leased.extend(scope.budgets.iter().map(|b| LeasedLimit {
            counter: crate::budgets::budget_key(&scope.id, b),
            max: b.max_micros,
            reset_duration: b.reset_duration.clone(),
            calendar_aligned: scope.calendar_aligned,
            anchor_ms: scope.anchor_ms,
            override_micros: b.override_micros,
            override_until_ms: b.override_until_ms,
        }));
    }
}

/// How much of the tightest limit of one dimension is left: the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// The limit.
    pub limit: u64,
    /// What is left of it after this request.
    pub remaining: u64,
    /// When its window resets (Unix milliseconds).
    pub reset_ms: u64,
}

/// The tightest request and token limits a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateReport {
    /// Requests.
    pub requests: Option<Headroom>,
    /// Tokens.
    pub tokens: Option<Headroom>,
}

impl RateReport {
    fn note(slot: &mut Option<Headroom>, h: Headroom) {
        if slot.is_none_or(|s| h.remaining < s.remaining) {
            *slot = Some(h);
        }
    }

    /// The `x-ratelimit-*` headers (OpenAI's names), resets in whole seconds from `now_ms`.
    pub fn headers(&self, now_ms: u64) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let dims = [
            (
                self.requests,
                ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
            ),
            (self.tokens, ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]),
        ];
        for (headroom, [limit, remaining, reset]) in dims {
            if let Some(h) = headroom {
                out.push((limit, h.limit.to_string()));
                out.push((remaining, h.remaining.to_string()));
                out.push((reset, format!("{}s", seconds_until(h.reset_ms, now_ms))));
            }
        }
        out
    }
}

pub(crate) fn seconds_until(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1_000).max(1)
}

/// A token counter to charge once the response reports its usage.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenMeter {
    key: String,
    max: u64,
    span: ResetDuration,
    calendar_aligned: bool,
    anchor_ms: u64,
}

/// What an admitted request holds: request reservations (to roll back if a later check
/// refuses) and the token counters to charge.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reservation {
    requests: Vec<(String, u64)>,
    /// The token counters of every level.
    pub tokens: Vec<TokenMeter>,
}

/// A counter's count in `window`.
pub(crate) fn count_of(counters: &impl Counters, key: &str, window: Window) -> u64 {
    counter::read(counters, key).count_in(window)
}

/// Applies `change` to a count that no fleet-wide grant limits; returns the count it saw and
/// whether it wrote.
fn update(
    counters: &impl Counters,
    key: &str,
    window: Window,
    change: impl Fn(u64) -> Option<u64>,
) -> Option<(u64, bool)> {
    counter::update(counters, key, window, |n, _| change(n)).map(|seen| (seen.count, seen.wrote))
}

/// The most this Envoy may count against a fleet-wide request or token limit: its lease while
/// the lease decides, else the whole limit (rate limits fail open to this Envoy's own count, as
/// before leases; budgets fail closed by default).
fn allowance(max: u64, count: u64, need: u64, grant: Option<counter::Grant>, control_plane_up: bool) -> u64 {
    match grant {
        Some(g) if leased(grant, max, count, need, control_plane_up) => g.granted.min(max),
        _ => max,
    }
}

pub(crate) fn window_of(scope: &Scope<'_>, span: ResetDuration, now_ms: u64) -> Window {
    span.window(now_ms, scope.anchor_ms, scope.calendar_aligned)
}

/// Checks every scope in order and reserves one request in each, or refuses with the first
/// violation (rolling back what it reserved). The report holds the tightest headroom seen,
/// refusal or not, for the `x-ratelimit-*` headers.
pub fn reserve(
    scopes: &[Scope<'_>],
    counters: &impl Counters,
    now_ms: u64,
    control_plane_up: bool,
) -> (RateReport, Result<Reservation, Denial>) {
    let mut report = RateReport::default();
    let mut held = Reservation::default();
    for scope in scopes {
        let mut details = Vec::new();
        let mut resets = Vec::new();
        let mut token_over = false;
        let mut request_over = false;
        let Some(rl) = scope.rate_limit else { continue };
        if let Some((max, span)) = rl.tokens() {
            let window = window_of(scope, span, now_ms);
            let key = counter_key(&scope.id, Dimension::Tokens);
            let (used, grant, unreadable) = match blocks::held_view(counters, &key, window.start_ms) {
                Some((used, grant)) => (used, grant, false),
                None => {
                    let counter = counter::read(counters, &key);
                    (counter.count_in(window), counter.grant_in(window.start_ms), counter.is_unreadable())
                }
            };
            RateReport::note(
                &mut report.tokens,
                Headroom { limit: max, remaining: max.saturating_sub(used), reset_ms: window.end_ms },
            );
            if used >= allowance(max, used, 1, grant, control_plane_up) {
                token_over = true;
                let every = rl.token_reset_duration.as_deref().unwrap_or_default();
                if unreadable {
                    resets.push(now_ms + 1);
                    details.push("the token counter is unreadable".to_owned());
                } else if used < max && control_plane_up && share_spent(grant, max) {
                    resets.push(now_ms + 1);
                    details.push(format!("this gateway's share of the token limit is used ({used}, renewing)"));
                } else {
                    resets.push(window.end_ms);
                    details.push(format!("token limit exceeded ({used}/{max}, resets every {every})"));
                }
            }
            held.tokens.push(TokenMeter {
                key,
                max,
                span,
                calendar_aligned: scope.calendar_aligned,
                anchor_ms: scope.anchor_ms,
            });
        }
        if let Some((max, span)) = rl.requests() {
            let window = window_of(scope, span, now_ms);
            let key = counter_key(&scope.id, Dimension::Requests);
            // Refused by a token limit: look, but do not take a request from the count.
            let take = !token_over;
            let seen = if take {
                blocks::take(counters, &key, window, 1, |n, grant| Some(allowance(max, n, 1, grant, control_plane_up)))
            } else {
                counter::update(counters, &key, window, |_, _| None)
            };
            let (count, wrote, grant) = seen.map_or((max, false, None), |s| (s.count, s.wrote, s.grant));
            let after = if wrote { count + 1 } else { count };
            RateReport::note(
                &mut report.requests,
                Headroom { limit: max, remaining: max.saturating_sub(after), reset_ms: window.end_ms },
            );
            if wrote {
                held.requests.push((key, window.start_ms));
            } else if take || count >= max {
                request_over = true;
                let every = rl.request_reset_duration.as_deref().unwrap_or_default();
                if seen.is_none() {
                    // Unreadable, or the swap kept losing: refused rather than counted wrongly.
                    resets.push(now_ms + 1);
                    details.push("the request counter could not be updated".to_owned());
                } else if count < max && control_plane_up && share_spent(grant, max) {
                    resets.push(now_ms + 1);
                    details.push(format!("this gateway's share of the request limit is used ({count}, renewing)"));
                } else {
                    resets.push(window.end_ms);
                    details.push(format!("request limit exceeded ({}/{max}, resets every {every})", count + 1));
                }
            }
        }
        if token_over || request_over {
            release(&held, counters);
            let kind = match (request_over, token_over) {
                (true, true) => RateKind::Both,
                (true, false) => RateKind::Requests,
                _ => RateKind::Tokens,
            };
            let reset = resets.into_iter().max().unwrap_or(now_ms);
            let violation = RateViolation {
                kind,
                entity: scope.entity.clone(),
                details,
                retry_after_s: seconds_until(reset, now_ms),
            };
            return (report, Err(Denial::RateLimited(violation)));
        }
    }
    (report, Ok(held))
}

/// Gives back the requests a reservation took (a later check refused the request).
pub fn release(reservation: &Reservation, counters: &impl Counters) {
    for (key, start) in &reservation.requests {
        blocks::refund(counters, key, *start, 1);
    }
}

/// Charges `tokens` to every token counter of a reservation, in the windows current at `now_ms`.
pub fn charge_tokens(reservation: &Reservation, tokens: u64, counters: &impl Counters, now_ms: u64) {
    if tokens == 0 {
        return;
    }
    for meter in &reservation.tokens {
        let window = meter.span.window(now_ms, meter.anchor_ms, meter.calendar_aligned);
        blocks::add(counters, &meter.key, window, tokens, Some(meter.max));
    }
}

/// Whether a scope is out of requests or tokens right now (read only): such a provider config
/// leaves the weighted draw.
pub fn exhausted(scope: &Scope<'_>, counters: &impl Counters, now_ms: u64) -> bool {
    let Some(rl) = scope.rate_limit else { return false };
    let full = |dimension, limit: Option<(u64, ResetDuration)>| {
        limit.is_some_and(|(max, span)| {
            let window = window_of(scope, span, now_ms);
            let key = counter_key(&scope.id, dimension);
            if blocks::looks_open(counters, &key, window.start_ms, now_ms) {
                return false;
            }
            let full = count_of(counters, &key, window) >= max;
            if !full {
                blocks::saw_open(counters, &key, window.start_ms, now_ms);
            }
            full
        })
    };
    full(Dimension::Requests, rl.requests()) || full(Dimension::Tokens, rl.tokens())
}

/// Takes one of a key's `max` in-flight slots, or refuses.
pub fn acquire_slot(key_id: &str, max: u32, counters: &impl Counters) -> Result<(), Denial> {
    let key = concurrency_key(key_id);
    let any = Window { start_ms: 0, end_ms: u64::MAX };
    match update(counters, &key, any, |n| (n < u64::from(max)).then_some(n + 1)) {
        Some((_, true)) => Ok(()),
        _ => Err(Denial::ConcurrencyLimited { max }),
    }
}

/// Gives back an in-flight slot.
pub fn release_slot(key_id: &str, counters: &impl Counters) {
    let any = Window { start_ms: 0, end_ms: u64::MAX };
    let _ = update(counters, &concurrency_key(key_id), any, |n| n.checked_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::tests::{Map, grant};

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
            assert_eq!(report.requests.unwrap().remaining, 2 - i);
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
        assert_eq!(report.requests.unwrap().remaining, 0);
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
        assert_eq!(report.tokens.unwrap().remaining, 0);
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
}

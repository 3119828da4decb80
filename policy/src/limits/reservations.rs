//! Checking and reserving at admission, charging and giving back after.

use super::dimensions::{Counting, in_admission_order, index};
use super::{DIMENSIONS, Dimension, Headroom, RateReport, Scope, TOKENS, concurrency_key, counter_key, seconds_until};
use crate::Denial;
use crate::blocks;
use crate::counter::{self, Counters};
use crate::lease::{leased, share_spent};
use crate::window::{ResetDuration, Window};

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

/// A counter to charge once the answer reports its usage (a [`Counting::Metered`] limit).
#[derive(Debug, Clone, PartialEq)]
struct Meter {
    /// Its dimension's place in [`DIMENSIONS`].
    dimension: usize,
    key: String,
    max: u64,
    span: ResetDuration,
    calendar_aligned: bool,
    anchor_ms: u64,
}

/// What an admitted request holds: what it took of per-request counts (to give back if a later
/// check refuses) and the metered counters to charge.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reservation {
    /// Counter keys and the window start each was taken in.
    taken: Vec<(String, u64)>,
    meters: Vec<Meter>,
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
        let Some(rl) = scope.rate_limit else { continue };
        // Each exceeded dimension, when it resets, and why.
        let mut over: Vec<(&Dimension, u64, String)> = Vec::new();
        for dimension in in_admission_order() {
            let Some((max, span)) = dimension.of(rl) else { continue };
            let window = window_of(scope, span, now_ms);
            let key = counter_key(&scope.id, dimension);
            let (noun, every) = (dimension.noun, dimension.every(rl));
            let exceeded = |count: u64, shown: u64, grant| {
                if count < max && control_plane_up && share_spent(grant, max) {
                    (now_ms + 1, format!("this gateway's share of the {noun} limit is used ({count}, renewing)"))
                } else {
                    (window.end_ms, format!("{noun} limit exceeded ({shown}/{max}, resets every {every})"))
                }
            };
            let refusal = match dimension.counting {
                Counting::Metered => {
                    let (used, grant, unreadable) = match blocks::held_view(counters, &key, window.start_ms) {
                        Some((used, grant)) => (used, grant, false),
                        None => {
                            let counter = counter::read(counters, &key);
                            (counter.count_in(window), counter.grant_in(window.start_ms), counter.is_unreadable())
                        }
                    };
                    let remaining = max.saturating_sub(used);
                    report.note(dimension, Headroom { limit: max, remaining, reset_ms: window.end_ms });
                    let refusal = (used >= allowance(max, used, 1, grant, control_plane_up)).then(|| {
                        if unreadable {
                            (now_ms + 1, format!("the {noun} counter is unreadable"))
                        } else {
                            exceeded(used, used, grant)
                        }
                    });
                    let (calendar_aligned, anchor_ms) = (scope.calendar_aligned, scope.anchor_ms);
                    let dimension = index(dimension);
                    held.meters.push(Meter { dimension, key, max, span, calendar_aligned, anchor_ms });
                    refusal
                }
                Counting::PerRequest => {
                    // Refused in another dimension: look, but do not take from the count.
                    let take = over.is_empty();
                    let seen = if take {
                        blocks::take(counters, &key, window, 1, |n, grant| {
                            Some(allowance(max, n, 1, grant, control_plane_up))
                        })
                    } else {
                        counter::update(counters, &key, window, |_, _| None)
                    };
                    let (count, wrote, grant) = seen.map_or((max, false, None), |s| (s.count, s.wrote, s.grant));
                    let after = if wrote { count + 1 } else { count };
                    let remaining = max.saturating_sub(after);
                    report.note(dimension, Headroom { limit: max, remaining, reset_ms: window.end_ms });
                    if wrote {
                        held.taken.push((key, window.start_ms));
                        None
                    } else if seen.is_none() {
                        // Unreadable, or the swap kept losing: refused rather than counted wrongly.
                        Some((now_ms + 1, format!("the {noun} counter could not be updated")))
                    } else {
                        (take || count >= max).then(|| exceeded(count, count + 1, grant))
                    }
                }
            };
            if let Some((reset, detail)) = refusal {
                over.push((dimension, reset, detail));
            }
        }
        if let Some((first, _, _)) = over.first() {
            release(&held, counters);
            let kind = if over.len() > 1 { RateKind::Both } else { first.refusal };
            let reset = over.iter().map(|(_, reset, _)| *reset).max().unwrap_or(now_ms);
            let violation = RateViolation {
                kind,
                entity: scope.entity.clone(),
                details: over.into_iter().map(|(_, _, detail)| detail).collect(),
                retry_after_s: seconds_until(reset, now_ms),
            };
            return (report, Err(Denial::RateLimited(violation)));
        }
    }
    (report, Ok(held))
}

/// Gives back the requests a reservation took (a later check refused the request).
pub fn release(reservation: &Reservation, counters: &impl Counters) {
    for (key, start) in &reservation.taken {
        blocks::refund(counters, key, *start, 1);
    }
}

/// Charges `tokens` to every token counter of a reservation, in the windows current at `now_ms`.
pub fn charge_tokens(reservation: &Reservation, tokens: u64, counters: &impl Counters, now_ms: u64) {
    if tokens == 0 {
        return;
    }
    for meter in reservation.meters.iter().filter(|m| m.dimension == index(&TOKENS)) {
        let window = meter.span.window(now_ms, meter.anchor_ms, meter.calendar_aligned);
        blocks::add(counters, &meter.key, window, tokens, Some(meter.max));
    }
}

/// Whether a scope is out of requests or tokens right now (read only): such a provider config
/// leaves the weighted draw.
pub fn exhausted(scope: &Scope<'_>, counters: &impl Counters, now_ms: u64) -> bool {
    let Some(rl) = scope.rate_limit else { return false };
    let full = |dimension: &Dimension| {
        dimension.of(rl).is_some_and(|(max, span)| {
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
    DIMENSIONS.into_iter().any(full)
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

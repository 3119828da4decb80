//! Dollar budgets within one Envoy: reserved at admission, settled when the response ends.
//!
//! Each budget is a counter of micro-dollars per window, changed only by compare-and-swap: its
//! value is `"v2 <window start> <spent>"` then this Envoy's lease grants (see `crate::counter`).
//! Admission reserves the request's estimated cost at every level and refuses with 402 when the
//! budget is spent, or when the estimate does not fit in what is left: the cap holds unless a
//! response costs more than its estimate. When the response ends the reservation is replaced by
//! the actual cost.

use crate::Denial;
use crate::blocks;
use crate::counter::{Counters, Grant, Seen};
use crate::lease::{elsewhere, leased, share_spent};
use crate::limits::{Scope, seconds_until, window_of};
use crate::pricing::dollars;
use crate::records::BudgetLimit;
use crate::settings::{BudgetAdmission, FailMode};
use crate::text::concat;
use crate::window::ResetDuration;

/// The shared-data key of one budget's counter (and the name of its leases): a reset of the
/// budget's usage starts a new counter.
pub fn budget_key(scope_id: &str, budget: &BudgetLimit) -> String {
    match budget.reset_at_ms {
        0 => concat(&["warden:budget:", scope_id, ":", &budget.reset_duration]),
        at => format!("warden:budget:{scope_id}:{}@{at}", budget.reset_duration),
    }
}

/// A refused request: which owner, how much, and when the window resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetViolation {
    /// The owner, as in rate-limit messages.
    pub entity: String,
    /// Spent (and reserved) in the window so far, µ$, across the fleet as far as this Envoy
    /// knows.
    pub spent_micros: u64,
    /// What other Envoys hold of the budget beyond their spend (their leases), µ$: not free to
    /// this request either.
    pub held_elsewhere_micros: u64,
    /// This request's estimated cost, µ$.
    pub estimate_micros: u64,
    /// The budget, µ$.
    pub max_micros: u64,
    /// Seconds until the window resets.
    pub retry_after_s: u64,
}

impl BudgetViolation {
    /// The contract's message, with the reservation (and what other Envoys hold) made explicit.
    pub fn message(&self) -> String {
        let taken = self.spent_micros.saturating_add(self.held_elsewhere_micros).saturating_add(self.estimate_micros);
        let held = match self.held_elsewhere_micros {
            0 => String::new(),
            held => format!(", held by other gateways {}", dollars(held)),
        };
        format!(
            "Budget exceeded: {} budget exceeded: {} >= {} dollars (spent {}{held} + this request's estimate {})",
            self.entity,
            dollars(taken),
            dollars(self.max_micros),
            dollars(self.spent_micros),
            dollars(self.estimate_micros),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Hold {
    key: String,
    window_start: u64,
    reserved: u64,
    span: ResetDuration,
    calendar_aligned: bool,
    anchor_ms: u64,
}

/// The budgets a request holds a reservation in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BudgetReservation {
    holds: Vec<Hold>,
    /// What is left of the tightest budget once this reservation is taken, µ$.
    pub remaining_micros: Option<u64>,
    /// Whether a budget was decided without a lease, by the fail mode alone.
    pub unleased: bool,
}

impl BudgetReservation {
    /// Whether any budget applies.
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }
}

/// What a budget allows this Envoy when its lease cannot decide: there is none, or it is spent
/// and the control plane is unreachable. `None`: nothing (fail mode `deny`).
fn fallback(max: u64, fail_mode: FailMode) -> Option<u64> {
    match fail_mode {
        FailMode::Local => Some(max),
        FailMode::Deny => None,
    }
}

/// Reserves `estimate` µ$ in every budget of every scope, in order, against this Envoy's lease
/// of each, or refuses with the first that cannot take it (giving back what was reserved);
/// `admission` says whether the estimate must fit. Past its lease, with `control_plane_up`
/// false, a budget follows `fail_mode`.
pub fn reserve(
    scopes: &[Scope<'_>],
    estimate: u64,
    counters: &impl Counters,
    now_ms: u64,
    (fail_mode, admission): (FailMode, BudgetAdmission),
    control_plane_up: bool,
) -> Result<BudgetReservation, Denial> {
    let mut held = BudgetReservation::default();
    for scope in scopes {
        for budget in scope.budgets {
            let Ok(span) = ResetDuration::parse(&budget.reset_duration) else { continue };
            let window = window_of(scope, span, now_ms);
            let key = budget_key(&scope.id, budget);
            let max = budget.max_at(window.start_ms);
            let leased = |spent: u64, grant: Option<Grant>| leased(grant, max, spent, estimate, control_plane_up);
            let limit = |spent: u64, grant: Option<Grant>| {
                let cap = match grant {
                    Some(g) if leased(spent, grant) => g.granted.min(max),
                    _ => fallback(max, fail_mode)?,
                };
                Some(match admission {
                    // Below the cap, the estimate is reserved whole even past it.
                    BudgetAdmission::Spent if spent < cap => cap.max(spent.saturating_add(estimate)),
                    _ => cap,
                })
            };
            let seen = blocks::take(counters, &key, window, estimate, limit);
            if let Some(seen @ Seen { wrote: true, .. }) = seen {
                // What is left to this Envoy: its lease's rest and what the fleet has not been granted.
                let left = match seen.grant {
                    Some(g) if g.granted < max => {
                        g.granted.saturating_sub(seen.count + estimate).saturating_add(g.free)
                    }
                    _ => max.saturating_sub(seen.count + estimate),
                };
                held.remaining_micros = Some(held.remaining_micros.map_or(left, |r| r.min(left)));
                held.unleased |= !leased(seen.count, seen.grant);
                held.holds.push(Hold {
                    key,
                    window_start: window.start_ms,
                    reserved: estimate,
                    span,
                    calendar_aligned: scope.calendar_aligned,
                    anchor_ms: scope.anchor_ms,
                });
                continue;
            }
            release(&held, counters);
            let entity = scope.entity.clone();
            let exceeded = |spent_micros, held_elsewhere_micros| {
                Denial::BudgetExceeded(BudgetViolation {
                    entity: entity.clone(),
                    spent_micros,
                    held_elsewhere_micros,
                    estimate_micros: estimate,
                    max_micros: max,
                    retry_after_s: seconds_until(window.end_ms, now_ms),
                })
            };
            let Some(seen) = seen else { return Err(exceeded(max, 0)) };
            return Err(match seen.grant {
                // The control plane has budget left to grant, or the limit just changed: this
                // Envoy's lease is being renewed.
                grant if control_plane_up && share_spent(grant, max) => Denial::BudgetPending(entity),
                _ if fail_mode == FailMode::Deny && !leased(seen.count, seen.grant) => {
                    Denial::BudgetUnavailable(entity)
                }
                _ => {
                    let (others_spent, others_hold) = seen.grant.map_or((0, 0), |g| elsewhere(g, max));
                    exceeded(seen.count.saturating_add(others_spent), others_hold)
                }
            });
        }
    }
    Ok(held)
}

/// Gives back a reservation whose request was refused later on.
pub fn release(reservation: &BudgetReservation, counters: &impl Counters) {
    for hold in &reservation.holds {
        blocks::refund(counters, &hold.key, hold.window_start, hold.reserved);
    }
}

/// Replaces the reservation by the actual cost. A window that has rolled over since admission
/// is charged the actual cost in the new window.
pub fn settle(reservation: &BudgetReservation, actual: u64, counters: &impl Counters, now_ms: u64) {
    for hold in &reservation.holds {
        let current = hold.span.window(now_ms, hold.anchor_ms, hold.calendar_aligned);
        if current.start_ms != hold.window_start {
            blocks::add(counters, &hold.key, current, actual, None);
        } else if actual <= hold.reserved {
            blocks::refund(counters, &hold.key, hold.window_start, hold.reserved - actual);
        } else {
            blocks::add(counters, &hold.key, current, actual - hold.reserved, None);
        }
    }
}

#[cfg(test)]
#[path = "budgets_tests.rs"]
mod tests;

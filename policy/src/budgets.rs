//! Dollar budgets within one Envoy: reserved at admission, settled when the response ends.
//!
//! Each budget is a counter of micro-dollars per window (`"<window start> <spent>"`, changed
//! only by compare-and-swap). Admission reserves the request's estimated cost at every level
//! and refuses with 402 when the budget is spent, or when the estimate does not fit in what is
//! left: the cap holds unless a response costs more than its estimate. When the response ends
//! the reservation is replaced by the actual cost.

use crate::Denial;
use crate::limits::{Counters, Scope, seconds_until, update, window_of};
use crate::pricing::dollars;
use crate::window::{ResetDuration, Window};

/// The shared-data key of one budget counter.
pub fn budget_key(scope_id: &str, reset_duration: &str) -> String {
    format!("warden:budget:{scope_id}:{reset_duration}")
}

/// A refused request: which owner, how much, and when the window resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetViolation {
    /// The owner, as in rate-limit messages.
    pub entity: String,
    /// Spent (and reserved) in the window so far, µ$.
    pub spent_micros: u64,
    /// This request's estimated cost, µ$.
    pub estimate_micros: u64,
    /// The budget, µ$.
    pub max_micros: u64,
    /// Seconds until the window resets.
    pub retry_after_s: u64,
}

impl BudgetViolation {
    /// The contract's message, with the reservation made explicit.
    pub fn message(&self) -> String {
        format!(
            "Budget exceeded: {} budget exceeded: {} >= {} dollars (spent {} + this request's estimate {})",
            self.entity,
            dollars(self.spent_micros.saturating_add(self.estimate_micros)),
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
}

impl BudgetReservation {
    /// Whether any budget applies.
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }
}

/// Reserves `estimate` µ$ in every budget of every scope, in order, or refuses with the first
/// that cannot take it (giving back what was reserved).
pub fn reserve(
    scopes: &[Scope<'_>],
    estimate: u64,
    counters: &impl Counters,
    now_ms: u64,
) -> Result<BudgetReservation, Denial> {
    let mut held = BudgetReservation::default();
    for scope in scopes {
        for budget in scope.budgets {
            let Ok(span) = ResetDuration::parse(&budget.reset_duration) else { continue };
            let window = window_of(scope, span, now_ms);
            let key = budget_key(&scope.id, &budget.reset_duration);
            let max = budget.max_micros;
            let fits = |spent: u64| (spent < max && spent.saturating_add(estimate) <= max).then(|| spent + estimate);
            match update(counters, &key, window, fits) {
                Some((spent, true)) => {
                    let left = max - spent - estimate;
                    held.remaining_micros = Some(held.remaining_micros.map_or(left, |r| r.min(left)));
                    held.holds.push(Hold {
                        key,
                        window_start: window.start_ms,
                        reserved: estimate,
                        span,
                        calendar_aligned: scope.calendar_aligned,
                        anchor_ms: scope.anchor_ms,
                    });
                }
                seen => {
                    release(&held, counters);
                    return Err(Denial::BudgetExceeded(BudgetViolation {
                        entity: scope.entity.clone(),
                        spent_micros: seen.map_or(max, |(spent, _)| spent),
                        estimate_micros: estimate,
                        max_micros: max,
                        retry_after_s: seconds_until(window.end_ms, now_ms),
                    }));
                }
            }
        }
    }
    Ok(held)
}

/// Gives back a reservation whose request was refused later on.
pub fn release(reservation: &BudgetReservation, counters: &impl Counters) {
    for hold in &reservation.holds {
        let window = Window { start_ms: hold.window_start, end_ms: u64::MAX };
        let _ = update(counters, &hold.key, window, |spent| Some(spent.saturating_sub(hold.reserved)));
    }
}

/// Replaces the reservation by the actual cost. A window that has rolled over since admission
/// is charged the actual cost in the new window.
pub fn settle(reservation: &BudgetReservation, actual: u64, counters: &impl Counters, now_ms: u64) {
    for hold in &reservation.holds {
        let current = hold.span.window(now_ms, hold.anchor_ms, hold.calendar_aligned);
        if current.start_ms == hold.window_start {
            let _ = update(counters, &hold.key, current, |spent| {
                Some(spent.saturating_sub(hold.reserved).saturating_add(actual))
            });
        } else {
            let _ = update(counters, &hold.key, current, |spent| Some(spent.saturating_add(actual)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::count_in;
    use crate::records::BudgetLimit;
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Map(RefCell<HashMap<String, (Vec<u8>, u32)>>);

    impl Counters for Map {
        fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
            self.0.borrow().get(key).map_or((None, 0), |(v, c)| (Some(v.clone()), *c))
        }
        fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
            let mut map = self.0.borrow_mut();
            let current = map.get(key).map_or(0, |(_, c)| *c);
            if cas != 0 && cas != current {
                return false;
            }
            map.insert(key.to_owned(), (value.to_vec(), current + 1));
            true
        }
    }

    fn scope<'r>(entity: &str, budgets: &'r [BudgetLimit]) -> Scope<'r> {
        Scope {
            entity: entity.into(),
            id: entity.to_lowercase(),
            rate_limit: None,
            budgets,
            calendar_aligned: false,
            anchor_ms: 0,
        }
    }

    /// What a budget counter holds in its current window, µ$.
    fn spent(scope: &Scope<'_>, reset_duration: &str, counters: &impl Counters, now_ms: u64) -> u64 {
        let Ok(span) = ResetDuration::parse(reset_duration) else { return 0 };
        let window = window_of(scope, span, now_ms);
        count_in(counters.read(&budget_key(&scope.id, reset_duration)).0.as_deref(), window)
    }

    fn dollar_a_day() -> Vec<BudgetLimit> {
        vec![BudgetLimit { max_micros: 1_000_000, reset_duration: "1d".into() }]
    }

    #[test]
    fn reserve_then_settle_to_the_actual_cost() {
        let map = Map::default();
        let budgets = dollar_a_day();
        let s = [scope("VK", &budgets)];
        let held = reserve(&s, 300_000, &map, 1_000).unwrap();
        assert_eq!(held.remaining_micros, Some(700_000));
        assert_eq!(spent(&s[0], "1d", &map, 1_000), 300_000);
        settle(&held, 120_000, &map, 2_000);
        assert_eq!(spent(&s[0], "1d", &map, 2_000), 120_000);
        // An estimate that does not fit in what is left is refused, naming the amounts.
        let _ = reserve(&s, 800_000, &map, 3_000).unwrap();
        let Err(Denial::BudgetExceeded(v)) = reserve(&s, 100_000, &map, 3_000) else { panic!() };
        assert_eq!((v.spent_micros, v.estimate_micros, v.max_micros), (920_000, 100_000, 1_000_000));
        assert_eq!(
            v.message(),
            "Budget exceeded: VK budget exceeded: 1.020000 >= 1.000000 dollars (spent 0.920000 + this request's estimate 0.100000)"
        );
        assert_eq!(Denial::BudgetExceeded(v).status(), 402);
        // The next day starts afresh.
        assert!(reserve(&s, 100_000, &map, 86_400_000).is_ok());
    }

    #[test]
    fn levels_in_order_and_a_refusal_gives_back_earlier_reservations() {
        let map = Map::default();
        let (wide, narrow) = (dollar_a_day(), vec![BudgetLimit { max_micros: 50, reset_duration: "1h".into() }]);
        let s = [scope("VK", &wide), scope("team 'ml'", &narrow)];
        let Err(Denial::BudgetExceeded(v)) = reserve(&s, 60, &map, 0) else { panic!() };
        assert_eq!(v.entity, "team 'ml'");
        assert_eq!(spent(&s[0], "1d", &map, 0), 0, "the key's reservation was given back");
        // A spent budget refuses even a free request.
        let full = [scope("VK", &narrow)];
        settle(&reserve(&full, 10, &map, 0).unwrap(), 50, &map, 0);
        assert!(reserve(&full, 0, &map, 1).is_err());
    }

    proptest! {
        /// However requests interleave, what is spent never passes the budget while actual
        /// costs stay within their estimates.
        #[test]
        fn spend_never_passes_the_cap(requests in proptest::collection::vec((1u64..200_000, 0u64..100), 1..60)) {
            let map = Map::default();
            let budgets = dollar_a_day();
            let s = [scope("VK", &budgets)];
            let mut open = Vec::new();
            for (estimate, fraction) in requests {
                if let Ok(held) = reserve(&s, estimate, &map, 0) {
                    open.push((held, estimate * fraction / 100));
                }
                if open.len() > 3 {
                    let (held, actual) = open.remove(0);
                    settle(&held, actual, &map, 0);
                }
                prop_assert!(spent(&s[0], "1d", &map, 0) <= 1_000_000);
            }
        }
    }
}

//! What a record's limits need before the record is written: the counters to create and the
//! limits to lease.

use super::{DIMENSIONS, Scope, counter_key};
use crate::lease::LeasedLimit;

/// The counters an owner's limits use: the leader creates them before the record is visible, so
/// that workers only ever compare-and-swap existing counters (creating one is not atomic).
pub fn counter_keys(scope: &Scope<'_>) -> Vec<String> {
    let mut keys: Vec<String> = scope
        .rate_limit
        .into_iter()
        .flat_map(|rl| DIMENSIONS.into_iter().filter(|d| d.of(rl).is_some()))
        .map(|d| counter_key(&scope.id, d))
        .collect();
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
            DIMENSIONS.into_iter().filter_map(|d| match (d.fields)(rl) {
                (Some(max), Some(every)) => Some((d, max, every.clone())),
                _ => None,
            })
        });
        self.leased.extend(rate.map(|(dimension, max, reset_duration)| LeasedLimit {
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

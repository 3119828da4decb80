//! How Envoys share a budget window: the sizing of each Envoy's lease, and when one is told to
//! give some back. Plain arithmetic on a window as the store keeps it; the store applies it
//! inside the transaction that reads and writes the window (`store::LeaseStore::lease`), and
//! `quota::Lease` serves it to the filters.
//!
//! Grants never add up to more than the budget, and each is a share of what is still free that
//! shrinks as the free part shrinks, so the last dollars are spread in small pieces instead of
//! stranded in one Envoy.

use warden_policy::lease::{LeaseGrant, LeaseWant};

/// The smallest share worth a round trip: 1/200 of the budget (or all that is free).
const MIN_SHARE_DIVISOR: u64 = 200;
/// How long after an Envoy wanted more than was free the others are told to give back: longer
/// than an idle Envoy's heartbeat, so that it hears.
pub const RECLAIM_MS: u64 = 15_000;

/// One Envoy's lease of one budget window, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// Its share in all.
    pub granted: u64,
    /// The spend (and reservations) it last reported.
    pub used: u64,
    /// Grows with every change, so the Envoy can tell a newer answer from an older one.
    pub version: u64,
}

impl Holder {
    /// What the budget must count as taken by this Envoy: its share, or its spend if a
    /// response cost more than its reservation and went past the share.
    fn committed(&self) -> u64 {
        self.granted.max(self.used)
    }
}

/// What is left of `max` to grant: the limit less every Envoy's lease (or its spend, if that
/// went past the lease).
pub fn free(max: u64, holders: &[Holder]) -> u64 {
    max.saturating_sub(holders.iter().map(Holder::committed).fold(0, u64::saturating_add))
}

/// Whether `node` should give back some of its lease of `window`: another Envoy wanted more
/// than was free lately, and this one holds more than it spent.
pub fn reclaims(window: &LeaseWindow, node: &str, now_ms: u64) -> bool {
    now_ms.saturating_sub(window.wanted_ms) < RECLAIM_MS
        && window.holders.iter().any(|h| h.node == node && h.granted > h.used)
}

/// One budget window as the store keeps it: its Envoys' leases and when an Envoy last asked for
/// more than was free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseWindow {
    pub holders: Vec<Holder>,
    /// Unix ms; 0: never.
    pub wanted_ms: u64,
}

/// Applies `node`'s want to `window` and returns its lease as it now stands, with what is left
/// free for anyone; `fleet` is how many Envoys ask for leases at all.
///
/// An Envoy alone gets all that is free: a single gateway behaves as if the limit were its own.
/// When an Envoy asks for more than is free, the window is *wanted*: for the next
/// [`RECLAIM_MS`], every other Envoy that reports while holding more than it spent is told to give
/// back (`reclaim`), so a gateway that joins late is not starved by one that came first.
pub fn decide(want: &LeaseWant, node: &str, window: &mut LeaseWindow, fleet: u64, now_ms: u64) -> LeaseGrant {
    let holders = &mut window.holders;
    let index = match holders.iter().position(|h| h.node == node) {
        Some(i) => i,
        None => {
            holders.push(Holder { node: node.to_owned(), granted: 0, used: 0, version: 0 });
            holders.len() - 1
        }
    };
    holders[index].used = want.used;
    holders[index].version += 1;
    if let Some(keep) = want.keep {
        let h = &mut holders[index];
        h.granted = h.granted.min(keep.max(h.used));
    }
    let free = free(want.max, holders);
    let h = &mut holders[index];
    let mut left = free;
    if want.more {
        let share = match fleet {
            0 | 1 => free,
            _ => free.div_ceil(2 * fleet).max(want.need).max(want.max / MIN_SHARE_DIVISOR).min(free),
        };
        if share < want.need.max(1) {
            window.wanted_ms = now_ms;
        }
        h.granted = h.committed() + share;
        left = free - share;
    }
    let (granted, version) = (h.granted, h.version);
    LeaseGrant {
        counter: want.counter.clone(),
        window_start_ms: want.window_start_ms,
        granted,
        free: left,
        version,
        reclaim: !want.more && reclaims(window, node, now_ms),
        max: want.max,
        others_used: others_used(&window.holders, node),
    }
}

/// What every Envoy but `node` reported spent (and reserved) in a window.
pub fn others_used(holders: &[Holder], node: &str) -> u64 {
    holders.iter().filter(|h| h.node != node).map(|h| h.used).fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(want: &LeaseWant, node: &str, holders: &mut Vec<Holder>, fleet: u64) -> (u64, u64) {
        let mut window = LeaseWindow { holders: std::mem::take(holders), wanted_ms: 0 };
        let grant = super::decide(want, node, &mut window, fleet, 0);
        *holders = window.holders;
        (grant.granted, grant.free)
    }

    fn want(used: u64, more: bool) -> LeaseWant {
        LeaseWant {
            counter: "c".into(),
            window_start_ms: 0,
            window_end_ms: 1,
            max: 1_000_000,
            used,
            more,
            keep: None,
            need: 0,
        }
    }

    #[test]
    fn shares_shrink_with_what_is_free_and_never_add_up_past_the_budget() {
        let mut holders = Vec::new();
        let (a, free) = decide(&want(0, true), "a", &mut holders, 3);
        assert_eq!((a, free), (166_667, 833_333), "a sixth of the budget for one of three Envoys");
        let (b, free) = decide(&want(0, true), "b", &mut holders, 3);
        assert_eq!((b, free), (138_889, 694_444));
        // Asking again adds a share of what is free now, on top of what it holds.
        let (a2, _) = decide(&want(100_000, true), "a", &mut holders, 3);
        assert_eq!(a2, 166_667 + 115_741);
        // However often they ask, the grants never pass the budget.
        for round in 0..200 {
            for node in ["a", "b", "c"] {
                let used = holders.iter().find(|h| h.node == node).map_or(0, |h| h.granted);
                decide(&want(used, true), node, &mut holders, 3);
                let total: u64 = holders.iter().map(|h| h.granted).sum();
                assert!(total <= 1_000_000, "round {round}: {total}");
            }
        }
        assert_eq!(holders.iter().map(|h| h.granted).sum::<u64>(), 1_000_000, "and all of it gets used");
        let mut window = LeaseWindow { holders, wanted_ms: 0 };
        let a = super::decide(&want(0, false), "a", &mut window, 3, 0);
        assert_eq!(a.version, 203, "every answer is newer than the one before");
    }

    #[test]
    fn the_last_share_is_at_least_half_a_percent_or_all_that_is_left() {
        let mut holders = vec![Holder { node: "a".into(), granted: 999_000, used: 999_000, version: 1 }];
        let (b, free) = decide(&want(0, true), "b", &mut holders, 2);
        assert_eq!((b, free), (1_000, 0));
        let mut holders = vec![Holder { node: "a".into(), granted: 900_000, used: 0, version: 1 }];
        assert_eq!(decide(&want(0, true), "b", &mut holders, 100).0, 5_000);
    }

    #[test]
    fn an_envoy_alone_gets_everything_and_gives_back_when_another_wants_some() {
        let mut window = LeaseWindow::default();
        let a = super::decide(&want(0, true), "a", &mut window, 1, 1_000);
        assert_eq!((a.granted, a.free, a.reclaim), (1_000_000, 0, false));
        // A second Envoy finds nothing free: the window is wanted.
        let b = super::decide(&LeaseWant { need: 10, ..want(0, true) }, "b", &mut window, 2, 2_000);
        assert_eq!((b.granted, window.wanted_ms), (0, 2_000));
        // The first reports its spend and is told to give back; it does, and the second gets a share.
        let a = super::decide(&want(300_000, false), "a", &mut window, 2, 2_500);
        assert!(a.reclaim);
        let back = LeaseWant { keep: Some(350_000), ..want(300_000, false) };
        assert_eq!(super::decide(&back, "a", &mut window, 2, 2_600).granted, 350_000);
        let b = super::decide(&LeaseWant { need: 10, ..want(0, true) }, "b", &mut window, 2, 2_700);
        assert_eq!(b.granted, 650_000_usize.div_ceil(4) as u64);
        // Long after the last want, nobody is asked to give back.
        assert!(!super::decide(&want(300_000, false), "a", &mut window, 2, 2_000 + RECLAIM_MS).reclaim);
    }

    #[test]
    fn a_busy_envoy_gets_what_it_needs_until_the_next_tick() {
        let mut holders = vec![Holder { node: "b".into(), granted: 500_000, used: 0, version: 1 }];
        let busy = LeaseWant { need: 200_000, ..want(0, true) };
        assert_eq!(decide(&busy, "a", &mut holders, 2), (200_000, 300_000));
        let greedy = LeaseWant { need: 900_000, ..want(200_000, true) };
        assert_eq!(decide(&greedy, "a", &mut holders, 2), (500_000, 0), "never more than is free");
    }

    #[test]
    fn giving_back_frees_the_rest_and_a_spend_past_the_share_still_counts() {
        let mut holders = vec![Holder { node: "a".into(), granted: 600_000, used: 100_000, version: 1 }];
        let back = LeaseWant { keep: Some(100_000), ..want(100_000, false) };
        assert_eq!(decide(&back, "a", &mut holders, 2), (100_000, 900_000));
        // An Envoy whose responses cost more than reserved: its spend counts, not its share.
        let mut holders = vec![Holder { node: "a".into(), granted: 100_000, used: 0, version: 1 }];
        decide(&want(150_000, false), "a", &mut holders, 2);
        assert_eq!(decide(&want(0, false), "b", &mut holders, 2), (0, 850_000));
        // A report alone grants nothing.
        assert_eq!(holders.iter().find(|h| h.node == "b").map(|h| h.granted), Some(0));
    }
}

//! Leases: how an Envoy spends a limit that spans Envoys — a budget, a request or a token limit —
//! without asking anyone per request.
//!
//! The control plane is the truth for every such limit. It grants each Envoy a share (a lease)
//! per limit and window, never granting more in all than the limit, so the fleet cannot pass it.
//! The filter counts every request against its own share (see `budgets.rs` and `limits.rs`); its
//! leader asks for more before the share runs out, fetches the next window's ahead of time,
//! reports what it has counted, and gives back what it does not need when the control plane asks
//! (another Envoy wants more than is free). The wire format is protobuf on `warden.v1.Quota/Lease`,
//! generated from `proto/warden/v1/quota.proto`.

use crate::counter::{Counter, Grant};
use crate::window::{ResetDuration, Window};
use serde::{Deserialize, Serialize};

pub use crate::proto::{LeaseGrant, LeaseReply, LeaseRequest, LeaseWant};

/// The gRPC service of leases.
pub const QUOTA_SERVICE: &str = "warden.v1.Quota";
/// Its one method: what an Envoy spent and wants, in; what it holds, out.
pub const LEASE_METHOD: &str = "Lease";

/// How long before a window ends the next window's lease is fetched.
pub const AHEAD_MS: u64 = 10_000;

/// Whether a lease decides a count of `count + need` against a fleet-wide `max`: there is one,
/// and the count fits in it or the control plane can be asked for more. Otherwise the limit's
/// fail mode decides.
pub fn leased(grant: Option<Grant>, max: u64, count: u64, need: u64, control_plane_up: bool) -> bool {
    grant.is_some_and(|g| control_plane_up || count.saturating_add(need) <= g.granted.min(max))
}

/// What the other Envoys had reported spent, and what they hold beyond it, when `grant` was
/// decided. A grant of the first counter layout does not say: all the others hold counts as
/// spent.
pub fn elsewhere(grant: Grant, max: u64) -> (u64, u64) {
    let others = max.saturating_sub(grant.granted).saturating_sub(grant.free);
    match grant.max {
        0 => (others, 0),
        _ => (grant.others_used, others.saturating_sub(grant.others_used)),
    }
}

/// Whether a refusal under `grant` is only this Envoy's share running out while the control
/// plane has more to grant, or the grant is stale (decided under another limit; the leader is
/// asking again): a retry a moment later may pass.
pub fn share_spent(grant: Option<Grant>, max: u64) -> bool {
    grant.is_some_and(|g| g.is_stale(max) || (g.granted < max && g.free > 0))
}

impl LeaseGrant {
    /// As kept beside the counter.
    pub fn grant(&self) -> Grant {
        Grant {
            window_start: self.window_start_ms,
            granted: self.granted,
            free: self.free,
            version: self.version,
            max: self.max,
            others_used: self.others_used,
        }
    }
}

/// A counter of a fleet-wide limit (a budget, a request or a token limit) that this Envoy
/// spends under a lease: what its leader needs to know to ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedLimit {
    /// Its counter's key.
    pub counter: String,
    /// The limit: µ$, requests or tokens.
    pub max: u64,
    /// Its window, e.g. `1d`.
    pub reset_duration: String,
    /// Window layout, as on the owner.
    pub calendar_aligned: bool,
    /// Where rolling windows start.
    pub anchor_ms: u64,
    /// A budget override (µ$), as `records::BudgetLimit` has it.
    #[serde(default)]
    pub override_micros: u64,
    /// When the override ends (Unix ms); 0: it does not.
    #[serde(default)]
    pub override_until_ms: u64,
}

/// What the leader does about one budget on a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this want (more, a spend report, or both).
    Send(LeaseWant),
    /// Give back what the current window's lease holds beyond the spend and `margin`, then
    /// report it.
    GiveBack {
        /// The window.
        window: Window,
        /// What to keep beyond the spend.
        margin: u64,
    },
}

impl LeasedLimit {
    fn window(&self, span: ResetDuration, at_ms: u64) -> Window {
        span.window(at_ms, self.anchor_ms, self.calendar_aligned)
    }

    /// The window `now_ms` falls in (`None` for a reset duration this filter cannot read).
    pub fn current_window(&self, now_ms: u64) -> Option<Window> {
        ResetDuration::parse(&self.reset_duration).ok().map(|span| self.window(span, now_ms))
    }

    /// The limit in `window`, override included.
    pub fn max_in(&self, window: Window) -> u64 {
        crate::records::limit_at(self.max, self.override_micros, self.override_until_ms, window.start_ms)
    }

    fn want(&self, window: Window, used: u64, more: bool) -> LeaseWant {
        LeaseWant {
            counter: self.counter.clone(),
            window_start_ms: window.start_ms,
            window_end_ms: window.end_ms,
            max: self.max_in(window),
            used,
            more,
            keep: None,
            need: 0,
        }
    }

    /// What to do on this tick, given the counter, what it counted at the last tick (`None`
    /// for a limit the leader has not seen before) and whether the control plane asked for
    /// leases back.
    ///
    /// - No lease for the window, or half of it spent: ask for more (unless it already holds
    ///   the whole budget).
    /// - The limit changed since the lease was decided: ask again under the new limit (for
    ///   more, unless the lease already holds all of it), so a raised budget is usable at once.
    /// - The spend moved: report it, so the control plane knows what is used.
    /// - Asked to (`reclaim`: another Envoy wants more than is free): give back all but one
    ///   more tick's worth of spend, for busier Envoys.
    /// - Near the window's end: fetch the next window's lease, so that it starts without a wait.
    pub fn steps(&self, counter: &Counter, last_count: Option<u64>, now_ms: u64, reclaim: bool) -> Vec<Step> {
        let Ok(span) = ResetDuration::parse(&self.reset_duration) else { return Vec::new() };
        let window = self.window(span, now_ms);
        let used = counter.count_in(window);
        let since_last = used.saturating_sub(last_count.unwrap_or(used));
        let mut steps = Vec::new();
        let max = self.max_in(window);
        match counter.grant_in(window.start_ms) {
            Some(g) if reclaim && g.granted > used.saturating_add(since_last) => {
                steps.push(Step::GiveBack { window, margin: since_last });
            }
            None => steps.push(Step::Send(self.want(window, used, true))),
            Some(g) if g.is_stale(max) => steps.push(Step::Send(self.want(window, used, g.granted < max))),
            Some(g) if g.granted < max && used.saturating_mul(2) >= g.granted => {
                steps.push(Step::Send(LeaseWant {
                    need: since_last.saturating_mul(2),
                    ..self.want(window, used, true)
                }));
            }
            Some(_) if last_count != Some(used) => steps.push(Step::Send(self.want(window, used, false))),
            Some(_) => {}
        }
        if window.end_ms.saturating_sub(now_ms) <= AHEAD_MS {
            let next = self.window(span, window.end_ms);
            if next.start_ms > window.start_ms && counter.grant_in(next.start_ms).is_none() {
                steps.push(Step::Send(self.want(next, 0, true)));
            }
        }
        steps
    }

    /// The want that reports a give-back: this Envoy now keeps `keep`.
    pub fn gave_back(&self, window: Window, keep: u64) -> LeaseWant {
        LeaseWant { keep: Some(keep), ..self.want(window, keep, false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::tests::{Map, grant};
    use crate::counter::{Counters, put_grant, read, update};

    const HOUR: u64 = 3_600_000;

    fn budget() -> LeasedLimit {
        LeasedLimit {
            counter: "warden:budget:vk:1:1h".into(),
            max: 1_000,
            reset_duration: "1h".into(),
            calendar_aligned: false,
            anchor_ms: 0,
            override_micros: 0,
            override_until_ms: 0,
        }
    }

    fn spend(map: &Map, amount: u64, now: u64) {
        let w = Window { start_ms: now / HOUR * HOUR, end_ms: now / HOUR * HOUR + HOUR };
        update(map, "warden:budget:vk:1:1h", w, |n, _| Some(n + amount));
    }

    fn wants(steps: &[Step]) -> Vec<(u64, u64, bool)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(w) => Some((w.window_start_ms, w.used, w.more)),
                Step::GiveBack { .. } => None,
            })
            .collect()
    }

    #[test]
    fn asks_without_a_lease_and_again_at_half_spent() {
        let (map, b) = (Map::default(), budget());
        let now = 1_000;
        assert_eq!(wants(&b.steps(&read(&map, &b.counter), None, now, false)), vec![(0, 0, true)]);
        put_grant(&map, &b.counter, grant(0, 100, 500, 1));
        spend(&map, 40, now);
        // Spent moved but less than half: report only.
        assert_eq!(wants(&b.steps(&read(&map, &b.counter), Some(0), now, false)), vec![(0, 40, false)]);
        assert!(b.steps(&read(&map, &b.counter), Some(40), now, false).is_empty(), "idle, plenty left: nothing");
        spend(&map, 10, now);
        let steps = b.steps(&read(&map, &b.counter), Some(40), now, false);
        assert_eq!(wants(&steps), vec![(0, 50, true)]);
        assert!(matches!(&steps[0], Step::Send(w) if w.need == 20), "twice the 10 spent since the last tick");
        // Holding the whole budget, it never asks.
        put_grant(&map, &b.counter, grant(0, 1_000, 0, 2));
        spend(&map, 900, now);
        assert_eq!(wants(&b.steps(&read(&map, &b.counter), Some(50), now, false)), vec![(0, 950, false)]);
    }

    #[test]
    fn it_gives_back_only_when_asked_keeping_a_tick_of_spend() {
        let (map, b) = (Map::default(), budget());
        put_grant(&map, &b.counter, grant(0, 300, 0, 1));
        spend(&map, 100, 5);
        assert!(b.steps(&read(&map, &b.counter), Some(100), 5, false).is_empty(), "idle, not asked: it keeps");
        let window = Window { start_ms: 0, end_ms: HOUR };
        assert_eq!(b.steps(&read(&map, &b.counter), Some(100), 5, true), vec![Step::GiveBack { window, margin: 0 }]);
        assert_eq!(b.gave_back(window, 100).keep, Some(100));
        spend(&map, 20, 5);
        assert_eq!(b.steps(&read(&map, &b.counter), Some(100), 5, true), vec![Step::GiveBack { window, margin: 20 }]);
    }

    #[test]
    fn the_next_window_is_fetched_ahead() {
        let (map, b) = (Map::default(), budget());
        put_grant(&map, &b.counter, grant(0, 100, 500, 1));
        let late = HOUR - AHEAD_MS / 2;
        assert_eq!(wants(&b.steps(&read(&map, &b.counter), Some(0), late, false)), vec![(HOUR, 0, true)]);
        put_grant(&map, &b.counter, grant(HOUR, 100, 400, 2));
        assert!(b.steps(&read(&map, &b.counter), Some(0), late, false).is_empty());
        assert!(map.read(&b.counter).0.is_some());
    }
}

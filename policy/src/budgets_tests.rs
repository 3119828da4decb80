use super::*;
use crate::counter::tests::{Map, grant};
use crate::counter::{put_grant, read};
use proptest::prelude::*;

const RESERVE_LOCAL: (FailMode, BudgetAdmission) = (FailMode::Local, BudgetAdmission::Reserve);
const RESERVE_DENY: (FailMode, BudgetAdmission) = (FailMode::Deny, BudgetAdmission::Reserve);

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
    let budget =
        BudgetLimit { max_micros: 0, reset_duration: reset_duration.into(), reset_at_ms: 0, ..BudgetLimit::default() };
    read(counters, &budget_key(&scope.id, &budget)).count_in(window)
}

fn dollar_a_day() -> Vec<BudgetLimit> {
    vec![BudgetLimit { max_micros: 1_000_000, reset_duration: "1d".into(), reset_at_ms: 0, ..BudgetLimit::default() }]
}

#[test]
fn reserve_then_settle_to_the_actual_cost() {
    let map = Map::default();
    let budgets = dollar_a_day();
    let s = [scope("VK", &budgets)];
    let held = reserve(&s, 300_000, &map, 1_000, RESERVE_LOCAL, true).unwrap();
    assert_eq!(held.remaining_micros, Some(700_000));
    assert_eq!(spent(&s[0], "1d", &map, 1_000), 300_000);
    settle(&held, 120_000, &map, 2_000);
    assert_eq!(spent(&s[0], "1d", &map, 2_000), 120_000);
    // An estimate that does not fit in what is left is refused, naming the amounts.
    let _ = reserve(&s, 800_000, &map, 3_000, RESERVE_LOCAL, true).unwrap();
    let Err(Denial::BudgetExceeded(v)) = reserve(&s, 100_000, &map, 3_000, RESERVE_LOCAL, true) else { panic!() };
    assert_eq!((v.spent_micros, v.estimate_micros, v.max_micros), (920_000, 100_000, 1_000_000));
    assert_eq!(
        v.message(),
        "Budget exceeded: VK budget exceeded: 1.020000 >= 1.000000 dollars (spent 0.920000 + this request's estimate 0.100000)"
    );
    assert_eq!(Denial::BudgetExceeded(v).status(), 402);
    // The next day starts afresh.
    assert!(reserve(&s, 100_000, &map, 86_400_000, RESERVE_LOCAL, true).is_ok());
}

#[test]
fn spent_admits_below_the_limit_whatever_the_estimate_and_reserve_never_passes_it() {
    let map = Map::default();
    let budgets = dollar_a_day();
    let s = [scope("VK", &budgets)];
    let spent_local = (FailMode::Local, BudgetAdmission::Spent);
    settle(&reserve(&s, 0, &map, 0, RESERVE_LOCAL, true).unwrap(), 950_000, &map, 0);
    // $0.05 left, an estimate of $0.10: refused under `reserve`, admitted under `spent`.
    assert!(matches!(reserve(&s, 100_000, &map, 0, RESERVE_LOCAL, true), Err(Denial::BudgetExceeded(_))));
    let held = reserve(&s, 100_000, &map, 0, spent_local, true).unwrap();
    assert_eq!(held.remaining_micros, Some(0));
    // While it runs, its reservation fills the budget: nothing else is admitted.
    assert!(matches!(reserve(&s, 1, &map, 0, spent_local, true), Err(Denial::BudgetExceeded(_))));
    // It cost $0.08: the budget ends $0.03 past its limit, and refuses from then on.
    settle(&held, 80_000, &map, 0);
    assert_eq!(spent(&s[0], "1d", &map, 0), 1_030_000);
    let Err(Denial::BudgetExceeded(v)) = reserve(&s, 1, &map, 0, spent_local, true) else { panic!() };
    assert_eq!(v.spent_micros, 1_030_000);
}

#[test]
fn an_override_raises_the_limit_in_the_windows_it_covers() {
    let map = Map::default();
    const DAY: u64 = 86_400_000;
    let budgets = [BudgetLimit {
        max_micros: 100,
        reset_duration: "1d".into(),
        override_micros: 1_000,
        override_until_ms: 2 * DAY,
        ..BudgetLimit::default()
    }];
    let s = [scope("VK", &budgets)];
    // Days one and two: 1,100 µ$; day three: 100 again.
    assert!(reserve(&s, 1_000, &map, 0, RESERVE_LOCAL, true).is_ok());
    assert!(reserve(&s, 1_000, &map, DAY, RESERVE_LOCAL, true).is_ok());
    let Err(Denial::BudgetExceeded(v)) = reserve(&s, 1_000, &map, 2 * DAY, RESERVE_LOCAL, true) else { panic!() };
    assert_eq!(v.max_micros, 100);
}

#[test]
fn levels_in_order_and_a_refusal_gives_back_earlier_reservations() {
    let map = Map::default();
    let (wide, narrow) = (
        dollar_a_day(),
        vec![BudgetLimit { max_micros: 50, reset_duration: "1h".into(), reset_at_ms: 0, ..BudgetLimit::default() }],
    );
    let s = [scope("VK", &wide), scope("team 'ml'", &narrow)];
    let Err(Denial::BudgetExceeded(v)) = reserve(&s, 60, &map, 0, RESERVE_LOCAL, true) else { panic!() };
    assert_eq!(v.entity, "team 'ml'");
    assert_eq!(spent(&s[0], "1d", &map, 0), 0, "the key's reservation was given back");
    // A spent budget refuses even a free request.
    let full = [scope("VK", &narrow)];
    settle(&reserve(&full, 10, &map, 0, RESERVE_LOCAL, true).unwrap(), 50, &map, 0);
    assert!(reserve(&full, 0, &map, 1, RESERVE_LOCAL, true).is_err());
}

#[test]
fn a_lease_caps_this_envoy_and_its_absence_follows_the_fail_mode() {
    let map = Map::default();
    let budgets = dollar_a_day();
    let s = [scope("VK", &budgets)];
    let key = budget_key("vk", &budgets[0]);
    // No lease yet: refused by default, the whole budget in this Envoy alone otherwise.
    assert_eq!(reserve(&s, 10, &map, 0, RESERVE_DENY, true), Err(Denial::BudgetUnavailable("VK".into())));
    assert_eq!(Denial::BudgetUnavailable("VK".into()).status(), 503);
    let local = reserve(&s, 10, &map, 0, RESERVE_LOCAL, true).unwrap();
    assert!(local.unleased);
    release(&local, &map);
    // A lease of $0.30 while the control plane has more: spend it, then "retry shortly".
    put_grant(&map, &key, grant(0, 300_000, 200_000, 1));
    let held = reserve(&s, 250_000, &map, 0, RESERVE_DENY, true).unwrap();
    assert!(!held.unleased);
    assert_eq!(held.remaining_micros, Some(50_000 + 200_000));
    assert_eq!(reserve(&s, 100_000, &map, 0, RESERVE_DENY, true), Err(Denial::BudgetPending("VK".into())));
    assert_eq!(Denial::BudgetPending("VK".into()).status(), 429);
    // Nothing left to grant anywhere: the budget is spent, as far as this Envoy can tell.
    put_grant(&map, &key, grant(0, 300_000, 0, 2));
    let Err(Denial::BudgetExceeded(v)) = reserve(&s, 100_000, &map, 0, RESERVE_DENY, true) else { panic!() };
    assert_eq!((v.spent_micros, v.max_micros), (950_000, 1_000_000));
    // A grant that says what the others spent: the refusal reports that, and what they hold.
    let told = Grant { max: 1_000_000, others_used: 200_000, ..grant(0, 300_000, 0, 3) };
    put_grant(&map, &key, told);
    let Err(Denial::BudgetExceeded(v)) = reserve(&s, 100_000, &map, 0, RESERVE_DENY, true) else { panic!() };
    assert_eq!((v.spent_micros, v.held_elsewhere_micros), (450_000, 500_000));
    assert_eq!(
        v.message(),
        "Budget exceeded: VK budget exceeded: 1.050000 >= 1.000000 dollars (spent 0.450000, held by other \
         gateways 0.500000 + this request's estimate 0.100000)"
    );
    // Granted under a budget since changed: stale, renewing.
    put_grant(&map, &key, Grant { max: 2_000_000, ..grant(0, 300_000, 0, 4) });
    assert_eq!(reserve(&s, 100_000, &map, 0, RESERVE_DENY, true), Err(Denial::BudgetPending("VK".into())));
    // The control plane unreachable: the lease is spent, then the fail mode decides.
    put_grant(&map, &key, grant(0, 400_000, 100_000, 5));
    assert!(reserve(&s, 100_000, &map, 0, RESERVE_DENY, false).is_ok(), "within the lease");
    assert_eq!(reserve(&s, 100_000, &map, 0, RESERVE_DENY, false), Err(Denial::BudgetUnavailable("VK".into())));
    let local = reserve(&s, 100_000, &map, 0, RESERVE_LOCAL, false).unwrap();
    assert!(local.unleased, "decided without the control plane");
    // The lease never lets this Envoy pass the budget itself.
    put_grant(&map, &key, grant(0, 5_000_000, 0, 6));
    assert!(reserve(&s, 800_000, &map, 0, RESERVE_DENY, true).is_err());
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
            if let Ok(held) = reserve(&s, estimate, &map, 0, RESERVE_LOCAL, true) {
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

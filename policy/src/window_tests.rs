use super::*;
use proptest::prelude::*;

#[test]
fn grammar() {
    assert_eq!(ResetDuration::parse("30s"), Ok(ResetDuration::Fixed { ms: 30_000 }));
    assert_eq!(ResetDuration::parse("1h30m"), Ok(ResetDuration::Fixed { ms: 5_400_000 }));
    assert_eq!(ResetDuration::parse("1.5d"), Ok(ResetDuration::Fixed { ms: 129_600_000 }));
    assert_eq!(ResetDuration::parse("daily"), Ok(ResetDuration::Fixed { ms: 86_400_000 }));
    assert_eq!(ResetDuration::parse("1m"), Ok(ResetDuration::Fixed { ms: 60_000 }));
    assert_eq!(ResetDuration::parse("1M"), Ok(ResetDuration::Months { months: 1.0 }));
    assert_eq!(ResetDuration::parse("monthly"), Ok(ResetDuration::Months { months: 1.0 }));
    assert_eq!(ResetDuration::parse("1Q"), Ok(ResetDuration::Months { months: 3.0 }));
    assert_eq!(ResetDuration::parse("2Y"), Ok(ResetDuration::Months { months: 24.0 }));
    assert_eq!(ResetDuration::parse("100Y"), Ok(ResetDuration::Months { months: 1_200.0 }));
    // Beyond a century calendar arithmetic would overflow: refused, as the admin API says.
    for bad in ["", "0s", "h", "1x", "-1d", "1d2", "0M", "abc", "1..5h", "1e15M", "101Y", "40000d", "1e300s"] {
        assert!(ResetDuration::parse(bad).is_err(), "{bad}");
    }
}

/// Unix milliseconds of a UTC date and time.
fn at(y: i64, m: i64, d: i64, h: u64) -> u64 {
    days_from_civil(y, m, d) as u64 * DAY_MS + h * 3_600_000
}

fn window(text: &str, now: u64, anchor: u64, aligned: bool) -> (u64, u64) {
    let w = ResetDuration::parse(text).unwrap().window(now, anchor, aligned);
    (w.start_ms, w.end_ms)
}

#[test]
fn rolling_windows_repeat_from_the_anchor() {
    let anchor = at(2026, 3, 10, 15);
    assert_eq!(window("1h", anchor + 5_400_000, anchor, false), (anchor + 3_600_000, anchor + 7_200_000));
    assert_eq!(window("1d", at(2026, 3, 12, 9), anchor, false), (at(2026, 3, 11, 15), at(2026, 3, 12, 15)));
    // A window ends exactly at its end: the next instant is the next window.
    assert_eq!(window("30s", anchor + 30_000, anchor, false).0, anchor + 30_000);
    assert_eq!(window("30s", anchor + 29_999, anchor, false).0, anchor);
}

#[test]
fn rolling_months_are_calendar_months_clamped_to_month_ends() {
    let anchor = at(2027, 1, 31, 12);
    assert_eq!(window("1M", at(2027, 2, 15, 0), anchor, false), (anchor, at(2027, 2, 28, 12)));
    assert_eq!(window("1M", at(2027, 3, 1, 0), anchor, false), (at(2027, 2, 28, 12), at(2027, 3, 31, 12)));
    // Leap year: 29 February.
    let leap = at(2028, 1, 31, 0);
    assert_eq!(window("1M", at(2028, 2, 29, 23), leap, false), (at(2028, 2, 29, 0), at(2028, 3, 31, 0)));
    assert_eq!(window("1Y", at(2029, 3, 1, 0), at(2028, 2, 29, 0), false), (at(2029, 2, 28, 0), at(2030, 2, 28, 0)));
    assert_eq!(window("1Q", at(2027, 5, 1, 0), at(2027, 1, 15, 0), false), (at(2027, 4, 15, 0), at(2027, 7, 15, 0)));
}

#[test]
fn aligned_windows_start_on_utc_boundaries() {
    let now = at(2026, 11, 25, 15) + 1_234;
    let anchor = at(2026, 11, 3, 7);
    assert_eq!(window("1d", now, anchor, true), (at(2026, 11, 25, 0), at(2026, 11, 26, 0)));
    // 2026-11-25 is a Wednesday: the week began on Monday the 23rd.
    assert_eq!(window("1w", now, anchor, true), (at(2026, 11, 23, 0), at(2026, 11, 30, 0)));
    assert_eq!(window("1M", now, anchor, true), (at(2026, 11, 1, 0), at(2026, 12, 1, 0)));
    assert_eq!(window("1Q", now, anchor, true), (at(2026, 10, 1, 0), at(2027, 1, 1, 0)));
    assert_eq!(window("1Y", now, anchor, true), (at(2026, 1, 1, 0), at(2027, 1, 1, 0)));
    assert_eq!(window("1h", now, anchor, true), (at(2026, 11, 25, 15), at(2026, 11, 25, 16)));
    // December rolls into the next year.
    assert_eq!(window("1M", at(2026, 12, 31, 23), anchor, true), (at(2026, 12, 1, 0), at(2027, 1, 1, 0)));
    // February of a leap year, and of a century that is not one.
    assert_eq!(window("1M", at(2028, 2, 29, 12), anchor, true).1, at(2028, 3, 1, 0));
    assert_eq!(window("1M", at(2100, 2, 28, 12), anchor, true).1, at(2100, 3, 1, 0));
}

#[test]
fn civil_round_trip() {
    for z in [-1_000_000i64, -1, 0, 1, 59, 365, 11_016, 2_932_896] {
        let (y, m, d) = civil_from_days(z);
        assert_eq!(days_from_civil(y, m, d), z);
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
}

proptest! {
    #[test]
    fn windows_hold_now_and_tile_time(
        text in prop_oneof![Just("30s"), Just("5m"), Just("1h"), Just("1d"), Just("2d"), Just("1w"), Just("1M"), Just("2M"), Just("1Q"), Just("1Y"), Just("1.5M")],
        anchor in 0u64..4_102_444_800_000,
        offset in 0u64..400 * DAY_MS,
        aligned in any::<bool>(),
    ) {
        let d = ResetDuration::parse(text).unwrap();
        let now = anchor + offset;
        let w = d.window(now, anchor, aligned);
        prop_assert!(w.start_ms <= now && now < w.end_ms, "{w:?} {now}");
        // The next window starts where this one ends.
        let next = d.window(w.end_ms, anchor, aligned);
        prop_assert_eq!(next.start_ms, w.end_ms);
        if aligned && matches!(d, ResetDuration::Months { months } if months.fract() == 0.0) {
            let (_, _, day) = civil_from_days(days(w.start_ms));
            prop_assert_eq!((day, w.start_ms % DAY_MS), (1, 0));
        }
    }

    #[test]
    fn never_panics(s in ".{0,12}") {
        let _ = ResetDuration::parse(&s);
    }
}

//! Reset durations in Bifrost's grammar (`30s`, `5m`, `1h30m`, `1d`, `1w`, `1M`, `1Q`, `1Y`,
//! `daily`…): parsed here so the admin API refuses what the enforcement could not apply.

/// A parsed reset duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResetDuration {
    /// A fixed span in milliseconds (seconds, minutes, hours, days, weeks).
    Fixed {
        /// The span.
        ms: u64,
    },
    /// `N` calendar months (`M`), quarters (`Q` = 3 months) or years (`Y` = 12 months).
    Months {
        /// How many months.
        months: f64,
    },
}

/// Why a reset duration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reset duration '{0}': use e.g. 30s, 5m, 1h, 1d, 1w, 1M, 1Q, 1Y, daily, weekly, monthly or yearly")]
pub struct DurationError(pub String);

impl ResetDuration {
    /// Parses a reset duration; it must be greater than zero.
    pub fn parse(text: &str) -> Result<ResetDuration, DurationError> {
        let err = || DurationError(text.to_owned());
        let text = text.trim();
        let aliased = match text {
            "daily" => "1d",
            "weekly" => "1w",
            "monthly" => "1M",
            "yearly" => "1Y",
            other => other,
        };
        let parsed = if let Some((n, months_per_unit)) = calendar_unit(aliased) {
            let n: f64 = n.parse().map_err(|_| err())?;
            ResetDuration::Months { months: n * months_per_unit }
        } else {
            ResetDuration::Fixed { ms: fixed_ms(aliased).ok_or_else(err)? }
        };
        match parsed {
            ResetDuration::Fixed { ms } if ms > 0 && ms <= MAX_MONTHS as u64 * 31 * DAY_MS => Ok(parsed),
            ResetDuration::Months { months } if months.is_finite() && months > 0.0 && months <= MAX_MONTHS => {
                Ok(parsed)
            }
            _ => Err(err()),
        }
    }
}

/// One window of a limit: usage counts from `start_ms` (inclusive) to `end_ms` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant of the window (Unix milliseconds).
    pub start_ms: u64,
    /// First instant after it.
    pub end_ms: u64,
}

const DAY_MS: u64 = 86_400_000;
/// The longest window, in months (a century): beyond it calendar arithmetic would overflow, and
/// no limit needs it.
const MAX_MONTHS: f64 = 1_200.0;
const WEEK_MS: u64 = 7 * DAY_MS;
/// 1970-01-05, the first Monday of the Unix epoch: aligned weeks start on Mondays.
const FIRST_MONDAY_MS: u64 = 4 * DAY_MS;

impl ResetDuration {
    /// The window `now_ms` falls in.
    ///
    /// Rolling windows (the default) repeat from `anchor_ms`, the owner's creation, so they do
    /// not drift. Calendar-aligned ones start on UTC boundaries and honour N: `1d` at 00:00,
    /// `1w` on Mondays, `1M` on the 1st, `3M`/`1Q` on quarter starts, `1Y` on 1 January, `2d`
    /// every other day counted from the epoch; sub-day spans align to the epoch (`1h` on the
    /// hour). Months are calendar months either way: a window anchored on 31 January ends on
    /// 28 (or 29) February, the next on 31 March. Fractional months (`1.5M`) count 30 days
    /// each, as Bifrost does.
    pub fn window(&self, now_ms: u64, anchor_ms: u64, calendar_aligned: bool) -> Window {
        let anchor = anchor_ms.min(now_ms);
        match *self {
            ResetDuration::Fixed { ms } => {
                let origin = match calendar_aligned {
                    true if ms % WEEK_MS == 0 => FIRST_MONDAY_MS.min(now_ms),
                    true => 0,
                    false => anchor,
                };
                fixed_window(now_ms, origin, ms)
            }
            ResetDuration::Months { months } if months.fract() != 0.0 => {
                let ms = (months * 30.0 * DAY_MS as f64) as u64;
                fixed_window(now_ms, if calendar_aligned { 0 } else { anchor }, ms.max(1))
            }
            ResetDuration::Months { months } => {
                let n = (months as i64).max(1);
                if calendar_aligned {
                    let (y, m, _) = civil_from_days(days(now_ms));
                    let index = y * 12 + (m - 1);
                    let first = index - index.rem_euclid(n);
                    Window { start_ms: month_start(first), end_ms: month_start(first + n) }
                } else {
                    let (ay, am, _) = civil_from_days(days(anchor));
                    let (ny, nm, _) = civil_from_days(days(now_ms));
                    let mut k = ((ny * 12 + nm) - (ay * 12 + am)) / n * n;
                    while k > 0 && add_months(anchor, k) > now_ms {
                        k -= n;
                    }
                    Window { start_ms: add_months(anchor, k), end_ms: add_months(anchor, k + n) }
                }
            }
        }
    }
}

fn fixed_window(now_ms: u64, origin: u64, span: u64) -> Window {
    let start = origin + (now_ms - origin) / span * span;
    Window { start_ms: start, end_ms: start.saturating_add(span) }
}

fn days(ms: u64) -> i64 {
    (ms / DAY_MS) as i64
}

/// Milliseconds at 00:00 UTC on the 1st of month `index` (= year × 12 + month − 1).
fn month_start(index: i64) -> u64 {
    let days = days_from_civil(index.div_euclid(12), index.rem_euclid(12) + 1, 1);
    u64::try_from(days).unwrap_or(0) * DAY_MS
}

/// `anchor` moved by `k` calendar months, the day clamped to the month's length.
fn add_months(anchor: u64, k: i64) -> u64 {
    let (y, m, d) = civil_from_days(days(anchor));
    let index = y * 12 + (m - 1) + k;
    let (ny, nm) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    let day = d.min(days_in_month(ny, nm));
    u64::try_from(days_from_civil(ny, nm, day)).unwrap_or(0) * DAY_MS + anchor % DAY_MS
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month 1–12, day 1–31).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn calendar_unit(text: &str) -> Option<(&str, f64)> {
    [('M', 1.0), ('Q', 3.0), ('Y', 12.0)]
        .into_iter()
        .find_map(|(unit, months)| text.strip_suffix(unit).map(|n| (n, months)))
}

/// `1.5d`, `2w`, or Go-style compounds such as `1h30m`, `100ms`.
fn fixed_ms(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let n: f64 = number.parse().ok()?;
        let scale = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 604_800_000.0,
            _ => return None,
        };
        total += n * scale;
        rest = after;
    }
    (total.is_finite() && total < 1e18).then_some(total as u64)
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;

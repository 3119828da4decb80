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
            ResetDuration::Fixed { ms } if ms > 0 => Ok(parsed),
            ResetDuration::Months { months } if months.is_finite() && months > 0.0 => Ok(parsed),
            _ => Err(err()),
        }
    }
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
mod tests {
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
        for bad in ["", "0s", "h", "1x", "-1d", "1d2", "0M", "abc", "1..5h"] {
            assert!(ResetDuration::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,12}") {
            let _ = ResetDuration::parse(&s);
        }
    }
}

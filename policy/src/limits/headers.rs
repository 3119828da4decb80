//! The `x-ratelimit-*` headers: the tightest request and token limits a request met.

use super::dimensions::{DIMENSIONS, Dimension, index};

/// How much of the tightest limit of one dimension is left: the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// The limit.
    pub limit: u64,
    /// What is left of it after this request.
    pub remaining: u64,
    /// When its window resets (Unix milliseconds).
    pub reset_ms: u64,
}

/// The tightest limit of each dimension a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateReport {
    /// By the dimension's place in [`DIMENSIONS`].
    tightest: [Option<Headroom>; DIMENSIONS.len()],
}

impl RateReport {
    /// The tightest limit of `dimension` met.
    pub fn of(&self, dimension: &Dimension) -> Option<Headroom> {
        self.tightest[index(dimension)]
    }

    /// Notes a limit met, if it is the tightest of its dimension so far.
    pub(crate) fn note(&mut self, dimension: &Dimension, h: Headroom) {
        let slot = &mut self.tightest[index(dimension)];
        if slot.is_none_or(|s| h.remaining < s.remaining) {
            *slot = Some(h);
        }
    }

    /// The `x-ratelimit-*` headers (OpenAI's names), resets in whole seconds from `now_ms`.
    pub fn headers(&self, now_ms: u64) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (dimension, headroom) in DIMENSIONS.iter().zip(self.tightest) {
            if let Some(h) = headroom {
                let [limit, remaining, reset] = dimension.headers;
                out.push((limit, h.limit.to_string()));
                out.push((remaining, h.remaining.to_string()));
                out.push((reset, format!("{}s", seconds_until(h.reset_ms, now_ms))));
            }
        }
        out
    }
}

pub(crate) fn seconds_until(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1_000).max(1)
}

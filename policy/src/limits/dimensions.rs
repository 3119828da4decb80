//! What a rate limit counts. A new kind of rate limit is one row here (and its two fields in
//! [`RateLimit`]).

use super::RateKind;
use crate::records::RateLimit;
use crate::window::ResetDuration;

/// How a request meets a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// One per request, taken at admission and given back if a later level refuses.
    PerRequest,
    /// Charged once the answer reports its usage; admission refuses once none is left.
    Metered,
}

/// One kind of rate limit.
#[derive(Debug)]
pub struct Dimension {
    /// In messages: `request limit exceeded`.
    pub noun: &'static str,
    /// Its `x-ratelimit-*` headers (OpenAI's names): limit, remaining, reset.
    pub headers: [&'static str; 3],
    /// Ends its counters' keys; names it (unique).
    pub suffix: &'static str,
    /// How a request meets it.
    pub counting: Counting,
    /// What a refusal by it alone is (refused in several dimensions: [`RateKind::Both`]).
    pub refusal: RateKind,
    /// Its maximum and window, as written, in a `rate_limit` object.
    pub fields: fn(&RateLimit) -> (Option<u64>, Option<&String>),
}

impl Dimension {
    /// Its maximum and window in `limit`, when both are set and the window parses.
    pub fn of(&self, limit: &RateLimit) -> Option<(u64, ResetDuration)> {
        let (max, every) = (self.fields)(limit);
        Some((max?, ResetDuration::parse(every?).ok()?))
    }

    /// Its window as written (`1m`), for messages.
    pub fn every<'l>(&self, limit: &'l RateLimit) -> &'l str {
        (self.fields)(limit).1.map_or("", String::as_str)
    }
}

/// Requests.
pub static REQUESTS: Dimension = Dimension {
    noun: "request",
    headers: ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
    suffix: "req",
    counting: Counting::PerRequest,
    refusal: RateKind::Requests,
    fields: |l| (l.request_max_limit, l.request_reset_duration.as_ref()),
};

/// Tokens.
pub static TOKENS: Dimension = Dimension {
    noun: "token",
    headers: ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"],
    suffix: "tok",
    counting: Counting::Metered,
    refusal: RateKind::Tokens,
    fields: |l| (l.token_max_limit, l.token_reset_duration.as_ref()),
};

/// Every dimension.
pub static DIMENSIONS: [&Dimension; 2] = [&REQUESTS, &TOKENS];

/// The order admission checks them in: metered ones first, so that a request refused for its
/// tokens takes nothing from a per-request count.
pub fn in_admission_order() -> impl Iterator<Item = &'static Dimension> {
    let metered = DIMENSIONS.into_iter().filter(|d| d.counting == Counting::Metered);
    metered.chain(DIMENSIONS.into_iter().filter(|d| d.counting == Counting::PerRequest))
}

/// Where `dimension` is in [`DIMENSIONS`].
pub(crate) fn index(dimension: &Dimension) -> usize {
    DIMENSIONS.iter().position(|d| d.suffix == dimension.suffix).unwrap_or(0)
}

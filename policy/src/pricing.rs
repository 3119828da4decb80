//! Prices and the cost of a response, in integer micro-dollars: no float drift, and a cost is
//! rounded up so that no request is free by rounding.

use serde::{Deserialize, Serialize};

/// One model's prices, in micro-dollars (µ$) per million tokens: $0.15 per 1M tokens is
/// `150_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt tokens.
    pub input_per_mtok: u64,
    /// Completion tokens.
    pub output_per_mtok: u64,
    /// Prompt tokens served from the provider's cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<u64>,
    /// A fixed price per request, on top of the tokens.
    #[serde(default)]
    pub per_request: u64,
}

impl crate::records::Record for Price {
    const KIND: crate::RecordKind = crate::RecordKind::Price;
}

/// The tokens a response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Of those, served from the provider's cache.
    pub cached_input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// What token limits count.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

impl Price {
    /// The cost of `usage` in micro-dollars, rounded up.
    pub fn cost(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let scaled = u128::from(fresh) * u128::from(self.input_per_mtok)
            + u128::from(cached) * u128::from(cached_price)
            + u128::from(usage.output_tokens) * u128::from(self.output_per_mtok);
        let tokens = u64::try_from(scaled.div_ceil(1_000_000)).unwrap_or(u64::MAX);
        tokens.saturating_add(self.per_request)
    }
}

/// Micro-dollars as a dollar amount with six decimals, e.g. `0.000150`.
pub fn dollars(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Prices Warden ships with, in $ per 1M tokens (input, cached input, output), as published by
/// the providers; operators override them through the admin API.
pub const DEFAULT_PRICES: &[(&str, Price)] = &[
    ("gpt-4o", per_m(2_500_000, Some(1_250_000), 10_000_000)),
    ("gpt-4o-mini", per_m(150_000, Some(75_000), 600_000)),
    ("gpt-4.1", per_m(2_000_000, Some(500_000), 8_000_000)),
    ("gpt-4.1-mini", per_m(400_000, Some(100_000), 1_600_000)),
    ("gpt-4.1-nano", per_m(100_000, Some(25_000), 400_000)),
    ("o3-mini", per_m(1_100_000, Some(550_000), 4_400_000)),
    ("o4-mini", per_m(1_100_000, Some(275_000), 4_400_000)),
    ("text-embedding-3-small", per_m(20_000, None, 0)),
    ("text-embedding-3-large", per_m(130_000, None, 0)),
    ("claude-3-5-sonnet-latest", per_m(3_000_000, Some(300_000), 15_000_000)),
    ("claude-3-5-haiku-latest", per_m(800_000, Some(80_000), 4_000_000)),
    ("claude-sonnet-4-5", per_m(3_000_000, Some(300_000), 15_000_000)),
    ("claude-haiku-4-5", per_m(1_000_000, Some(100_000), 5_000_000)),
    ("gemini-2.0-flash", per_m(100_000, Some(25_000), 400_000)),
    ("gemini-2.5-flash", per_m(300_000, Some(75_000), 2_500_000)),
    ("gemini-2.5-pro", per_m(1_250_000, Some(310_000), 10_000_000)),
];

const fn per_m(input: u64, cached: Option<u64>, output: u64) -> Price {
    Price { input_per_mtok: input, output_per_mtok: output, cached_input_per_mtok: cached, per_request: 0 }
}

/// A conservative token count for a prompt of `bytes` bytes: one token per 4 bytes, rounded up
/// (English text averages about 4 characters a token; other scripts need more bytes per token,
/// so bytes over-estimate rather than under-estimate).
pub fn estimate_prompt_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn costs_in_micro_dollars() {
        let mini = DEFAULT_PRICES.iter().find(|(m, _)| *m == "gpt-4o-mini").unwrap().1;
        // 1M input + 1M output tokens: $0.15 + $0.60.
        assert_eq!(
            mini.cost(&Usage { input_tokens: 1_000_000, cached_input_tokens: 0, output_tokens: 1_000_000 }),
            750_000
        );
        // Half the prompt cached: 500k × 0.15 + 500k × 0.075 = $0.1125.
        assert_eq!(
            mini.cost(&Usage { input_tokens: 1_000_000, cached_input_tokens: 500_000, output_tokens: 0 }),
            112_500
        );
        // 2 + 7 tokens cost 4.5 µ$, rounded up to 5; one token (0.15 µ$) is never free.
        assert_eq!(mini.cost(&Usage { input_tokens: 2, cached_input_tokens: 0, output_tokens: 7 }), 5);
        assert_eq!(mini.cost(&Usage { input_tokens: 1, ..Usage::default() }), 1);
        assert_eq!(mini.cost(&Usage::default()), 0);
        let per_call = Price { per_request: 2_000, ..Price::default() };
        assert_eq!(per_call.cost(&Usage { input_tokens: 10, ..Usage::default() }), 2_000);
        assert_eq!(dollars(1_234_567), "1.234567");
        assert_eq!(dollars(150), "0.000150");
    }

    proptest! {
        #[test]
        fn cost_is_exact_additive_and_never_overflows(
            input in 0u64..10_000_000_000, output in 0u64..10_000_000_000, cached in 0u64..10_000_000_000,
            pi in 0u64..100_000_000, po in 0u64..100_000_000,
        ) {
            let price = Price { input_per_mtok: pi, output_per_mtok: po, cached_input_per_mtok: None, per_request: 0 };
            let usage = Usage { input_tokens: input, cached_input_tokens: cached, output_tokens: output };
            let exact = u128::from(input) * u128::from(pi) + u128::from(output) * u128::from(po);
            let cost = u128::from(price.cost(&usage));
            // Rounded up by less than one micro-dollar, never down.
            prop_assert!(cost * 1_000_000 >= exact && cost * 1_000_000 < exact + 1_000_000);
            // Split in two requests, the sum is never less than the whole.
            let a = Usage { input_tokens: input / 2, cached_input_tokens: 0, output_tokens: output / 2 };
            let b = Usage { input_tokens: input - input / 2, cached_input_tokens: 0, output_tokens: output - output / 2 };
            prop_assert!(price.cost(&a) + price.cost(&b) >= price.cost(&usage));
        }
    }
}

//! What an answered request is charged, decided once when its answer ends (or is cut off): its
//! tokens to the token limits, its cost in place of the budgets' reservation, and the record the
//! usage ledger keeps of it.

use crate::budgets;
use crate::counter::Counters;
use crate::govern::{Dispatch, Upstream};
use crate::ledger::UsageRecord;
use crate::limits;
use crate::mcp::call_is_charged;
use crate::pricing::Usage;

/// How an admitted request's answer ended, as the adapter saw it pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    /// The upstream's HTTP status; 0 when the stream ended before one.
    pub status: u16,
    /// The usage the answer reported, if it reported any.
    pub usage: Option<Usage>,
    /// For an `/mcp` `tools/call`: the start of its JSON-RPC answer, whose message says how the
    /// call ended (its HTTP status is 200 whatever happened).
    pub rpc: Option<&'a [u8]>,
}

/// What a settled request cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// The cost, µ$, when it is known (priced usage, a tool's price, or a failure's zero).
    pub cost: Option<u64>,
    /// The usage ledger's record; `id` is the adapter's to fill in.
    pub record: UsageRecord,
}

/// Charges an answer: tokens to every token limit the request met, and the actual cost (or, when
/// it is unknown, the estimate) in place of the budgets' reservation. A tool call costs its
/// price unless it failed; an answer without usage stays charged its estimate, unless it failed.
pub fn settle(dispatch: &Dispatch, answer: Answer<'_>, counters: &impl Counters, now_ms: u64) -> Settled {
    let tool_call = dispatch.upstream == Upstream::Hub;
    // A tool call has a price, not tokens.
    let usage = answer.usage.filter(|_| !tool_call);
    if let Some(usage) = usage {
        limits::charge_tokens(&dispatch.reservation, usage.total(), counters, now_ms);
    }
    let status = answer.rpc.and_then(crate::rpc::call_outcome).unwrap_or(answer.status);
    let cost = match (usage, dispatch.price) {
        _ if tool_call => Some(if call_is_charged(status) { dispatch.estimate_micros } else { 0 }),
        (Some(usage), Some(price)) => Some(price.cost(&usage)),
        (None, _) if status >= 400 => Some(0),
        _ => None,
    };
    let actual = cost.unwrap_or(dispatch.estimate_micros);
    budgets::settle(&dispatch.budgets, actual, counters, now_ms);
    let usage = usage.unwrap_or_default();
    let c = &dispatch.charged;
    let record = UsageRecord {
        id: String::new(),
        at_ms: now_ms,
        key_id: c.key_id.clone(),
        team_id: c.team_id.clone().unwrap_or_default(),
        customer_id: c.customer_id.clone().unwrap_or_default(),
        provider: c.provider.clone(),
        model: c.model.clone(),
        input_tokens: usage.input_tokens,
        cached_input_tokens: usage.cached_input_tokens,
        output_tokens: usage.output_tokens,
        cost_micros: actual,
        status: u32::from(status),
        ..UsageRecord::default()
    };
    Settled { cost, record }
}

#[cfg(test)]
#[path = "settlement_tests.rs"]
mod tests;

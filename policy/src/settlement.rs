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
mod tests {
    use super::*;
    use crate::counter::tests::Map;
    use crate::govern::Charged;
    use crate::limits::Scope;
    use crate::pricing::Price;
    use crate::records::{BudgetLimit, RateLimit};
    use crate::settings::{BudgetAdmission, FailMode};

    const ESTIMATE: u64 = 500;

    fn provider() -> Upstream {
        Upstream::Provider { cluster: "warden-provider/openai/k1".into() }
    }

    /// A request reserved in a token limit and a $1 daily budget, priced at $1/$2 per 1M tokens.
    fn admitted(map: &Map, upstream: Upstream) -> Dispatch {
        let tokens =
            RateLimit { token_max_limit: Some(1_000), token_reset_duration: Some("1d".into()), ..RateLimit::default() };
        let budgets = [BudgetLimit {
            max_micros: 1_000_000,
            reset_duration: "1d".into(),
            reset_at_ms: 0,
            ..BudgetLimit::default()
        }];
        let scope = Scope {
            entity: "VK".into(),
            id: "vk:k".into(),
            rate_limit: Some(&tokens),
            budgets: &budgets,
            calendar_aligned: false,
            anchor_ms: 0,
        };
        let scopes = [scope];
        let reservation = limits::reserve(&scopes, map, 0, true).1.unwrap();
        let held =
            budgets::reserve(&scopes, ESTIMATE, map, 0, (FailMode::Local, BudgetAdmission::Reserve), true).unwrap();
        Dispatch {
            upstream,
            path: "/v1/chat/completions".into(),
            timeout_ms: None,
            body: None,
            reservation,
            holds_slot: false,
            stream: false,
            hide_usage_chunk: false,
            price: Some(Price { input_per_mtok: 1_000_000, output_per_mtok: 2_000_000, ..Price::default() }),
            budgets: held,
            estimate_micros: ESTIMATE,
            charged: Charged { key_id: "k".into(), model: "gpt-4o".into(), ..Charged::default() },
            acts_as_caller: false,
        }
    }

    fn spent(map: &Map) -> u64 {
        let budget =
            BudgetLimit { max_micros: 0, reset_duration: "1d".into(), reset_at_ms: 0, ..BudgetLimit::default() };
        let window = crate::window::Window { start_ms: 0, end_ms: 86_400_000 };
        crate::counter::read(map, &budgets::budget_key("vk:k", &budget)).count_in(window)
    }

    #[test]
    fn priced_usage_replaces_the_estimate_and_counts_its_tokens() {
        let map = Map::default();
        let d = admitted(&map, provider());
        assert_eq!(spent(&map), ESTIMATE);
        let usage = Usage { input_tokens: 100, cached_input_tokens: 0, output_tokens: 50 };
        let settled = settle(&d, Answer { status: 200, usage: Some(usage), rpc: None }, &map, 10);
        assert_eq!(settled.cost, Some(200), "100 in at $1/M + 50 out at $2/M");
        assert_eq!(spent(&map), 200);
        let r = &settled.record;
        assert_eq!(
            (r.key_id.as_str(), r.input_tokens, r.output_tokens, r.cost_micros, r.status),
            ("k", 100, 50, 200, 200)
        );
        let tokens = crate::counter::read(&map, "warden:rl:vk:k:tok");
        assert_eq!(tokens.count_in(crate::window::Window { start_ms: 0, end_ms: 86_400_000 }), 150);
    }

    #[test]
    fn no_usage_keeps_the_estimate_unless_the_answer_failed() {
        let map = Map::default();
        let ok = settle(&admitted(&map, provider()), Answer { status: 200, ..Answer::default() }, &map, 10);
        assert_eq!((ok.cost, ok.record.cost_micros, spent(&map)), (None, ESTIMATE, ESTIMATE));
        let failed = settle(&admitted(&map, provider()), Answer { status: 502, ..Answer::default() }, &map, 10);
        assert_eq!((failed.cost, spent(&map)), (Some(0), ESTIMATE));
    }

    #[test]
    fn a_tool_call_costs_its_price_unless_it_failed_and_never_counts_tokens() {
        let map = Map::default();
        let usage = Some(Usage { input_tokens: 10, cached_input_tokens: 0, output_tokens: 10 });
        let ok = settle(&admitted(&map, Upstream::Hub), Answer { status: 200, usage, rpc: None }, &map, 10);
        assert_eq!((ok.cost, ok.record.input_tokens), (Some(ESTIMATE), 0));
        // An /mcp call answers 200 whatever happened: its JSON-RPC error says it failed.
        let error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#;
        let failed = settle(&admitted(&map, Upstream::Hub), Answer { status: 200, usage, rpc: Some(error) }, &map, 10);
        assert_eq!((failed.cost, failed.record.status), (Some(0), 400));
        assert_eq!(spent(&map), ESTIMATE);
    }
}

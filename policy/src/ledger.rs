//! The usage ledger's wire format: what a filter reports about every answered request, and the
//! control plane's acknowledgement. Protobuf (prost), on the gRPC method
//! `warden.v1.Ledger/Report`.
//!
//! Every record carries an idempotency id: the control plane stores a record once however often
//! it is sent, and acknowledges only ids it has written, so a filter resends until acknowledged
//! and a restart of either side neither loses nor doubles usage.

use crate::text::push_hex;

/// The gRPC service of usage reports.
pub const LEDGER_SERVICE: &str = "warden.v1.Ledger";
/// Its one method: a batch of records in, the ids written out.
pub const REPORT_METHOD: &str = "Report";

/// One answered (or failed, or cancelled) request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UsageRecord {
    /// Unique per request: the idempotency id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// When the request ended (Unix milliseconds).
    #[prost(uint64, tag = "2")]
    pub at_ms: u64,
    #[prost(string, tag = "3")]
    /// The virtual key.
    pub key_id: String,
    #[prost(string, tag = "4")]
    /// Its team, if any.
    pub team_id: String,
    #[prost(string, tag = "5")]
    /// Its customer, if any.
    pub customer_id: String,
    #[prost(string, tag = "6")]
    /// The provider served it.
    pub provider: String,
    #[prost(string, tag = "7")]
    /// The model, as sent upstream.
    pub model: String,
    #[prost(uint64, tag = "8")]
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    #[prost(uint64, tag = "9")]
    /// Prompt tokens from the provider's cache.
    pub cached_input_tokens: u64,
    #[prost(uint64, tag = "10")]
    /// Completion tokens.
    pub output_tokens: u64,
    /// What was charged to the budgets, µ$.
    #[prost(uint64, tag = "11")]
    pub cost_micros: u64,
    /// The upstream's HTTP status (0 when the request ended before an answer), or the status
    /// of Warden's refusal.
    #[prost(uint32, tag = "12")]
    pub status: u32,
    /// For a refused request: the refusal's type and code (`model_blocked/model_blocked`);
    /// empty for a request that was served. Refusals go to the audit log, not the usage.
    #[prost(string, tag = "13")]
    pub denial: String,
    /// How many refusals it stands for: anonymous ones (no key, an unknown key) are reported
    /// one record per minute and reason. 0 means 1.
    #[prost(uint32, tag = "14")]
    pub repeats: u32,
}

/// A usage record's idempotency id: when it was made (Unix ms), then 64 random bits. Ids that
/// grow with time land at the end of the ledger's primary-key index, in SQLite and PostgreSQL
/// alike, instead of at a random page of it.
pub fn record_id(now_ms: u64, random: u64) -> String {
    let mut id = String::with_capacity(28);
    push_hex(&mut id, now_ms, 12);
    push_hex(&mut id, random, 16);
    id
}

/// Records sent together.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UsageBatch {
    #[prost(message, repeated, tag = "1")]
    /// The records.
    pub records: Vec<UsageRecord>,
}

/// The ids the control plane has written (or had written before).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UsageAck {
    #[prost(string, repeated, tag = "1")]
    /// Ids written.
    pub ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_ids_sort_by_time() {
        let (a, b) = (super::record_id(1_800_000_000_000, u64::MAX), super::record_id(1_800_000_000_001, 0));
        assert!(a < b, "{a} < {b}");
        assert_eq!(a.len(), 28);
    }
}

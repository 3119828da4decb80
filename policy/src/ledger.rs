//! The usage ledger's wire format: what a filter reports about every answered request, and the
//! control plane's acknowledgement. Protobuf on the gRPC method `warden.v1.Ledger/Report`; the
//! messages are generated from `proto/warden/v1/ledger.proto`.
//!
//! Every record carries an idempotency id: the control plane stores a record once however often
//! it is sent, and acknowledges only ids it has written, so a filter resends until acknowledged
//! and a restart of either side neither loses nor doubles usage.

use crate::text::push_hex;

pub use crate::proto::{UsageAck, UsageBatch, UsageRecord};

/// The gRPC service of usage reports.
pub const LEDGER_SERVICE: &str = "warden.v1.Ledger";
/// Its one method: a batch of records in, the ids written out.
pub const REPORT_METHOD: &str = "Report";

/// A usage record's idempotency id: when it was made (Unix ms), then 64 random bits. Ids that
/// grow with time land at the end of the ledger's primary-key index, in SQLite and PostgreSQL
/// alike, instead of at a random page of it.
pub fn record_id(now_ms: u64, random: u64) -> String {
    let mut id = String::with_capacity(28);
    push_hex(&mut id, now_ms, 12);
    push_hex(&mut id, random, 16);
    id
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

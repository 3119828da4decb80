//! `warden.v1.Ledger/Report`: filters report usage records in batches; the store writes them
//! once each (by idempotency id) and the answer names the ids written, which is all a filter
//! may forget.

use super::Method;
use crate::pki::Caller;
use crate::store::{AuditEvent, Store};
use std::sync::Arc;
use tonic::Status;
use tonic::codegen::BoxFuture;
use warden_policy::ledger::{LEDGER_SERVICE, REPORT_METHOD, UsageAck, UsageBatch, UsageRecord};

/// The most records one report may carry.
const MAX_BATCH: usize = 5_000;
/// The most tokens of one kind, or micro-dollars, one record may count (2^36: 68 billion
/// tokens, $68,719). A filter reports what a client asked for when an answer says nothing
/// (`max_tokens` of 2^64 − 1): bounded, the ledger's sums cannot overflow before 134 million
/// such records.
pub const MAX_RECORDED: u64 = 1 << 36;

/// A record with every count within [`MAX_RECORDED`].
fn bounded(mut record: UsageRecord) -> UsageRecord {
    for n in
        [&mut record.input_tokens, &mut record.cached_input_tokens, &mut record.output_tokens, &mut record.cost_micros]
    {
        *n = (*n).min(MAX_RECORDED);
    }
    record
}

/// The method, bound to the store.
#[derive(Clone)]
pub struct Report(pub Arc<dyn Store>);

impl Method for Report {
    type Request = UsageBatch;
    type Response = UsageAck;
    const SERVICE: &'static str = LEDGER_SERVICE;
    const METHOD: &'static str = REPORT_METHOD;

    /// Any node may report: a record names no node, and its id makes a resend harmless.
    fn answer(self, _: Caller, batch: UsageBatch) -> BoxFuture<UsageAck, Status> {
        let store = self.0;
        Box::pin(async move {
            if batch.records.len() > MAX_BATCH {
                return Err(Status::invalid_argument(format!("at most {MAX_BATCH} records per report")));
            }
            if batch.records.iter().any(|r| r.id.is_empty()) {
                return Err(Status::invalid_argument("every usage record needs an id"));
            }
            let records: Vec<UsageRecord> = batch.records.into_iter().map(bounded).collect();
            let written = store.write_usage(&records).await.map_err(|e| {
                tracing::error!(error = %e, "usage not written; the filter will resend");
                Status::unavailable("usage not written")
            })?;
            for denial in &written.new_denials {
                let detail = serde_json::json!({"id": denial.id, "at_ms": denial.at_ms, "model": denial.model,
                                                "provider": denial.provider, "team_id": denial.team_id,
                                                "customer_id": denial.customer_id,
                                                "repeats": denial.repeats.max(1)});
                let event = AuditEvent {
                    actor: "filter".into(),
                    action: format!("denied {}", denial.denial),
                    target: if denial.key_id.is_empty() {
                        "-".into()
                    } else {
                        format!("virtual key {}", denial.key_id)
                    },
                    status: u16::try_from(denial.status).unwrap_or(0),
                    detail: detail.to_string(),
                };
                if let Err(e) = store.append_audit(event).await {
                    tracing::error!(error = %e, "a denial could not be written to the audit log");
                }
            }
            tracing::debug!(records = written.ids.len(), new = written.new_ids.len(), "usage written");
            Ok(UsageAck { ids: written.ids })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UsageQuery;

    #[tokio::test]
    async fn absurd_counts_are_bounded_and_the_sums_still_answer() {
        let store: Arc<dyn Store> = Arc::new(crate::store::SqlStore::in_memory().await.unwrap());
        let absurd = |id: &str| UsageRecord {
            id: id.into(),
            at_ms: 1,
            key_id: "k".into(),
            output_tokens: u64::MAX,
            cost_micros: u64::MAX,
            status: 200,
            ..UsageRecord::default()
        };
        let batch = UsageBatch { records: vec![absurd("a"), absurd("b"), absurd("c")] };
        let ack = Report(store.clone()).answer(Caller::Trusted, batch).await.unwrap();
        assert_eq!(ack.ids.len(), 3);
        let totals = store.usage(&UsageQuery::default()).await.unwrap().into_iter().next().unwrap();
        assert_eq!((totals.output_tokens, totals.cost_micros), (3 * MAX_RECORDED, 3 * MAX_RECORDED));
    }
}

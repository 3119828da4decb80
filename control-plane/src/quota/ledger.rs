//! `warden.v1.Ledger/Report`: filters report usage records in batches; the store writes them
//! once each (by idempotency id) and the answer names the ids written, which is all a filter
//! may forget.

use super::Method;
use crate::store::{AuditEvent, Store};
use std::sync::Arc;
use tonic::Status;
use tonic::codegen::BoxFuture;
use warden_policy::ledger::{LEDGER_SERVICE, REPORT_METHOD, UsageAck, UsageBatch};

/// The most records one report may carry.
const MAX_BATCH: usize = 5_000;

/// The method, bound to the store.
#[derive(Clone)]
pub struct Report(pub Arc<dyn Store>);

impl Method for Report {
    type Request = UsageBatch;
    type Response = UsageAck;
    const SERVICE: &'static str = LEDGER_SERVICE;
    const METHOD: &'static str = REPORT_METHOD;

    fn answer(self, batch: UsageBatch) -> BoxFuture<UsageAck, Status> {
        let store = self.0;
        Box::pin(async move {
            if batch.records.len() > MAX_BATCH {
                return Err(Status::invalid_argument(format!("at most {MAX_BATCH} records per report")));
            }
            if batch.records.iter().any(|r| r.id.is_empty()) {
                return Err(Status::invalid_argument("every usage record needs an id"));
            }
            let written = store.write_usage(&batch.records).await.map_err(|e| {
                tracing::error!(error = %e, "usage not written; the filter will resend");
                Status::unavailable("usage not written")
            })?;
            for denial in &written.new_denials {
                let detail = serde_json::json!({"id": denial.id, "at_ms": denial.at_ms, "model": denial.model,
                                                "provider": denial.provider, "team_id": denial.team_id,
                                                "customer_id": denial.customer_id});
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

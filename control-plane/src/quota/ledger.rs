//! `warden.v1.Ledger/Report`: filters report usage records in batches; the store writes them
//! once each (by idempotency id) and the answer names the ids written, which is all a filter
//! may forget.
//!
//! A hand-written tonic service: one unary method, with the messages from `warden_policy`.

use crate::store::{AuditEvent, Store};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use warden_policy::ledger::{UsageAck, UsageBatch};

/// The most records one report may carry.
const MAX_BATCH: usize = 5_000;

#[derive(Clone)]
pub struct LedgerServer {
    store: Arc<dyn Store>,
}

impl LedgerServer {
    pub fn new(store: Arc<dyn Store>) -> LedgerServer {
        LedgerServer { store }
    }
}

struct Report(Arc<dyn Store>);

impl UnaryService<UsageBatch> for Report {
    type Response = UsageAck;
    type Future = BoxFuture<Response<UsageAck>, Status>;

    fn call(&mut self, request: Request<UsageBatch>) -> Self::Future {
        let store = self.0.clone();
        Box::pin(async move {
            let batch = request.into_inner();
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
            tracing::debug!(records = written.ids.len(), "usage written");
            Ok(Response::new(UsageAck { ids: written.ids }))
        })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for LedgerServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let store = self.store.clone();
        let path = format!("/{}/{}", warden_policy::ledger::LEDGER_SERVICE, warden_policy::ledger::REPORT_METHOD);
        if request.uri().path() != path {
            return Box::pin(async {
                let mut response = http::Response::new(Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Report(store), request).await)
        })
    }
}

impl NamedService for LedgerServer {
    const NAME: &'static str = warden_policy::ledger::LEDGER_SERVICE;
}

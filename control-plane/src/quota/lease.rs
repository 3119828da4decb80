//! `warden.v1.Quota/Lease`: how much of each budget every Envoy may spend.
//!
//! The store keeps, per budget window, every Envoy's lease (granted, and the spend it last
//! reported), and applies a call's wants in one transaction, so several control planes on one
//! database never grant the same dollar twice. The sizing is [`crate::allocation::decide`].

use super::Method;
use crate::pki::Caller;
use crate::store::Store;
use crate::xds::Cache;
use std::sync::Arc;
use tonic::Status;
use tonic::codegen::BoxFuture;
use warden_policy::Window;
use warden_policy::lease::{LEASE_METHOD, LeaseReply, LeaseRequest, LeaseWant, QUOTA_SERVICE};

/// The most wants one call may carry.
const MAX_WANTS: usize = 10_000;
/// The method, bound to the store and to the published records, whose limits decide (never
/// the maximum a want claims).
#[derive(Clone)]
pub struct Lease(pub Arc<dyn Store>, pub Arc<Cache>);

/// A want as the records have it: its maximum is the limit the published record sets for that
/// counter and window; a counter no record has gets nothing (its record may reach this control
/// plane a moment later, and the Envoy asks again).
fn as_published(mut want: LeaseWant, cache: &Cache) -> LeaseWant {
    let window = Window { start_ms: want.window_start_ms, end_ms: want.window_end_ms };
    want.max = cache.leased(&want.counter).map_or(0, |limit| limit.max_in(window));
    want
}

impl Method for Lease {
    type Request = LeaseRequest;
    type Response = LeaseReply;
    const SERVICE: &'static str = QUOTA_SERVICE;
    const METHOD: &'static str = LEASE_METHOD;

    fn answer(self, caller: Caller, request: LeaseRequest) -> BoxFuture<LeaseReply, Status> {
        let Lease(store, cache) = self;
        Box::pin(async move {
            if request.node.is_empty() {
                return Err(Status::invalid_argument("a lease call needs the Envoy's node id"));
            }
            // One node cannot take or give back another's leases.
            caller.check(&request.node)?;
            if request.wants.len() > MAX_WANTS {
                return Err(Status::invalid_argument(format!("at most {MAX_WANTS} wants per call")));
            }
            let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
            let wants: Vec<LeaseWant> = request.wants.into_iter().map(|w| as_published(w, &cache)).collect();
            let grants = store.lease(&request.node, &wants, now_ms).await.map_err(|e| {
                tracing::error!(error = %e, "leases not granted; the filter asks again");
                Status::unavailable("leases not granted")
            })?;
            Ok(LeaseReply { grants })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_is_decided_against_the_published_limit_never_the_claimed_one() {
        use warden_policy::records::BudgetLimit;
        let cache = Arc::new(Cache::default());
        let mut key = warden_policy::VirtualKeyRecord::new("vk-1", "team", true);
        key.limits.budgets =
            vec![BudgetLimit { max_micros: 1_000, reset_duration: "1d".into(), ..BudgetLimit::default() }];
        cache.upsert([("vk:abc".to_owned(), serde_json::to_vec(&key).unwrap())]);
        let store: Arc<dyn Store> = Arc::new(crate::store::SqlStore::in_memory().await.unwrap());
        let lease = |counter: &str| LeaseWant {
            counter: counter.into(),
            window_start_ms: 0,
            window_end_ms: 86_400_000,
            max: 1 << 50,
            used: 0,
            more: true,
            keep: None,
            need: 1 << 49,
        };
        let asked = LeaseRequest {
            node: "n".into(),
            wants: vec![lease("warden:budget:vk:vk-1:1d"), lease("warden:budget:forged:1d")],
        };
        let reply = Lease(store, cache.clone()).answer(Caller::Trusted, asked).await.unwrap();
        let granted: Vec<(u64, u64)> = reply.grants.iter().map(|g| (g.granted, g.max)).collect();
        assert_eq!(granted, [(1_000, 1_000), (0, 0)], "the record's $0.001, and nothing for a counter no record has");
        cache.remove("vk:abc");
        assert!(cache.leased("warden:budget:vk:vk-1:1d").is_none(), "withdrawn with its record");
    }
}

//! The leader's side of budget leases (see `warden_policy::lease`): which budgets this Envoy
//! spends, and one `warden.v1.Quota/Lease` call at a time that reports their spend, asks for
//! more, fetches next windows ahead and gives back what idles. Grants land beside the counters,
//! where every worker's admission finds them.

use crate::host;
use crate::metrics::Metrics;
use crate::shared::{self, SharedCounters};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use warden_policy::counter;
use warden_policy::lease::{LEASE_METHOD, LeaseReply, LeaseRequest, LeasedBudget, QUOTA_SERVICE, Step};

/// The budgets of every record, by record name, as JSON: the leader's registry survives it.
const REGISTRY_KEY: &str = "warden:leased";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Records the budgets one applied policy batch brings (`None`: the record is gone).
pub fn register<'a>(changes: impl IntoIterator<Item = (&'a str, Vec<LeasedBudget>)>) {
    let mut registry = read_registry();
    for (name, budgets) in changes {
        if budgets.is_empty() {
            registry.remove(name);
        } else {
            registry.insert(name.to_owned(), budgets);
        }
    }
    match serde_json::to_vec(&registry) {
        Ok(bytes) => shared::put(REGISTRY_KEY, &bytes),
        Err(e) => log::error!("warden: cannot store the lease registry: {e}"),
    }
}

fn read_registry() -> BTreeMap<String, Vec<LeasedBudget>> {
    serde_json::from_slice(&shared::get(REGISTRY_KEY)).unwrap_or_default()
}

#[derive(Default)]
pub struct Leases {
    call: Option<u32>,
    /// What each counter held at the last tick: tells a moving spend from an idle one.
    last_counts: HashMap<String, u64>,
}

impl Leases {
    pub fn owns(&self, token: u32) -> bool {
        self.call == Some(token)
    }

    /// This VM no longer leads. A call in flight is still answered here: its grants are the
    /// control plane's and apply whoever leads.
    pub fn stop(&mut self) {
        self.last_counts.clear();
    }

    /// Works out every budget's step and sends what needs saying, unless a call is in flight.
    pub fn tick(&mut self, cluster: &str, now_ms: u64, metrics: &Metrics) {
        if self.call.is_some() {
            return;
        }
        let mut wants = Vec::new();
        for budget in read_registry().into_values().flatten() {
            let Some(window) = budget.current_window(now_ms) else { continue };
            let counter = counter::read(&SharedCounters, &budget.counter);
            let last = self.last_counts.get(&budget.counter).copied();
            for step in budget.steps(&counter, last, now_ms) {
                match step {
                    Step::Send(want) => wants.push(want),
                    Step::GiveBack(window) => {
                        if let Some(keep) = counter::give_back(&SharedCounters, &budget.counter, window) {
                            wants.push(budget.gave_back(window, keep));
                        }
                    }
                }
            }
            self.last_counts.insert(budget.counter.clone(), counter.count_in(window));
        }
        if wants.is_empty() {
            return;
        }
        let node = host::property(&["xds", "node", "id"]).unwrap_or_default();
        let request = LeaseRequest { node, wants };
        match host::dispatch_grpc_call(cluster, QUOTA_SERVICE, LEASE_METHOD, &request.encode_to_vec(), CALL_TIMEOUT) {
            Ok(token) => self.call = Some(token),
            Err(e) => {
                host::increment(metrics.lease_failures, 1);
                log::warn!("warden: cannot ask for leases on cluster '{cluster}': {e:?}");
            }
        }
    }

    /// Stores the grants; a failed call is retried on the next tick.
    pub fn on_response(&mut self, status: u32, size: usize, metrics: &Metrics) {
        self.call = None;
        if status != 0 {
            host::increment(metrics.lease_failures, 1);
            log::warn!("warden: lease call failed with gRPC status {status}");
            return;
        }
        let Some(reply) = host::grpc_message(size).and_then(|b| LeaseReply::decode(b.as_slice()).ok()) else {
            host::increment(metrics.lease_failures, 1);
            return;
        };
        for grant in &reply.grants {
            counter::put_grant(&SharedCounters, &grant.counter, grant.grant());
        }
    }
}

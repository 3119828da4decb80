//! The leader's side of leases (see `warden_policy::lease`): which fleet-wide limits this Envoy
//! counts, and one `warden.v1.Quota/Lease` call at a time that reports their counts, asks for
//! more, fetches next windows ahead and gives back what idles or is asked back. Grants land
//! beside the counters, where every worker's admission finds them.

use crate::host;
use crate::metrics::Metrics;
use crate::shared::{self, SharedCounters};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use warden_policy::counter;
use warden_policy::lease::{LEASE_METHOD, LeaseReply, LeaseRequest, LeasedLimit, QUOTA_SERVICE, Step};

/// The leased limits of every record, by record name, as JSON: the leader's registry survives it.
const REGISTRY_KEY: &str = "warden:leased";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// With nothing to say for this long (and at start), the leader calls anyway: the control plane
/// shares limits among the Envoys it has heard from lately, so it must know this one is there,
/// and it answers with any lease it wants back.
const HEARTBEAT_MS: u64 = 10_000;

/// Records the leased limits one applied policy batch brings (none: the record is gone);
/// returns whether a limit is new or changed, and so needs a lease.
pub fn register<'a>(changes: impl IntoIterator<Item = (&'a str, Vec<LeasedLimit>)>) -> bool {
    let mut registry = read_registry();
    let mut needs_leases = false;
    for (name, budgets) in changes {
        if budgets.is_empty() {
            registry.remove(name);
        } else if registry.get(name) != Some(&budgets) {
            registry.insert(name.to_owned(), budgets);
            needs_leases = true;
        }
    }
    match serde_json::to_vec(&registry) {
        Ok(bytes) => shared::put(REGISTRY_KEY, &bytes),
        Err(e) => log::error!("warden: cannot store the lease registry: {e}"),
    }
    needs_leases
}

fn read_registry() -> BTreeMap<String, Vec<LeasedLimit>> {
    serde_json::from_slice(&shared::get(REGISTRY_KEY)).unwrap_or_default()
}

#[derive(Default)]
pub struct Leases {
    call: Option<u32>,
    last_call_ms: u64,
    /// What each counter held at the last tick: tells a moving spend from an idle one.
    last_counts: HashMap<String, u64>,
    /// Counters whose leases the control plane asked back.
    reclaim: HashSet<String>,
    /// A tick came while a call was in flight (new policy, say): tick again once it is answered,
    /// rather than a whole tick later.
    retick: bool,
}

impl Leases {
    pub fn owns(&self, token: u32) -> bool {
        self.call == Some(token)
    }

    /// Whether a call is in flight: what it asks for is not granted yet.
    pub fn busy(&self) -> bool {
        self.call.is_some()
    }

    /// This VM no longer leads. A call in flight is still answered here: its grants are the
    /// control plane's and apply whoever leads.
    pub fn stop(&mut self) {
        self.last_counts.clear();
        self.reclaim.clear();
        self.retick = false;
    }

    /// Works out every limit's step and sends what needs saying, unless a call is in flight.
    pub fn tick(&mut self, cluster: &str, now_ms: u64, metrics: &Metrics) {
        if self.call.is_some() {
            self.retick = true;
            return;
        }
        self.retick = false;
        let mut wants = Vec::new();
        let registry = read_registry();
        for limit in registry.values().flatten() {
            let Some(window) = limit.current_window(now_ms) else { continue };
            let counter = counter::read(&SharedCounters, &limit.counter);
            if counter.is_unreadable() {
                // Nothing true to report; its requests are refused meanwhile.
                continue;
            }
            let last = self.last_counts.get(&limit.counter).copied();
            let reclaim = self.reclaim.remove(&limit.counter);
            for step in limit.steps(&counter, last, now_ms, reclaim) {
                match step {
                    Step::Send(want) => wants.push(want),
                    Step::GiveBack { window, margin } => {
                        if let Some(keep) = counter::give_back(&SharedCounters, &limit.counter, window, margin) {
                            wants.push(limit.gave_back(window, keep));
                        }
                    }
                }
            }
            self.last_counts.insert(limit.counter.clone(), counter.count_in(window));
        }
        if wants.is_empty() && now_ms.saturating_sub(self.last_call_ms) < HEARTBEAT_MS {
            return;
        }
        self.last_call_ms = now_ms;
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

    /// Stores the grants; a failed call is retried on the next tick. Returns whether a tick
    /// waited for this answer (the caller ticks again at once).
    pub fn on_response(&mut self, status: u32, size: usize, metrics: &Metrics) -> bool {
        self.call = None;
        let retick = std::mem::take(&mut self.retick) && status == 0;
        if status != 0 {
            host::increment(metrics.lease_failures, 1);
            log::warn!("warden: lease call failed with gRPC status {status}");
            return false;
        }
        let Some(reply) = host::grpc_message(size).and_then(|b| LeaseReply::decode(b.as_slice()).ok()) else {
            host::increment(metrics.lease_failures, 1);
            return retick;
        };
        for grant in &reply.grants {
            counter::put_grant(&SharedCounters, &grant.counter, grant.grant());
            if grant.reclaim {
                self.reclaim.insert(grant.counter.clone());
            }
        }
        retick
    }
}

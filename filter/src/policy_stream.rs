//! The leader's side of the policy stream: a delta-xDS subscription to `warden.v1` records whose
//! contents it writes into shared data for every worker.
//!
//! xDS rules: every resource response is acknowledged with its nonce; one that holds a record
//! this filter cannot read is NACKed with `error_detail`, and that record is removed (its key
//! then fails closed with 401) while the rest of the response applies. Heartbeats are not
//! acknowledged. On (re)connect the filter lists what it already holds in
//! `initial_resource_versions`, so the control plane sends only what changed and names what was
//! deleted meanwhile.

use crate::metrics::Metrics;
use crate::xds::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, RpcStatus};
use crate::{host, leases, shared};
use prost::Message;
use warden_policy::records::{check_record, record_limits};
use warden_policy::sync::{ADS_SERVICE, DELTA_METHOD, HEARTBEAT_TYPE_URL, POLICY_TYPE_URL};

/// gRPC `INVALID_ARGUMENT`, the code of a NACK.
const INVALID_ARGUMENT: i32 = 3;
const MAX_BACKOFF_MS: u64 = 5_000;
const FIRST_BACKOFF_MS: u64 = 250;

#[derive(Default)]
pub struct PolicyStream {
    token: Option<u32>,
    failures: u32,
    retry_at_ms: u64,
    /// Acknowledgements not sent yet (see [`PolicyStream::on_message`]), in the order of their
    /// responses.
    held_acks: Vec<Vec<u8>>,
    /// One of them waits for leases: none is sent before those are granted.
    acks_wait_for_leases: bool,
}

impl PolicyStream {
    pub fn is_open(&self) -> bool {
        self.token.is_some()
    }

    pub fn owns(&self, token: u32) -> bool {
        self.token == Some(token)
    }

    /// Opens the stream unless it is open or backing off after a failure.
    pub fn ensure_open(&mut self, cluster: &str, now_ms: u64, metrics: &Metrics) {
        if self.token.is_some() || now_ms < self.retry_at_ms {
            return;
        }
        let token = match host::open_grpc_stream(cluster, ADS_SERVICE, DELTA_METHOD) {
            Ok(token) => token,
            Err(e) => {
                log::error!("warden: cannot open the policy stream on cluster '{cluster}': {e:?}");
                self.back_off(now_ms);
                return;
            }
        };
        host::increment(metrics.stream_opened, 1);
        let subscribe = DeltaDiscoveryRequest {
            node: Some(Node {
                id: host::property(&["xds", "node", "id"]).unwrap_or_default(),
                cluster: host::property(&["xds", "node", "cluster"]).unwrap_or_default(),
            }),
            type_url: POLICY_TYPE_URL.to_owned(),
            initial_resource_versions: shared::held_versions(),
            ..Default::default()
        };
        if host::send_grpc_message(token, &subscribe.encode_to_vec()).is_err() {
            host::cancel_grpc_stream(token);
            self.back_off(now_ms);
            return;
        }
        self.token = Some(token);
    }

    /// Closes the stream (this VM is no longer the leader, or is going away).
    pub fn stop(&mut self) {
        self.held_acks.clear();
        self.acks_wait_for_leases = false;
        if let Some(token) = self.token.take() {
            host::cancel_grpc_stream(token);
        }
    }

    pub fn on_close(&mut self, status: u32, now_ms: u64) {
        log::warn!("warden: policy stream closed with gRPC status {status}; reconnecting");
        self.token = None;
        self.held_acks.clear();
        self.acks_wait_for_leases = false;
        self.back_off(now_ms);
    }

    fn back_off(&mut self, now_ms: u64) {
        let delay = FIRST_BACKOFF_MS.saturating_mul(1 << self.failures.min(5)).min(MAX_BACKOFF_MS);
        self.failures += 1;
        self.retry_at_ms = now_ms + delay;
    }

    /// Takes one message; `true` when it brought a new or changed limit that spans Envoys. The
    /// acknowledgement of changed records is held: the caller sends it with
    /// [`PolicyStream::send_held_acks`], after the leases such limits need are granted, so that an
    /// acknowledged change is one every worker can enforce (the control plane answers an admin
    /// change once its Envoys acknowledged it).
    pub fn on_message(&mut self, size: usize, now_ms: u64, metrics: &Metrics) -> bool {
        if self.token.is_none() {
            return false;
        }
        let Some(bytes) = host::grpc_message(size) else {
            return false;
        };
        let response = match DeltaDiscoveryResponse::decode(bytes.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                log::error!("warden: undecodable policy message ({e}); reconnecting");
                self.stop();
                self.back_off(now_ms);
                return false;
            }
        };
        self.failures = 0;
        if response.type_url == HEARTBEAT_TYPE_URL {
            shared::heard(now_ms, response.system_version_info, false);
            return false;
        }
        let (errors, needs_leases) = apply(&response, metrics);
        // Records changed: workers drop what they parsed before. An empty answer (a new stream
        // that held everything) changes nothing, and keeps every decision taken so far current.
        let changed = !response.resources.is_empty() || !response.removed_resources.is_empty();
        shared::heard(now_ms, response.system_version_info.clone(), changed);
        let error_detail = (!errors.is_empty()).then(|| {
            host::increment(metrics.nacks, 1);
            let message = errors.join("; ");
            log::error!("warden: NACK policy nonce {}: {message}", response.nonce);
            RpcStatus { code: INVALID_ARGUMENT, message }
        });
        let ack = DeltaDiscoveryRequest {
            type_url: response.type_url,
            response_nonce: response.nonce,
            error_detail,
            ..Default::default()
        };
        self.held_acks.push(ack.encode_to_vec());
        self.acks_wait_for_leases |= needs_leases;
        needs_leases
    }

    /// Whether the acknowledgements held wait for leases to be granted.
    pub fn acks_wait_for_leases(&self) -> bool {
        self.acks_wait_for_leases
    }

    /// Sends the acknowledgements held so far.
    pub fn send_held_acks(&mut self, now_ms: u64) {
        self.acks_wait_for_leases = false;
        let Some(token) = self.token else {
            self.held_acks.clear();
            return;
        };
        for ack in std::mem::take(&mut self.held_acks) {
            if host::send_grpc_message(token, &ack).is_err() {
                self.stop();
                self.back_off(now_ms);
                return;
            }
        }
    }
}

/// Writes a response's records into shared data; returns one message per record refused, and
/// whether a limit that spans Envoys is new or changed.
fn apply(response: &DeltaDiscoveryResponse, metrics: &Metrics) -> (Vec<String>, bool) {
    let mut errors = Vec::new();
    if response.type_url != POLICY_TYPE_URL {
        errors.push(format!("unknown type {}", response.type_url));
        return (errors, false);
    }
    let mut index: Vec<(&str, Option<&str>)> = Vec::with_capacity(response.resources.len());
    let mut leased = Vec::new();
    for resource in &response.resources {
        let outcome = validate(resource).and_then(|json| {
            // Counters first: a worker that sees the record must find its counters.
            let limits = record_limits(&resource.name, json);
            for key in &limits.counters {
                shared::ensure_counter(key);
            }
            shared::put_record(&resource.name, json).map_err(|_| "shared data refused the write")?;
            Ok(limits.leased)
        });
        match outcome {
            Ok(budgets) => {
                index.push((&resource.name, Some(&resource.version)));
                leased.push((resource.name.as_str(), budgets));
            }
            Err(reason) => {
                errors.push(format!("{}: {reason}", resource.name));
                shared::remove_record(&resource.name);
                index.push((&resource.name, None));
                leased.push((resource.name.as_str(), Vec::new()));
            }
        }
    }
    if !response.removed_resources.is_empty() {
        log::info!("warden: withdrawn by the control plane: {}", response.removed_resources.join(", "));
    }
    for name in &response.removed_resources {
        shared::remove_record(name);
        index.push((name, None));
        leased.push((name.as_str(), Vec::new()));
    }
    let needs_leases = leases::register(leased);
    host::increment(metrics.records_applied, i64::try_from(index.len()).unwrap_or(i64::MAX));
    shared::update_index(index);
    (errors, needs_leases)
}

fn validate(resource: &crate::xds::Resource) -> Result<&[u8], &'static str> {
    let any = resource.resource.as_ref().ok_or("no body")?;
    if any.type_url != POLICY_TYPE_URL {
        return Err("body of the wrong type");
    }
    check_record(&resource.name, &any.value)?;
    Ok(&any.value)
}

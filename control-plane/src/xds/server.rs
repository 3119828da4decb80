//! The ADS service: plumbing between Envoy's streams and the [`Cache`]. No business rules here.
//!
//! - `StreamAggregatedResources` (state of the world) serves Envoy the filter (ECDS), the
//!   provider clusters (CDS) and the provider keys they inject (SDS).
//! - `DeltaAggregatedResources` serves the filter's leader VM the policy records, plus a
//!   heartbeat every second so the filter can tell a quiet control plane from a dead one.
//!
//! xDS rules followed: per-stream nonces; a request whose nonce is not the last one sent is
//! stale and ignored; an ACK echoes the nonce without `error_detail`; a NACK (with
//! `error_detail`) is recorded and its version parked, not resent until the cache changes.

use super::cache::{Cache, PolicyChange, content_version};
use super::status::{Nack, NodeRegistry, NodeStatus};
use crate::pki::Caller;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use futures::Stream;
use futures::future::BoxFuture;
use prost::Name;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use warden_policy::sync::{HEARTBEAT_TYPE_URL, POLICY_TYPE_URL};

/// Records per delta response: keeps each message far below gRPC's 4 MiB default.
const CHUNK: usize = 500;

pub struct AdsServer {
    cache: Arc<Cache>,
    nodes: Arc<NodeRegistry>,
    heartbeat: Duration,
    catch_up: Option<CatchUp>,
}

/// Brings the cache up to date with the store before a new policy stream is told what to
/// delete (several control planes on one database).
pub type CatchUp = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

impl AdsServer {
    pub fn new(cache: Arc<Cache>, nodes: Arc<NodeRegistry>, heartbeat: Duration) -> AdsServer {
        AdsServer { cache, nodes, heartbeat, catch_up: None }
    }

    /// Runs `catch_up` before answering each new policy stream.
    pub fn with_catch_up(mut self, catch_up: CatchUp) -> AdsServer {
        self.catch_up = Some(catch_up);
        self
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let caller = Caller::of(&request)?;
        let (tx, rx) = mpsc::channel(16);
        let stream = SotwStream {
            cache: self.cache.clone(),
            nodes: self.nodes.clone(),
            tx,
            caller,
            node_id: None,
            nonce: 0,
            subscriptions: HashMap::new(),
        };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let caller = Caller::of(&request)?;
        let (tx, rx) = mpsc::channel(16);
        let stream = DeltaStream {
            cache: self.cache.clone(),
            catch_up: self.catch_up.clone(),
            nodes: self.nodes.clone(),
            heartbeat: self.heartbeat,
            tx,
            caller,
            node_id: String::new(),
            nonce: 0,
            seq: 0,
        };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The state-of-the-world types this server answers, and how node status names them.
pub fn sotw_types() -> [(String, &'static str); 3] {
    [(TypedExtensionConfig::type_url(), "filter"), (Cluster::type_url(), "clusters"), (Secret::type_url(), "secrets")]
}

/// One type's subscription on a state-of-the-world stream.
#[derive(Default)]
struct Subscription {
    /// What the node last asked for; empty is a wildcard for clusters and nothing otherwise.
    names: Vec<String>,
    /// The nonce of the last response of this type.
    nonce: String,
    /// The version last sent, and the version Envoy rejected (parked until it changes).
    sent_version: Option<String>,
    nacked_version: Option<String>,
}

/// One state-of-the-world stream: the filter (ECDS), provider clusters (CDS) and their keys
/// (SDS). Each type keeps its own nonce, versions and NACK parking.
struct SotwStream {
    cache: Arc<Cache>,
    nodes: Arc<NodeRegistry>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    caller: Caller,
    /// The node the first request named, once its caller may speak as it: nothing (provider
    /// keys least of all) is sent before.
    node_id: Option<String>,
    nonce: u64,
    subscriptions: HashMap<String, Subscription>,
}

impl SotwStream {
    async fn run(mut self, mut requests: Streaming<DiscoveryRequest>) {
        let mut generation = self.cache.subscribe();
        loop {
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => if let Err(status) = self.on_request(request) {
                        let _ = self.tx.send(Err(status)).await;
                        break;
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node = ?self.node_id, %status, "ADS stream ended");
                        break;
                    }
                },
                changed = generation.changed() => if changed.is_err() { break },
            }
            if !self.send_changes().await {
                break;
            }
        }
    }

    fn on_request(&mut self, request: DiscoveryRequest) -> Result<(), Status> {
        if self.node_id.is_none() {
            let id = request.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
            self.caller.check(&id)?;
            self.node_id = Some(id);
        }
        let node_id = self.node_id.as_deref().unwrap_or_default();
        let Some(label) = sotw_types().into_iter().find(|(t, _)| *t == request.type_url).map(|(_, l)| l) else {
            return Ok(());
        };
        let sub = self.subscriptions.entry(request.type_url.clone()).or_default();
        if !request.response_nonce.is_empty() && request.response_nonce != sub.nonce {
            return Ok(()); // stale: answers a response that has since been superseded
        }
        sub.names = request.resource_names;
        if let Some(error) = &request.error_detail {
            let version = sub.sent_version.clone().unwrap_or_default();
            tracing::warn!(node = %node_id, kind = label, %version, reason = %error.message, "xDS resources NACKed; parked until they change");
            let nack = Nack { version: version.clone(), reason: error.message.clone(), at: chrono::Utc::now() };
            self.nodes.update(node_id, |s| s.resources.entry(label).or_default().nack = Some(nack));
            sub.nacked_version = Some(version);
            return Ok(());
        }
        if !request.response_nonce.is_empty() {
            let acked = request.version_info;
            self.nodes.update(node_id, |s| {
                let status = s.resources.entry(label).or_default();
                status.acked_version = Some(acked);
                status.nack = None;
            });
        } else if !request.version_info.is_empty() {
            // A reconnecting Envoy names the version it holds: no need to send it again.
            sub.sent_version = Some(request.version_info.clone());
            let held = request.version_info;
            self.nodes.update(node_id, |s| s.resources.entry(label).or_default().acked_version = Some(held));
        }
        Ok(())
    }

    /// Sends every subscribed type whose resources Envoy does not hold and has not rejected.
    async fn send_changes(&mut self) -> bool {
        for (type_url, label) in sotw_types() {
            let Some(sub) = self.subscriptions.get_mut(&type_url) else { continue };
            let wildcard = label == "clusters" && sub.names.is_empty();
            if sub.names.is_empty() && !wildcard {
                continue;
            }
            let set = self.cache.resources(&type_url);
            let selected: Vec<(&String, &Any)> =
                set.resources.iter().filter(|(name, _)| wildcard || sub.names.contains(name)).collect();
            // The filter and wildcard clusters are the cache's whole set and keep its version.
            // Resources asked for by name (secrets) are versioned by the names and what is sent,
            // not by the set's version: a change to a resource not asked for must neither resend
            // them nor unpark a NACK of them.
            let version = if wildcard || label == "filter" {
                set.version.clone()
            } else {
                let mut bytes: Vec<u8> = sub.names.join("\n").into_bytes();
                for (name, resource) in &selected {
                    bytes.extend(name.bytes().chain(resource.value.iter().copied()));
                }
                content_version(&bytes)
            };
            let resources: Vec<Any> = selected.into_iter().map(|(_, r)| r.clone()).collect();
            if label == "filter" && resources.is_empty() {
                continue;
            }
            if sub.sent_version.as_ref() == Some(&version) || sub.nacked_version.as_ref() == Some(&version) {
                continue;
            }
            self.nonce += 1;
            let response = DiscoveryResponse {
                version_info: version.clone(),
                resources,
                type_url: type_url.clone(),
                nonce: self.nonce.to_string(),
                ..Default::default()
            };
            sub.nonce = self.nonce.to_string();
            sub.sent_version = Some(version);
            sub.nacked_version = None;
            if self.tx.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// One delta stream from a filter's leader VM.
struct DeltaStream {
    cache: Arc<Cache>,
    catch_up: Option<CatchUp>,
    nodes: Arc<NodeRegistry>,
    heartbeat: Duration,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    caller: Caller,
    node_id: String,
    nonce: u64,
    /// The cache sequence number this stream has sent everything up to.
    seq: u64,
}

impl DeltaStream {
    async fn run(mut self, mut requests: Streaming<DeltaDiscoveryRequest>) {
        // The first request subscribes and lists what the filter already holds.
        let first = match requests.message().await {
            Ok(Some(first)) => first,
            _ => return,
        };
        self.node_id = first.node.map(|n| n.id).unwrap_or_default();
        if let Err(status) = self.caller.check(&self.node_id) {
            let _ = self.tx.send(Err(status)).await;
            return;
        }
        if first.type_url != POLICY_TYPE_URL {
            let _ = self.tx.send(Err(Status::invalid_argument(format!("unknown type {}", first.type_url)))).await;
            return;
        }
        self.nodes.update(&self.node_id, NodeStatus::open_policy_stream);
        tracing::info!(node = %self.node_id, held = first.initial_resource_versions.len(), "policy stream opened");
        let held: HashMap<String, String> = first.initial_resource_versions.into_iter().collect();
        if let Some(catch_up) = &self.catch_up {
            catch_up().await;
        }
        let mut generation = self.cache.subscribe();
        generation.mark_unchanged();
        let (changes, seq) = self.cache.initial(&held);
        // Even when the node held everything (another VM of it took the stream over): its ACK
        // says it holds `seq`, which admin changes wait for.
        let mut open = self.send(changes, seq, true).await && self.send_heartbeat().await;
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.tick().await;
        while open {
            open = tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => { self.on_request(request); true }
                    _ => false,
                },
                changed = generation.changed() => {
                    let (changes, seq) = self.cache.since(self.seq);
                    changed.is_ok() && self.send(changes, seq, false).await
                },
                _ = heartbeat.tick() => self.send_heartbeat().await,
            };
        }
        self.nodes.update(&self.node_id, NodeStatus::close_policy_stream);
        tracing::info!(node = %self.node_id, "policy stream closed");
    }

    fn on_request(&mut self, request: DeltaDiscoveryRequest) {
        let latest = request.response_nonce == self.nonce.to_string();
        let seq = self.seq;
        if let Some(error) = request.error_detail {
            tracing::warn!(node = %self.node_id, nonce = %request.response_nonce, reason = %error.message, "policy records NACKed");
            let nack = Nack { version: request.response_nonce, reason: error.message, at: chrono::Utc::now() };
            self.nodes.update(&self.node_id, |s| {
                s.policy_nack = Some(nack);
                if latest {
                    s.policy_answered_seq = Some(seq);
                }
            });
        } else if latest {
            self.nodes.update(&self.node_id, |s| {
                s.policy_acked_seq = Some(seq);
                s.policy_answered_seq = Some(seq);
            });
        }
    }

    /// Sends changes in chunks, and one empty response when there are none and `always`;
    /// `false` once the stream is gone.
    async fn send(&mut self, changes: Vec<PolicyChange>, seq: u64, always: bool) -> bool {
        self.seq = seq;
        let mut iter = changes.into_iter().peekable();
        let mut empty = always && iter.peek().is_none();
        while iter.peek().is_some() || std::mem::take(&mut empty) {
            let mut response = DeltaDiscoveryResponse {
                system_version_info: seq.to_string(),
                type_url: POLICY_TYPE_URL.into(),
                ..Default::default()
            };
            for change in iter.by_ref().take(CHUNK) {
                match change {
                    PolicyChange::Upsert { name, entry } => response.resources.push(Resource {
                        name,
                        version: entry.version,
                        resource: Some(Any { type_url: POLICY_TYPE_URL.into(), value: entry.body.to_vec() }),
                        ..Default::default()
                    }),
                    PolicyChange::Remove { name } => response.removed_resources.push(name),
                }
            }
            self.nonce += 1;
            response.nonce = self.nonce.to_string();
            if self.tx.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn send_heartbeat(&mut self) -> bool {
        let beat = DeltaDiscoveryResponse {
            system_version_info: self.seq.to_string(),
            type_url: HEARTBEAT_TYPE_URL.into(),
            ..Default::default()
        };
        self.tx.send(Ok(beat)).await.is_ok()
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

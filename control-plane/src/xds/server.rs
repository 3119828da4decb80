//! The ADS service: plumbing between Envoy's streams and the [`Cache`]. No business rules here.
//!
//! - `StreamAggregatedResources` (state of the world) serves Envoy the filter over ECDS.
//! - `DeltaAggregatedResources` serves the filter's leader VM the policy records, plus a
//!   heartbeat every second so the filter can tell a quiet control plane from a dead one.
//!
//! xDS rules followed: per-stream nonces; a request whose nonce is not the last one sent is
//! stale and ignored; an ACK echoes the nonce without `error_detail`; a NACK (with
//! `error_detail`) is recorded and its version parked, not resent until the cache changes.

use super::cache::{Cache, PolicyChange};
use super::status::{Nack, NodeRegistry};
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use futures::Stream;
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
}

impl AdsServer {
    pub fn new(cache: Arc<Cache>, nodes: Arc<NodeRegistry>, heartbeat: Duration) -> AdsServer {
        AdsServer { cache, nodes, heartbeat }
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
        let (tx, rx) = mpsc::channel(16);
        let stream = SotwStream {
            cache: self.cache.clone(),
            nodes: self.nodes.clone(),
            tx,
            node_id: String::new(),
            nonce: 0,
            subscribed: false,
            sent_version: None,
            nacked_version: None,
        };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let stream = DeltaStream {
            cache: self.cache.clone(),
            nodes: self.nodes.clone(),
            heartbeat: self.heartbeat,
            tx,
            node_id: String::new(),
            nonce: 0,
            seq: 0,
        };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One state-of-the-world stream. Only ECDS travels here; other types get no answer.
struct SotwStream {
    cache: Arc<Cache>,
    nodes: Arc<NodeRegistry>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    node_id: String,
    nonce: u64,
    /// Whether Envoy has asked for the filter on this stream.
    subscribed: bool,
    sent_version: Option<String>,
    nacked_version: Option<String>,
}

impl SotwStream {
    async fn run(mut self, mut requests: Streaming<DiscoveryRequest>) {
        let mut generation = self.cache.subscribe();
        loop {
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => self.on_request(request),
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node = %self.node_id, %status, "ADS stream ended");
                        break;
                    }
                },
                changed = generation.changed() => if changed.is_err() { break },
            }
            if !self.send_if_changed().await {
                break;
            }
        }
    }

    fn on_request(&mut self, request: DiscoveryRequest) {
        if let Some(node) = &request.node {
            self.node_id.clone_from(&node.id);
        }
        if request.type_url != TypedExtensionConfig::type_url() {
            return;
        }
        let current_nonce = self.nonce.to_string();
        if !request.response_nonce.is_empty() && request.response_nonce != current_nonce {
            return; // stale: answers a response that has since been superseded
        }
        self.subscribed = !request.resource_names.is_empty();
        if let Some(error) = &request.error_detail {
            let version = self.sent_version.clone().unwrap_or_default();
            tracing::warn!(node = %self.node_id, %version, reason = %error.message, "filter configuration NACKed; parked until it changes");
            let nack = Nack { version: version.clone(), reason: error.message.clone(), at: chrono::Utc::now() };
            self.nodes.update(&self.node_id, |s| s.filter_nack = Some(nack));
            self.nacked_version = Some(version);
            return;
        }
        if !request.response_nonce.is_empty() {
            let acked = request.version_info.clone();
            self.nodes.update(&self.node_id, |s| {
                s.filter_acked_version = Some(acked);
                s.filter_nack = None;
            });
        } else if !request.version_info.is_empty() {
            // A reconnecting Envoy names the version it holds: no need to send it again.
            self.sent_version = Some(request.version_info.clone());
            let held = request.version_info;
            self.nodes.update(&self.node_id, |s| s.filter_acked_version = Some(held));
        }
    }

    /// Sends the filter if Envoy wants it, does not have it, and has not rejected it.
    async fn send_if_changed(&mut self) -> bool {
        let Some(config) = self.cache.filter() else {
            return true;
        };
        if !self.subscribed
            || self.sent_version.as_ref() == Some(&config.version)
            || self.nacked_version.as_ref() == Some(&config.version)
        {
            return true;
        }
        self.nonce += 1;
        let response = DiscoveryResponse {
            version_info: config.version.clone(),
            resources: vec![config.resource],
            type_url: TypedExtensionConfig::type_url(),
            nonce: self.nonce.to_string(),
            ..Default::default()
        };
        self.sent_version = Some(config.version);
        self.nacked_version = None;
        self.tx.send(Ok(response)).await.is_ok()
    }
}

/// One delta stream from a filter's leader VM.
struct DeltaStream {
    cache: Arc<Cache>,
    nodes: Arc<NodeRegistry>,
    heartbeat: Duration,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
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
        if first.type_url != POLICY_TYPE_URL {
            let _ = self.tx.send(Err(Status::invalid_argument(format!("unknown type {}", first.type_url)))).await;
            return;
        }
        self.nodes.update(&self.node_id, |s| s.policy_streams += 1);
        tracing::info!(node = %self.node_id, held = first.initial_resource_versions.len(), "policy stream opened");
        let held: HashMap<String, String> = first.initial_resource_versions.into_iter().collect();
        let mut generation = self.cache.subscribe();
        generation.mark_unchanged();
        let (changes, seq) = self.cache.initial(&held);
        let mut open = self.send(changes, seq).await && self.send_heartbeat().await;
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
                    changed.is_ok() && self.send(changes, seq).await
                },
                _ = heartbeat.tick() => self.send_heartbeat().await,
            };
        }
        self.nodes.update(&self.node_id, |s| s.policy_streams = s.policy_streams.saturating_sub(1));
        tracing::info!(node = %self.node_id, "policy stream closed");
    }

    fn on_request(&mut self, request: DeltaDiscoveryRequest) {
        if let Some(error) = request.error_detail {
            tracing::warn!(node = %self.node_id, nonce = %request.response_nonce, reason = %error.message, "policy records NACKed");
            let nack = Nack { version: request.response_nonce, reason: error.message, at: chrono::Utc::now() };
            self.nodes.update(&self.node_id, |s| s.policy_nack = Some(nack));
        } else if request.response_nonce == self.nonce.to_string() {
            let seq = self.seq;
            self.nodes.update(&self.node_id, |s| s.policy_acked_seq = Some(seq));
        }
    }

    /// Sends changes in chunks; `false` once the stream is gone.
    async fn send(&mut self, changes: Vec<PolicyChange>, seq: u64) -> bool {
        self.seq = seq;
        let mut iter = changes.into_iter().peekable();
        while iter.peek().is_some() {
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

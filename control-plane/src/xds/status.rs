//! What each Envoy node last did with what it was sent: shown by `GET /api/envoy/nodes`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub last_seen: Option<DateTime<Utc>>,
    /// Envoy's own resources by kind (`filter`, `clusters`, `secrets`): what it accepted last
    /// and what it rejected.
    pub resources: BTreeMap<&'static str, ResourceStatus>,
    /// Open policy streams from this node (one per Envoy process, from its leader VM).
    pub policy_streams: u32,
    /// The policy version (sequence number) this node last acknowledged.
    pub policy_acked_seq: Option<u64>,
    pub policy_nack: Option<Nack>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ResourceStatus {
    /// The version this node last accepted.
    pub acked_version: Option<String>,
    /// The last version it rejected, and why. Parked: not resent until the resources change.
    pub nack: Option<Nack>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Every node ever seen since start.
#[derive(Default)]
pub struct NodeRegistry {
    nodes: Mutex<BTreeMap<String, NodeStatus>>,
}

impl NodeRegistry {
    /// Applies `change` to a node's status, creating it on first sight.
    pub fn update(&self, node_id: &str, change: impl FnOnce(&mut NodeStatus)) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let status = nodes
            .entry(node_id.to_owned())
            .or_insert_with(|| NodeStatus { node_id: node_id.to_owned(), ..Default::default() });
        status.last_seen = Some(Utc::now());
        change(status);
    }

    pub fn all(&self) -> Vec<NodeStatus> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

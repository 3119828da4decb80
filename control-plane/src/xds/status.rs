//! What each Envoy node last did with what it was sent: shown by `GET /api/envoy/nodes`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub last_seen: Option<DateTime<Utc>>,
    /// Envoy's own resources by kind (`filter`, `clusters`, `secrets`): what it accepted last
    /// and what it rejected.
    pub resources: BTreeMap<&'static str, ResourceStatus>,
    /// Open policy streams from this node (one per Envoy process, from its leader VM).
    pub policy_streams: u32,
    /// When its last open policy stream closed: another VM of the Envoy may be taking it over.
    #[serde(skip)]
    pub policy_stream_closed_at: Option<Instant>,
    /// The policy version (sequence number) this node last acknowledged.
    pub policy_acked_seq: Option<u64>,
    /// The policy version this node last answered, acknowledged or refused.
    #[serde(skip)]
    pub policy_answered_seq: Option<u64>,
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

/// How long a node whose policy stream closed is still waited for: the time another VM of its
/// Envoy takes to open the stream again (a leader handing over, a VM restarting).
const HANDOVER: Duration = Duration::from_secs(2);

impl NodeStatus {
    pub fn open_policy_stream(&mut self) {
        self.policy_streams += 1;
    }

    pub fn close_policy_stream(&mut self) {
        self.policy_streams = self.policy_streams.saturating_sub(1);
        if self.policy_streams == 0 {
            self.policy_stream_closed_at = Some(Instant::now());
        }
    }

    /// Whether admin changes wait for this node: its policy stream is open, or closed so lately
    /// that it is likely being taken over.
    fn takes_policy(&self, now: Instant) -> bool {
        self.policy_streams > 0 || self.policy_stream_closed_at.is_some_and(|at| now.duration_since(at) < HANDOVER)
    }
}

/// Every node ever seen since start.
#[derive(Default)]
pub struct NodeRegistry {
    nodes: Mutex<BTreeMap<String, NodeStatus>>,
    /// Woken by every update, for [`NodeRegistry::applied`].
    updated: tokio::sync::Notify,
}

/// How far a policy version reached the Envoys connected to this control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    /// Nodes that acknowledged it (or a later version).
    pub applied: usize,
    /// Nodes with an open policy stream (or one closed a moment ago, being taken over).
    pub connected: usize,
    /// How long it was waited for.
    pub waited: Duration,
}

impl Propagation {
    /// As the `x-warden-applied` header says it: `2/2 envoys in 3 ms`.
    pub fn header(&self) -> String {
        format!("{}/{} envoys in {} ms", self.applied, self.connected, self.waited.as_millis())
    }
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
        drop(nodes);
        self.updated.notify_waiters();
    }

    /// Waits until every node with an open policy stream has answered policy version `seq` (or
    /// a later one), for at most `bound`; says how many applied it. An Envoy acknowledges a
    /// version once its workers can enforce it, leases for new limits included.
    pub async fn applied(&self, seq: u64, bound: Duration) -> Propagation {
        let start = Instant::now();
        loop {
            let updated = self.updated.notified();
            tokio::pin!(updated);
            updated.as_mut().enable();
            let (answered, applied, connected, handing_over) = {
                let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let open: Vec<&NodeStatus> = nodes.values().filter(|n| n.takes_policy(now)).collect();
                let handing_over = open.iter().any(|n| n.policy_streams == 0);
                let reached = |v: Option<u64>| v.is_some_and(|v| v >= seq);
                let answered = open.iter().filter(|n| reached(n.policy_answered_seq)).count();
                let applied = open.iter().filter(|n| reached(n.policy_acked_seq)).count();
                (answered, applied, open.len(), handing_over)
            };
            let waited = start.elapsed();
            if answered == connected || waited >= bound {
                return Propagation { applied, connected, waited };
            }
            // A node being handed over may also just be gone: look again when its time is up.
            let wake = if handing_over { HANDOVER.min(bound - waited) } else { bound - waited };
            let _ = tokio::time::timeout(wake, updated).await;
        }
    }

    pub fn all(&self) -> Vec<NodeStatus> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn applied_waits_for_every_open_stream_and_no_longer_than_its_bound() {
        let nodes = Arc::new(NodeRegistry::default());
        let none = nodes.applied(7, Duration::from_secs(5)).await;
        assert_eq!((none.applied, none.connected), (0, 0), "no Envoy: nothing to wait for");
        nodes.update("a", |s| s.policy_streams = 1);
        nodes.update("gone", |s| s.policy_acked_seq = Some(1));
        let late = nodes.applied(7, Duration::from_millis(50)).await;
        assert_eq!((late.applied, late.connected), (0, 1));
        assert!(late.waited >= Duration::from_millis(50));
        // Answered while waited for: the wait ends with it, and says so.
        let answering = nodes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            answering.update("a", |s| (s.policy_acked_seq, s.policy_answered_seq) = (Some(8), Some(8)));
        });
        let done = nodes.applied(7, Duration::from_secs(5)).await;
        assert_eq!((done.applied, done.connected), (1, 1));
        assert!(done.waited < Duration::from_secs(1), "{:?}", done.waited);
        assert_eq!(done.header(), format!("1/1 envoys in {} ms", done.waited.as_millis()));
        // A refusal (NACK) ends the wait too, without counting as applied.
        nodes.update("a", |s| (s.policy_acked_seq, s.policy_answered_seq) = (Some(9), Some(9)));
        nodes.update("b", |s| {
            s.policy_streams = 1;
            s.policy_answered_seq = Some(9);
        });
        let refused = nodes.applied(9, Duration::from_secs(5)).await;
        assert_eq!((refused.applied, refused.connected), (1, 2));
        assert!(refused.waited < Duration::from_secs(1), "{:?}", refused.waited);
    }

    #[tokio::test]
    async fn a_node_whose_stream_is_being_taken_over_is_still_waited_for() {
        let nodes = Arc::new(NodeRegistry::default());
        nodes.update("a", NodeStatus::open_policy_stream);
        nodes.update("a", NodeStatus::close_policy_stream);
        let taking_over = nodes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            taking_over.update("a", |s| {
                s.open_policy_stream();
                (s.policy_acked_seq, s.policy_answered_seq) = (Some(3), Some(3));
            });
        });
        let applied = nodes.applied(3, Duration::from_secs(5)).await;
        assert_eq!((applied.applied, applied.connected), (1, 1), "not 0/0 while the stream was closed");
        // Gone for good: past the handover it is no longer waited for.
        nodes.update("a", NodeStatus::close_policy_stream);
        let gone = nodes.applied(4, Duration::from_secs(5)).await;
        assert_eq!((gone.applied, gone.connected), (0, 0));
    }
}

//! How policy travels from the control plane to the filters, and when it is too old to trust.
//!
//! Policy records travel as incremental (delta) xDS resources on the
//! `envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources` stream. Each
//! resource is an `Any` of type [`POLICY_TYPE_URL`] whose value is the record as JSON; the resource name
//! says what kind of record it is (see [`crate::RecordKind`]).

use crate::Denial;

pub use crate::records::POLICY_TYPE_URL;

/// Type URL of the heartbeats the control plane sends on every policy stream. They carry no
/// resources and are not acknowledged; they only prove the stream is alive.
pub const HEARTBEAT_TYPE_URL: &str = "type.googleapis.com/warden.v1.Heartbeat";

/// The gRPC service and method of the policy stream.
pub const ADS_SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
/// See [`ADS_SERVICE`].
pub const DELTA_METHOD: &str = "DeltaAggregatedResources";

/// What the leader VM last heard from the control plane, shared with every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    /// When the control plane was last heard from (Unix milliseconds).
    pub heard_at_ms: u64,
    /// The control plane's policy version at that moment.
    pub version: String,
    /// Bumped by the leader after every change it writes: a worker may keep using records it
    /// parsed while the generation stays the same.
    pub generation: u64,
}

impl SyncStatus {
    /// The compact form kept in shared data: `"<heard_at_ms> <generation> <version>"`.
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.heard_at_ms, self.generation, self.version).into_bytes()
    }

    /// Whether the control plane was heard from within three heartbeats: decisions that need
    /// it (a budget lease spent) apply their fail mode otherwise.
    pub fn control_plane_up(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.heard_at_ms) <= 3 * crate::settings::HEARTBEAT_INTERVAL_MS
    }

    /// Reads [`SyncStatus::encode`]'s form; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<SyncStatus> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (at, rest) = text.split_once(' ')?;
        let (generation, version) = rest.split_once(' ')?;
        Some(SyncStatus {
            heard_at_ms: at.parse().ok()?,
            generation: generation.parse().ok()?,
            version: version.to_owned(),
        })
    }
}

/// Whether the policy an Envoy holds may be used to judge a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyHealth {
    /// The configured staleness bound in milliseconds.
    pub bound_ms: u64,
}

impl PolicyHealth {
    /// No policy at all, or none heard of for longer than the bound: refuse, never allow.
    pub fn check(&self, status: Option<&SyncStatus>, now_ms: u64) -> Result<(), Denial> {
        let Some(status) = status else { return Err(Denial::PolicyMissing) };
        let age_ms = now_ms.saturating_sub(status.heard_at_ms);
        if age_ms > self.bound_ms {
            return Err(Denial::PolicyStale { age_ms, bound_ms: self.bound_ms });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_rejects_garbage() {
        let s = SyncStatus { heard_at_ms: 1234, version: "v 7".into(), generation: 3 };
        assert_eq!(SyncStatus::decode(&s.encode()), Some(s));
        assert_eq!(SyncStatus::decode(b"nope"), None);
        assert_eq!(SyncStatus::decode(b"\xff 1"), None);
    }

    #[test]
    fn missing_or_stale_policy_is_refused() {
        let health = PolicyHealth { bound_ms: 5_000 };
        assert_eq!(health.check(None, 0), Err(Denial::PolicyMissing));
        let s = SyncStatus { heard_at_ms: 10_000, version: "1".into(), generation: 0 };
        assert_eq!(health.check(Some(&s), 15_000), Ok(()));
        assert_eq!(health.check(Some(&s), 15_001), Err(Denial::PolicyStale { age_ms: 5_001, bound_ms: 5_000 }));
        // A clock that goes backwards is not stale.
        assert_eq!(health.check(Some(&s), 9_000), Ok(()));
    }
}

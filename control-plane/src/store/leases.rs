//! The store's half for budget leases, composed into [`super::Store`].

use super::StoreError;
use async_trait::async_trait;
use warden_policy::lease::{LeaseGrant, LeaseWant};

/// How long an Envoy that stopped asking still counts in the fleet that shares budgets.
pub const FLEET_MEMORY_MS: u64 = 60_000;
/// How long leases of a window that has ended are kept (for late reports).
pub const ENDED_WINDOW_MEMORY_MS: u64 = 3_600_000;

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Applies one Envoy's wants in one transaction (see `quota::lease::decide`) and returns
    /// its grants, one per want, in order.
    async fn lease(&self, node: &str, wants: &[LeaseWant], now_ms: u64) -> Result<Vec<LeaseGrant>, StoreError>;
}

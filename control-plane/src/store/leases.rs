//! The store's half for budget leases, composed into [`super::Store`].

use super::StoreError;
use async_trait::async_trait;
use warden_policy::lease::{LeaseGrant, LeaseWant};

/// How long an Envoy that stopped asking still counts in the fleet that shares budgets.
pub const FLEET_MEMORY_MS: u64 = 60_000;
/// How long leases of a window that has ended are kept (for late reports).
pub const ENDED_WINDOW_MEMORY_MS: u64 = 3_600_000;

/// One Envoy's lease of one budget window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub counter: String,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    /// The budget, µ$.
    pub max_micros: u64,
    pub node: String,
    /// Its share, µ$.
    pub granted: u64,
    /// What it last reported spent and reserved, µ$.
    pub used: u64,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// The leases of windows not yet forgotten whose counter starts with `prefix`.
    async fn leases(&self, prefix: &str) -> Result<Vec<LeaseRow>, StoreError>;

    /// Applies one Envoy's wants in one transaction (see `crate::allocation::decide`) and returns
    /// its grants, one per want, in order.
    async fn lease(&self, node: &str, wants: &[LeaseWant], now_ms: u64) -> Result<Vec<LeaseGrant>, StoreError>;
}

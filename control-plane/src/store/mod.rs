//! Where the control plane keeps its truth. One trait, [`Store`] (composed of one trait per
//! family of entities), implemented once by [`SqlStore`] over SQLite or PostgreSQL.

pub mod audit;
mod governance;
pub mod leases;
mod ledger;
mod mcp;
mod providers;
pub mod settings;
mod sql;

pub use audit::{AuditEvent, AuditStore};
pub use governance::{CustomerQuery, Deletion, GovernanceStore, ModelConfigQuery, OnReferenced, TeamQuery};
pub use leases::{LeaseRow, LeaseStore};
pub use ledger::{GroupBy, LedgerStore, UsageQuery, UsageTotals, WrittenUsage};
pub use mcp::McpStore;
pub use providers::ProviderStore;
pub use sql::{SqlStore, redacted_url};

use crate::model::VirtualKey;
use async_trait::async_trait;

/// A store failure the admin API can explain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique column already holds this value; names the API field.
    #[error("{field} already exists")]
    Conflict { field: &'static str },
    /// Anything else: the database is unreachable, corrupt, or full.
    #[error("store failure: {0}")]
    Backend(String),
}

/// Filters and paging for listing virtual keys.
#[derive(Debug, Default, Clone)]
pub struct KeyQuery {
    pub search: Option<String>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    pub limit: Option<u32>,
    pub offset: u32,
}

/// The store. Every method is one transaction; implementations are shared across tasks.
#[async_trait]
pub trait Store: GovernanceStore + ProviderStore + McpStore + LedgerStore + LeaseStore + AuditStore {
    async fn insert_virtual_key(&self, key: &VirtualKey) -> Result<(), StoreError>;
    /// Replaces a key by id; `false` if there is no such key.
    async fn update_virtual_key(&self, key: &VirtualKey) -> Result<bool, StoreError>;
    async fn delete_virtual_key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError>;
    async fn virtual_key(&self, id: &str) -> Result<Option<VirtualKey>, StoreError>;
    /// The key whose secret hashes to `value_hash` (hex).
    async fn virtual_key_by_hash(&self, value_hash: &str) -> Result<Option<VirtualKey>, StoreError>;
    /// One page of keys in creation order, and how many match in all.
    async fn virtual_keys(&self, query: &KeyQuery) -> Result<(Vec<VirtualKey>, u64), StoreError>;
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` under `name`, replacing any.
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError>;
    /// Stores `value` under `name` unless a value is there; `true` if this call stored it. Two
    /// replicas racing to create a setting thus agree on one value.
    async fn insert_setting(&self, name: &str, value: &str) -> Result<bool, StoreError>;
    /// Adds one to the counter stored under `name` (0 when absent) and returns the new value:
    /// every caller, on any replica, gets a value of its own.
    async fn bump_setting(&self, name: &str) -> Result<u64, StoreError>;
}

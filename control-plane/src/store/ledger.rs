//! The store's half for the usage ledger, composed into [`super::Store`].

use super::StoreError;
use async_trait::async_trait;
use serde::Serialize;
use warden_policy::ledger::UsageRecord;

/// What a usage query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Key,
    Team,
    Customer,
    Model,
    Provider,
}

impl GroupBy {
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key_id",
            GroupBy::Team => "team_id",
            GroupBy::Customer => "customer_id",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
        }
    }
}

/// Filters of a usage query; `None` matches everything. Times are Unix milliseconds,
/// `from_ms` inclusive, `to_ms` exclusive.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub group_by: Option<GroupBy>,
}

/// Sums over the matching records (of one group, when grouped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
}

/// The outcome of writing a batch.
#[derive(Debug, Clone, Default)]
pub struct WrittenUsage {
    /// Every id now stored (new or not): what the filter may forget.
    pub ids: Vec<String>,
    /// The ids this call stored; the others were there already (a resend, or the same record
    /// delivered to another replica).
    pub new_ids: Vec<String>,
    /// Refusals stored for the first time, for the audit log.
    pub new_denials: Vec<UsageRecord>,
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Writes records in one transaction, ignoring ids already written, by this process or any
    /// other sharing the database.
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<WrittenUsage, StoreError>;
    /// Totals, overall or per group, largest cost first.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageTotals>, StoreError>;
    /// All-time totals per (provider, model), for the metrics endpoint.
    async fn usage_by_model(&self) -> Result<Vec<(String, String, UsageTotals)>, StoreError>;
    /// All-time refusals per type (`type/code`).
    async fn denials_by_type(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

//! The store's half for teams, customers and model configs, composed into [`super::Store`].

use super::StoreError;
use crate::model::{Customer, ModelConfig, Team, VirtualKey};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Filters and paging for listing teams.
#[derive(Debug, Default, Clone)]
pub struct TeamQuery {
    /// A substring of the name.
    pub search: Option<String>,
    pub customer_id: Option<String>,
    pub limit: Option<u32>,
    pub offset: u32,
}

/// Filters and paging for listing customers.
#[derive(Debug, Default, Clone)]
pub struct CustomerQuery {
    /// A substring of the name.
    pub search: Option<String>,
    pub limit: Option<u32>,
    pub offset: u32,
}

/// Filters and paging for listing model configs.
#[derive(Debug, Default, Clone)]
pub struct ModelConfigQuery {
    /// A substring of the model name.
    pub search: Option<String>,
    /// Exactly this model name.
    pub model_name: Option<String>,
    pub limit: Option<u32>,
    pub offset: u32,
}

/// What to do when deleting an entity that teams or keys still point at.
#[derive(Debug, Clone, Copy)]
pub enum OnReferenced {
    /// Change nothing and report how many point at it.
    Refuse,
    /// Clear their reference (stamping `updated_at` with `at`), then delete.
    Detach { at: DateTime<Utc> },
}

/// The outcome of deleting a team or customer.
#[derive(Debug)]
pub enum Deletion<T> {
    NotFound,
    /// Still referenced and [`OnReferenced::Refuse`]: nothing changed.
    Referenced {
        teams: u64,
        keys: u64,
    },
    /// Deleted, with the teams and keys whose reference was cleared, as they now are.
    Deleted {
        entity: T,
        detached_teams: Vec<Team>,
        detached_keys: Vec<VirtualKey>,
    },
}

/// Teams, customers and model configs. Every method is one transaction.
///
/// Unique clashes are [`StoreError::Conflict`] naming `name` (teams, customers) or
/// `model_name` (a second config for the same model name and provider).
#[async_trait]
pub trait GovernanceStore: Send + Sync {
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError>;
    /// Replaces a team by id; `false` if there is no such team.
    async fn update_team(&self, team: &Team) -> Result<bool, StoreError>;
    /// Deletes a team, detaching its keys or refusing as `on_referenced` says.
    async fn delete_team(&self, id: &str, on_referenced: OnReferenced) -> Result<Deletion<Team>, StoreError>;
    async fn team(&self, id: &str) -> Result<Option<Team>, StoreError>;
    /// One page of teams in creation order, and how many match in all.
    async fn teams(&self, query: &TeamQuery) -> Result<(Vec<Team>, u64), StoreError>;

    async fn insert_customer(&self, customer: &Customer) -> Result<(), StoreError>;
    /// Replaces a customer by id; `false` if there is no such customer.
    async fn update_customer(&self, customer: &Customer) -> Result<bool, StoreError>;
    /// Deletes a customer, detaching its teams and keys or refusing as `on_referenced` says.
    async fn delete_customer(&self, id: &str, on_referenced: OnReferenced) -> Result<Deletion<Customer>, StoreError>;
    async fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError>;
    /// One page of customers in creation order, and how many match in all.
    async fn customers(&self, query: &CustomerQuery) -> Result<(Vec<Customer>, u64), StoreError>;

    async fn insert_model_config(&self, config: &ModelConfig) -> Result<(), StoreError>;
    /// Replaces a model config by id; `false` if there is no such config.
    async fn update_model_config(&self, config: &ModelConfig) -> Result<bool, StoreError>;
    async fn delete_model_config(&self, id: &str) -> Result<Option<ModelConfig>, StoreError>;
    async fn model_config(&self, id: &str) -> Result<Option<ModelConfig>, StoreError>;
    /// One page of model configs in creation order, and how many match in all.
    async fn model_configs(&self, query: &ModelConfigQuery) -> Result<(Vec<ModelConfig>, u64), StoreError>;
}

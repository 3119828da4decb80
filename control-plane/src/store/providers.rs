//! The store's half for upstream providers, composed into [`super::Store`].

use super::StoreError;
use crate::model::Provider;
use async_trait::async_trait;

#[async_trait]
pub trait ProviderStore: Send + Sync {
    /// Adds a provider; a taken name is a conflict on `name`.
    async fn insert_provider(&self, provider: &Provider) -> Result<(), StoreError>;
    /// Replaces a provider by name; `false` if there is none.
    async fn update_provider(&self, provider: &Provider) -> Result<bool, StoreError>;
    async fn delete_provider(&self, name: &str) -> Result<Option<Provider>, StoreError>;
    async fn provider(&self, name: &str) -> Result<Option<Provider>, StoreError>;
    /// Every provider, by name.
    async fn providers(&self) -> Result<Vec<Provider>, StoreError>;
}

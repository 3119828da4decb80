//! Keeps this control plane's snapshot equal to the store: at start, and whenever another
//! control plane on the same database has changed it. Every successful admin write bumps the
//! store's policy generation; each control plane polls it and republishes when another one
//! moved it, so Envoys connected to any replica see every change within a poll.

use super::Publisher;
use super::records::{publish_governance, publish_prices};
use crate::store::settings::{self, bump_policy_generation, policy_generation};
use crate::store::{KeyQuery, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How this control plane keeps its snapshot in step with the store.
#[derive(Default)]
pub(super) struct Publication {
    /// Admin changes (store write, then publish) hold it shared; a republication of the whole
    /// store holds it alone, so that it never puts back what a change just replaced.
    changing: tokio::sync::RwLock<()>,
    /// The store's policy generation the snapshot reflects.
    seen: tokio::sync::Mutex<u64>,
}

impl Publisher {
    /// Runs an admin change: its store write and its publication.
    pub async fn change<T>(&self, change: impl std::future::Future<Output = T>) -> T {
        let _changing = self.publication.changing.read().await;
        change.await
    }

    /// Publishes everything the store holds, and withdraws what it no longer holds.
    async fn publish_store(&self) -> anyhow::Result<()> {
        let _alone = self.publication.changing.write().await;
        self.cache.begin_sweep();
        let outcome = self.publish_everything().await;
        self.cache.end_sweep(outcome.is_ok());
        outcome
    }

    async fn publish_everything(&self) -> anyhow::Result<()> {
        let store = self.store.as_ref();
        let (keys, _) = store.virtual_keys(&KeyQuery::default()).await?;
        self.publish_keys(&keys).await?;
        publish_governance(&self.cache, store).await?;
        let providers = store.providers().await?;
        self.publish_providers(&providers);
        self.hub.follow(store).await?;
        publish_prices(&self.cache, store, None).await?;
        if let Some(settings) = settings::filter_settings(store).await?
            && settings != *self.filter_settings()
        {
            self.publish_filter_settings(settings);
        }
        tracing::debug!(keys = keys.len(), providers = providers.len(), "policy published from the store");
        Ok(())
    }

    /// Publishes the store's policy (at start).
    pub async fn start(&self) -> anyhow::Result<()> {
        let mut seen = self.publication.seen.lock().await;
        *seen = policy_generation(self.store.as_ref()).await?;
        self.publish_store().await
    }

    /// Tells the other control planes that the policy changed (after this one published it).
    /// When no other change came in between, this one's snapshot is up to date and need not
    /// republish.
    pub async fn mark_changed(&self) -> Result<(), StoreError> {
        let mut seen = self.publication.seen.lock().await;
        let now = bump_policy_generation(self.store.as_ref()).await?;
        if now == *seen + 1 {
            *seen = now;
        }
        Ok(())
    }

    /// Republishes if another control plane changed the policy since the last look. A new
    /// policy stream waits for this before it is told what to delete: a replica that has not
    /// caught up would otherwise withdraw a record it does not know yet.
    pub async fn catch_up(&self) {
        let mut seen = self.publication.seen.lock().await;
        let current = match policy_generation(self.store.as_ref()).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the policy generation; serving what is published");
                return;
            }
        };
        if current == *seen {
            return;
        }
        match self.publish_store().await {
            Ok(()) => *seen = current,
            Err(e) => tracing::warn!(error = %e, "cannot republish from the store; retrying"),
        }
    }

    /// Catches up every `every`, for the life of the server.
    pub async fn follow(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.catch_up().await;
        }
    }
}

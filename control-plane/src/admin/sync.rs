//! Keeps this control plane's snapshot equal to the store: at start, and whenever another
//! control plane on the same database has changed it. Every successful admin write marks the
//! store's policy generation; each control plane polls it and republishes what changed, so
//! Envoys connected to any replica see every change within a poll.

use super::{AppState, publish_governance, publish_keys, publish_prices, publish_providers};
use crate::serve::FILTER_SETTINGS;
use crate::store::{KeyQuery, Store, StoreError};
use anyhow::Context;
use std::time::Duration;
use warden_policy::FilterSettings;

/// Settings-table name of the policy generation: a fresh value after every admin change.
const POLICY_GENERATION: &str = "policy_generation";

/// Publishes everything the store holds, and withdraws what it no longer holds.
async fn publish_store(state: &AppState) -> anyhow::Result<()> {
    let _alone = state.publishing.write().await;
    state.cache.begin_sweep();
    let outcome = publish_everything(state).await;
    state.cache.end_sweep(outcome.is_ok());
    outcome
}

async fn publish_everything(state: &AppState) -> anyhow::Result<()> {
    let store = state.store.as_ref();
    let (keys, _) = store.virtual_keys(&KeyQuery::default()).await?;
    publish_keys(&state.cache, &keys);
    publish_governance(&state.cache, store).await?;
    let providers = store.providers().await?;
    publish_providers(&state.cache, &providers, &state.provider_ca_file);
    publish_prices(&state.cache, store, None).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if let Some(text) = store.setting(FILTER_SETTINGS).await? {
        let settings: FilterSettings = serde_json::from_str(&text).context("stored filter settings")?;
        if settings != *state.filter.settings() {
            state.filter.replace(settings, &state.cache);
        }
    }
    tracing::debug!(keys = keys.len(), providers = providers.len(), "policy published from the store");
    Ok(())
}

/// Tells the other control planes that the policy changed.
pub async fn mark_changed(store: &dyn Store) -> Result<(), StoreError> {
    store.put_setting(POLICY_GENERATION, &uuid::Uuid::new_v4().to_string()).await
}

/// Follows the store's policy generation: republishes when it moved, one republication at a
/// time.
pub struct Follower {
    state: AppState,
    /// The generation last published.
    seen: tokio::sync::Mutex<Option<String>>,
}

impl Follower {
    /// Publishes the store's policy (at start).
    pub async fn start(state: AppState) -> anyhow::Result<Follower> {
        let seen = state.store.setting(POLICY_GENERATION).await?;
        publish_store(&state).await?;
        Ok(Follower { state, seen: tokio::sync::Mutex::new(seen) })
    }

    /// Republishes if another control plane changed the policy since the last look. A new
    /// policy stream waits for this before it is told what to delete: a replica that has not
    /// caught up would otherwise withdraw a record it does not know yet.
    pub async fn catch_up(&self) {
        let mut seen = self.seen.lock().await;
        let current = match self.state.store.setting(POLICY_GENERATION).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the policy generation; serving what is published");
                return;
            }
        };
        if current == *seen {
            return;
        }
        match publish_store(&self.state).await {
            Ok(()) => *seen = current,
            Err(e) => tracing::warn!(error = %e, "cannot republish from the store; retrying"),
        }
    }

    /// Catches up every `every`, for the life of the server.
    pub async fn follow(self: std::sync::Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.catch_up().await;
        }
    }
}

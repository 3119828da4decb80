//! Keeps this control plane's snapshot equal to the store: at start, and whenever another
//! control plane on the same database has changed it. Every successful admin write bumps the
//! store's policy generation; each control plane polls it and republishes when another one
//! moved it, so Envoys connected to any replica see every change within a poll.

use super::{AppState, publish_governance, publish_keys, publish_prices, publish_providers};
use crate::serve::FILTER_SETTINGS;
use crate::store::{KeyQuery, Store, StoreError};
use anyhow::Context;
use std::time::Duration;
use warden_policy::FilterSettings;

/// Settings-table name of the policy generation: a counter every admin change bumps.
const POLICY_GENERATION: &str = "policy_generation";

/// How this control plane keeps its snapshot in step with the store.
#[derive(Default)]
pub struct Publication {
    /// Admin changes (store write, then publish) hold it shared; a republication of the whole
    /// store holds it alone, so that it never puts back what a change just replaced.
    changing: tokio::sync::RwLock<()>,
    /// The store's policy generation the snapshot reflects.
    seen: tokio::sync::Mutex<u64>,
}

impl Publication {
    /// Runs an admin change: its store write and its publication.
    pub async fn change<T>(&self, change: impl std::future::Future<Output = T>) -> T {
        let _changing = self.changing.read().await;
        change.await
    }
}

async fn generation(store: &dyn Store) -> Result<u64, StoreError> {
    Ok(store.setting(POLICY_GENERATION).await?.and_then(|g| g.parse().ok()).unwrap_or(0))
}

/// Publishes everything the store holds, and withdraws what it no longer holds.
async fn publish_store(state: &AppState) -> anyhow::Result<()> {
    let _alone = state.publication.changing.write().await;
    state.cache.begin_sweep();
    let outcome = publish_everything(state).await;
    state.cache.end_sweep(outcome.is_ok());
    outcome
}

async fn publish_everything(state: &AppState) -> anyhow::Result<()> {
    let store = state.store.as_ref();
    let (keys, _) = store.virtual_keys(&KeyQuery::default()).await?;
    publish_keys(&state.cache, &keys, &state.bundles().await?);
    publish_governance(&state.cache, store).await?;
    let providers = store.providers().await?;
    publish_providers(state, &providers);
    state.hub.follow(store).await?;
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

/// Publishes the store's policy (at start).
pub async fn start(state: &AppState) -> anyhow::Result<()> {
    let mut seen = state.publication.seen.lock().await;
    *seen = generation(state.store.as_ref()).await?;
    publish_store(state).await
}

/// Tells the other control planes that the policy changed (after this one published it). When
/// no other change came in between, this one's snapshot is up to date and need not republish.
pub async fn mark_changed(state: &AppState) -> Result<(), StoreError> {
    let mut seen = state.publication.seen.lock().await;
    let now = state.store.bump_setting(POLICY_GENERATION).await?;
    if now == *seen + 1 {
        *seen = now;
    }
    Ok(())
}

/// Republishes if another control plane changed the policy since the last look. A new policy
/// stream waits for this before it is told what to delete: a replica that has not caught up
/// would otherwise withdraw a record it does not know yet.
pub async fn catch_up(state: &AppState) {
    let mut seen = state.publication.seen.lock().await;
    let current = match generation(state.store.as_ref()).await {
        Ok(current) => current,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the policy generation; serving what is published");
            return;
        }
    };
    if current == *seen {
        return;
    }
    match publish_store(state).await {
        Ok(()) => *seen = current,
        Err(e) => tracing::warn!(error = %e, "cannot republish from the store; retrying"),
    }
}

/// Catches up every `every`, for the life of the server.
pub async fn follow(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        catch_up(&state).await;
    }
}

//! The settings table, typed: every setting's name and format are here, and nothing else reads
//! or writes the table. The table itself holds text by name ([`Store::setting`] and kin).

use super::{Store, StoreError};
use crate::model::ToolManagerConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warden_policy::pricing::Price;
use warden_policy::{FilterSettings, KeyHash};

const FILTER_SETTINGS: &str = "filter_settings";
const TOOL_MANAGER: &str = "mcp.tool_manager_config";
const PRICE_OVERRIDES: &str = "price_overrides";
/// A counter every admin change bumps.
const POLICY_GENERATION: &str = "policy_generation";
const ADMIN_TOKEN_SHA256: &str = "admin_token_sha256";
const XDS_CA: &str = "xds_ca";

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored text is not in the setting's format.
    #[error("the stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl From<SettingError> for StoreError {
    fn from(e: SettingError) -> StoreError {
        match e {
            SettingError::Store(e) => e,
            corrupt @ SettingError::Corrupt { .. } => StoreError::Backend(corrupt.to_string()),
        }
    }
}

/// The xDS port's CA as the store keeps it: its certificate and private key, PEM.
#[derive(Serialize, Deserialize)]
pub struct XdsCa {
    pub certificate: String,
    pub private_key: String,
}

async fn get_json<T: DeserializeOwned>(
    store: &dyn Store,
    name: &str,
    what: &'static str,
) -> Result<Option<T>, SettingError> {
    let Some(text) = store.setting(name).await? else { return Ok(None) };
    let value = serde_json::from_str(&text).map_err(|e| SettingError::Corrupt { what, detail: e.to_string() })?;
    Ok(Some(value))
}

fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The filter's settings, once the admin API has set them.
pub async fn filter_settings(store: &dyn Store) -> Result<Option<FilterSettings>, SettingError> {
    get_json(store, FILTER_SETTINGS, "filter settings").await
}

pub async fn put_filter_settings(store: &dyn Store, settings: &FilterSettings) -> Result<(), StoreError> {
    store.put_setting(FILTER_SETTINGS, &to_json(settings)?).await
}

/// The MCP tool manager's settings, once the admin API has set them.
pub async fn tool_manager(store: &dyn Store) -> Result<Option<ToolManagerConfig>, SettingError> {
    get_json(store, TOOL_MANAGER, "tool manager settings").await
}

pub async fn put_tool_manager(store: &dyn Store, config: &ToolManagerConfig) -> Result<(), StoreError> {
    store.put_setting(TOOL_MANAGER, &to_json(config)?).await
}

/// The operator's prices, by model, `<provider>/<model>` or `*`.
pub async fn price_overrides(store: &dyn Store) -> Result<BTreeMap<String, Price>, SettingError> {
    Ok(get_json(store, PRICE_OVERRIDES, "prices").await?.unwrap_or_default())
}

pub async fn put_price_overrides(store: &dyn Store, prices: &BTreeMap<String, Price>) -> Result<(), StoreError> {
    store.put_setting(PRICE_OVERRIDES, &to_json(prices)?).await
}

/// The policy generation: how many admin changes there have been, on any replica.
pub async fn policy_generation(store: &dyn Store) -> Result<u64, StoreError> {
    Ok(store.setting(POLICY_GENERATION).await?.and_then(|g| g.parse().ok()).unwrap_or(0))
}

/// Counts one more admin change; the new generation, which no other caller gets.
pub async fn bump_policy_generation(store: &dyn Store) -> Result<u64, StoreError> {
    store.bump_setting(POLICY_GENERATION).await
}

/// The SHA-256 of the admin token, once one was generated (a token given by flag or file is
/// not stored).
pub async fn admin_token_sha256(store: &dyn Store) -> Result<Option<[u8; 32]>, SettingError> {
    let Some(hex) = store.setting(ADMIN_TOKEN_SHA256).await? else { return Ok(None) };
    let corrupt = || SettingError::Corrupt { what: "admin token hash", detail: "not 64 hex digits".into() };
    Ok(Some(KeyHash::from_hex(&hex).ok_or_else(corrupt)?.0))
}

/// Stores the admin token's hash unless one is there; `true` if this call stored it.
pub async fn insert_admin_token_sha256(store: &dyn Store, hash: [u8; 32]) -> Result<bool, StoreError> {
    store.insert_setting(ADMIN_TOKEN_SHA256, &KeyHash(hash).to_string()).await
}

/// The xDS port's CA, once the first replica created it.
pub async fn xds_ca(store: &dyn Store) -> Result<Option<XdsCa>, SettingError> {
    get_json(store, XDS_CA, "xDS CA").await
}

/// Stores the xDS CA unless one is there; `true` if this call stored it.
pub async fn insert_xds_ca(store: &dyn Store, ca: &XdsCa) -> Result<bool, StoreError> {
    store.insert_setting(XDS_CA, &to_json(ca)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqlStore;

    #[tokio::test]
    async fn settings_round_trip_and_a_corrupt_one_says_which() {
        let store = SqlStore::in_memory().await.unwrap();
        assert!(filter_settings(&store).await.unwrap().is_none());
        let settings = FilterSettings::for_cluster("warden_xds");
        put_filter_settings(&store, &settings).await.unwrap();
        assert_eq!(filter_settings(&store).await.unwrap(), Some(settings));
        assert!(price_overrides(&store).await.unwrap().is_empty());
        assert_eq!((policy_generation(&store).await.unwrap(), bump_policy_generation(&store).await.unwrap()), (0, 1));

        store.put_setting(TOOL_MANAGER, "{").await.unwrap();
        let corrupt = tool_manager(&store).await.unwrap_err();
        assert!(matches!(corrupt, SettingError::Corrupt { what: "tool manager settings", .. }), "{corrupt}");
        store.put_setting(ADMIN_TOKEN_SHA256, "not hex").await.unwrap();
        assert!(matches!(admin_token_sha256(&store).await, Err(SettingError::Corrupt { .. })));
    }
}

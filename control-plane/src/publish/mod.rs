//! From the store to the xDS cache: the policy records every filter holds and the resources
//! every Envoy holds, built from what the store holds. Admin handlers publish what they changed
//! ([`Publisher`], [`records`]); at start, and whenever another control plane on the same
//! database changed the policy, everything is republished (`sync`).

mod filter;
pub mod records;
mod sync;

pub use filter::FilterSource;

use crate::hub::Hub;
use crate::model::{Bundles, Provider, VirtualKey};
use crate::store::{KeyQuery, Store, StoreError};
use crate::xds::Cache;
use crate::xds::resources::{hub_resources, provider_resources};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use prost::Name;
use std::sync::Arc;
use warden_policy::{FilterSettings, RecordKind};

/// Publishes what needs more than one entity's data: keys (with the Virtual MCPs' grants),
/// providers (with the hub's cluster), the filter's settings, and the whole store.
pub struct Publisher {
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    /// Its connections publish the tool catalog; its endpoint goes out with the providers.
    hub: Arc<Hub>,
    filter: FilterSource,
    /// The CA bundle Envoy verifies https providers against (a path on Envoy's machine).
    provider_ca_file: String,
    publication: sync::Publication,
}

impl Publisher {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<Cache>,
        hub: Arc<Hub>,
        filter: FilterSource,
        provider_ca_file: String,
    ) -> Publisher {
        Publisher { store, cache, hub, filter, provider_ca_file, publication: sync::Publication::default() }
    }

    /// Sends keys' current records to every filter, named by the key hash.
    pub async fn publish_keys(&self, keys: &[VirtualKey]) -> Result<(), StoreError> {
        let bundles = self.bundles().await?;
        self.cache.upsert(keys.iter().filter_map(|k| {
            Some((RecordKind::VirtualKey.name(&k.value_hash), serde_json::to_vec(&k.record(&bundles)).ok()?))
        }));
        Ok(())
    }

    /// Sends every key's record to every filter: after a change of the Virtual MCPs.
    pub async fn publish_all_keys(&self) -> Result<(), StoreError> {
        let (keys, _) = self.store.virtual_keys(&KeyQuery::default()).await?;
        self.publish_keys(&keys).await
    }

    /// The Virtual MCPs, as the grants they give keys.
    async fn bundles(&self) -> Result<Bundles, StoreError> {
        Ok(Bundles::new(&self.store.virtual_mcps().await?, &self.store.mcp_clients().await?))
    }

    /// Puts providers' records, clusters and secrets into the cache.
    pub fn publish_providers(&self, providers: &[Provider]) {
        let cache = &self.cache;
        cache.upsert(
            providers
                .iter()
                .filter_map(|p| Some((RecordKind::Provider.name(&p.name), serde_json::to_vec(&p.record()).ok()?))),
        );
        let (mut clusters, mut secrets) = provider_resources(providers, &self.provider_ca_file);
        let endpoint = &self.hub.endpoint;
        hub_resources(&endpoint.advertise, &endpoint.token, &mut clusters, &mut secrets);
        // Secrets first: a cluster that arrives before its secret answers 401 until it does.
        cache.set_resources(&Secret::type_url(), secrets);
        cache.set_resources(&Cluster::type_url(), clusters);
    }

    /// The filter's settings in force.
    pub fn filter_settings(&self) -> Arc<FilterSettings> {
        self.filter.settings()
    }

    /// Puts new filter settings in force and publishes the filter's configuration (ECDS);
    /// returns its version.
    pub fn publish_filter_settings(&self, settings: FilterSettings) -> String {
        self.filter.replace(settings, &self.cache)
    }
}

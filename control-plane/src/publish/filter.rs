//! The filter's code location and current settings, from which the ECDS resource is built.

use crate::xds::Cache;
use crate::xds::resources::filter_config;
use std::sync::{Arc, RwLock};
use warden_policy::FilterSettings;

pub struct FilterSource {
    wasm_path: String,
    settings: RwLock<Arc<FilterSettings>>,
}

impl FilterSource {
    /// Publishes the initial filter configuration.
    pub fn new(wasm_path: String, settings: FilterSettings, cache: &Cache) -> FilterSource {
        cache.set_filter(filter_config(&wasm_path, &settings));
        FilterSource { wasm_path, settings: RwLock::new(Arc::new(settings)) }
    }

    pub fn settings(&self) -> Arc<FilterSettings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps the settings and publishes the new filter configuration; returns its version.
    pub fn replace(&self, settings: FilterSettings, cache: &Cache) -> String {
        let config = filter_config(&self.wasm_path, &settings);
        let version = config.version.clone();
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        cache.set_filter(config);
        version
    }
}

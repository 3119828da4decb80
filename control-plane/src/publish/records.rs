//! Sends teams', customers' and model configs' policy records to every filter, or withdraws
//! them, and the prices in force. Virtual keys and providers need more than their own data:
//! [`super::Publisher`] publishes them.

use crate::model::{Customer, ModelConfig, Team, model_record};
use crate::store::{CustomerQuery, ModelConfigQuery, Store, StoreError, TeamQuery, settings};
use crate::xds::Cache;
use serde::Serialize;
use std::collections::BTreeMap;
use warden_policy::RecordKind;
use warden_policy::pricing::{DEFAULT_PRICES, Price};

/// A record's name and body; `None` (logged) if it cannot be serialised, which would be a bug:
/// every record type is plain data.
fn entry(name: String, record: &impl Serialize) -> Option<(String, Vec<u8>)> {
    match serde_json::to_vec(record) {
        Ok(body) => Some((name, body)),
        Err(e) => {
            tracing::error!(%name, error = %e, "policy record not serialisable; not published");
            None
        }
    }
}

pub fn publish_teams(cache: &Cache, teams: &[Team]) {
    cache.upsert(teams.iter().filter_map(|t| entry(RecordKind::Team.name(&t.id), &t.record())));
}

pub fn publish_customers(cache: &Cache, customers: &[Customer]) {
    cache.upsert(customers.iter().filter_map(|c| entry(RecordKind::Customer.name(&c.id), &c.record())));
}

/// Publishes the one record of `model` built from `configs` (every config of that model name),
/// or withdraws it when there are none.
pub fn publish_model(cache: &Cache, model: &str, configs: &[ModelConfig]) {
    let name = RecordKind::Model.name(model);
    if configs.iter().all(|c| c.model_name != model) {
        cache.remove(&name);
        return;
    }
    cache.upsert(entry(name, &model_record(model, configs)));
}

/// Loads every team, customer and model config from the store and publishes them; at startup.
pub async fn publish_governance(cache: &Cache, store: &dyn Store) -> Result<(), StoreError> {
    let (customers, _) = store.customers(&CustomerQuery::default()).await?;
    publish_customers(cache, &customers);
    let (teams, _) = store.teams(&TeamQuery::default()).await?;
    publish_teams(cache, &teams);
    let (configs, _) = store.model_configs(&ModelConfigQuery::default()).await?;
    let mut by_model: BTreeMap<&str, Vec<ModelConfig>> = BTreeMap::new();
    for config in &configs {
        by_model.entry(&config.model_name).or_default().push(config.clone());
    }
    for (model, configs) in &by_model {
        publish_model(cache, model, configs);
    }
    tracing::info!(
        customers = customers.len(),
        teams = teams.len(),
        model_configs = configs.len(),
        "governance loaded from the store"
    );
    Ok(())
}

/// The prices in force: the defaults, then the operator's on top.
pub fn prices_in_force(overrides: &BTreeMap<String, Price>) -> BTreeMap<String, Price> {
    let mut all: BTreeMap<String, Price> = DEFAULT_PRICES.iter().map(|(m, p)| ((*m).to_owned(), *p)).collect();
    all.extend(overrides.iter().map(|(n, p)| (n.clone(), *p)));
    all
}

/// Publishes the prices in force to every filter; `gone` names overrides just removed.
pub async fn publish_prices(cache: &Cache, store: &dyn Store, gone: Option<&str>) -> Result<(), StoreError> {
    let all = prices_in_force(&settings::price_overrides(store).await?);
    if let Some(name) = gone.filter(|n| !all.contains_key(*n)) {
        cache.remove(&RecordKind::Price.name(name));
    }
    cache.upsert(all.iter().filter_map(|(n, p)| Some((RecordKind::Price.name(n), serde_json::to_vec(p).ok()?))));
    Ok(())
}

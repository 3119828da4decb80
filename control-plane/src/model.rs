//! The governance entities as the admin API shows them and the store keeps them, in Bifrost's
//! shapes (docs/admin-api.md lists the fields), and their validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use warden_policy::RateLimit;
use warden_policy::records::{BudgetLimit, Limits, ProviderGrant};
use warden_policy::{ResetDuration, VirtualKeyRecord};

mod mcp;
mod model_config;
mod org;
mod provider;
mod tool_manager;
mod virtual_mcp;

pub use mcp::{ConnectionType, McpClient, McpHosts, REDACTED, StdioConfig};
pub use model_config::{ModelConfig, model_record};
pub use org::{Customer, Team};
pub use provider::{Provider, ProviderKey, ProviderKind, Timeouts, Upstream};
pub use tool_manager::{BindingLevel, ToolManagerConfig};
pub use virtual_mcp::{BundledTools, Bundles, VirtualMcp};

/// A virtual key. The secret itself is never kept: only its SHA-256 and a display prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualKey {
    pub id: String,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    /// The first characters of the secret, to recognise it in lists.
    pub value_prefix: String,
    /// SHA-256 of the secret (hex); never leaves the control plane except as a resource name.
    #[serde(skip_serializing)]
    pub value_hash: String,
    pub provider_configs: Vec<ProviderConfig>,
    pub mcp_configs: Vec<McpConfig>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    pub budgets: Vec<Budget>,
    pub rate_limit: Option<RateLimit>,
    pub calendar_aligned: bool,
    /// Providers not listed in `provider_configs` are allowed with all models and no limits.
    pub allow_all_providers: bool,
    /// Most requests in flight at once with this key (Bifrost has no such limit).
    pub max_concurrent_requests: Option<u32>,
    /// Prices for this key only, by model name, in micro-dollars per million tokens.
    pub prices: std::collections::BTreeMap<String, warden_policy::pricing::Price>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Tri-state: delete the key once expired; needs `expires_at`.
    pub delete_after_expire: Option<bool>,
    /// Tri-state: `null` inherits the gateway's setting.
    pub disable_content_logging: Option<bool>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which provider a key may use, with what models and limits (Bifrost's `provider_configs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ProviderConfigWire")]
pub struct ProviderConfig {
    pub id: Option<u64>,
    pub provider: String,
    /// `null` keeps the provider out of weighted selection; `0` keeps it in the pool.
    pub weight: Option<f64>,
    pub allowed_models: Vec<String>,
    pub blacklisted_models: Vec<String>,
    pub key_ids: Vec<String>,
    pub budgets: Vec<Budget>,
    pub rate_limit: Option<RateLimit>,
}

/// [`ProviderConfig`] as clients send it: also the legacy singular `budget`, which joins
/// `budgets` (as on keys, teams and customers).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfigWire {
    #[serde(default)]
    id: Option<u64>,
    provider: String,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    allowed_models: Vec<String>,
    #[serde(default)]
    blacklisted_models: Vec<String>,
    #[serde(default)]
    key_ids: Vec<String>,
    #[serde(default)]
    budgets: Vec<Budget>,
    #[serde(default)]
    budget: Option<Budget>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
}

impl From<ProviderConfigWire> for ProviderConfig {
    fn from(wire: ProviderConfigWire) -> ProviderConfig {
        let mut budgets = wire.budgets;
        budgets.extend(wire.budget);
        ProviderConfig {
            id: wire.id,
            provider: wire.provider,
            weight: wire.weight,
            allowed_models: wire.allowed_models,
            blacklisted_models: wire.blacklisted_models,
            key_ids: wire.key_ids,
            budgets,
            rate_limit: wire.rate_limit,
        }
    }
}

/// Which tools of one MCP client a key may use (Bifrost's `mcp_configs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    pub mcp_client_name: String,
    #[serde(default)]
    pub tools_to_execute: Vec<String>,
    /// Calls per window this key may make, by tool name (a Warden addition).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tool_call_limits: std::collections::BTreeMap<String, warden_policy::mcp::ToolCallLimit>,
}

impl McpConfig {
    fn grant(&self) -> warden_policy::mcp::McpGrant {
        warden_policy::mcp::McpGrant {
            mcp_client_name: self.mcp_client_name.clone(),
            tools_to_execute: self.tools_to_execute.clone(),
            tool_call_limits: self.tool_call_limits.iter().map(|(t, l)| (t.clone(), l.as_rate_limit())).collect(),
        }
    }
}

/// A dollar budget per window (Bifrost's `budgets` entry).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Given when the budget is first stored; names it in `/api/governance/budgets` and its
    /// override route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub max_limit: f64,
    pub reset_duration: String,
    /// When its usage was last reset (`reset_budget_usage`); it counts afresh from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<DateTime<Utc>>,
    /// An operator's override, USD, added to `max_limit` while it lasts, as in Bifrost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_amount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_mode: Option<OverrideMode>,
    /// For `cycles`: how many windows it lasts, counting the one it was applied in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_cycles_total: Option<u32>,
    /// The start of the window it was applied in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_anchor_reset: Option<DateTime<Utc>>,
    /// For `cycles`: when its last window ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_ends_at: Option<DateTime<Utc>>,
}

/// How long a budget override lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideMode {
    /// A number of windows.
    Cycles,
    /// Until removed.
    Forever,
}

impl Budget {
    /// The limit in force at `now_ms`, USD, as the filters count it: `max_limit`, plus the
    /// override while it lasts.
    pub fn effective_max_limit(&self, now_ms: u64) -> f64 {
        self.limit().max_at(now_ms) as f64 / 1e6
    }

    /// As the filters count it: micro-dollars.
    fn limit(&self) -> BudgetLimit {
        BudgetLimit {
            max_micros: (self.max_limit * 1e6).round() as u64,
            reset_duration: self.reset_duration.clone(),
            reset_at_ms: self.last_reset.map_or(0, unix_ms),
            override_micros: self.override_amount.map_or(0, |a| (a * 1e6).round() as u64),
            override_until_ms: self.override_ends_at.map_or(0, unix_ms),
        }
    }
}

/// Gives every budget without an id one.
pub fn budget_ids<'b>(budgets: impl IntoIterator<Item = &'b mut Budget>) {
    for budget in budgets {
        budget.id.get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    }
}

/// A field that failed validation, and why; rendered as a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid { field: field.into(), reason: reason.into() }
    }
}

impl VirtualKey {
    /// Checks every rule of the contract that the types alone do not.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.name.trim().is_empty() {
            return Err(Invalid::new("name", "must not be empty"));
        }
        if self.team_id.is_some() && self.customer_id.is_some() {
            return Err(Invalid::new(
                "team_id",
                "VirtualKey cannot be attached to both Team and Customer (team_id and customer_id are exclusive)",
            ));
        }
        for (i, pc) in self.provider_configs.iter().enumerate() {
            let at = |f: &str| format!("provider_configs[{i}].{f}");
            if pc.provider.trim().is_empty() {
                return Err(Invalid::new(at("provider"), "must not be empty"));
            }
            if pc.weight.is_some_and(|w| !w.is_finite() || w < 0.0) {
                return Err(Invalid::new(at("weight"), "must be a non-negative number or null"));
            }
            white_list(&pc.allowed_models, &at("allowed_models"))?;
            white_list(&pc.blacklisted_models, &at("blacklisted_models"))?;
            models(&pc.allowed_models, &at("allowed_models"))?;
            models(&pc.blacklisted_models, &at("blacklisted_models"))?;
            white_list(&pc.key_ids, &at("key_ids"))?;
            budgets(&pc.budgets, &at("budgets"))?;
            if let Some(rl) = &pc.rate_limit {
                rate_limit(rl, &at("rate_limit"))?;
            }
        }
        let mut providers: Vec<&str> = self.provider_configs.iter().map(|p| p.provider.as_str()).collect();
        providers.sort_unstable();
        if providers.windows(2).any(|w| w[0] == w[1]) {
            return Err(Invalid::new("provider_configs", "lists a provider twice"));
        }
        for (i, mc) in self.mcp_configs.iter().enumerate() {
            if mc.mcp_client_name.trim().is_empty() {
                return Err(Invalid::new(format!("mcp_configs[{i}].mcp_client_name"), "must not be empty"));
            }
            white_list(&mc.tools_to_execute, &format!("mcp_configs[{i}].tools_to_execute"))?;
            for (tool, limit) in &mc.tool_call_limits {
                let field = format!("mcp_configs[{i}].tool_call_limits.{tool}");
                if limit.max_calls == 0 {
                    return Err(Invalid::new(format!("{field}.max_calls"), "must be greater than 0"));
                }
                ResetDuration::parse(&limit.reset_duration)
                    .map_err(|e| Invalid::new(format!("{field}.reset_duration"), e.to_string()))?;
            }
        }
        if self.max_concurrent_requests == Some(0) {
            return Err(Invalid::new("max_concurrent_requests", "must be greater than 0 (omit it for no limit)"));
        }
        if self.delete_after_expire.is_some() && self.expires_at.is_none() {
            return Err(Invalid::new("delete_after_expire", "requires expires_at"));
        }
        budgets(&self.budgets, "budgets")?;
        if let Some(rl) = &self.rate_limit {
            rate_limit(rl, "rate_limit")?;
        }
        Ok(())
    }

    /// The policy record every filter receives for this key, with the Virtual MCPs attached to
    /// it.
    pub fn record(&self, bundles: &Bundles) -> VirtualKeyRecord {
        let mut record = VirtualKeyRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            is_active: self.is_active,
            expires_at_ms: self.expires_at.map(unix_ms),
            provider_configs: self.provider_configs.iter().map(ProviderConfig::grant).collect(),
            allow_all_providers: self.allow_all_providers,
            team_id: self.team_id.clone(),
            customer_id: self.customer_id.clone(),
            limits: Limits {
                rate_limit: self.rate_limit.clone(),
                budgets: budget_limits(&self.budgets),
                calendar_aligned: self.calendar_aligned,
                anchor_ms: unix_ms(self.created_at),
            },
            max_concurrent_requests: self.max_concurrent_requests,
            prices: self.prices.clone(),
            mcp_configs: self.mcp_configs.iter().map(McpConfig::grant).collect(),
            virtual_mcps: Default::default(),
        };
        for (slug, grants) in bundles.of(&self.id) {
            bundles.merge_into(&mut record.mcp_configs, grants);
            record.virtual_mcps.insert(slug.clone(), grants.clone());
        }
        record
    }
}

impl ProviderConfig {
    fn grant(&self) -> ProviderGrant {
        ProviderGrant {
            provider: self.provider.clone(),
            weight: self.weight,
            allowed_models: self.allowed_models.clone(),
            blacklisted_models: self.blacklisted_models.clone(),
            key_ids: self.key_ids.clone(),
            rate_limit: self.rate_limit.clone(),
            budgets: budget_limits(&self.budgets),
        }
    }
}

/// Budgets as the filters count them: micro-dollars.
pub fn budget_limits(budgets: &[Budget]) -> Vec<BudgetLimit> {
    budgets.iter().map(Budget::limit).collect()
}

/// Unix milliseconds, as records carry instants.
pub fn unix_ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// Bifrost's WhiteList rule: `*` stands alone, and no entry twice.
fn white_list(list: &[String], field: &str) -> Result<(), Invalid> {
    if list.len() > 1 && list.iter().any(|e| e == "*") {
        return Err(Invalid::new(field, "\"*\" cannot be combined with other values"));
    }
    let mut sorted: Vec<&String> = list.iter().collect();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(Invalid::new(field, format!("lists '{}' twice", w[0])));
    }
    Ok(())
}

/// `regex:` entries must compile (the filter matches them against whole model names).
fn models(list: &[String], field: &str) -> Result<(), Invalid> {
    for entry in list {
        if let Err(e) = warden_policy::routing::ModelPattern::parse(entry) {
            return Err(Invalid::new(field, e));
        }
    }
    Ok(())
}

fn budgets(list: &[Budget], field: &str) -> Result<(), Invalid> {
    for (i, b) in list.iter().enumerate() {
        if !b.max_limit.is_finite() || b.max_limit <= 0.0 {
            return Err(Invalid::new(format!("{field}[{i}].max_limit"), "must be greater than 0"));
        }
        if b.override_amount.is_some_and(|a| !a.is_finite() || a <= 0.0) {
            return Err(Invalid::new(format!("{field}[{i}].override_amount"), "must be greater than 0"));
        }
        duration(&b.reset_duration, &format!("{field}[{i}].reset_duration"))?;
    }
    let mut windows: Vec<&str> = list.iter().map(|b| b.reset_duration.as_str()).collect();
    windows.sort_unstable();
    if windows.windows(2).any(|w| w[0] == w[1]) {
        return Err(Invalid::new(field, "has two budgets with the same reset_duration"));
    }
    Ok(())
}

fn non_empty(text: &str, field: &str) -> Result<(), Invalid> {
    if text.trim().is_empty() { Err(Invalid::new(field, "must not be empty")) } else { Ok(()) }
}

fn rate_limit(rl: &RateLimit, field: &str) -> Result<(), Invalid> {
    rl.validate().map_err(|e| Invalid::new(format!("{field}.{}", e.field), e.reason))
}

fn duration(text: &str, field: &str) -> Result<(), Invalid> {
    ResetDuration::parse(text).map(|_| ()).map_err(|e| Invalid::new(field, e.to_string()))
}

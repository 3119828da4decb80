//! The policy records: what the control plane sends every filter, one incremental xDS resource
//! each. These serde types are the contract between the two sides.
//!
//! Every record travels under one type URL, [`POLICY_TYPE_URL`], named `<kind>:<id>` (see
//! [`RecordKind`]); its body is the record as JSON. Unknown fields are ignored so that a newer
//! control plane can add fields an older filter does not use yet.

use crate::limits::RecordLimits;
use crate::text::concat;
use crate::{Denial, ResetDuration};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The type URL of every policy record.
pub const POLICY_TYPE_URL: &str = "type.googleapis.com/warden.v1.Policy";

/// What a record describes; the part of its name before the first `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// `vk:<key hash>`: a [`VirtualKeyRecord`].
    VirtualKey,
    /// `team:<id>`: a [`TeamRecord`].
    Team,
    /// `customer:<id>`: a [`CustomerRecord`].
    Customer,
    /// `provider:<name>`: a [`ProviderRecord`].
    Provider,
    /// `model:<model name>`: a [`ModelRecord`], the model-wide limits of that name.
    Model,
    /// `price:<model>`, `price:<provider>/<model>` or `price:*` (the fallback): a
    /// [`crate::pricing::Price`].
    Price,
    /// `mcp:<client name>`: a [`crate::mcp::McpClientRecord`], one MCP server and its tools;
    /// `mcp:*`: the [`crate::mcp::McpIndex`].
    McpClient,
}

impl RecordKind {
    const ALL: [RecordKind; 7] = [
        RecordKind::VirtualKey,
        RecordKind::Team,
        RecordKind::Customer,
        RecordKind::Provider,
        RecordKind::Model,
        RecordKind::Price,
        RecordKind::McpClient,
    ];

    /// The name prefix of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            RecordKind::VirtualKey => "vk",
            RecordKind::Team => "team",
            RecordKind::Customer => "customer",
            RecordKind::Provider => "provider",
            RecordKind::Model => "model",
            RecordKind::Price => "price",
            RecordKind::McpClient => "mcp",
        }
    }

    /// The name of the record of this kind for `id`.
    pub fn name(self, id: &str) -> String {
        let mut name = String::with_capacity(self.prefix().len() + 1 + id.len());
        name.push_str(self.prefix());
        name.push(':');
        name.push_str(id);
        name
    }

    /// Splits a record name into its kind and id.
    pub fn of_name(name: &str) -> Option<(RecordKind, &str)> {
        let (prefix, id) = name.split_once(':')?;
        let kind = RecordKind::ALL.into_iter().find(|k| k.prefix() == prefix)?;
        (!id.is_empty()).then_some((kind, id))
    }
}

/// One kind of policy record. A new kind is its type, a [`RecordKind`] row, a line in
/// [`for_kind`] and one impl of this.
pub trait Record: DeserializeOwned + Send + Sync + 'static {
    /// The kind its name starts with.
    const KIND: RecordKind;

    /// Whether a record read under `id` is one the filter may enforce (limits that parse, an
    /// id of the right form); the filter NACKs it otherwise.
    fn valid(&self, _id: &str) -> bool {
        true
    }

    /// The counters and leases its limits need before it is written.
    fn limits(&self) -> RecordLimits {
        RecordLimits::default()
    }
}

/// How a decision reads policy records (shared data in the filter, the xDS cache in the hub,
/// maps in tests). Records are shared, not copied: a warm filter parses each once per policy
/// generation.
pub trait Records {
    /// The record of type `T` under `id`, if the policy holds a readable one.
    fn get<T: Record>(&self, id: &str) -> Option<std::sync::Arc<T>>;
}

/// Something done with the type of a record, whichever kind it is: see [`for_kind`].
pub trait WithRecord {
    /// What it gives.
    type Output;
    /// Does it with `T`.
    fn with<T: Record>(self) -> Self::Output;
}

/// The one table of record kinds: which type a record named `<kind>:<id>` is.
pub fn for_kind<W: WithRecord>(kind: RecordKind, id: &str, action: W) -> W::Output {
    match kind {
        RecordKind::VirtualKey => action.with::<VirtualKeyRecord>(),
        RecordKind::Team => action.with::<TeamRecord>(),
        RecordKind::Customer => action.with::<CustomerRecord>(),
        RecordKind::Provider => action.with::<ProviderRecord>(),
        RecordKind::Model => action.with::<ModelRecord>(),
        RecordKind::Price => action.with::<crate::pricing::Price>(),
        RecordKind::McpClient if id == crate::mcp::INDEX_ID => action.with::<crate::mcp::McpIndex>(),
        RecordKind::McpClient => action.with::<crate::mcp::McpClientRecord>(),
    }
}

/// Whether a body is a valid record of `T` under its id.
struct Check<'b>(&'b [u8], &'b str);

impl WithRecord for Check<'_> {
    type Output = bool;
    fn with<T: Record>(self) -> bool {
        serde_json::from_slice::<T>(self.0).is_ok_and(|record| record.valid(self.1))
    }
}

/// The limits of a body read as `T`.
struct LimitsOf<'b>(&'b [u8]);

impl WithRecord for LimitsOf<'_> {
    type Output = RecordLimits;
    fn with<T: Record>(self) -> RecordLimits {
        serde_json::from_slice::<T>(self.0).map(|record| record.limits()).unwrap_or_default()
    }
}

impl Record for VirtualKeyRecord {
    const KIND: RecordKind = RecordKind::VirtualKey;
    fn valid(&self, _id: &str) -> bool {
        self.limits_valid()
    }
    fn limits(&self) -> RecordLimits {
        let grants = self.provider_configs.iter().filter_map(|g| self.grant_scope(g));
        let tools = self.mcp_configs.iter().flat_map(|grant| {
            let client = &grant.mcp_client_name;
            grant
                .tool_call_limits
                .iter()
                .map(move |(tool, limit)| self.tool_scope(&crate::mcp::exposed_name(client, tool), limit))
        });
        let mut limits = RecordLimits::of(self.scope().into_iter().chain(grants).chain(tools));
        if self.max_concurrent_requests.is_some() {
            limits.counters.push(crate::limits::concurrency_key(&self.id));
        }
        limits
    }
}

impl Record for TeamRecord {
    const KIND: RecordKind = RecordKind::Team;
    fn valid(&self, _id: &str) -> bool {
        self.limits.valid()
    }
    fn limits(&self) -> RecordLimits {
        RecordLimits::of(self.scope())
    }
}

impl Record for CustomerRecord {
    const KIND: RecordKind = RecordKind::Customer;
    fn valid(&self, _id: &str) -> bool {
        self.limits.valid()
    }
    fn limits(&self) -> RecordLimits {
        RecordLimits::of(self.scope())
    }
}

impl Record for ProviderRecord {
    const KIND: RecordKind = RecordKind::Provider;
    fn valid(&self, _id: &str) -> bool {
        self.limits.valid()
    }
    fn limits(&self) -> RecordLimits {
        RecordLimits::of(self.scope())
    }
}

impl Record for ModelRecord {
    const KIND: RecordKind = RecordKind::Model;
    fn valid(&self, _id: &str) -> bool {
        self.configs.iter().all(|c| c.limits.valid())
    }
    fn limits(&self) -> RecordLimits {
        // Every config, whichever provider it is for.
        RecordLimits::of(self.every_scope())
    }
}

/// Checks that a record's body is readable as the kind its name says; the filter NACKs it
/// otherwise. Returns the reason for a refusal.
pub fn check_record(name: &str, body: &[u8]) -> Result<(), &'static str> {
    let (kind, id) = RecordKind::of_name(name).ok_or("name is not <kind>:<id> with a known kind")?;
    if kind == RecordKind::VirtualKey && crate::KeyHash::from_hex(id).is_none() {
        return Err("a virtual key record must be named by the key hash");
    }
    if for_kind(kind, id, Check(body, id)) { Ok(()) } else { Err("body is not a valid record of its kind") }
}

/// The limits of one policy record. Unreadable records have none.
pub fn record_limits(name: &str, body: &[u8]) -> RecordLimits {
    let Some((kind, id)) = RecordKind::of_name(name) else { return RecordLimits::default() };
    for_kind(kind, id, LimitsOf(body))
}

/// Request and token limits per window, in the contract's shape (§2.4). Also the admin API's
/// `rate_limit` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Most tokens per token window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_max_limit: Option<u64>,
    /// The token window, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_reset_duration: Option<String>,
    /// Most requests per request window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_max_limit: Option<u64>,
    /// The request window, e.g. `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reset_duration: Option<String>,
}

/// Why a rate limit was refused: the field (relative to the `rate_limit` object) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitError {
    /// `token_max_limit`, `request_reset_duration`, …
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl RateLimit {
    /// Its request limit alone: what a call that spends no tokens is held to.
    pub fn requests_only(&self) -> RateLimit {
        RateLimit { token_max_limit: None, token_reset_duration: None, ..self.clone() }
    }

    /// The contract's rules: a max must be > 0 and needs a duration; durations must parse.
    pub fn validate(&self) -> Result<(), RateLimitError> {
        let pairs = [
            ("token_max_limit", "token_reset_duration", self.token_max_limit, &self.token_reset_duration),
            ("request_max_limit", "request_reset_duration", self.request_max_limit, &self.request_reset_duration),
        ];
        for (max_field, window_field, max, window) in pairs {
            if max == Some(0) {
                return Err(RateLimitError { field: max_field, reason: "must be greater than 0".into() });
            }
            match window {
                None if max.is_some() => {
                    return Err(RateLimitError { field: window_field, reason: "is required with a max limit".into() });
                }
                Some(w) => {
                    ResetDuration::parse(w)
                        .map_err(|e| RateLimitError { field: window_field, reason: e.to_string() })?;
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// A dollar budget per window, in micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BudgetLimit {
    /// The most that may be spent per window (µ$).
    pub max_micros: u64,
    /// The window, e.g. `1M`.
    pub reset_duration: String,
    /// When its usage was last reset by an operator (Unix ms; 0: never): spend counts afresh
    /// from then, in a counter of its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reset_at_ms: u64,
    /// An operator's override (µ$), added to the limit in the windows that start before
    /// `override_until_ms`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub override_micros: u64,
    /// When the override ends (Unix ms); 0: it does not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub override_until_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A limit with an override in force until a time (see [`BudgetLimit`]).
pub fn limit_at(max: u64, override_micros: u64, override_until_ms: u64, window_start_ms: u64) -> u64 {
    if override_micros > 0 && (override_until_ms == 0 || window_start_ms < override_until_ms) {
        max.saturating_add(override_micros)
    } else {
        max
    }
}

impl BudgetLimit {
    /// The limit in the window starting at `window_start_ms`, override included.
    pub fn max_at(&self, window_start_ms: u64) -> u64 {
        limit_at(self.max_micros, self.override_micros, self.override_until_ms, window_start_ms)
    }

    fn valid(&self) -> bool {
        self.max_micros > 0 && ResetDuration::parse(&self.reset_duration).is_ok()
    }
}

/// The limits of one owner (key, provider config, team, customer, provider, model config), and
/// how its windows are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Request and token limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Dollar budgets, one per window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetLimit>,
    /// Windows start on calendar boundaries (UTC) instead of rolling from `anchor_ms`.
    #[serde(default)]
    pub calendar_aligned: bool,
    /// Where rolling windows start: the owner's creation (Unix milliseconds).
    #[serde(default)]
    pub anchor_ms: u64,
}

impl Limits {
    fn valid(&self) -> bool {
        self.rate_limit.as_ref().is_none_or(|rl| rl.validate().is_ok()) && self.budgets.iter().all(BudgetLimit::valid)
    }
}

/// What every filter knows of one virtual key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualKeyRecord {
    /// The key's id in the admin API; forwarded upstream so providers' logs can name it.
    pub id: String,
    /// The key's unique name.
    pub name: String,
    /// An inactive key is refused with 403.
    pub is_active: bool,
    /// After this instant (Unix milliseconds) the key is refused with 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The providers this key may use. Empty denies every provider (Bifrost v1.5).
    #[serde(default)]
    pub provider_configs: Vec<ProviderGrant>,
    /// Providers not in `provider_configs` are allowed with all models, all keys, no limits.
    #[serde(default)]
    pub allow_all_providers: bool,
    /// The key's team, if any (exclusive with `customer_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The key's customer, if any (exclusive with `team_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The key's own limits.
    #[serde(default)]
    pub limits: Limits,
    /// Most requests in flight at once with this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// Prices for this key only, by model name; they win over every other price.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prices: std::collections::BTreeMap<String, crate::pricing::Price>,
    /// The MCP clients and tools this key may use (deny by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_configs: Vec<crate::mcp::McpGrant>,
    /// The Virtual MCPs attached to this key, by slug: the tools each bundles. Their tools are
    /// also in `mcp_configs` (a bundle grants them); here they scope `/mcp/<slug>`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub virtual_mcps: std::collections::BTreeMap<String, Vec<crate::mcp::McpGrant>>,
}

impl VirtualKeyRecord {
    /// A key with no grants, no team and no limits.
    pub fn new(id: impl Into<String>, name: impl Into<String>, is_active: bool) -> VirtualKeyRecord {
        VirtualKeyRecord {
            id: id.into(),
            name: name.into(),
            is_active,
            expires_at_ms: None,
            provider_configs: Vec::new(),
            allow_all_providers: false,
            team_id: None,
            customer_id: None,
            limits: Limits::default(),
            max_concurrent_requests: None,
            prices: std::collections::BTreeMap::new(),
            mcp_configs: Vec::new(),
            virtual_mcps: std::collections::BTreeMap::new(),
        }
    }

    /// The key's own MCP grants.
    pub fn grants(&self) -> crate::mcp::Grants<'_> {
        crate::mcp::Grants::key(&self.mcp_configs)
    }

    /// The grants that scope an `/mcp` request: the key's own, or a Virtual MCP's bundle if the
    /// key is attached to it (else refused: a key sees no bundle it is not attached to).
    pub fn mcp_grants(&self, scope: crate::rpc::McpScope<'_>) -> Result<crate::mcp::Grants<'_>, Denial> {
        match scope {
            crate::rpc::McpScope::All => Ok(self.grants()),
            crate::rpc::McpScope::Virtual(slug) => self
                .virtual_mcps
                .get(slug)
                .map(|bundle| crate::mcp::Grants::bundle(bundle))
                .ok_or_else(|| Denial::VirtualMcpBlocked(slug.to_owned(), self.name.clone())),
        }
    }

    /// Whether this key may be used at `now_ms`. Inactive wins over expired, as in Bifrost.
    pub fn admit(&self, now_ms: u64) -> Result<(), Denial> {
        if !self.is_active {
            return Err(Denial::KeyInactive);
        }
        match self.expires_at_ms {
            Some(expiry) if now_ms >= expiry => Err(Denial::KeyExpired),
            _ => Ok(()),
        }
    }

    fn limits_valid(&self) -> bool {
        self.limits.valid()
            && self.provider_configs.iter().all(|g| {
                g.rate_limit.as_ref().is_none_or(|rl| rl.validate().is_ok()) && g.budgets.iter().all(BudgetLimit::valid)
            })
            && self.mcp_configs.iter().all(|g| {
                g.tool_call_limits.values().all(|l| crate::limits::REQUESTS.of(l).is_some() && l.validate().is_ok())
            })
    }
}

/// One provider a key may use (the contract's provider config, §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderGrant {
    /// The provider's name.
    pub provider: String,
    /// `None`: reachable only as `provider/model`, never drawn by weight. `0` stays in the draw.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Exact names, `*` (the provider's whole catalogue) or `regex:<pattern>`; empty = none.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Same grammar; wins over `allowed_models`.
    #[serde(default)]
    pub blacklisted_models: Vec<String>,
    /// The provider keys this grant may use: `*` = all, empty = none.
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Limits on this key's use of this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Budgets on this key's use of this provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetLimit>,
}

/// A team: its customer and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRecord {
    /// The team's id.
    pub id: String,
    /// The team's name, for messages.
    pub name: String,
    /// The customer the team belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The team's limits.
    #[serde(default)]
    pub limits: Limits,
}

/// A customer and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// The customer's id.
    pub id: String,
    /// The customer's name, for messages.
    pub name: String,
    /// The customer's limits.
    #[serde(default)]
    pub limits: Limits,
}

/// An upstream provider as the filter needs it: where to route, and provider-wide limits. Its
/// API keys never travel here; only their ids do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The provider's name (`openai`, `anthropic`, `mock`…).
    pub name: String,
    /// The provider's model catalogue; empty means any model name is passed through.
    #[serde(default)]
    pub models: Vec<String>,
    /// The ids of its API keys, one Envoy cluster each (see [`provider_cluster`]).
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// The upstream path that stands for the client's `/v1`, e.g. `/v1beta/openai`.
    #[serde(default = "default_base_path")]
    pub base_path: String,
    /// Per-request upstream timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Provider-wide limits, shared by every key.
    #[serde(default)]
    pub limits: Limits,
}

fn default_base_path() -> String {
    "/v1".into()
}

/// Every model-wide limit configured for one model name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model name the limits apply to.
    pub model: String,
    /// One entry per model config; those naming a provider apply only on that provider.
    #[serde(default)]
    pub configs: Vec<ModelConfigRecord>,
}

/// One model config (the contract's `/model-configs` entity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfigRecord {
    /// The config's id: its counters are named by it.
    pub id: String,
    /// Only on this provider; `None` = on every provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The limits.
    #[serde(default)]
    pub limits: Limits,
}

/// The Envoy cluster of one provider API key; the control plane creates it (CDS) with the key
/// injected from SDS, and the filter routes to it by name.
pub fn provider_cluster(provider: &str, key_id: &str) -> String {
    concat(&["warden-provider/", provider, "/", key_id])
}

/// The SDS secret that holds one provider API key.
pub fn provider_secret(provider: &str, key_id: &str) -> String {
    format!("warden-provider-key/{provider}/{key_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_unknown_kinds() {
        assert_eq!(RecordKind::Team.name("t1"), "team:t1");
        assert_eq!(RecordKind::of_name("model:openai/gpt-4o"), Some((RecordKind::Model, "openai/gpt-4o")));
        assert_eq!(RecordKind::of_name("vk:"), None);
        assert_eq!(RecordKind::of_name("thing:1"), None);
        assert_eq!(RecordKind::of_name("nocolon"), None);
    }

    #[test]
    fn check_record_refuses_bad_bodies_and_bad_limits() {
        let team = TeamRecord { id: "t".into(), name: "T".into(), customer_id: None, limits: Limits::default() };
        assert_eq!(check_record("team:t", &serde_json::to_vec(&team).unwrap()), Ok(()));
        assert!(check_record("team:t", b"{").is_err());
        assert!(check_record("vk:abc", br#"{"id":"1","name":"a","is_active":true}"#).is_err());
        let hash = crate::KeyHash::of(b"sk-bf-x").to_hex();
        assert_eq!(check_record(&format!("vk:{hash}"), br#"{"id":"1","name":"a","is_active":true}"#), Ok(()));
        let bad = br#"{"id":"1","name":"a","is_active":true,"limits":{"rate_limit":{"request_max_limit":5}}}"#;
        assert!(check_record(&format!("vk:{hash}"), bad).is_err());
    }

    #[test]
    fn rate_limit_rules() {
        let rl = |json: &str| serde_json::from_str::<RateLimit>(json).unwrap().validate();
        assert_eq!(rl(r#"{"request_max_limit":10,"request_reset_duration":"1m"}"#), Ok(()));
        assert_eq!(
            rl(r#"{"request_max_limit":0,"request_reset_duration":"1m"}"#).unwrap_err().field,
            "request_max_limit"
        );
        assert_eq!(rl(r#"{"token_max_limit":10}"#).unwrap_err().field, "token_reset_duration");
        assert_eq!(
            rl(r#"{"token_max_limit":10,"token_reset_duration":"soon"}"#).unwrap_err().field,
            "token_reset_duration"
        );
        assert!(serde_json::from_str::<RateLimit>(r#"{"tokens":1}"#).is_err());
    }

    #[test]
    fn inactive_wins_over_expired() {
        let mut r = VirtualKeyRecord::new("1", "a", false);
        r.expires_at_ms = Some(10);
        assert_eq!(r.admit(20), Err(Denial::KeyInactive));
        r.is_active = true;
        assert_eq!(r.admit(20), Err(Denial::KeyExpired));
        assert_eq!(r.admit(10), Err(Denial::KeyExpired));
        assert_eq!(r.admit(9), Ok(()));
        r.expires_at_ms = None;
        assert_eq!(r.admit(u64::MAX), Ok(()));
    }
}

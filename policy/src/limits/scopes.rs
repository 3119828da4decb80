//! Who limits a request: one [`Scope`] per owner (provider, model config, the key's provider
//! config, key, customer, team), and the keys of its counters.

use super::Dimension;
use crate::records::{
    BudgetLimit, CustomerRecord, Limits, ModelRecord, ProviderGrant, ProviderRecord, RateLimit, TeamRecord,
    VirtualKeyRecord,
};
use crate::routing::Route;
use crate::text::concat;

/// One owner's limits, ready to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope<'r> {
    /// The owner in messages.
    pub entity: String,
    /// Names its counters (see [`counter_key`]).
    pub id: String,
    /// Request and token limits.
    pub rate_limit: Option<&'r RateLimit>,
    /// Dollar budgets.
    pub budgets: &'r [BudgetLimit],
    /// Window layout.
    pub calendar_aligned: bool,
    /// Where rolling windows start.
    pub anchor_ms: u64,
}

/// The shared-data key of one counter.
pub fn counter_key(scope_id: &str, dimension: &Dimension) -> String {
    concat(&["warden:rl:", scope_id, ":", dimension.suffix])
}

/// The shared-data key of a key's in-flight counter.
pub fn concurrency_key(key_id: &str) -> String {
    concat(&["warden:inflight:", key_id])
}

fn scope<'r>(entity: String, id: String, limits: &'r Limits) -> Option<Scope<'r>> {
    if limits.rate_limit.is_none() && limits.budgets.is_empty() {
        return None;
    }
    Some(Scope {
        entity,
        id,
        rate_limit: limits.rate_limit.as_ref(),
        budgets: &limits.budgets,
        calendar_aligned: limits.calendar_aligned,
        anchor_ms: limits.anchor_ms,
    })
}

impl VirtualKeyRecord {
    /// The key's own limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope("VK".into(), concat(&["vk:", &self.id]), &self.limits)
    }

    /// The key's call limit on one MCP tool (`client-tool`); windows laid out like the key's.
    pub fn tool_scope<'r>(&'r self, tool: &str, limit: &'r RateLimit) -> Scope<'r> {
        Scope {
            entity: format!("tool '{tool}'"),
            id: format!("tool:{}:{tool}", self.id),
            rate_limit: Some(limit),
            budgets: &[],
            calendar_aligned: self.limits.calendar_aligned,
            anchor_ms: self.limits.anchor_ms,
        }
    }

    /// The limits of the key's grant for one provider; windows laid out like the key's.
    pub fn grant_scope<'r>(&'r self, grant: &'r ProviderGrant) -> Option<Scope<'r>> {
        if grant.rate_limit.is_none() && grant.budgets.is_empty() {
            return None;
        }
        Some(Scope {
            entity: concat(&["provider config '", &grant.provider, "'"]),
            id: concat(&["pc:", &self.id, ":", &grant.provider]),
            rate_limit: grant.rate_limit.as_ref(),
            budgets: &grant.budgets,
            calendar_aligned: self.limits.calendar_aligned,
            anchor_ms: self.limits.anchor_ms,
        })
    }
}

impl TeamRecord {
    /// The team's limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(concat(&["team '", &self.name, "'"]), concat(&["team:", &self.id]), &self.limits)
    }
}

impl CustomerRecord {
    /// The customer's limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(concat(&["customer '", &self.name, "'"]), concat(&["customer:", &self.id]), &self.limits)
    }
}

impl ProviderRecord {
    /// The provider-wide limits.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(concat(&["provider '", &self.name, "'"]), concat(&["provider:", &self.name]), &self.limits)
    }
}

impl ModelRecord {
    /// The model-wide limits that apply on `provider`: those of configs for every provider and
    /// those for this one.
    pub fn scopes<'r>(&'r self, provider: &'r str) -> impl Iterator<Item = Scope<'r>> + 'r {
        self.configs.iter().filter(move |c| c.provider.as_deref().is_none_or(|p| p == provider)).filter_map(|c| {
            let entity = match &c.provider {
                Some(p) => format!("Model:{}:Provider:{p}", self.model),
                None => format!("Model:{}", self.model),
            };
            scope(entity, format!("model:{}", c.id), &c.limits)
        })
    }
}

impl ModelRecord {
    /// The limits of every config, whichever provider it is for (unnamed in messages).
    pub(crate) fn every_scope(&self) -> impl Iterator<Item = Scope<'_>> {
        self.configs.iter().filter_map(|c| scope(String::new(), format!("model:{}", c.id), &c.limits))
    }
}

/// The levels of a routed request above its key, in the contract's order (§4.2): provider-wide,
/// model-wide, the key's provider config. The key, its customer and its team follow.
pub fn route_scopes<'r>(
    key: &'r VirtualKeyRecord,
    route: &Route<'r>,
    model: Option<&'r ModelRecord>,
) -> Vec<Scope<'r>> {
    let mut all = Vec::new();
    all.extend(route.provider.scope());
    if let Some(model) = model {
        all.extend(model.scopes(&route.provider.name));
    }
    all.extend(route.grant.and_then(|g| key.grant_scope(g)));
    all
}

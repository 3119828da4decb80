//! Model configs (Bifrost's `/model-configs`): instance-wide limits on one model name,
//! optionally only on one provider. They apply with or without a virtual key.

use super::{Budget, Invalid, RateLimit, budget_limits, budgets, non_empty, rate_limit, unix_ms};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warden_policy::records::{Limits, ModelConfigRecord, ModelRecord};

/// Limits on one model name; `(model_name, provider)` is unique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub id: String,
    pub model_name: String,
    /// Only on this provider; `None` = on every provider.
    pub provider: Option<String>,
    /// Enforced by the filters in micro-dollars (see `budget_limits`).
    pub budgets: Vec<Budget>,
    pub rate_limit: Option<RateLimit>,
    pub calendar_aligned: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ModelConfig {
    /// Checks every rule the types alone do not.
    pub fn validate(&self) -> Result<(), Invalid> {
        non_empty(&self.model_name, "model_name")?;
        // An empty provider would read as "every provider" to some and as "none" to others.
        if self.provider.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(Invalid::new("provider", "must not be empty (omit it or send null for every provider)"));
        }
        budgets(&self.budgets, "budgets")?;
        self.rate_limit.as_ref().map_or(Ok(()), |rl| rate_limit(rl, "rate_limit"))
    }

    fn entry(&self) -> ModelConfigRecord {
        ModelConfigRecord {
            id: self.id.clone(),
            provider: self.provider.clone(),
            limits: Limits {
                rate_limit: self.rate_limit.clone(),
                budgets: budget_limits(&self.budgets),
                calendar_aligned: self.calendar_aligned,
                anchor_ms: unix_ms(self.created_at),
            },
        }
    }
}

/// The one record a model name gets: every config with that `model_name`, in the given order.
pub fn model_record(model: &str, configs: &[ModelConfig]) -> ModelRecord {
    ModelRecord {
        model: model.to_owned(),
        configs: configs.iter().filter(|c| c.model_name == model).map(ModelConfig::entry).collect(),
    }
}

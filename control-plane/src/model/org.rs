//! Teams and customers (as in Bifrost): the owners above virtual keys. Each is checked on its
//! own and charged the same cost as the key below it.

use super::{Budget, Invalid, RateLimit, budget_limits, budgets, non_empty, rate_limit, unix_ms};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warden_policy::records::{CustomerRecord, Limits, TeamRecord};

/// A team of virtual keys, optionally under a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    /// Must name an existing customer; the admin API checks it, the store enforces it.
    pub customer_id: Option<String>,
    /// Enforced by the filters in micro-dollars (see `budget_limits`).
    pub budgets: Vec<Budget>,
    pub rate_limit: Option<RateLimit>,
    pub calendar_aligned: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A customer: the top of the hierarchy, owning teams and keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// Enforced by the filters in micro-dollars (see `budget_limits`).
    pub budgets: Vec<Budget>,
    pub rate_limit: Option<RateLimit>,
    pub calendar_aligned: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Team {
    /// Checks every rule the types alone do not; references are the admin API's to check.
    pub fn validate(&self) -> Result<(), Invalid> {
        non_empty(&self.name, "name")?;
        if let Some(customer) = &self.customer_id {
            non_empty(customer, "customer_id")?;
        }
        budgets(&self.budgets, "budgets")?;
        self.rate_limit.as_ref().map_or(Ok(()), |rl| rate_limit(rl, "rate_limit"))
    }

    /// The policy record every filter receives for this team.
    pub fn record(&self) -> TeamRecord {
        TeamRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            customer_id: self.customer_id.clone(),
            limits: Limits {
                rate_limit: self.rate_limit.clone(),
                budgets: budget_limits(&self.budgets),
                calendar_aligned: self.calendar_aligned,
                anchor_ms: unix_ms(self.created_at),
            },
        }
    }
}

impl Customer {
    /// Checks every rule the types alone do not.
    pub fn validate(&self) -> Result<(), Invalid> {
        non_empty(&self.name, "name")?;
        budgets(&self.budgets, "budgets")?;
        self.rate_limit.as_ref().map_or(Ok(()), |rl| rate_limit(rl, "rate_limit"))
    }

    /// The policy record every filter receives for this customer.
    pub fn record(&self) -> CustomerRecord {
        CustomerRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            limits: Limits {
                rate_limit: self.rate_limit.clone(),
                budgets: budget_limits(&self.budgets),
                calendar_aligned: self.calendar_aligned,
                anchor_ms: unix_ms(self.created_at),
            },
        }
    }
}

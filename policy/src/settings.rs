//! The filter's own settings: the plugin configuration the control plane sends over ECDS.

use serde::{Deserialize, Serialize};

/// The filter's settings, as JSON inside the ECDS `PluginConfig.configuration`.
///
/// Unknown fields are refused: a setting this filter does not understand must not be silently
/// ignored, so the filter rejects the whole configuration, Envoy NACKs it and keeps the previous
/// one serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSettings {
    /// The Envoy cluster (HTTP/2) that reaches the control plane's policy stream.
    pub control_plane_cluster: String,
    /// How old the policy may get without contact with the control plane before requests are
    /// refused with 503 instead of being judged on outdated policy.
    #[serde(default = "FilterSettings::default_staleness_bound_ms")]
    pub staleness_bound_ms: u64,
    /// How often every VM wakes up to keep the policy stream and its leader lease alive.
    #[serde(default = "FilterSettings::default_tick_ms")]
    pub tick_ms: u64,
    /// How long a VM's claim to hold the policy stream lasts without renewal. A crashed leader
    /// is replaced after at most this long.
    #[serde(default = "FilterSettings::default_leader_lease_ms")]
    pub leader_lease_ms: u64,
    /// The largest inference request body the filter reads (it must see `model`); larger ones
    /// are refused with a 400 that says so. Envoy's own buffer limit must be above it.
    #[serde(default = "FilterSettings::default_max_request_body_bytes")]
    pub max_request_body_bytes: u64,
    /// The output tokens a budget reserves for a request that sets no `max_tokens`.
    #[serde(default = "FilterSettings::default_max_tokens")]
    pub default_max_tokens: u64,
    /// What a budget does when this Envoy holds no lease for it (the control plane has not
    /// answered since the window began).
    #[serde(default)]
    pub budget_fail_mode: FailMode,
    /// When a budget admits a request.
    #[serde(default)]
    pub budget_admission: BudgetAdmission,
}

/// When a budget admits a request. Either way the request's estimated cost is reserved while it
/// runs and replaced by its actual cost when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetAdmission {
    /// Bifrost's rule: admitted while the spend (with what requests in flight reserved) is below
    /// the limit, whatever the estimate. A budget ends at most one request past its limit per
    /// Envoy: the request admitted last, by what it cost beyond what was left.
    #[default]
    Spent,
    /// Admitted only when the estimate fits in what is left: a budget never ends past its limit,
    /// and ends short of it by less than one request's estimate.
    Reserve,
}

/// What a fleet-wide limit does without a lease from the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Refuse with 503 `budget_unavailable`: the cap holds.
    #[default]
    Deny,
    /// Enforce the whole limit in this Envoy alone: service goes on, and the fleet may spend up
    /// to one limit per Envoy.
    Local,
}

/// The longest a filter may go on judging by its last policy without the control plane.
const MAX_STALENESS_BOUND_MS: u64 = 86_400_000;

/// Why the filter refuses a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// Not JSON, wrong types or unknown fields.
    #[error("invalid filter settings: {0}")]
    Malformed(String),
    /// A field is out of its allowed range.
    #[error("invalid filter settings: {field} {reason}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// What the field must satisfy.
        reason: &'static str,
    },
}

/// The control plane sends a heartbeat this often on every policy stream.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;

impl FilterSettings {
    fn default_staleness_bound_ms() -> u64 {
        300_000
    }
    fn default_tick_ms() -> u64 {
        500
    }
    fn default_leader_lease_ms() -> u64 {
        2_000
    }
    fn default_max_request_body_bytes() -> u64 {
        4 << 20
    }
    fn default_max_tokens() -> u64 {
        4_096
    }

    /// Settings for a control plane reached through `cluster`, defaults elsewhere.
    pub fn for_cluster(cluster: &str) -> FilterSettings {
        FilterSettings {
            control_plane_cluster: cluster.to_owned(),
            staleness_bound_ms: Self::default_staleness_bound_ms(),
            tick_ms: Self::default_tick_ms(),
            leader_lease_ms: Self::default_leader_lease_ms(),
            max_request_body_bytes: Self::default_max_request_body_bytes(),
            default_max_tokens: Self::default_max_tokens(),
            budget_fail_mode: FailMode::default(),
            budget_admission: BudgetAdmission::default(),
        }
    }

    /// Parses and validates the plugin configuration.
    pub fn parse(json: &[u8]) -> Result<FilterSettings, SettingsError> {
        let settings: FilterSettings =
            serde_json::from_slice(json).map_err(|e| SettingsError::Malformed(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let out = |field, reason| Err(SettingsError::OutOfRange { field, reason });
        if self.control_plane_cluster.trim().is_empty() {
            return out("control_plane_cluster", "must name an Envoy cluster");
        }
        if !(50..=10_000).contains(&self.tick_ms) {
            return out("tick_ms", "must be between 50 and 10000");
        }
        if self.leader_lease_ms < 2 * self.tick_ms {
            return out("leader_lease_ms", "must be at least twice tick_ms");
        }
        if !(1_024..=(64 << 20)).contains(&self.max_request_body_bytes) {
            return out("max_request_body_bytes", "must be between 1024 and 67108864");
        }
        // Below two heartbeats a healthy stream would flap between fresh and stale.
        if self.staleness_bound_ms < 2 * HEARTBEAT_INTERVAL_MS {
            return out("staleness_bound_ms", "must be at least 2000 (two control-plane heartbeats)");
        }
        // Policy a day old is not policy: a revoked key would keep working that long.
        if self.staleness_bound_ms > MAX_STALENESS_BOUND_MS {
            return out("staleness_bound_ms", "must be at most 86400000 (a day)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in() {
        let s = FilterSettings::parse(br#"{"control_plane_cluster":"warden"}"#).unwrap();
        assert_eq!(s, FilterSettings::for_cluster("warden"));
    }

    #[test]
    fn unknown_fields_and_bad_ranges_are_refused() {
        let err = FilterSettings::parse(br#"{"control_plane_cluster":"w","colour":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let err = FilterSettings::parse(br#"{"control_plane_cluster":"w","staleness_bound_ms":0}"#).unwrap_err();
        assert!(matches!(err, SettingsError::OutOfRange { field: "staleness_bound_ms", .. }));
        let err = FilterSettings::parse(br#"{"control_plane_cluster":"w","staleness_bound_ms":86400001}"#).unwrap_err();
        assert!(matches!(err, SettingsError::OutOfRange { field: "staleness_bound_ms", .. }));
        let err = FilterSettings::parse(br#"{"control_plane_cluster":" "}"#).unwrap_err();
        assert!(matches!(err, SettingsError::OutOfRange { field: "control_plane_cluster", .. }));
        let err = FilterSettings::parse(br#"{"control_plane_cluster":"w","tick_ms":1000,"leader_lease_ms":1500}"#)
            .unwrap_err();
        assert!(matches!(err, SettingsError::OutOfRange { field: "leader_lease_ms", .. }));
        assert!(matches!(FilterSettings::parse(b"\xff"), Err(SettingsError::Malformed(_))));
    }
}

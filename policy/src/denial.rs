//! Why a request is refused, and the one error shape every refusal travels in.
//!
//! The body is readable both by OpenAI SDKs (`error.message`, `error.type`, `error.code`) and by
//! Bifrost clients (top-level `type` and `status_code`); docs/routes.md lists the refusals.

use crate::budgets::BudgetViolation;
use crate::limits::{RateKind, RateViolation};
use serde::Serialize;

/// One variant per reason a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No virtual key in any of the accepted headers.
    KeyRequired,
    /// A virtual key was sent but no such key exists (never created, or deleted).
    KeyNotFound,
    /// The key exists but is switched off.
    KeyInactive,
    /// The key exists but its `expires_at` has passed.
    KeyExpired,
    /// This Envoy has not received any policy yet.
    PolicyMissing,
    /// The policy this Envoy holds is older than the configured staleness bound.
    PolicyStale {
        /// Milliseconds since the last contact with the control plane.
        age_ms: u64,
        /// The configured bound, in milliseconds.
        bound_ms: u64,
    },
    /// The body is not what the route needs (not JSON, too large, no `model`).
    BadRequest(String),
    /// The route is not one Warden governs.
    UnknownRoute(String),
    /// The key may not use this model (names it as requested).
    ModelBlocked(String),
    /// The key may not use this provider.
    ProviderBlocked(String),
    /// The key's grant leaves none of the provider's API keys.
    NoProviderKey(String),
    /// A request or token limit is exhausted.
    RateLimited(RateViolation),
    /// The key already has its maximum of requests in flight.
    ConcurrencyLimited {
        /// The key's `max_concurrent_requests`.
        max: u32,
    },
    /// A budget cannot take this request's estimated cost.
    BudgetExceeded(BudgetViolation),
    /// The model has no price, no fallback price is configured, and a budget applies.
    PriceUnknown(String),
    /// This Envoy has spent its lease of a fleet-wide budget, and the control plane has more to
    /// grant: a retry a moment later finds the renewed lease. Names the owner.
    BudgetPending(String),
    /// This Envoy holds no lease of a fleet-wide budget (the control plane has not answered)
    /// and the budget's fail mode is to refuse. Names the owner.
    BudgetUnavailable(String),
    /// An unknown key on `/v1/mcp/tool/execute`, where the contract answers 403, not 401.
    ToolKeyNotFound,
    /// The key may not call this MCP tool: `(tool, key name)`.
    ToolBlocked(String, String),
    /// `/mcp/<slug>` of a Virtual MCP this key is not attached to (or none by that slug):
    /// `(slug, key name)`.
    VirtualMcpBlocked(String, String),
    /// No connected MCP client offers this tool.
    ToolUnknown(String),
    /// The hub could not reach the tool's MCP server: why.
    ToolUnavailable(String),
    /// The tool did not answer in time.
    ToolTimeout {
        /// `client-tool`.
        tool: String,
        /// The timeout.
        ms: u64,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
    #[serde(rename = "type")]
    kind: &'a str,
    status_code: u16,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
}

impl Denial {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Denial::KeyRequired | Denial::KeyNotFound => 401,
            Denial::KeyInactive | Denial::KeyExpired => 403,
            Denial::PolicyMissing | Denial::PolicyStale { .. } => 503,
            Denial::BadRequest(_) => 400,
            Denial::UnknownRoute(_) => 404,
            Denial::ModelBlocked(_) | Denial::ProviderBlocked(_) | Denial::NoProviderKey(_) => 403,
            Denial::RateLimited(_) | Denial::ConcurrencyLimited { .. } => 429,
            Denial::BudgetExceeded(_) => 402,
            Denial::PriceUnknown(_) => 403,
            Denial::BudgetPending(_) => 429,
            Denial::BudgetUnavailable(_) => 503,
            Denial::ToolBlocked(..) | Denial::ToolKeyNotFound | Denial::VirtualMcpBlocked(..) => 403,
            Denial::ToolUnknown(_) => 404,
            Denial::ToolUnavailable(_) => 502,
            Denial::ToolTimeout { .. } => 504,
        }
    }

    /// The Bifrost error type (top-level `type` and `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::KeyRequired => "virtual_key_required",
            Denial::KeyNotFound | Denial::ToolKeyNotFound => "virtual_key_not_found",
            Denial::KeyInactive | Denial::KeyExpired => "virtual_key_blocked",
            Denial::PolicyMissing | Denial::PolicyStale { .. } => "policy_unavailable",
            Denial::BadRequest(_) => "invalid_request_error",
            Denial::UnknownRoute(_) => "not_found",
            Denial::ModelBlocked(_) => "model_blocked",
            Denial::ProviderBlocked(_) | Denial::NoProviderKey(_) => "provider_blocked",
            Denial::RateLimited(v) => match v.kind {
                RateKind::Requests => "request_limited",
                RateKind::Tokens => "token_limited",
                RateKind::Both => "rate_limited",
            },
            Denial::ConcurrencyLimited { .. } => "rate_limited",
            Denial::BudgetExceeded(_) => "budget_exceeded",
            Denial::PriceUnknown(_) => "price_unknown",
            Denial::BudgetPending(_) => "rate_limited",
            Denial::BudgetUnavailable(_) => "budget_unavailable",
            Denial::ToolBlocked(..) => "mcp_tool_blocked",
            Denial::VirtualMcpBlocked(..) => "virtual_mcp_blocked",
            Denial::ToolUnknown(_) => "mcp_tool_not_found",
            Denial::ToolUnavailable(_) => "mcp_server_unavailable",
            Denial::ToolTimeout { .. } => "mcp_tool_timeout",
        }
    }

    /// A finer code than the type, for clients that need to tell cases apart.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::KeyRequired => "virtual_key_required",
            Denial::KeyNotFound | Denial::ToolKeyNotFound => "virtual_key_not_found",
            Denial::KeyInactive => "virtual_key_inactive",
            Denial::KeyExpired => "virtual_key_expired",
            Denial::PolicyMissing => "policy_missing",
            Denial::PolicyStale { .. } => "policy_stale",
            Denial::BadRequest(_) => "invalid_request",
            Denial::UnknownRoute(_) => "unknown_route",
            Denial::ModelBlocked(_) => "model_blocked",
            Denial::ProviderBlocked(_) => "provider_blocked",
            Denial::NoProviderKey(_) => "provider_key_blocked",
            Denial::RateLimited(_) => self.kind(),
            Denial::ConcurrencyLimited { .. } => "concurrency_limited",
            Denial::BudgetExceeded(_) => "budget_exceeded",
            Denial::PriceUnknown(_) => "price_unknown",
            Denial::BudgetPending(_) => "budget_lease_pending",
            Denial::BudgetUnavailable(_) => "budget_unavailable",
            Denial::ToolBlocked(..) => "mcp_tool_blocked",
            Denial::VirtualMcpBlocked(..) => "virtual_mcp_not_attached",
            Denial::ToolUnknown(_) => "mcp_tool_not_found",
            Denial::ToolUnavailable(_) => "mcp_server_unavailable",
            Denial::ToolTimeout { .. } => "mcp_tool_timeout",
        }
    }

    /// The human-readable message; Bifrost's wording where Bifrost has the case.
    pub fn message(&self) -> String {
        match self {
            Denial::KeyRequired => "virtual key is required. Provide a virtual key via the x-bf-vk header.".into(),
            Denial::KeyNotFound | Denial::ToolKeyNotFound => {
                "virtual key not found. The provided virtual key does not exist or has been revoked.".into()
            }
            Denial::KeyInactive => "Virtual key is inactive".into(),
            Denial::KeyExpired => "Virtual key has expired".into(),
            Denial::PolicyMissing => {
                "Warden has not received its policy from the control plane yet; the request is refused rather than let through ungoverned.".into()
            }
            Denial::PolicyStale { age_ms, bound_ms } => format!(
                "Warden's policy is stale: no contact with the control plane for {} ms (bound {} ms); the request is refused rather than let through on outdated policy.",
                age_ms, bound_ms
            ),
            Denial::BadRequest(reason) => reason.clone(),
            Denial::UnknownRoute(path) => format!(
                "Warden does not govern '{path}': use /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions, /v1/models, /v1/mcp/tool/execute or /mcp"
            ),
            Denial::ModelBlocked(model) => format!("Model '{model}' is not allowed for this virtual key"),
            Denial::ProviderBlocked(provider) => format!("Provider '{provider}' is not allowed for this virtual key"),
            Denial::NoProviderKey(provider) => {
                format!("Provider '{provider}' has no API key this virtual key may use (provider_configs[].key_ids)")
            }
            Denial::RateLimited(v) => v.message(),
            Denial::ConcurrencyLimited { max } => format!(
                "Concurrency limit reached: this virtual key already has {max} requests in flight (max_concurrent_requests)"
            ),
            Denial::BudgetExceeded(v) => v.message(),
            Denial::PriceUnknown(model) => format!(
                "Model '{model}' has no price and no fallback price is configured; a budget applies, so it cannot be served"
            ),
            Denial::BudgetPending(entity) => format!(
                "{entity} budget: this gateway has spent its share of the budget and is renewing it from the control plane; retry shortly"
            ),
            Denial::BudgetUnavailable(entity) => format!(
                "{entity} budget: the control plane has granted this gateway no share of the budget (unreachable?), and its fail mode is to refuse"
            ),
            Denial::ToolBlocked(tool, key) => format!("MCP tool '{tool}' is not allowed for virtual key '{key}'"),
            Denial::VirtualMcpBlocked(slug, key) => {
                format!("Virtual MCP '{slug}' is not attached to virtual key '{key}' (or does not exist)")
            }
            Denial::ToolUnavailable(why) => why.clone(),
            Denial::ToolTimeout { tool, ms } => {
                format!("MCP tool '{tool}' did not answer within {ms} ms; the call was cancelled")
            }
            Denial::ToolUnknown(tool) => format!(
                "tool '{tool}' is not available or not permitted: no connected MCP client offers it (names are <client>-<tool>)"
            ),
        }
    }

    /// The refusal as `/v1/mcp/tool/execute` words it: an unknown key is a 403 there.
    pub fn on_tool_route(self) -> Denial {
        match self {
            Denial::KeyNotFound => Denial::ToolKeyNotFound,
            other => other,
        }
    }

    /// The `retry-after` of a refusal that passes with time (429, 402, and 503 for a missing lease).
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Denial::RateLimited(v) => Some(v.retry_after_s),
            Denial::ConcurrencyLimited { .. } | Denial::BudgetPending(_) | Denial::BudgetUnavailable(_) => Some(1),
            Denial::BudgetExceeded(v) => Some(v.retry_after_s),
            _ => None,
        }
    }

    /// The JSON body of the local reply.
    pub fn body(&self) -> Vec<u8> {
        let message = self.message();
        let body = ErrorBody {
            error: ErrorDetail { message: &message, kind: self.kind(), code: self.code() },
            kind: self.kind(),
            status_code: self.status(),
        };
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_openai_and_bifrost_fields() {
        let body: serde_json::Value = serde_json::from_slice(&Denial::KeyExpired.body()).unwrap();
        assert_eq!(body["type"], "virtual_key_blocked");
        assert_eq!(body["status_code"], 403);
        assert_eq!(body["error"]["type"], "virtual_key_blocked");
        assert_eq!(body["error"]["code"], "virtual_key_expired");
        assert_eq!(body["error"]["message"], "Virtual key has expired");
    }

    #[test]
    fn stale_message_names_age_and_bound() {
        let d = Denial::PolicyStale { age_ms: 7000, bound_ms: 5000 };
        assert_eq!(d.status(), 503);
        assert!(d.message().contains("7000 ms (bound 5000 ms)"));
    }
}

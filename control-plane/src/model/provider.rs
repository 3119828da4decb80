//! Upstream providers: an OpenAI-compatible endpoint (OpenAI itself, Anthropic's and Gemini's
//! compatibility endpoints, vLLM, the mock provider…) and its API keys.
//!
//! Each API key becomes one Envoy cluster (CDS) that injects the key from an SDS secret, so a
//! key never travels in the filter's configuration and the admin API never shows it again.

use super::{Budget, Invalid, RateLimit, budget_limits, budgets, rate_limit, unix_ms, white_list};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warden_policy::records::{Limits, ProviderRecord};

/// The wire protocol of a provider. Only OpenAI's is spoken for now; Anthropic and Gemini are
/// reached through their OpenAI compatibility endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
}

/// One API key of a provider. `value` is write-only: it is kept for SDS and never serialised
/// into an API response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderKey {
    pub id: String,
    #[serde(skip_serializing)]
    pub value: String,
}

/// Timeouts towards the provider.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP (and TLS) connection set-up.
    #[serde(default = "Timeouts::default_connect_ms")]
    pub connect_ms: u64,
    /// The whole request, first byte to last (streams included).
    #[serde(default = "Timeouts::default_request_ms")]
    pub request_ms: u64,
}

impl Timeouts {
    fn default_connect_ms() -> u64 {
        5_000
    }
    fn default_request_ms() -> u64 {
        300_000
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect_ms: Self::default_connect_ms(), request_ms: Self::default_request_ms() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// `[a-z0-9][a-z0-9_-]*`: used in `provider/model` names and cluster names.
    pub name: String,
    pub kind: ProviderKind,
    /// `http(s)://host[:port][/path]`; the path stands for the client's `/v1` (default `/v1`).
    pub base_url: String,
    /// The model catalogue; empty passes any model name.
    pub models: Vec<String>,
    pub keys: Vec<ProviderKey>,
    pub timeouts: Timeouts,
    /// Provider-wide limits and budgets, shared by every key.
    pub rate_limit: Option<RateLimit>,
    pub budgets: Vec<Budget>,
    pub calendar_aligned: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A base URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path that stands for `/v1`, without a trailing slash.
    pub base_path: String,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("must start with http:// or https:// (got '{url}')"));
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in '{url}'"))?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
        if !host_ok {
            return Err(format!("has no valid host ('{url}')"));
        }
        if path.contains(['?', '#']) {
            return Err("must not carry a query or fragment".into());
        }
        // The path becomes part of every upstream `:path`: printable ASCII only.
        if !path.chars().all(|c| c.is_ascii_graphic()) {
            return Err("its path may hold printable ASCII only (no spaces or control characters)".into());
        }
        let path = path.trim_end_matches('/');
        let base_path = if path.is_empty() { "/v1".to_owned() } else { format!("/{path}") };
        Ok(Upstream { tls, host: host.to_owned(), port, base_path })
    }
}

fn is_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Provider {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_name(&self.name) || self.name.len() > 64 {
            return Err(Invalid::new(
                "name",
                "must be 1–64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
            ));
        }
        Upstream::parse(&self.base_url).map_err(|e| Invalid::new("base_url", e))?;
        white_list(&self.models, "models")?;
        if self.models.iter().any(|m| m == "*") {
            return Err(Invalid::new("models", "lists model names; leave it empty to pass any name"));
        }
        let mut ids: Vec<&str> = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let valid_id = !key.id.is_empty()
                && key.id.len() <= 64
                && key.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_id {
                return Err(Invalid::new(
                    format!("keys[{i}].id"),
                    "must be 1–64 characters of A-Z, a-z, 0-9, '-' and '_'",
                ));
            }
            if key.value.trim().is_empty() || key.value.chars().any(char::is_control) {
                return Err(Invalid::new(
                    format!("keys[{i}].value"),
                    "must be a non-empty key without control characters",
                ));
            }
            if ids.contains(&key.id.as_str()) {
                return Err(Invalid::new("keys", format!("lists the id '{}' twice", key.id)));
            }
            ids.push(&key.id);
        }
        let t = self.timeouts;
        if !(1..=600_000).contains(&t.connect_ms) || !(1..=3_600_000).contains(&t.request_ms) {
            return Err(Invalid::new("timeouts", "connect_ms must be 1–600000 and request_ms 1–3600000"));
        }
        if let Some(rl) = &self.rate_limit {
            rate_limit(rl, "rate_limit")?;
        }
        budgets(&self.budgets, "budgets")?;
        Ok(())
    }

    /// The record every filter receives: routing facts and limits, no key values.
    pub fn record(&self) -> ProviderRecord {
        let base_path = Upstream::parse(&self.base_url).map(|u| u.base_path).unwrap_or_else(|_| "/v1".into());
        ProviderRecord {
            name: self.name.clone(),
            models: self.models.clone(),
            key_ids: self.keys.iter().map(|k| k.id.clone()).collect(),
            base_path,
            request_timeout_ms: Some(self.timeouts.request_ms),
            limits: Limits {
                rate_limit: self.rate_limit.clone(),
                budgets: budget_limits(&self.budgets),
                calendar_aligned: self.calendar_aligned,
                anchor_ms: unix_ms(self.created_at),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = Upstream::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!(u, Upstream { tls: true, host: "api.openai.com".into(), port: 443, base_path: "/v1".into() });
        let g = Upstream::parse("https://generativelanguage.googleapis.com/v1beta/openai").unwrap();
        assert_eq!(g.base_path, "/v1beta/openai");
        let m = Upstream::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((m.tls, m.port, m.base_path.as_str()), (false, 9000, "/v1"));
        for bad in [
            "ftp://x",
            "http://",
            "http://h:port",
            "http://h/v1?x=1",
            "http://a b",
            "http://h/v1\r\nx: y",
            "http://h/v 1",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}

//! MCP clients: the MCP servers the hub connects to, in Bifrost's shape (`/api/mcp/client`).

use super::{Invalid, white_list};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warden_policy::mcp::{McpClientRecord, McpTool};

/// How the hub reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    /// Streamable HTTP at `connection_string`.
    Http,
    /// The legacy HTTP+SSE transport (2024-11-05); refused: rmcp does not speak it.
    Sse,
    /// A child process speaking on stdin/stdout.
    Stdio,
}

/// The child process of a stdio server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioConfig {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of the control plane's environment variables passed to the child; it gets no
    /// others but `PATH`, `HOME`, `LANG` and `TMPDIR`.
    #[serde(default)]
    pub envs: Vec<String>,
}

/// One MCP server the hub connects to. `headers` and `connection_string` may hold `env.VAR`
/// references, resolved from the control plane's environment at connect time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpClient {
    pub client_id: String,
    pub name: String,
    pub connection_type: ConnectionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio_config: Option<StdioConfig>,
    /// Sent on every HTTP request to the server.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `*` = all, a list = those, empty = none (the ceiling for every key).
    #[serde(default)]
    pub tools_to_execute: Vec<String>,
    /// Tools agent mode may run without asking; must be within `tools_to_execute`.
    #[serde(default)]
    pub tools_to_auto_execute: Vec<String>,
    #[serde(default)]
    pub is_code_mode_client: bool,
    /// USD per call, by tool name (as the server names it).
    #[serde(default)]
    pub tool_pricing: BTreeMap<String, f64>,
    /// Usable by every key without an entry in its `mcp_configs`.
    #[serde(default)]
    pub allow_by_default: bool,
    /// `false`: health checks use `tools/list` instead of `ping`.
    #[serde(default = "yes")]
    pub is_ping_available: bool,
    /// The longest a tool call may take (ms); 30 s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_timeout_ms: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the admin API shows in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// The most a tool call may be priced at, in USD (keeps µ$ sums far from overflowing).
const MAX_TOOL_PRICE_USD: f64 = 1_000.0;

/// The control plane's own variables (database URL, admin token…) never reach an MCP server.
fn warden_variable(value: &str) -> bool {
    value.strip_prefix("env.").unwrap_or(value).starts_with("WARDEN_")
}

fn yes() -> bool {
    true
}

/// A tool call's timeout when the client sets none (Bifrost's `tool_execution_timeout`).
pub const DEFAULT_TOOL_TIMEOUT_MS: u64 = 30_000;

impl McpClient {
    /// Checks every rule the types alone do not.
    pub fn validate(&self) -> Result<(), Invalid> {
        let name = &self.name;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid_name {
            return Err(Invalid::new(
                "name",
                "must be 1-64 ASCII letters, digits or '_', not starting with a digit (no '-': tools are named <client>-<tool>)",
            ));
        }
        match self.connection_type {
            ConnectionType::Sse => {
                return Err(Invalid::new(
                    "connection_type",
                    "'sse' (the 2024-11-05 HTTP+SSE transport) is not supported; use 'http' (Streamable HTTP)",
                ));
            }
            ConnectionType::Http => {
                let url = self.connection_string.as_deref().unwrap_or_default().trim();
                let is_url = url.starts_with("http://") || url.starts_with("https://");
                if !is_url && !url.starts_with("env.") {
                    return Err(Invalid::new("connection_string", "must be an http(s) URL or an env.VAR reference"));
                }
                if self.stdio_config.is_some() {
                    return Err(Invalid::new("stdio_config", "is only for connection_type 'stdio'"));
                }
            }
            ConnectionType::Stdio => match &self.stdio_config {
                Some(c) if !c.command.trim().is_empty() => {}
                _ => return Err(Invalid::new("stdio_config.command", "is required for connection_type 'stdio'")),
            },
        }
        for (name, value) in &self.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Invalid::new(format!("headers.{name}"), "is not a valid header name"));
            }
            if value.starts_with("env.") && warden_variable(value) {
                return Err(Invalid::new(format!("headers.{name}"), "may not name Warden's own WARDEN_* variables"));
            }
        }
        if self.connection_string.as_deref().is_some_and(|u| u.starts_with("env.") && warden_variable(u)) {
            return Err(Invalid::new("connection_string", "may not name Warden's own WARDEN_* variables"));
        }
        if let Some(envs) = self.stdio_config.as_ref().map(|c| &c.envs)
            && envs.iter().any(|e| warden_variable(e))
        {
            return Err(Invalid::new("stdio_config.envs", "may not pass Warden's own WARDEN_* variables"));
        }
        white_list(&self.tools_to_execute, "tools_to_execute")?;
        white_list(&self.tools_to_auto_execute, "tools_to_auto_execute")?;
        for (tool, price) in &self.tool_pricing {
            if !price.is_finite() || !(0.0..=MAX_TOOL_PRICE_USD).contains(price) {
                return Err(Invalid::new(format!("tool_pricing.{tool}"), "must be a price in USD from 0 to 1000"));
            }
        }
        if self.tool_timeout_ms == Some(0) || self.tool_timeout_ms > Some(3_600_000) {
            return Err(Invalid::new(
                "tool_timeout_ms",
                "must be more than 0 and at most 3600000, an hour (omit it for 30 s)",
            ));
        }
        Ok(())
    }

    /// The longest a tool call may take.
    pub fn tool_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.tool_timeout_ms.unwrap_or(DEFAULT_TOOL_TIMEOUT_MS))
    }

    /// What every filter knows of this client, with the tools its server offers now.
    pub fn record(&self, tools: Vec<McpTool>) -> McpClientRecord {
        McpClientRecord {
            name: self.name.clone(),
            tools_to_execute: self.tools_to_execute.clone(),
            allow_by_default: self.allow_by_default,
            tools_to_auto_execute: self.tools_to_auto_execute.clone(),
            is_code_mode_client: self.is_code_mode_client,
            tool_pricing: self.tool_pricing.iter().map(|(t, usd)| (t.clone(), (usd * 1e6).round() as u64)).collect(),
            tools,
        }
    }

    /// The client as the admin API shows it: header values and the URL's query and password
    /// hidden, `env.VAR` references shown (they name a secret, they are not one).
    pub fn redacted(&self) -> McpClient {
        let mut shown = self.clone();
        for value in shown.headers.values_mut() {
            if !value.starts_with("env.") {
                *value = REDACTED.into();
            }
        }
        shown.connection_string = shown.connection_string.map(|url| redact_url(&url));
        shown
    }
}

fn redact_url(url: &str) -> String {
    if url.starts_with("env.") {
        return url.to_owned();
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?{REDACTED}"),
        None => path.to_owned(),
    };
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(json: serde_json::Value) -> McpClient {
        let mut base = serde_json::json!({
            "client_id": "c1", "name": "fs", "connection_type": "http",
            "connection_string": "http://127.0.0.1:1/mcp",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        });
        base.as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn names_and_transports_follow_the_contract() {
        assert!(client(serde_json::json!({})).validate().is_ok());
        for bad in ["my-fs", "1fs", "f s", ""] {
            assert_eq!(client(serde_json::json!({"name": bad})).validate().unwrap_err().field, "name", "{bad}");
        }
        let sse = client(serde_json::json!({"connection_type": "sse"}));
        assert!(sse.validate().unwrap_err().reason.contains("Streamable HTTP"));
        let stdio = client(serde_json::json!({"connection_type": "stdio", "connection_string": null}));
        assert_eq!(stdio.validate().unwrap_err().field, "stdio_config.command");
        let ok = client(serde_json::json!({"connection_type": "stdio", "stdio_config": {"command": "npx"}}));
        assert!(ok.validate().is_ok());
        let mixed = client(serde_json::json!({"tools_to_execute": ["*", "a"]}));
        assert_eq!(mixed.validate().unwrap_err().field, "tools_to_execute");
        let price = client(serde_json::json!({"tool_pricing": {"a": -1.0}}));
        assert_eq!(price.validate().unwrap_err().field, "tool_pricing.a");
        for ms in [0u64, 3_600_001] {
            let slow = client(serde_json::json!({"tool_timeout_ms": ms}));
            assert_eq!(slow.validate().unwrap_err().field, "tool_timeout_ms", "{ms}");
        }
        assert!(client(serde_json::json!({"tool_timeout_ms": 3_600_000})).validate().is_ok());
    }

    #[test]
    fn secrets_are_redacted_and_prices_become_micros() {
        let c = client(serde_json::json!({
            "connection_string": "https://user:pw@mcp.example.com/mcp?token=abc",
            "headers": {"authorization": "Bearer s3cret", "x-key": "env.MCP_KEY"},
            "tool_pricing": {"search": 0.0025},
        }));
        let shown = c.redacted();
        assert_eq!(shown.connection_string.as_deref(), Some("https://<redacted>@mcp.example.com/mcp?<redacted>"));
        assert_eq!(shown.headers["authorization"], "<redacted>");
        assert_eq!(shown.headers["x-key"], "env.MCP_KEY");
        assert_eq!(c.record(Vec::new()).tool_pricing["search"], 2_500);
    }
}

/// What MCP servers this control plane may reach, as its operator set it: the admin token
/// alone then cannot run a program on the host or reach its own ports and metadata services.
#[derive(Debug, Clone, Default)]
pub struct McpHosts {
    /// The commands stdio servers may run (`warden serve --mcp-stdio-command`); none: stdio
    /// servers are refused.
    pub stdio_commands: Vec<String>,
    /// Whether URLs may name loopback, private or link-local hosts (`--mcp-allow-private-urls`).
    pub private_urls: bool,
}

impl McpHosts {
    /// Refuses a client this control plane may not reach, naming the field.
    pub fn admit(&self, client: &McpClient) -> Result<(), Invalid> {
        if let Some(stdio) = &client.stdio_config
            && !self.stdio_commands.contains(&stdio.command)
        {
            return Err(Invalid::new(
                "stdio_config.command",
                "is not a command this control plane runs (its operator allows them with warden serve --mcp-stdio-command)",
            ));
        }
        let url = client.connection_string.as_deref().unwrap_or_default();
        if !self.private_urls && url_host(url).is_some_and(is_private_host) {
            return Err(Invalid::new(
                "connection_string",
                "names a loopback, private or link-local host (its operator allows them with warden serve --mcp-allow-private-urls)",
            ));
        }
        Ok(())
    }
}

/// The host of an http(s) URL (an `env.VAR` reference has none to check).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    })
}

fn is_private_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    // No host name ends in a number: `2130706433`, `127.1` or `0x7f.1` are addresses a resolver
    // reads the old way (127.0.0.1). Only the four-part dotted form is judged; the rest refused.
    let last = host.rsplit('.').next().unwrap_or_default();
    let numeric = last.starts_with("0x") || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()));
    if numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let mapped =
                ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local());
            ip.is_loopback()
                || ip.is_unspecified()
                || mapped
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    fn client(body: serde_json::Value) -> McpClient {
        let mut full = serde_json::json!({"client_id": "c", "name": "c", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"});
        if let (Some(full), Some(body)) = (full.as_object_mut(), body.as_object()) {
            full.extend(body.clone());
        }
        serde_json::from_value(full).unwrap()
    }

    #[test]
    fn stdio_commands_and_private_urls_need_the_operator() {
        let strict = McpHosts::default();
        let stdio = client(serde_json::json!({"connection_type": "stdio", "stdio_config": {"command": "/bin/sh"}}));
        assert_eq!(strict.admit(&stdio).unwrap_err().field, "stdio_config.command");
        let allowed = McpHosts { stdio_commands: vec!["/bin/sh".into()], private_urls: false };
        assert!(allowed.admit(&stdio).is_ok());
        for url in [
            "http://127.0.0.1:18000/mcp",
            "http://localhost/mcp",
            "http://169.254.169.254/latest",
            "http://10.0.0.5/mcp",
            "http://[::1]:8081/mcp",
            "https://user@192.168.1.1/mcp",
            "http://0.0.0.0:8082/",
            "http://2130706433:18000/",
            "http://127.1/mcp",
            "http://0x7f.0.0.1/mcp",
        ] {
            let http = client(serde_json::json!({"connection_type": "http", "connection_string": url}));
            assert_eq!(strict.admit(&http).unwrap_err().field, "connection_string", "{url}");
            assert!(McpHosts { private_urls: true, ..McpHosts::default() }.admit(&http).is_ok(), "{url}");
        }
        let public =
            client(serde_json::json!({"connection_type": "http", "connection_string": "https://mcp.example.com/mcp"}));
        assert!(strict.admit(&public).is_ok());
        let env = client(serde_json::json!({"connection_type": "http", "connection_string": "env.MCP_URL"}));
        assert!(strict.admit(&env).is_ok(), "resolved at connect time");
    }
}

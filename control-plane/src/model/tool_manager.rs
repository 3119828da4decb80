//! The MCP tool manager's settings (Bifrost's `PUT /api/settings/mcp/tool-manager-config`):
//! how deep agent mode may go and how long it waits for one tool.

use super::Invalid;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolManagerConfig {
    /// Most rounds of tool execution in one agent-mode chat (1–50).
    #[serde(default = "default_depth")]
    pub max_agent_depth: u32,
    /// How long agent mode waits for one tool call, e.g. `30s`, `1500ms`, `2m`.
    #[serde(default = "default_timeout")]
    pub tool_execution_timeout: String,
    /// Code Mode's file layout: one `.d.ts` per server, or per tool.
    #[serde(default)]
    pub code_mode_binding_level: BindingLevel,
    /// Bifrost's switch to stop injecting MCP tools into chats; accepted and kept so that
    /// Bifrost configurations load, not applied (keys and include headers decide injection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_auto_tool_inject: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingLevel {
    #[default]
    Server,
    Tool,
}

fn default_depth() -> u32 {
    10
}

fn default_timeout() -> String {
    "30s".into()
}

impl Default for ToolManagerConfig {
    fn default() -> Self {
        ToolManagerConfig {
            max_agent_depth: default_depth(),
            tool_execution_timeout: default_timeout(),
            code_mode_binding_level: BindingLevel::Server,
            disable_auto_tool_inject: None,
        }
    }
}

impl ToolManagerConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=50).contains(&self.max_agent_depth) {
            return Err(Invalid::new("max_agent_depth", "must be between 1 and 50"));
        }
        self.tool_timeout()?;
        Ok(())
    }

    /// The tool execution timeout.
    pub fn tool_timeout(&self) -> Result<Duration, Invalid> {
        let text = self.tool_execution_timeout.trim();
        let invalid = || Invalid::new("tool_execution_timeout", "must be a duration such as 30s, 1500ms or 2m");
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| invalid())?;
        let duration = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(invalid)?),
            _ => return Err(invalid()),
        };
        if duration.is_zero() || duration > Duration::from_secs(3600) {
            return Err(Invalid::new("tool_execution_timeout", "must be more than 0 and at most 1h"));
        }
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_bounds() {
        let with = |t: &str| ToolManagerConfig { tool_execution_timeout: t.into(), ..Default::default() };
        assert_eq!(with("1500ms").tool_timeout().unwrap(), Duration::from_millis(1500));
        assert_eq!(with("2m").tool_timeout().unwrap(), Duration::from_secs(120));
        for bad in ["", "30", "s", "0s", "2h", "-1s", "999999999999999999m"] {
            assert!(with(bad).validate().is_err(), "{bad}");
        }
        assert!(ToolManagerConfig { max_agent_depth: 0, ..Default::default() }.validate().is_err());
        let parsed: ToolManagerConfig = serde_json::from_str(r#"{"max_agent_depth":3}"#).unwrap();
        assert_eq!((parsed.max_agent_depth, parsed.tool_execution_timeout.as_str()), (3, "30s"));
    }
}

//! Virtual MCPs (as in Bifrost): named bundles of tools, served at `/mcp/<endpoint_slug>` to the
//! keys attached to them, whose tools those keys may also use everywhere else.

use super::{Invalid, McpClient, white_list};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warden_policy::mcp::McpGrant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualMcp {
    pub id: String,
    pub name: String,
    /// `/mcp/<endpoint_slug>`; immutable.
    pub endpoint_slug: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub tools: Vec<BundledTools>,
    /// The keys that may use it.
    #[serde(default)]
    pub virtual_key_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn enabled() -> bool {
    true
}

/// Some tools of one MCP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledTools {
    pub mcp_client_id: String,
    /// `*` = all, names = those (as the server names them).
    pub tool_names: Vec<String>,
}

impl VirtualMcp {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.name.trim().is_empty() {
            return Err(Invalid::new("name", "must not be empty"));
        }
        let slug = &self.endpoint_slug;
        let valid = (1..=64).contains(&slug.len())
            && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && slug.as_bytes()[0].is_ascii_alphanumeric();
        if !valid {
            return Err(Invalid::new(
                "endpoint_slug",
                "must be 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            ));
        }
        for (i, bundled) in self.tools.iter().enumerate() {
            if bundled.mcp_client_id.trim().is_empty() {
                return Err(Invalid::new(format!("tools[{i}].mcp_client_id"), "must not be empty"));
            }
            white_list(&bundled.tool_names, &format!("tools[{i}].tool_names"))?;
        }
        Ok(())
    }
}

/// Every enabled Virtual MCP, as the grants it gives each attached key.
#[derive(Debug, Default)]
pub struct Bundles {
    by_key: BTreeMap<String, Vec<(String, Vec<McpGrant>)>>,
    /// The `allow_by_default` clients: a key without a grant of its own already has all of
    /// their tools, which a bundle's grant must not narrow.
    defaults: Vec<String>,
}

impl Bundles {
    /// Resolves client ids to names; tools of clients that no longer exist are dropped.
    pub fn new(virtual_mcps: &[VirtualMcp], clients: &[McpClient]) -> Bundles {
        let names: BTreeMap<&str, &str> = clients.iter().map(|c| (c.client_id.as_str(), c.name.as_str())).collect();
        let mut by_key: BTreeMap<String, Vec<(String, Vec<McpGrant>)>> = BTreeMap::new();
        for vmcp in virtual_mcps.iter().filter(|v| v.enabled) {
            let grants: Vec<McpGrant> = vmcp
                .tools
                .iter()
                .filter_map(|t| {
                    Some(McpGrant {
                        mcp_client_name: names.get(t.mcp_client_id.as_str())?.to_string(),
                        tools_to_execute: t.tool_names.clone(),
                        tool_call_limits: BTreeMap::new(),
                    })
                })
                .collect();
            for key in &vmcp.virtual_key_ids {
                by_key.entry(key.clone()).or_default().push((vmcp.endpoint_slug.clone(), grants.clone()));
            }
        }
        let defaults = clients.iter().filter(|c| c.allow_by_default).map(|c| c.name.clone()).collect();
        Bundles { by_key, defaults }
    }

    /// A key's own grants with its bundles' tools added (a bundle grants what it bundles).
    pub fn merge_into(&self, own: &mut Vec<McpGrant>, bundled: &[McpGrant]) {
        for grant in bundled {
            match own.iter_mut().find(|g| g.mcp_client_name == grant.mcp_client_name) {
                Some(mine) => {
                    for tool in &grant.tools_to_execute {
                        if !mine.tools_to_execute.contains(tool) {
                            mine.tools_to_execute.push(tool.clone());
                        }
                    }
                }
                None if self.defaults.contains(&grant.mcp_client_name) => {}
                None => own.push(grant.clone()),
            }
        }
    }

    /// The bundles attached to a key, by slug.
    pub fn of(&self, key_id: &str) -> &[(String, Vec<McpGrant>)] {
        self.by_key.get(key_id).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(client: &str, tools: &[&str]) -> McpGrant {
        McpGrant {
            mcp_client_name: client.into(),
            tools_to_execute: tools.iter().map(|t| t.to_string()).collect(),
            tool_call_limits: BTreeMap::new(),
        }
    }

    #[test]
    fn bundles_add_to_a_keys_grants_and_never_narrow_them() {
        let bundles = Bundles { defaults: vec!["open".into()], ..Bundles::default() };
        let mut own = vec![grant("fs", &["read"])];
        bundles.merge_into(&mut own, &[grant("fs", &["write", "read"]), grant("time", &["*"]), grant("open", &["a"])]);
        // `open` is allow_by_default: the key keeps all of it rather than a grant of `a` only.
        assert_eq!(own, vec![grant("fs", &["read", "write"]), grant("time", &["*"])]);
    }

    #[test]
    fn slugs_are_checked() {
        let now = Utc::now();
        let mut v = VirtualMcp {
            id: "1".into(),
            name: "dev".into(),
            endpoint_slug: "dev-tools".into(),
            description: String::new(),
            enabled: true,
            tools: vec![],
            virtual_key_ids: vec![],
            created_at: now,
            updated_at: now,
        };
        assert!(v.validate().is_ok());
        for bad in ["", "Dev", "-x", "a/b", "a b"] {
            v.endpoint_slug = bad.into();
            assert!(v.validate().is_err(), "{bad}");
        }
    }
}

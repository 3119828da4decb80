//! Which tools a request may see and call: the client's ceiling ∩ the key's grants (or a
//! Virtual MCP's bundle) ∩ the request's include headers.

use super::{McpClientRecord, McpGrant, McpIndex, McpTool, SEPARATOR};
use std::borrow::Borrow;

/// A whitelist: `*` = all, names = those, empty = none.
fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|t| t == "*" || t == name)
}

/// The request's `x-bf-mcp-include-clients` and `x-bf-mcp-include-tools` headers. Each narrows
/// what the key may see; neither can widen it. An absent header narrows nothing; a present but
/// empty one leaves nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncludeHeaders {
    clients: Option<Vec<String>>,
    tools: Option<Vec<String>>,
}

/// The header naming the clients a request may use.
pub const INCLUDE_CLIENTS_HEADER: &str = "x-bf-mcp-include-clients";
/// The header naming the tools (`client-tool`, `client-*`, `*`) a request may use.
pub const INCLUDE_TOOLS_HEADER: &str = "x-bf-mcp-include-tools";

impl IncludeHeaders {
    /// Reads the two headers' values (`None` when absent).
    pub fn parse(clients: Option<&[u8]>, tools: Option<&[u8]>) -> IncludeHeaders {
        let list = |v: &[u8]| {
            String::from_utf8_lossy(v).split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        };
        IncludeHeaders { clients: clients.map(list), tools: tools.map(list) }
    }

    /// Whether these headers admit `tool` of `client`; `None` for "any tool of `client`".
    fn admits(&self, client: &str, tool: Option<&str>) -> bool {
        let client_ok = self.clients.as_ref().is_none_or(|l| l.iter().any(|c| c == "*" || c == client));
        let tools_ok = self.tools.as_ref().is_none_or(|l| {
            l.iter().any(|entry| {
                entry == "*"
                    || entry
                        .split_once(SEPARATOR)
                        .is_some_and(|(c, t)| c == client && (t == "*" || tool.is_none_or(|tool| t == tool)))
            })
        });
        client_ok && tools_ok
    }
}

/// The grants a request is judged by: a key's own, where a client without an entry falls back on
/// its `allow_by_default`; or a Virtual MCP's bundle, which is exactly what it lists.
#[derive(Debug, Clone, Copy)]
pub struct Grants<'g> {
    list: &'g [McpGrant],
    defaults: bool,
}

impl<'g> Grants<'g> {
    /// A key's own grants.
    pub fn key(list: &'g [McpGrant]) -> Grants<'g> {
        Grants { list, defaults: true }
    }

    /// A Virtual MCP's bundle.
    pub fn bundle(list: &'g [McpGrant]) -> Grants<'g> {
        Grants { list, defaults: false }
    }

    fn of(&self, client: &str) -> Option<&'g McpGrant> {
        self.list.iter().find(|g| g.mcp_client_name == client)
    }
}

/// Whether agent mode may run `tool` of `client` by itself: it may be called under `grants`, and
/// the client lists it in `tools_to_auto_execute`.
pub fn auto_executes(grants: Grants<'_>, client: &McpClientRecord, tool: &str, headers: &IncludeHeaders) -> bool {
    listed(&client.tools_to_auto_execute, tool) && allows(grants, client, tool, headers)
}

/// Whether `tool` of `client` may be called under `grants` and these headers: the client's
/// ceiling ∩ the grant (or the client's `allow_by_default`, for a key's own grants) ∩ the headers.
pub fn allows(grants: Grants<'_>, client: &McpClientRecord, tool: &str, headers: &IncludeHeaders) -> bool {
    let ceiling = listed(&client.tools_to_execute, tool);
    let granted = match grants.of(&client.name) {
        Some(grant) => listed(&grant.tools_to_execute, tool),
        None => grants.defaults && client.allow_by_default,
    };
    ceiling && granted && headers.admits(&client.name, Some(tool))
}

/// The clients whose tools may be seen under `grants`: those granted and (for a key's own grants)
/// the `allow_by_default` ones, narrowed by the headers, without duplicates.
pub fn candidate_clients(grants: Grants<'_>, index: &McpIndex, headers: &IncludeHeaders) -> Vec<String> {
    let defaults = if grants.defaults { index.allow_by_default.as_slice() } else { &[] };
    let mut names: Vec<String> = grants
        .list
        .iter()
        .filter(|g| !g.tools_to_execute.is_empty())
        .map(|g| g.mcp_client_name.clone())
        .chain(defaults.iter().filter(|c| grants.of(c).is_none()).cloned())
        .filter(|c| headers.admits(c, None))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Every tool of `clients` usable under `grants` and these headers, as `(client, tool)` pairs in
/// client then catalog order.
pub fn allowed_tools<'c, C: Borrow<McpClientRecord>>(
    grants: Grants<'_>,
    clients: &'c [C],
    headers: &IncludeHeaders,
) -> Vec<(&'c McpClientRecord, &'c McpTool)> {
    clients
        .iter()
        .map(Borrow::borrow)
        .flat_map(|c| c.tools.iter().map(move |t| (c, t)))
        .filter(|(c, t)| allows(grants, c, &t.name, headers))
        .collect()
}

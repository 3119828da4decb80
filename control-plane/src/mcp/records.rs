//! The policy the hub judges with: the very records every filter holds, read from the xDS
//! cache, so that the hub's second check agrees with the filter's first.

use crate::xds::Cache;
use axum::http::HeaderMap;
use std::sync::Arc;
use warden_policy::govern::candidate_clients;
use warden_policy::mcp::{
    self, Grants, INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER, IncludeHeaders, KEY_HASH_HEADER, McpClientRecord,
    McpTool,
};
use warden_policy::records::{Record, Records};
use warden_policy::rpc::McpScope;
use warden_policy::{Denial, KeyHash, VirtualKeyRecord};

/// The published records, as [`Records`].
pub struct Published<'c>(pub &'c Cache);

impl Records for Published<'_> {
    fn get<T: Record>(&self, id: &str) -> Option<Arc<T>> {
        serde_json::from_slice(&self.0.record(&T::KIND.name(id))?).ok().map(Arc::new)
    }
}

/// Who is asking the hub, as the filter admitted them: the key's record, its include headers,
/// and the Virtual MCP the request is scoped to, if any.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_hash: String,
    pub key: VirtualKeyRecord,
    pub include: IncludeHeaders,
    pub slug: Option<String>,
}

impl Caller {
    /// The same caller with the key's record as it is now (grants and bundles change);
    /// `None` once the key is gone.
    pub fn refreshed(&self, cache: &Cache) -> Option<Caller> {
        let key = Arc::unwrap_or_clone(Published(cache).get(&self.key_hash)?);
        Some(Caller { key, ..self.clone() })
    }

    /// Reads the caller from the headers the filter set; `None` if the key is unknown here
    /// (the request did not come through the filter, or the key is gone).
    pub fn of(headers: &HeaderMap, path: &str, cache: &Cache) -> Option<Caller> {
        let key_hash = headers.get(KEY_HASH_HEADER)?.to_str().ok()?.to_owned();
        KeyHash::from_hex(&key_hash)?;
        let key = Arc::unwrap_or_clone(Published(cache).get(&key_hash)?);
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let include = IncludeHeaders::parse(header(INCLUDE_CLIENTS_HEADER), header(INCLUDE_TOOLS_HEADER));
        let slug = match McpScope::of(path.as_bytes()) {
            Some(McpScope::Virtual(slug)) => Some(slug.to_owned()),
            _ => None,
        };
        Some(Caller { key_hash, key, include, slug })
    }

    /// The grants that decide what this caller sees here.
    pub fn grants(&self) -> Result<Grants<'_>, Denial> {
        let scope = self.slug.as_deref().map_or(McpScope::All, McpScope::Virtual);
        self.key.mcp_grants(scope)
    }

    /// Every tool this caller may use here, by exposed name (a stable order: clients' tool
    /// lists come from servers in any order, and a stable list keeps prompt caches warm).
    pub fn tools(&self, records: &impl Records) -> Result<Vec<(McpClientRecord, McpTool)>, Denial> {
        let grants = self.grants()?;
        let clients = candidate_clients(grants, records, &self.include);
        let mut tools: Vec<(McpClientRecord, McpTool)> = mcp::allowed_tools(grants, &clients, &self.include)
            .into_iter()
            .map(|(c, t)| (c.clone(), t.clone()))
            .collect();
        tools.sort_by_cached_key(|(c, t)| mcp::exposed_name(&c.name, &t.name));
        Ok(tools)
    }
}

//! The policy the hub judges with: the very records every filter holds, read from the xDS
//! cache, so that the hub's second check agrees with the filter's first.

use crate::xds::Cache;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use warden_policy::govern::Records;
use warden_policy::mcp::{
    self, Grants, INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER, IncludeHeaders, KEY_HASH_HEADER, McpClientRecord,
    McpIndex, McpTool,
};
use warden_policy::pricing::Price;
use warden_policy::records::{CustomerRecord, ModelRecord, ProviderRecord, TeamRecord};
use warden_policy::rpc::McpScope;
use warden_policy::{Denial, KeyHash, RecordKind, VirtualKeyRecord};

/// The published records, as [`Records`].
pub struct Published<'c>(pub &'c Cache);

impl Published<'_> {
    fn get<T: DeserializeOwned>(&self, kind: RecordKind, id: &str) -> Option<T> {
        serde_json::from_slice(&self.0.record(&kind.name(id))?).ok()
    }
}

impl Records for Published<'_> {
    fn provider(&self, name: &str) -> Option<ProviderRecord> {
        self.get(RecordKind::Provider, name)
    }
    fn model(&self, name: &str) -> Option<ModelRecord> {
        self.get(RecordKind::Model, name)
    }
    fn team(&self, id: &str) -> Option<TeamRecord> {
        self.get(RecordKind::Team, id)
    }
    fn customer(&self, id: &str) -> Option<CustomerRecord> {
        self.get(RecordKind::Customer, id)
    }
    fn price(&self, name: &str) -> Option<Price> {
        self.get(RecordKind::Price, name)
    }
    fn mcp_client(&self, name: &str) -> Option<McpClientRecord> {
        self.get(RecordKind::McpClient, name)
    }
    fn mcp_index(&self) -> Option<McpIndex> {
        self.get(RecordKind::McpClient, mcp::INDEX_ID)
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
        let key = Published(cache).get(RecordKind::VirtualKey, &self.key_hash)?;
        Some(Caller { key, ..self.clone() })
    }

    /// Reads the caller from the headers the filter set; `None` if the key is unknown here
    /// (the request did not come through the filter, or the key is gone).
    pub fn of(headers: &HeaderMap, path: &str, cache: &Cache) -> Option<Caller> {
        let key_hash = headers.get(KEY_HASH_HEADER)?.to_str().ok()?.to_owned();
        KeyHash::from_hex(&key_hash)?;
        let key = Published(cache).get(RecordKind::VirtualKey, &key_hash)?;
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
        let index = records.mcp_index().unwrap_or_default();
        let clients: Vec<McpClientRecord> = mcp::candidate_clients(grants, &index, &self.include)
            .iter()
            .filter_map(|name| records.mcp_client(name))
            .collect();
        let mut tools: Vec<(McpClientRecord, McpTool)> = mcp::allowed_tools(grants, &clients, &self.include)
            .into_iter()
            .map(|(c, t)| (c.clone(), t.clone()))
            .collect();
        tools.sort_by_cached_key(|(c, t)| mcp::exposed_name(&c.name, &t.name));
        Ok(tools)
    }
}

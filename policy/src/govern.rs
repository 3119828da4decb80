//! The whole decision for one request whose key is already admitted: an inference request
//! (body, model RBAC, routing, rate limits, budgets, concurrency) or a tool call (the tool's
//! access rule, call limit and price), and what to send upstream. The filter only reads records
//! and counters for it and applies the answer.

use crate::budgets::{self, BudgetReservation};
use crate::counter::{Counters, ReadOnce};
use crate::inference::{Endpoint, InferenceBody};
use crate::limits::{self, RateReport, Reservation, Scope};
use crate::mcp::{ExecuteFormat, Grants, IncludeHeaders, McpClientRecord, McpIndex, ToolCall};
use crate::pricing::Price;
use crate::records::{CustomerRecord, ModelRecord, ProviderRecord, RateLimit, Records, TeamRecord, provider_cluster};
use crate::routing::{self, choose};
use crate::rpc::McpScope;
use crate::settings::FilterSettings;
use crate::{Denial, VirtualKeyRecord};
use serde_json::json;
use std::sync::Arc;

/// What every decision reads besides the key and the request itself.
pub struct Context<'a, R, C> {
    /// The policy records (shared data in the filter, the xDS cache in the hub, maps in tests).
    pub records: &'a R,
    /// The counters of limits and budgets.
    pub counters: &'a C,
    /// The clock (Unix milliseconds).
    pub now_ms: u64,
    /// The filter's settings (fail modes, default max tokens).
    pub settings: &'a FilterSettings,
    /// Whether the control plane was heard from lately (leases decide while it is).
    pub control_plane_up: bool,
    /// The request's MCP include headers.
    pub include: &'a IncludeHeaders,
}

/// Where an admitted request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    /// A provider, through the Envoy cluster of the provider key chosen for it.
    Provider {
        /// The cluster, which injects the provider key's credential.
        cluster: String,
    },
    /// The MCP hub, which runs a tool call.
    Hub,
}

impl Upstream {
    /// The Envoy cluster the route table sends it to.
    pub fn cluster(&self) -> &str {
        match self {
            Upstream::Provider { cluster } => cluster,
            Upstream::Hub => crate::mcp::HUB_CLUSTER,
        }
    }
}

/// What to do with an admitted request.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// Where it goes.
    pub upstream: Upstream,
    /// The upstream `:path`.
    pub path: String,
    /// The provider's per-request timeout, if it has one.
    pub timeout_ms: Option<u64>,
    /// The rewritten body, if it changed.
    pub body: Option<Vec<u8>>,
    /// The counters this request holds: tokens are charged to them when the response ends.
    pub reservation: Reservation,
    /// Whether it took one of the key's in-flight slots (to give back when the stream ends).
    pub holds_slot: bool,
    /// Whether the response is a stream of server-sent events.
    pub stream: bool,
    /// Whether to drop the usage chunk Warden asked for on the client's behalf.
    pub hide_usage_chunk: bool,
    /// The model's price; `None` when it has none and no budget applies.
    pub price: Option<Price>,
    /// The budgets this request holds its estimated cost in.
    pub budgets: BudgetReservation,
    /// That estimated cost, µ$: what stays charged when the answer reports no usage.
    pub estimate_micros: u64,
    /// Who is charged and for what, for the usage ledger.
    pub charged: Charged,
    /// The hub acts as the caller (a Code Mode meta-tool: its program's tool calls go back
    /// through the gateway with the caller's key).
    pub acts_as_caller: bool,
}

/// The owners and the model a request is charged to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Charged {
    /// The key's id.
    pub key_id: String,
    /// Its team.
    pub team_id: Option<String>,
    /// Its customer, directly or through the team.
    pub customer_id: Option<String>,
    /// The provider.
    pub provider: String,
    /// The model as sent upstream.
    pub model: String,
}

/// A key's team and customer (directly or through the team), for their limits and the ledger.
struct Owners {
    team: Option<Arc<TeamRecord>>,
    customer: Option<Arc<CustomerRecord>>,
    customer_id: Option<String>,
}

impl Owners {
    fn of(key: &VirtualKeyRecord, records: &impl Records) -> Owners {
        let team = key.team_id.as_deref().and_then(|id| records.get::<TeamRecord>(id));
        let customer_id = key.customer_id.clone().or_else(|| team.as_ref().and_then(|t| t.customer_id.clone()));
        let customer = customer_id.as_deref().and_then(|id| records.get::<CustomerRecord>(id));
        Owners { team, customer, customer_id }
    }

    /// The key's own limits, then its customer's and its team's.
    fn scopes<'r>(&'r self, key: &'r VirtualKeyRecord) -> impl Iterator<Item = Scope<'r>> {
        let customer = self.customer.as_deref().and_then(CustomerRecord::scope);
        key.scope().into_iter().chain(customer).chain(self.team.as_deref().and_then(TeamRecord::scope))
    }

    /// Who a request of `key` to `provider` for `model` is charged to.
    fn charged(&self, key: &VirtualKeyRecord, provider: &str, model: &str) -> Charged {
        Charged {
            key_id: key.id.clone(),
            team_id: key.team_id.clone(),
            customer_id: self.customer_id.clone(),
            provider: provider.to_owned(),
            model: model.to_owned(),
        }
    }
}

/// What a decision has taken from the counters so far. Unless [`Taken::keep`] hands it to the
/// dispatch, dropping it gives everything back: a later level's refusal releases what earlier
/// levels reserved.
struct Taken<'c, C: Counters> {
    counters: &'c C,
    requests: Reservation,
    budgets: BudgetReservation,
    /// The key whose in-flight slot was taken.
    slot: Option<&'c str>,
}

impl<'c, C: Counters> Taken<'c, C> {
    fn new(counters: &'c C) -> Self {
        Taken { counters, requests: Reservation::default(), budgets: BudgetReservation::default(), slot: None }
    }

    /// The reservations, now the dispatch's to settle, and whether a slot was taken.
    fn keep(mut self) -> (Reservation, BudgetReservation, bool) {
        let kept = (std::mem::take(&mut self.requests), std::mem::take(&mut self.budgets), self.slot.is_some());
        self.slot = None;
        kept
    }
}

impl<C: Counters> Drop for Taken<'_, C> {
    fn drop(&mut self) {
        limits::release(&self.requests, self.counters);
        budgets::release(&self.budgets, self.counters);
        if let Some(key_id) = self.slot {
            limits::release_slot(key_id, self.counters);
        }
    }
}

/// A decision: the report (tightest request and token headroom, for the `x-ratelimit-*`
/// headers, refusal or not) and the dispatch or the refusal.
pub type Decision = (RateReport, Result<Dispatch, Denial>);

/// Judges an inference request of an admitted key.
pub fn inference<R: Records, C: Counters>(
    key: &VirtualKeyRecord,
    endpoint: Endpoint,
    query: &str,
    body: &[u8],
    random: u64,
    cx: &Context<'_, R, C>,
) -> Decision {
    let none = RateReport::default();
    let request = match InferenceBody::parse(body) {
        Ok(r) => r,
        Err(denial) => return (none, Err(denial)),
    };
    let counters = &ReadOnce::new(cx.counters);
    let mut names: Vec<&str> = key.provider_configs.iter().map(|g| g.provider.as_str()).collect();
    if let Some((prefix, _)) = request.model.split_once('/') {
        names.push(prefix);
    }
    names.sort_unstable();
    names.dedup();
    let providers: Vec<Arc<ProviderRecord>> = names.into_iter().filter_map(|n| cx.records.get(n)).collect();
    let exhausted = |g: &_| key.grant_scope(g).is_some_and(|s| limits::exhausted(&s, counters, cx.now_ms));
    let route = match choose(key, &request.model, &providers, exhausted, random) {
        Ok(route) => route,
        Err(denial) => return (none, Err(denial)),
    };
    let tools = mcp_tools(key, endpoint, cx.records, cx.include);
    let tool_bytes = tools.iter().map(|t| t.to_string().len()).sum();
    // Before anything is reserved: a body that cannot be rewritten is refused.
    let body = match request.rewrite(endpoint, &route.model, tools) {
        Ok(body) => body,
        Err(denial) => return (none, Err(denial)),
    };
    let model = cx.records.get::<ModelRecord>(&route.model);
    let owners = Owners::of(key, cx.records);
    let mut scopes = limits::route_scopes(key, &route, model.as_deref());
    scopes.extend(owners.scopes(key));
    let mut taken = Taken::new(counters);
    let (report, reserved) = limits::reserve(&scopes, counters, cx.now_ms, cx.control_plane_up);
    match reserved {
        Ok(r) => taken.requests = r,
        Err(denial) => return (report, Err(denial)),
    }
    let with_provider = format!("{}/{}", route.provider.name, route.model);
    let price = key.prices.get(&route.model).copied().or_else(|| {
        [with_provider.as_str(), &route.model, "*"]
            .into_iter()
            .find_map(|name| cx.records.get::<Price>(name))
            .map(|p| *p)
    });
    let has_budget = scopes.iter().any(|s| !s.budgets.is_empty());
    let estimate = match (price, has_budget) {
        (Some(p), _) => p.cost(&request.estimated_usage(cx.settings.default_max_tokens, tool_bytes)),
        (None, false) => 0,
        (None, true) => return (report, Err(Denial::PriceUnknown(route.model.clone()))),
    };
    let modes = (cx.settings.budget_fail_mode, cx.settings.budget_admission);
    match budgets::reserve(&scopes, estimate, counters, cx.now_ms, modes, cx.control_plane_up) {
        Ok(held) => taken.budgets = held,
        Err(denial) => return (report, Err(denial)),
    }
    if let Some(max) = key.max_concurrent_requests {
        if let Err(denial) = limits::acquire_slot(&key.id, max, counters) {
            return (report, Err(denial));
        }
        taken.slot = Some(&key.id);
    }
    let mut path = format!("{}{}", route.provider.base_path.trim_end_matches('/'), endpoint.path());
    if !query.is_empty() {
        path.push('?');
        path.push_str(query);
    }
    let (reservation, budgets, holds_slot) = taken.keep();
    let dispatch = Dispatch {
        upstream: Upstream::Provider { cluster: provider_cluster(&route.provider.name, &route.key_id) },
        path,
        timeout_ms: route.provider.request_timeout_ms,
        stream: request.stream,
        hide_usage_chunk: request.hide_usage_chunk(endpoint),
        body,
        reservation,
        holds_slot,
        price,
        budgets,
        estimate_micros: estimate,
        charged: owners.charged(key, &route.provider.name, &route.model),
        acts_as_caller: false,
    };
    (report, Ok(dispatch))
}

/// The MCP clients `grants` may reach under the include headers.
pub fn candidate_clients(
    grants: Grants<'_>,
    records: &impl Records,
    include: &IncludeHeaders,
) -> Vec<Arc<McpClientRecord>> {
    let index = records.get::<McpIndex>(crate::mcp::INDEX_ID).unwrap_or_default();
    crate::mcp::candidate_clients(grants, &index, include).iter().filter_map(|name| records.get(name)).collect()
}

/// The MCP tools to append to an inference request's `tools`: those this key may use under
/// the request's include headers, in the endpoint's shape.
fn mcp_tools(
    key: &VirtualKeyRecord,
    endpoint: Endpoint,
    records: &impl Records,
    include: &IncludeHeaders,
) -> Vec<serde_json::Value> {
    let Some(shape) = endpoint.tool_shape() else { return Vec::new() };
    let clients = candidate_clients(key.grants(), records, include);
    let allowed = crate::mcp::allowed_tools(key.grants(), &clients, include);
    // Code-mode clients' tools hide behind the meta-tools.
    let code_mode = allowed.iter().any(|(client, _)| client.is_code_mode_client);
    let mut definitions: Vec<serde_json::Value> = allowed
        .into_iter()
        .filter(|(client, _)| !client.is_code_mode_client)
        .map(|(client, tool)| crate::mcp::function_definition(client, tool, shape))
        .collect();
    if code_mode {
        definitions.extend(crate::codemode::definitions(shape));
    }
    definitions
}

/// Whether `grants` under these headers reach some tool of a code-mode client: the meta-tools
/// are offered and callable then.
fn sees_code_mode(grants: Grants<'_>, records: &impl Records, include: &IncludeHeaders) -> bool {
    candidate_clients(grants, records, include)
        .iter()
        .filter(|client| client.is_code_mode_client)
        .any(|client| client.tools.iter().any(|t| crate::mcp::allows(grants, client, &t.name, include)))
}

/// Judges one `/v1/mcp/tool/execute` call of an admitted key (see [`tool_call`]).
pub fn tool_execute<R: Records, C: Counters>(
    key: &VirtualKeyRecord,
    query: &str,
    body: &[u8],
    cx: &Context<'_, R, C>,
) -> Decision {
    let parsed = ExecuteFormat::of_query(query).and_then(|format| Ok((format, ToolCall::parse(format, body)?)));
    let (format, call) = match parsed {
        Ok(parsed) => parsed,
        Err(denial) => return (RateReport::default(), Err(denial)),
    };
    let mut path = format!("/v1{}?format={}", Endpoint::ToolExecute.path(), format.as_str());
    if ExecuteFormat::wants_structured(query) {
        path.push_str("&structured=true");
    }
    tool_call(key, &call, key.grants(), path, cx)
}

/// Judges one `tools/call` POSTed to `/mcp` or `/mcp/<slug>` (see [`tool_call`]): on a Virtual
/// MCP only its bundle's tools, and only for keys attached to it.
pub fn mcp_tool_call<R: Records, C: Counters>(
    key: &VirtualKeyRecord,
    path: &str,
    call: &ToolCall,
    cx: &Context<'_, R, C>,
) -> Decision {
    let scope = McpScope::of(path.as_bytes()).unwrap_or(McpScope::All);
    match key.mcp_grants(scope) {
        Ok(grants) => tool_call(key, call, grants, path.to_owned(), cx),
        Err(denial) => (RateReport::default(), Err(denial)),
    }
}

/// Judges one tool call of an admitted key under `grants` (the grants that decide which tools
/// it may call here): the tool must exist and be allowed (client ceiling ∩ grants ∩ include
/// headers); its call limit and price are reserved like a request's. The dispatch goes to the
/// hub at `path`; its estimate is the tool's price, charged unless the call fails.
fn tool_call<R: Records, C: Counters>(
    key: &VirtualKeyRecord,
    call: &ToolCall,
    grants: Grants<'_>,
    path: String,
    cx: &Context<'_, R, C>,
) -> Decision {
    let none = RateReport::default();
    let owners = Owners::of(key, cx.records);
    let owner_scopes: Vec<Scope<'_>> = owners.scopes(key).collect();
    let charged = owners.charged(key, crate::mcp::LEDGER_PROVIDER, &call.name);
    let mut taken = Taken::new(cx.counters);
    let hub = |taken: Taken<'_, C>, price: u64, acts_as_caller: bool| {
        let (reservation, budgets, _) = taken.keep();
        Dispatch {
            upstream: Upstream::Hub,
            path,
            timeout_ms: None,
            body: None,
            reservation,
            holds_slot: false,
            stream: false,
            hide_usage_chunk: false,
            price: None,
            budgets,
            estimate_micros: price,
            charged,
            acts_as_caller,
        }
    };
    if crate::codemode::is_meta(&call.name) {
        if !sees_code_mode(grants, cx.records, cx.include) {
            return (none, Err(Denial::ToolBlocked(call.name.clone(), key.name.clone())));
        }
        // A meta-tool call is a request of the key (and its customer and team): their request
        // limits bound how often one key can list files or start programs. It costs nothing
        // itself; a program's tool calls are judged one by one.
        // Their request limits only: a key out of tokens may still list files and run programs.
        let request_limits: Vec<Option<RateLimit>> =
            owner_scopes.iter().map(|s| s.rate_limit.map(RateLimit::requests_only)).collect();
        let scopes: Vec<Scope<'_>> = owner_scopes
            .iter()
            .zip(&request_limits)
            .map(|(scope, limit)| Scope { rate_limit: limit.as_ref(), ..scope.clone() })
            .collect();
        let (report, reserved) = limits::reserve(&scopes, cx.counters, cx.now_ms, cx.control_plane_up);
        match reserved {
            Ok(r) => taken.requests = r,
            Err(denial) => return (report, Err(denial)),
        }
        return (report, Ok(hub(taken, 0, call.name == crate::codemode::EXECUTE_TOOL_CODE)));
    }
    let Some((client_name, tool)) = call.split() else {
        return (none, Err(Denial::ToolUnknown(call.name.clone())));
    };
    let client = cx.records.get::<McpClientRecord>(client_name);
    let Some(client) = client.filter(|c| c.tools.iter().any(|t| t.name == tool)) else {
        return (none, Err(Denial::ToolUnknown(call.name.clone())));
    };
    if !crate::mcp::allows(grants, &client, tool, cx.include) {
        return (none, Err(Denial::ToolBlocked(call.name.clone(), key.name.clone())));
    }
    let limit =
        key.mcp_configs.iter().find(|g| g.mcp_client_name == client.name).and_then(|g| g.tool_call_limits.get(tool));
    // A tool call counts against its call limit only, not the key's request limits (those are
    // LLM requests); the budgets of the key, its customer and its team are charged its price.
    let call_limit: Vec<Scope<'_>> = limit.map(|l| key.tool_scope(&call.name, l)).into_iter().collect();
    let (report, reserved) = limits::reserve(&call_limit, cx.counters, cx.now_ms, cx.control_plane_up);
    match reserved {
        Ok(r) => taken.requests = r,
        Err(denial) => return (report, Err(denial)),
    }
    let price = client.tool_pricing.get(tool).copied().unwrap_or(0);
    let modes = (cx.settings.budget_fail_mode, cx.settings.budget_admission);
    match budgets::reserve(&owner_scopes, price, cx.counters, cx.now_ms, modes, cx.control_plane_up) {
        Ok(held) => taken.budgets = held,
        Err(denial) => return (report, Err(denial)),
    }
    (report, Ok(hub(taken, price, false)))
}

/// Whether a chat of this key goes to agent mode: some tool it may see under these headers is
/// one agent mode runs by itself.
pub fn agent_mode(key: &VirtualKeyRecord, records: &impl Records, include: &IncludeHeaders) -> bool {
    candidate_clients(key.grants(), records, include)
        .iter()
        .any(|client| client.tools.iter().any(|t| crate::mcp::auto_executes(key.grants(), client, &t.name, include)))
}

/// The `/v1/models` answer for a key: only what it may use.
pub fn models_body(key: &VirtualKeyRecord, records: &impl Records) -> Vec<u8> {
    let providers: Vec<Arc<ProviderRecord>> =
        key.provider_configs.iter().filter_map(|g| records.get(&g.provider)).collect();
    let data: Vec<serde_json::Value> = routing::visible_models(key, &providers)
        .into_iter()
        .map(|id| {
            let owner = id.split_once('/').map(|(p, _)| p.to_owned()).unwrap_or_default();
            json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    serde_json::to_vec(&json!({"object": "list", "data": data})).unwrap_or_default()
}

#[cfg(test)]
#[path = "govern_tests.rs"]
mod tests;

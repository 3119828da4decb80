//! The whole decision for one inference request whose key is already admitted: body, model
//! RBAC, routing, rate limits, concurrency, and what to send upstream. The filter only reads
//! records and counters for it and applies the answer.

use crate::budgets::{self, BudgetReservation};
use crate::counter::{Counters, ReadOnce};
use crate::inference::{Endpoint, InferenceBody};
use crate::limits::{self, RateReport, Reservation};
use crate::mcp::{ExecuteFormat, Grants, IncludeHeaders, McpClientRecord, McpIndex, ToolCall};
use crate::pricing::Price;
use crate::records::{CustomerRecord, ModelRecord, ProviderRecord, RateLimit, TeamRecord, provider_cluster};
use crate::routing::{self, choose};
use crate::rpc::McpScope;
use crate::settings::FilterSettings;
use crate::{Denial, VirtualKeyRecord};
use serde_json::json;

/// How the adapter finds records by id (shared data in the filter, maps in tests).
pub trait Records {
    /// A provider by name.
    fn provider(&self, name: &str) -> Option<ProviderRecord>;
    /// The model-wide limits of a model name.
    fn model(&self, name: &str) -> Option<ModelRecord>;
    /// A team by id.
    fn team(&self, id: &str) -> Option<TeamRecord>;
    /// A customer by id.
    fn customer(&self, id: &str) -> Option<CustomerRecord>;
    /// A price by name: `<provider>/<model>`, `<model>`, or `*` for the fallback.
    fn price(&self, name: &str) -> Option<Price>;
    /// An MCP client and its tools, by name.
    fn mcp_client(&self, name: &str) -> Option<McpClientRecord>;
    /// The MCP catalog's index.
    fn mcp_index(&self) -> Option<McpIndex>;
}

/// What to do with an admitted inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The Envoy cluster of the chosen provider key.
    pub cluster: String,
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

/// Judges an inference request of an admitted key. The report (tightest request and token
/// headroom) comes back refusal or not, for the `x-ratelimit-*` headers.
#[allow(clippy::too_many_arguments, reason = "each argument is one independent input of the decision")]
pub fn inference(
    key: &VirtualKeyRecord,
    endpoint: Endpoint,
    query: &str,
    body: &[u8],
    records: &impl Records,
    counters: &impl Counters,
    now_ms: u64,
    random: u64,
    settings: &FilterSettings,
    control_plane_up: bool,
    include: &IncludeHeaders,
) -> (RateReport, Result<Dispatch, Denial>) {
    let request = match InferenceBody::parse(body) {
        Ok(r) => r,
        Err(denial) => return (RateReport::default(), Err(denial)),
    };
    let counters = &ReadOnce::new(counters);
    let mut names: Vec<&str> = key.provider_configs.iter().map(|g| g.provider.as_str()).collect();
    if let Some((prefix, _)) = request.model.split_once('/') {
        names.push(prefix);
    }
    names.sort_unstable();
    names.dedup();
    let providers: Vec<ProviderRecord> = names.into_iter().filter_map(|n| records.provider(n)).collect();
    let exhausted = |g: &_| key.grant_scope(g).is_some_and(|s| limits::exhausted(&s, counters, now_ms));
    let route = match choose(key, &request.model, &providers, exhausted, random) {
        Ok(route) => route,
        Err(denial) => return (RateReport::default(), Err(denial)),
    };
    let tools = mcp_tools(key, endpoint, records, include);
    let tool_bytes = tools.iter().map(|t| t.to_string().len()).sum();
    // Before anything is reserved: a body that cannot be rewritten is refused.
    let body = match request.rewrite(endpoint, &route.model, tools) {
        Ok(body) => body,
        Err(denial) => return (RateReport::default(), Err(denial)),
    };
    let model = records.model(&route.model);
    let team = key.team_id.as_deref().and_then(|id| records.team(id));
    let customer_id = key.customer_id.as_deref().or_else(|| team.as_ref().and_then(|t| t.customer_id.as_deref()));
    let customer = customer_id.and_then(|id| records.customer(id));
    let scopes = limits::scopes(key, &route, model.as_ref(), team.as_ref(), customer.as_ref());
    let (report, reserved) = limits::reserve(&scopes, counters, now_ms, control_plane_up);
    let reservation = match reserved {
        Ok(r) => r,
        Err(denial) => return (report, Err(denial)),
    };
    let with_provider = format!("{}/{}", route.provider.name, route.model);
    let price = key
        .prices
        .get(&route.model)
        .copied()
        .or_else(|| records.price(&with_provider))
        .or_else(|| records.price(&route.model))
        .or_else(|| records.price("*"));
    let has_budget = scopes.iter().any(|s| !s.budgets.is_empty());
    let estimate = match (price, has_budget) {
        (Some(p), _) => p.cost(&request.estimated_usage(settings.default_max_tokens, tool_bytes)),
        (None, false) => 0,
        (None, true) => {
            limits::release(&reservation, counters);
            return (report, Err(Denial::PriceUnknown(route.model.clone())));
        }
    };
    let modes = (settings.budget_fail_mode, settings.budget_admission);
    let held = match budgets::reserve(&scopes, estimate, counters, now_ms, modes, control_plane_up) {
        Ok(held) => held,
        Err(denial) => {
            limits::release(&reservation, counters);
            return (report, Err(denial));
        }
    };
    if let Some(max) = key.max_concurrent_requests
        && let Err(denial) = limits::acquire_slot(&key.id, max, counters)
    {
        limits::release(&reservation, counters);
        budgets::release(&held, counters);
        return (report, Err(denial));
    }
    let mut path = format!("{}{}", route.provider.base_path.trim_end_matches('/'), endpoint.path());
    if !query.is_empty() {
        path.push('?');
        path.push_str(query);
    }
    let dispatch = Dispatch {
        cluster: provider_cluster(&route.provider.name, &route.key_id),
        path,
        timeout_ms: route.provider.request_timeout_ms,
        stream: request.stream,
        hide_usage_chunk: request.hide_usage_chunk(endpoint),
        body,
        reservation,
        holds_slot: key.max_concurrent_requests.is_some(),
        price,
        budgets: held,
        estimate_micros: estimate,
        charged: Charged {
            key_id: key.id.clone(),
            team_id: key.team_id.clone(),
            customer_id: customer_id.map(str::to_owned),
            provider: route.provider.name.clone(),
            model: route.model.clone(),
        },
        acts_as_caller: false,
    };
    (report, Ok(dispatch))
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
    let index = records.mcp_index().unwrap_or_default();
    let clients: Vec<McpClientRecord> = crate::mcp::candidate_clients(key.grants(), &index, include)
        .iter()
        .filter_map(|name| records.mcp_client(name))
        .collect();
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
    let index = records.mcp_index().unwrap_or_default();
    crate::mcp::candidate_clients(grants, &index, include)
        .iter()
        .filter_map(|name| records.mcp_client(name))
        .filter(|client| client.is_code_mode_client)
        .any(|client| client.tools.iter().any(|t| crate::mcp::allows(grants, &client, &t.name, include)))
}

/// Judges one `/v1/mcp/tool/execute` call of an admitted key (see [`tool_call`]).
#[allow(clippy::too_many_arguments, reason = "each argument is one independent input of the decision")]
pub fn tool_execute(
    key: &VirtualKeyRecord,
    query: &str,
    body: &[u8],
    records: &impl Records,
    counters: &impl Counters,
    now_ms: u64,
    settings: &FilterSettings,
    control_plane_up: bool,
    include: &IncludeHeaders,
) -> (RateReport, Result<Dispatch, Denial>) {
    let parsed = ExecuteFormat::of_query(query).and_then(|format| Ok((format, ToolCall::parse(format, body)?)));
    let (format, call) = match parsed {
        Ok(parsed) => parsed,
        Err(denial) => return (RateReport::default(), Err(denial)),
    };
    let mut path = format!("/v1{}?format={}", Endpoint::ToolExecute.path(), format.as_str());
    if ExecuteFormat::wants_structured(query) {
        path.push_str("&structured=true");
    }
    let judged = ToolJudgement { grants: key.grants(), path, records, counters, now_ms, settings, control_plane_up };
    tool_call(key, &call, include, judged)
}

/// Judges one `tools/call` POSTed to `/mcp` or `/mcp/<slug>` (see [`tool_call`]): on a Virtual
/// MCP only its bundle's tools, and only for keys attached to it.
#[allow(clippy::too_many_arguments, reason = "each argument is one independent input of the decision")]
pub fn mcp_tool_call(
    key: &VirtualKeyRecord,
    path: &str,
    call: &ToolCall,
    records: &impl Records,
    counters: &impl Counters,
    now_ms: u64,
    settings: &FilterSettings,
    control_plane_up: bool,
    include: &IncludeHeaders,
) -> (RateReport, Result<Dispatch, Denial>) {
    let scope = McpScope::of(path.as_bytes()).unwrap_or(McpScope::All);
    let grants = match key.mcp_grants(scope) {
        Ok(grants) => grants,
        Err(denial) => return (RateReport::default(), Err(denial)),
    };
    let path = path.to_owned();
    tool_call(key, call, include, ToolJudgement { grants, path, records, counters, now_ms, settings, control_plane_up })
}

/// What judging a tool call needs besides the key, the call and the headers.
struct ToolJudgement<'a, R, C> {
    /// The grants that decide which tools the key may call here.
    grants: Grants<'a>,
    /// The hub's path for the call.
    path: String,
    records: &'a R,
    counters: &'a C,
    now_ms: u64,
    settings: &'a FilterSettings,
    control_plane_up: bool,
}

/// Judges one tool call of an admitted key: the tool must exist and be allowed (client ceiling
/// ∩ grants ∩ include headers); its call limit and price are reserved like a request's. The
/// dispatch goes to the hub; its estimate is the tool's price, charged unless the call fails.
fn tool_call<R: Records, C: Counters>(
    key: &VirtualKeyRecord,
    call: &ToolCall,
    include: &IncludeHeaders,
    j: ToolJudgement<'_, R, C>,
) -> (RateReport, Result<Dispatch, Denial>) {
    let none = RateReport::default();
    let team = key.team_id.as_deref().and_then(|id| j.records.team(id));
    let customer_id = key.customer_id.as_deref().or_else(|| team.as_ref().and_then(|t| t.customer_id.as_deref()));
    let customer = customer_id.and_then(|id| j.records.customer(id));
    let mut owners: Vec<limits::Scope<'_>> = key.scope().into_iter().collect();
    owners.extend(customer.as_ref().and_then(CustomerRecord::scope));
    owners.extend(team.as_ref().and_then(TeamRecord::scope));
    if crate::codemode::is_meta(&call.name) {
        if !sees_code_mode(j.grants, j.records, include) {
            return (none, Err(Denial::ToolBlocked(call.name.clone(), key.name.clone())));
        }
        // A meta-tool call is a request of the key (and its customer and team): their request
        // limits bound how often one key can list files or start programs. It costs nothing
        // itself; a program's tool calls are judged one by one.
        // Their request limits only: a key out of tokens may still list files and run programs.
        let request_limits: Vec<Option<RateLimit>> =
            owners.iter().map(|s| s.rate_limit.map(RateLimit::requests_only)).collect();
        let scopes: Vec<limits::Scope<'_>> = owners
            .iter()
            .zip(&request_limits)
            .map(|(scope, limit)| limits::Scope { rate_limit: limit.as_ref(), ..scope.clone() })
            .collect();
        let (report, reserved) = limits::reserve(&scopes, j.counters, j.now_ms, j.control_plane_up);
        let reservation = match reserved {
            Ok(r) => r,
            Err(denial) => return (report, Err(denial)),
        };
        let dispatch = Dispatch {
            cluster: crate::mcp::HUB_CLUSTER.into(),
            path: j.path,
            timeout_ms: None,
            body: None,
            reservation,
            holds_slot: false,
            stream: false,
            hide_usage_chunk: false,
            price: None,
            budgets: BudgetReservation::default(),
            estimate_micros: 0,
            charged: charged(key, j.records, &call.name),
            acts_as_caller: call.name == crate::codemode::EXECUTE_TOOL_CODE,
        };
        return (report, Ok(dispatch));
    }
    let Some((client_name, tool)) = call.split() else {
        return (none, Err(Denial::ToolUnknown(call.name.clone())));
    };
    let client = j.records.mcp_client(client_name);
    let Some(client) = client.filter(|c| c.tools.iter().any(|t| t.name == tool)) else {
        return (none, Err(Denial::ToolUnknown(call.name.clone())));
    };
    if !crate::mcp::allows(j.grants, &client, tool, include) {
        return (none, Err(Denial::ToolBlocked(call.name.clone(), key.name.clone())));
    }
    let limit =
        key.mcp_configs.iter().find(|g| g.mcp_client_name == client.name).and_then(|g| g.tool_call_limits.get(tool));
    // A tool call counts against its call limit only, not the key's request limits (those are
    // LLM requests); the budgets of the key, its customer and its team are charged its price.
    let call_limit: Vec<limits::Scope<'_>> = limit.map(|l| key.tool_scope(&call.name, l)).into_iter().collect();
    let (report, reserved) = limits::reserve(&call_limit, j.counters, j.now_ms, j.control_plane_up);
    let reservation = match reserved {
        Ok(r) => r,
        Err(denial) => return (report, Err(denial)),
    };
    let price = client.tool_pricing.get(tool).copied().unwrap_or(0);
    let modes = (j.settings.budget_fail_mode, j.settings.budget_admission);
    let held = match budgets::reserve(&owners, price, j.counters, j.now_ms, modes, j.control_plane_up) {
        Ok(held) => held,
        Err(denial) => {
            limits::release(&reservation, j.counters);
            return (report, Err(denial));
        }
    };
    let dispatch = Dispatch {
        cluster: crate::mcp::HUB_CLUSTER.into(),
        path: j.path,
        timeout_ms: None,
        body: None,
        reservation,
        holds_slot: false,
        stream: false,
        hide_usage_chunk: false,
        price: None,
        budgets: held,
        estimate_micros: price,
        charged: charged(key, j.records, &call.name),
        acts_as_caller: false,
    };
    (report, Ok(dispatch))
}

/// The owners a tool call of `key` is charged to.
fn charged(key: &VirtualKeyRecord, records: &impl Records, tool: &str) -> Charged {
    let team_customer = || key.team_id.as_deref().and_then(|id| records.team(id)).and_then(|t| t.customer_id);
    Charged {
        key_id: key.id.clone(),
        team_id: key.team_id.clone(),
        customer_id: key.customer_id.clone().or_else(team_customer),
        provider: crate::mcp::LEDGER_PROVIDER.into(),
        model: tool.to_owned(),
    }
}

/// Whether a chat of this key goes to agent mode: some tool it may see under these headers is
/// one agent mode runs by itself.
pub fn agent_mode(key: &VirtualKeyRecord, records: &impl Records, include: &IncludeHeaders) -> bool {
    let index = records.mcp_index().unwrap_or_default();
    crate::mcp::candidate_clients(key.grants(), &index, include)
        .iter()
        .filter_map(|c| records.mcp_client(c))
        .any(|client| client.tools.iter().any(|t| crate::mcp::auto_executes(key.grants(), &client, &t.name, include)))
}

/// The `/v1/models` answer for a key: only what it may use.
pub fn models_body(key: &VirtualKeyRecord, records: &impl Records) -> Vec<u8> {
    let providers: Vec<ProviderRecord> =
        key.provider_configs.iter().filter_map(|g| records.provider(&g.provider)).collect();
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
mod tests {
    use super::*;
    use crate::records::{Limits, ModelConfigRecord, ProviderGrant};
    use crate::settings::{BudgetAdmission, FailMode};
    use std::sync::LazyLock;

    /// Budgets here are judged within one Envoy, and reserve (`budgets.rs` tests both
    /// admissions); leases have their own tests.
    static SETTINGS: LazyLock<FilterSettings> = LazyLock::new(|| FilterSettings {
        budget_fail_mode: FailMode::Local,
        budget_admission: BudgetAdmission::Reserve,
        ..FilterSettings::for_cluster("warden")
    });
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct World {
        providers: Vec<ProviderRecord>,
        models: Vec<ModelRecord>,
        teams: Vec<TeamRecord>,
        customers: Vec<CustomerRecord>,
        prices: Vec<(String, Price)>,
        mcp: Vec<McpClientRecord>,
        counters: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    }

    static NO_HEADERS: LazyLock<IncludeHeaders> = LazyLock::new(IncludeHeaders::default);

    impl Records for World {
        fn provider(&self, name: &str) -> Option<ProviderRecord> {
            self.providers.iter().find(|p| p.name == name).cloned()
        }
        fn model(&self, name: &str) -> Option<ModelRecord> {
            self.models.iter().find(|m| m.model == name).cloned()
        }
        fn team(&self, id: &str) -> Option<TeamRecord> {
            self.teams.iter().find(|t| t.id == id).cloned()
        }
        fn customer(&self, id: &str) -> Option<CustomerRecord> {
            self.customers.iter().find(|c| c.id == id).cloned()
        }
        fn price(&self, name: &str) -> Option<Price> {
            self.prices.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
        }
        fn mcp_client(&self, name: &str) -> Option<McpClientRecord> {
            self.mcp.iter().find(|c| c.name == name).cloned()
        }
        fn mcp_index(&self) -> Option<McpIndex> {
            let allow_by_default = self.mcp.iter().filter(|c| c.allow_by_default).map(|c| c.name.clone()).collect();
            Some(McpIndex { allow_by_default })
        }
    }

    impl Counters for World {
        fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
            self.counters.borrow().get(key).map_or((None, 0), |(v, c)| (Some(v.clone()), *c))
        }
        fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
            let mut map = self.counters.borrow_mut();
            let current = map.get(key).map_or(0, |(_, c)| *c);
            if cas != 0 && cas != current {
                return false;
            }
            map.insert(key.to_owned(), (value.to_vec(), current + 1));
            true
        }
    }

    fn per_minute(n: u64) -> Option<RateLimit> {
        Some(RateLimit { request_max_limit: Some(n), request_reset_duration: Some("1m".into()), ..Default::default() })
    }

    fn world() -> World {
        World {
            providers: vec![ProviderRecord {
                name: "openai".into(),
                models: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
                key_ids: vec!["k1".into()],
                base_path: "/v1beta/openai/".into(),
                request_timeout_ms: Some(30_000),
                limits: Limits::default(),
            }],
            ..World::default()
        }
    }

    fn key() -> VirtualKeyRecord {
        let mut k = VirtualKeyRecord::new("vk1", "team-a", true);
        k.provider_configs = vec![ProviderGrant {
            provider: "openai".into(),
            weight: Some(1.0),
            allowed_models: vec!["*".into()],
            blacklisted_models: vec![],
            key_ids: vec!["*".into()],
            rate_limit: None,
            budgets: vec![],
        }];
        k
    }

    const CHAT: &[u8] = br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn routes_to_the_provider_key_cluster_with_the_model_renamed() {
        let w = world();
        let (_, d) =
            inference(&key(), Endpoint::ChatCompletions, "a=1", CHAT, &w, &w, 0, 0, &SETTINGS, true, &NO_HEADERS);
        let d = d.unwrap();
        assert_eq!(d.cluster, "warden-provider/openai/k1");
        assert_eq!(d.path, "/v1beta/openai/chat/completions?a=1");
        assert_eq!(d.timeout_ms, Some(30_000));
        let body: serde_json::Value = serde_json::from_slice(&d.body.unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4o");
    }

    #[test]
    fn refusals_in_order() {
        let w = world();
        let k = key();
        let run = |k: &VirtualKeyRecord, body: &[u8]| {
            inference(k, Endpoint::ChatCompletions, "", body, &w, &w, 0, 0, &SETTINGS, true, &NO_HEADERS)
                .1
                .unwrap_err()
                .kind()
        };
        assert_eq!(run(&k, b"nope"), "invalid_request_error");
        assert_eq!(run(&k, br#"{"model":"o3"}"#), "model_blocked");
        assert_eq!(run(&VirtualKeyRecord::new("x", "x", true), CHAT), "provider_blocked");
    }

    #[test]
    fn levels_are_checked_provider_model_key_customer_team() {
        let mut w = world();
        w.providers[0].limits.rate_limit = per_minute(5);
        w.models.push(ModelRecord {
            model: "gpt-4o".into(),
            configs: vec![ModelConfigRecord {
                id: "m1".into(),
                provider: None,
                limits: Limits { rate_limit: per_minute(4), ..Default::default() },
            }],
        });
        w.customers.push(CustomerRecord {
            id: "c".into(),
            name: "acme".into(),
            limits: Limits { rate_limit: per_minute(2), ..Default::default() },
        });
        w.teams.push(TeamRecord {
            id: "t".into(),
            name: "ml".into(),
            customer_id: Some("c".into()),
            limits: Limits { rate_limit: per_minute(3), ..Default::default() },
        });
        let mut k = key();
        k.team_id = Some("t".into());
        k.limits.rate_limit = per_minute(10);
        let entity = |n: u64| match inference(
            &k,
            Endpoint::ChatCompletions,
            "",
            CHAT,
            &w,
            &w,
            n,
            0,
            &SETTINGS,
            true,
            &NO_HEADERS,
        )
        .1
        {
            Err(Denial::RateLimited(v)) => v.entity,
            other => format!("{:?}", other.map(|d| d.cluster)),
        };
        assert_eq!(entity(1), "Ok(\"warden-provider/openai/k1\")");
        assert_eq!(entity(2), "Ok(\"warden-provider/openai/k1\")");
        // The customer (2/min, reached through the team) refuses the third request.
        assert_eq!(entity(3), "customer 'acme'");
    }

    #[test]
    fn concurrency_slot_refusal_rolls_back_the_request_count() {
        let w = world();
        let mut k = key();
        k.max_concurrent_requests = Some(1);
        k.limits.rate_limit = per_minute(10);
        let (_, first) = inference(&k, Endpoint::ChatCompletions, "", CHAT, &w, &w, 0, 0, &SETTINGS, true, &NO_HEADERS);
        assert!(first.unwrap().holds_slot);
        let (report, second) =
            inference(&k, Endpoint::ChatCompletions, "", CHAT, &w, &w, 0, 0, &SETTINGS, true, &NO_HEADERS);
        assert_eq!(second.unwrap_err(), Denial::ConcurrencyLimited { max: 1 });
        // 10 per minute, one admitted: the refused request was given back.
        assert_eq!(report.requests.map(|h| h.remaining), Some(8));
        let (report, _) =
            inference(&k, Endpoint::ChatCompletions, "", b"{}", &w, &w, 0, 0, &SETTINGS, true, &NO_HEADERS);
        assert_eq!(report, RateReport::default());
        limits::release_slot("vk1", &w);
        let (report, third) =
            inference(&k, Endpoint::ChatCompletions, "", CHAT, &w, &w, 0, 0, &SETTINGS, true, &NO_HEADERS);
        assert!(third.is_ok());
        assert_eq!(report.requests.map(|h| h.remaining), Some(8));
    }

    #[test]
    fn budgets_reserve_the_estimate_and_need_a_price() {
        use crate::records::BudgetLimit;
        let mut w = world();
        let mut k = key();
        // $0.001 a day for the key.
        k.limits.budgets = vec![BudgetLimit {
            max_micros: 1_000,
            reset_duration: "1d".into(),
            reset_at_ms: 0,
            ..BudgetLimit::default()
        }];
        let run = |w: &World, k: &VirtualKeyRecord, body: &[u8]| {
            inference(k, Endpoint::ChatCompletions, "", body, w, w, 0, 0, &SETTINGS, true, &NO_HEADERS).1
        };
        assert_eq!(run(&w, &k, CHAT).unwrap_err(), Denial::PriceUnknown("gpt-4o".into()));
        // $1 and $4 per 1M tokens: 22 prompt tokens (86 bytes / 4, rounded up) + 100 output
        // tokens at 4 µ$ = 422 µ$.
        w.prices.push((
            "gpt-4o".into(),
            Price { input_per_mtok: 1_000_000, output_per_mtok: 4_000_000, ..Price::default() },
        ));
        let body = br#"{"model":"openai/gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
        let d = run(&w, &k, body).unwrap();
        assert_eq!(d.budgets.remaining_micros, Some(578));
        assert_eq!(run(&w, &k, body).unwrap().budgets.remaining_micros, Some(156));
        let Err(Denial::BudgetExceeded(v)) = run(&w, &k, body) else { panic!() };
        assert_eq!((v.entity.as_str(), v.spent_micros, v.estimate_micros), ("VK", 844, 422));
        // Settling the first request to its actual cost makes room again.
        budgets::settle(&d.budgets, 10, &w, 0);
        assert!(run(&w, &k, body).is_ok());
        // Without a max_tokens the default output cap is reserved: 4096 output tokens > $0.001.
        assert!(matches!(run(&w, &k, CHAT), Err(Denial::BudgetExceeded(_))));
        // A fallback price serves models without one.
        w.prices = vec![("*".into(), Price::default())];
        assert!(run(&w, &k, CHAT).is_ok());
        // The key's own price wins over every other: $1,000 per 1M output tokens is too dear.
        k.prices.insert("gpt-4o".into(), Price { output_per_mtok: 1_000_000_000, ..Price::default() });
        assert!(matches!(run(&w, &k, body), Err(Denial::BudgetExceeded(_))));
    }

    fn fs_client(price_micros: u64) -> McpClientRecord {
        let tool = |name: &str| crate::mcp::McpTool {
            name: name.into(),
            description: format!("{name} a file"),
            input_schema: serde_json::json!({"type": "object"}),
            output_schema: None,
        };
        McpClientRecord {
            name: "fs".into(),
            tools_to_execute: vec!["*".into()],
            allow_by_default: false,
            tool_pricing: [("read".to_owned(), price_micros)].into(),
            tools_to_auto_execute: vec!["read".into()],
            is_code_mode_client: false,
            tools: vec![tool("read"), tool("write")],
        }
    }

    fn grant(tools: &[&str]) -> crate::mcp::McpGrant {
        crate::mcp::McpGrant {
            mcp_client_name: "fs".into(),
            tools_to_execute: tools.iter().map(|t| t.to_string()).collect(),
            tool_call_limits: Default::default(),
        }
    }

    #[test]
    fn chat_and_responses_get_the_allowed_tools_appended() {
        let mut w = world();
        w.mcp.push(fs_client(0));
        let mut k = key();
        k.mcp_configs = vec![grant(&["read"])];
        let run = |endpoint, body: &[u8], include: &IncludeHeaders| {
            let d = inference(&k, endpoint, "", body, &w, &w, 0, 0, &SETTINGS, true, include).1.unwrap();
            d.body.map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        };
        let chat = run(Endpoint::ChatCompletions, CHAT, &NO_HEADERS).unwrap();
        assert_eq!(
            chat["tools"],
            serde_json::json!([{"type": "function", "function": {
            "name": "fs-read", "description": "read a file", "parameters": {"type": "object"}}}])
        );
        let responses = run(Endpoint::Responses, CHAT, &NO_HEADERS).unwrap();
        assert_eq!(responses["tools"][0]["name"], "fs-read");
        // Embeddings never get tools; a header that leaves nothing leaves the body untouched.
        let untouched = br#"{"model":"gpt-4o","messages":[]}"#;
        assert_eq!(run(Endpoint::Embeddings, untouched, &NO_HEADERS), None);
        let none = IncludeHeaders::parse(Some(b""), None);
        assert_eq!(run(Endpoint::ChatCompletions, untouched, &none), None);
    }

    #[test]
    fn tool_calls_are_checked_limited_and_priced() {
        use crate::records::BudgetLimit;
        let mut w = world();
        w.mcp.push(fs_client(300));
        let mut k = key();
        k.limits.budgets = vec![BudgetLimit {
            max_micros: 1_000,
            reset_duration: "1d".into(),
            reset_at_ms: 0,
            ..BudgetLimit::default()
        }];
        let mut g = grant(&["read"]);
        g.tool_call_limits.insert(
            "read".into(),
            RateLimit { request_max_limit: Some(2), request_reset_duration: Some("1m".into()), ..Default::default() },
        );
        k.mcp_configs = vec![g];
        let call = |name: &str| {
            format!(r#"{{"id":"c1","type":"function","function":{{"name":"{name}","arguments":"{{}}"}}}}"#)
        };
        let run = |k: &VirtualKeyRecord, name: &str, now: u64| {
            tool_execute(k, "format=chat", call(name).as_bytes(), &w, &w, now, &SETTINGS, true, &NO_HEADERS).1
        };
        let d = run(&k, "fs-read", 0).unwrap();
        assert_eq!((d.cluster.as_str(), d.path.as_str()), ("warden-hub", "/v1/mcp/tool/execute?format=chat"));
        assert_eq!((d.estimate_micros, d.budgets.remaining_micros), (300, Some(700)));
        assert_eq!((d.charged.provider.as_str(), d.charged.model.as_str()), ("mcp", "fs-read"));
        assert!(run(&k, "fs-read", 0).is_ok());
        // The call limit (2 a minute) trips on the third call, before the budget is touched.
        let Err(Denial::RateLimited(v)) = run(&k, "fs-read", 0) else { panic!() };
        assert_eq!(v.entity, "tool 'fs-read'");
        // Next minute: the budget ($0.001, 600 µ$ spent) has no room for another 300 µ$ call…
        assert!(run(&k, "fs-read", 60_000).is_ok());
        assert!(matches!(run(&k, "fs-read", 120_000), Err(Denial::BudgetExceeded(_))));
        assert_eq!(run(&k, "fs-write", 0).unwrap_err(), Denial::ToolBlocked("fs-write".into(), "team-a".into()));
        assert_eq!(run(&k, "fs-delete", 0).unwrap_err(), Denial::ToolUnknown("fs-delete".into()));
        assert_eq!(run(&k, "nohyphen", 0).unwrap_err().status(), 404);
        let structured = tool_execute(
            &k,
            "format=chat&structured=true",
            call("fs-read").as_bytes(),
            &w,
            &w,
            // Two days on: a fresh budget window.
            2 * 86_400_000,
            &SETTINGS,
            true,
            &NO_HEADERS,
        );
        assert_eq!(structured.1.unwrap().path, "/v1/mcp/tool/execute?format=chat&structured=true");
        let bad = tool_execute(&k, "format=xml", b"{}", &w, &w, 0, &SETTINGS, true, &NO_HEADERS).1;
        assert_eq!(bad.unwrap_err().status(), 400);
    }

    #[test]
    fn code_mode_meta_tools_count_as_requests_of_the_key() {
        let mut w = world();
        let mut coded = fs_client(0);
        coded.is_code_mode_client = true;
        w.mcp.push(coded);
        let mut k = key();
        k.mcp_configs = vec![grant(&["read"])];
        k.limits.rate_limit = per_minute(2);
        let call = |name: &str| ToolCall { call_id: "1".into(), name: name.into(), arguments: Default::default() };
        let run =
            |name: &str, now: u64| mcp_tool_call(&k, "/mcp", &call(name), &w, &w, now, &SETTINGS, true, &NO_HEADERS).1;
        assert!(run("listToolFiles", 0).is_ok());
        assert!(run("executeToolCode", 0).unwrap().acts_as_caller);
        let Err(Denial::RateLimited(v)) = run("readToolFile", 0) else { panic!("a third request in the minute") };
        assert_eq!(v.entity, "VK");
        assert!(run("executeToolCode", 60_000).is_ok(), "the next minute");
        // A key whose tokens are spent still may: meta-tools spend none.
        let mut spent = k.clone();
        spent.limits.rate_limit = Some(RateLimit {
            token_max_limit: Some(1),
            token_reset_duration: Some("1d".into()),
            ..RateLimit::default()
        });
        let held = limits::reserve(&[spent.scope().unwrap()], &w, 0, true).1.unwrap();
        limits::charge_tokens(&held, 5, &w, 0);
        let refused = limits::reserve(&[spent.scope().unwrap()], &w, 0, true).1;
        assert!(matches!(refused, Err(Denial::RateLimited(_))), "the key's tokens are spent");
        let meta = mcp_tool_call(&spent, "/mcp", &call("listToolFiles"), &w, &w, 0, &SETTINGS, true, &NO_HEADERS).1;
        assert!(meta.is_ok(), "{meta:?}");
    }

    #[test]
    fn mcp_calls_are_scoped_to_the_key_or_its_virtual_mcp() {
        let mut w = world();
        w.mcp.push(fs_client(300));
        let mut k = key();
        k.mcp_configs = vec![grant(&["read", "write"])];
        k.virtual_mcps.insert("readers".into(), vec![grant(&["read"])]);
        let call = |name: &str| ToolCall { call_id: "1".into(), name: name.into(), arguments: Default::default() };
        let run = |path: &str, name: &str| {
            mcp_tool_call(&k, path, &call(name), &w, &w, 0, &SETTINGS, true, &NO_HEADERS).1.map(|d| d.path)
        };
        assert_eq!(run("/mcp", "fs-write").unwrap(), "/mcp");
        assert_eq!(run("/mcp/readers", "fs-read").unwrap(), "/mcp/readers");
        assert_eq!(run("/mcp/readers", "fs-write").unwrap_err().kind(), "mcp_tool_blocked");
        assert_eq!(run("/mcp/writers", "fs-read").unwrap_err().kind(), "virtual_mcp_blocked");
        // A bundle is exactly what it lists: no allow_by_default client leaks into it.
        let mut open = fs_client(0);
        open.name = "open".into();
        open.allow_by_default = true;
        w.mcp.push(open);
        let run = |path: &str, name: &str| {
            mcp_tool_call(&k, path, &call(name), &w, &w, 0, &SETTINGS, true, &NO_HEADERS).1.map(|d| d.path)
        };
        assert!(run("/mcp", "open-read").is_ok());
        assert_eq!(run("/mcp/readers", "open-read").unwrap_err().kind(), "mcp_tool_blocked");
    }

    #[test]
    fn agent_mode_needs_a_tool_the_key_may_run_by_itself() {
        let mut w = world();
        w.mcp.push(fs_client(0));
        let mut k = key();
        assert!(!agent_mode(&k, &w, &NO_HEADERS));
        k.mcp_configs = vec![grant(&["write"])];
        // `read` is auto-executed by the client, but this key may not call it.
        assert!(!agent_mode(&k, &w, &NO_HEADERS));
        k.mcp_configs = vec![grant(&["read"])];
        assert!(agent_mode(&k, &w, &NO_HEADERS));
        assert!(!agent_mode(&k, &w, &IncludeHeaders::parse(None, Some(b"fs-write"))));
    }

    #[test]
    fn models_body_lists_provider_slash_model() {
        let w = world();
        let body: serde_json::Value = serde_json::from_slice(&models_body(&key(), &w)).unwrap();
        let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["openai/gpt-4o", "openai/gpt-4o-mini"]);
        assert_eq!(body["data"][0]["owned_by"], "openai");
    }
}

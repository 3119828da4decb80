//! One HTTP request, phase by phase: the key at the headers, the governance decision at the end
//! of the body, usage from the response. Every decision is `warden_policy`'s; this file reads
//! what it needs from Envoy and shared data and applies the answer.

use crate::metrics::Metrics;
use crate::shared::{self, SharedCounters};
use crate::{host, ledger, random};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::sync::Arc;
use warden_policy::govern::{self, Dispatch, Upstream};
use warden_policy::inference::{Endpoint, SseUsage, USAGE_TAIL, json_usage};
use warden_policy::keys::{find_key, key_headers, presented_secret};
use warden_policy::ledger::{UsageRecord, record_id};
use warden_policy::limits::{self, RateReport};
use warden_policy::mcp::{self, AGENT_KEY_HEADER, IncludeHeaders, KEY_HASH_HEADER};
use warden_policy::pricing::dollars;
use warden_policy::records::{Record, Records};
use warden_policy::rpc::{self, McpScope, RpcMessage};
use warden_policy::settlement::{self, Answer};
use warden_policy::{Denial, FilterSettings, PolicyHealth, SyncStatus, VirtualKeyRecord, admit};

/// The header that tells the upstream which virtual key a request was admitted as. Trusted
/// because every client-sent `x-warden-*` header is removed first.
pub const KEY_ID_HEADER: &str = "x-warden-vk-id";
/// The most of a `/mcp` tool call's answer read to learn how it ended (the verdict comes first).
const MAX_OUTCOME_PREFIX: usize = 64 << 10;
/// The header the route table reads to pick the provider key's cluster.
const CLUSTER_HEADER: &str = "x-warden-cluster";
/// What the response cost, in dollars.
const COST_HEADER: &str = "x-warden-cost-usd";
/// A client that wants [`COST_HEADER`] on JSON answers sends this request header (`true`). The
/// cost of a JSON answer is known only at its end, so its headers are held until then: a pause
/// the client opts into. Streams carry the cost in their closing comment, and every cost is in
/// the ledger, asked for or not.
const WANT_COST_HEADER: &str = "x-warden-include-cost";
/// What is left of the tightest budget once this request's estimate is reserved, in dollars.
const BUDGET_HEADER: &str = "x-warden-budget-remaining-usd";

/// Where a request stands.
enum Phase {
    /// Nothing decided yet, or answered locally.
    Idle,
    /// Key admitted; the body decides the rest.
    AwaitingBody(Box<Awaiting>),
    /// Sent upstream; the response's usage is still to be charged.
    Dispatched(Box<Dispatched>),
}

/// An admitted request waiting for its body.
struct Awaiting {
    key: Arc<VirtualKeyRecord>,
    endpoint: Endpoint,
    query: String,
    generation: u64,
    /// Whether the control plane was heard from lately, at admission.
    control_plane_up: bool,
    /// The request's MCP include headers.
    include: IncludeHeaders,
    /// On `/mcp`: the path and the `Mcp-Method`/`Mcp-Name` headers.
    mcp: Option<McpPost>,
    /// The key's hash, which names its record for the hub.
    key_hash: String,
    /// A chat that agent mode runs.
    agent: bool,
    /// A request agent mode sent (one of its steps).
    agent_step: bool,
    /// The caller's key, for the hub when it acts as the caller.
    caller_key: Option<String>,
    /// The client asked for the cost header on a JSON answer.
    want_cost: bool,
    /// The client's `:path`, which the upstream path replaces only if they differ.
    path: String,
    /// The request body buffered so far, bytes.
    buffered: usize,
}

/// What the answer's handling needs to know of the request as the client sent it.
struct AsSent<'a> {
    /// An `/mcp` `tools/call`.
    rpc: bool,
    /// The client asked for the cost header.
    want_cost: bool,
    /// The client's `:path`.
    client_path: &'a str,
}

/// What an `/mcp` POST's body is judged with.
struct McpPost {
    path: String,
    method: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
}

struct Dispatched {
    key_id: String,
    dispatch: Dispatch,
    report: RateReport,
    sse: Option<SseUsage>,
    /// The end of a JSON answer (its last [`USAGE_TAIL`] bytes), or the start of an `/mcp`
    /// call's answer.
    json: Vec<u8>,
    status: u16,
    /// Hold the answer's headers until its cost is known.
    want_cost: bool,
    /// The response's cost, µ$, once settled and known.
    cost: Option<u64>,
    charged: bool,
    /// The metric of usage records dropped for a full outbox.
    usage_dropped: Option<u32>,
    /// An `/mcp` `tools/call`: the answer is always 200, its JSON-RPC message says how the
    /// call ended, so the first [`MAX_OUTCOME_PREFIX`] bytes are kept in `json`.
    rpc: bool,
}

impl Dispatched {
    /// Keeps what the usage is read from: the end of a JSON answer.
    fn keep_tail(&mut self, body_size: usize) {
        let start = body_size.saturating_sub(USAGE_TAIL);
        let chunk = host::response_body_range(start, body_size - start).unwrap_or_default();
        let keep = USAGE_TAIL.saturating_sub(chunk.len()).min(self.json.len());
        self.json.drain(..self.json.len() - keep);
        self.json.extend(chunk);
    }
}

pub struct WardenRequest {
    settings: Option<Rc<FilterSettings>>,
    metrics: Rc<Metrics>,
    phase: Phase,
    /// The admitted key's id, for the audit trail of a later refusal.
    key_id: Option<String>,
}

/// Shared data, at one policy generation, as the policy's record source.
struct SharedRecords(u64);

impl Records for SharedRecords {
    fn get<T: Record>(&self, id: &str) -> Option<Arc<T>> {
        shared::record(id, self.0)
    }
}

impl WardenRequest {
    pub fn new(settings: Option<Rc<FilterSettings>>, metrics: Rc<Metrics>) -> WardenRequest {
        WardenRequest { settings, metrics, phase: Phase::Idle, key_id: None }
    }

    fn deny(&mut self, denial: &Denial, report: &RateReport) -> Action {
        self.refuse(denial, report, denial.status(), &denial.body())
    }

    /// Refuses an `/mcp` request as a JSON-RPC error answering `id`; the HTTP status is 200, so
    /// MCP clients read it as the error of that call.
    fn deny_rpc(&mut self, denial: &Denial, report: &RateReport, id: &serde_json::Value) -> Action {
        self.refuse(denial, report, 200, &denial.rpc_body(id))
    }

    /// Answers locally with `status` and `body`, the denial's headers, audited.
    fn refuse(&mut self, denial: &Denial, report: &RateReport, status: u16, body: &[u8]) -> Action {
        self.audit_refusal(denial);
        let mut headers: Vec<(&str, String)> = vec![("content-type", "application/json".into())];
        if let Some(seconds) = denial.retry_after_s() {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers.extend(report.headers(host::now_ms()));
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        host::send_local_reply(status, &pairs, body);
        self.phase = Phase::Idle;
        // Envoy sends the local reply once this callback returns.
        Action::Pause
    }

    fn audit_refusal(&mut self, denial: &Denial) {
        host::increment(self.metrics.denied, 1);
        let now = host::now_ms();
        let reason = format!("{}/{}", denial.kind(), denial.code());
        let Some(key_id) = self.key_id.clone() else {
            // Without a known key a refusal costs nothing to send: counted, not written each.
            ledger::refused_anonymously(now, u32::from(denial.status()), reason);
            return;
        };
        // Every refusal reaches the control plane's audit log through the usage ledger.
        let record = UsageRecord {
            id: record_id(now, random::next()),
            at_ms: now,
            key_id,
            status: u32::from(denial.status()),
            denial: reason,
            ..UsageRecord::default()
        };
        host::increment(self.metrics.usage_dropped, ledger::record(&record));
    }

    /// Sends the admitted request where `dispatch` says.
    fn dispatch(
        &mut self,
        key_id: String,
        dispatch: Dispatch,
        report: RateReport,
        body_size: usize,
        request: AsSent<'_>,
    ) -> Action {
        let AsSent { rpc, want_cost, client_path } = request;
        if let Some(body) = &dispatch.body {
            if host::replace_request_body(body_size, body).is_err() {
                return self.deny(&Denial::BadRequest("the request body could not be rewritten".into()), &report);
            }
            // Envoy does not fix the length of a rewritten body.
            host::set_request_header("content-length", &body.len().to_string());
        }
        // Setting a request header makes Envoy choose the route again (1.40): no
        // `clear_route_cache` crossing is needed.
        host::set_request_header(CLUSTER_HEADER, dispatch.upstream.cluster());
        if dispatch.path != client_path {
            host::set_request_header(":path", &dispatch.path);
        }
        if let Some(ms) = dispatch.timeout_ms {
            host::set_request_header("x-envoy-upstream-rq-timeout-ms", &ms.to_string());
        }
        self.metrics.admit();
        let sse = dispatch.stream.then(|| SseUsage::new(dispatch.hide_usage_chunk));
        self.phase = Phase::Dispatched(Box::new(Dispatched {
            key_id,
            dispatch,
            report,
            sse,
            json: Vec::new(),
            status: 0,
            want_cost,
            cost: None,
            charged: false,
            usage_dropped: self.metrics.usage_dropped,
            rpc,
        }));
        Action::Continue
    }

    /// Sends the request to the hub as it is, for the key whose record scopes it.
    fn route_to_hub(&mut self, key_hash: &str, path: Option<&str>) -> Action {
        host::set_request_header(CLUSTER_HEADER, mcp::HUB_CLUSTER);
        host::set_request_header(KEY_HASH_HEADER, key_hash);
        if let Some(path) = path {
            host::set_request_header(":path", path);
        }
        // Streams (`GET /mcp`, `subscriptions/listen`, agent chats) outlive any route timeout.
        // Setting the headers makes Envoy choose the route again.
        host::set_request_header("x-envoy-upstream-rq-timeout-ms", "0");
        self.metrics.admit();
        self.phase = Phase::Idle;
        Action::Continue
    }
}

impl Context for WardenRequest {}

impl HttpContext for WardenRequest {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let headers = host::request_headers();
        #[cfg(feature = "crash-trigger")]
        if headers.iter().any(|(name, _)| name == "x-warden-test-crash") {
            crash_if_leader();
            host::send_local_reply(409, &[], b"this VM does not hold the policy stream");
            return Action::Pause;
        }
        let agent_step = headers.iter().any(|(name, _)| name == mcp::AGENT_STEP_HEADER);
        for (name, _) in headers.iter().filter(|(name, _)| name.starts_with("x-warden-")) {
            host::remove_request_header(name);
        }
        let none = RateReport::default();
        let Some(settings) = &self.settings else {
            return self.deny(&Denial::PolicyMissing, &none);
        };
        let health = PolicyHealth { bound_ms: settings.staleness_bound_ms };
        let now = host::now_ms();
        let mut status = shared::sync_status(now);
        let pairs = headers.iter().map(|(name, value)| (name.as_str(), value.as_slice()));
        let optional = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
        let header = |name: &str| optional(name).unwrap_or_default();
        let generation_of = |status: &Option<SyncStatus>| status.as_ref().map_or(0, |s| s.generation);
        let lookup_at =
            |generation: u64| move |hash: &warden_policy::KeyHash| SharedRecords(generation).get(&hash.to_hex());
        if header(":method") == b"OPTIONS" && McpScope::of(header(":path")).is_some() {
            // A browser's CORS preflight carries no key: the hub answers it, for the origins
            // it admits.
            return self.route_to_hub("", None);
        }
        let mut admission = admit(pairs.clone(), health, status.as_ref(), lookup_at(generation_of(&status)), now);
        // A key created a moment ago may be newer than the sync status this VM trusts: the
        // control plane answers its creation once every Envoy holds it, so look again.
        if admission == Err(Denial::KeyNotFound)
            && let Some(latest) = shared::newer_sync_status(now, generation_of(&status))
        {
            admission = admit(pairs.clone(), health, Some(&latest), lookup_at(latest.generation), now);
            status = Some(latest);
        }
        let generation = generation_of(&status);
        let lookup = lookup_at(generation);
        let admitted = match admission {
            Ok(admitted) => admitted,
            Err(denial) => {
                let denial = match Endpoint::of(header(":method"), header(":path")) {
                    Some(Endpoint::ToolExecute) => denial.on_tool_route(),
                    _ => denial,
                };
                if matches!(denial, Denial::KeyInactive | Denial::KeyExpired) {
                    // The key exists: name it in the audit trail.
                    self.key_id = find_key(pairs).and_then(|k| lookup(&k.hash)).map(|r| r.id.clone());
                }
                return self.deny(&denial, &none);
            }
        };
        // Virtual keys are Warden's credentials, not the provider's: they stay here.
        for name in key_headers(pairs.clone()) {
            host::remove_request_header(name);
        }
        host::set_request_header(KEY_ID_HEADER, &admitted.record.id);
        self.key_id = Some(admitted.record.id.clone());
        let path = header(":path");
        let Some(endpoint) = Endpoint::of(header(":method"), path) else {
            return self.deny(&Denial::UnknownRoute(String::from_utf8_lossy(path).into_owned()), &none);
        };
        if endpoint == Endpoint::Models {
            self.metrics.admit();
            let body = govern::models_body(&admitted.record, &SharedRecords(generation));
            host::send_local_reply(200, &[("content-type", "application/json")], &body);
            return Action::Pause;
        }
        let include = IncludeHeaders::parse(optional(mcp::INCLUDE_CLIENTS_HEADER), optional(mcp::INCLUDE_TOOLS_HEADER));
        let mut mcp_post = None;
        if endpoint == Endpoint::Mcp {
            let scope = McpScope::of(path).unwrap_or(McpScope::All);
            if let Err(denial) = admitted.record.mcp_grants(scope) {
                return self.deny(&denial, &none);
            }
            // The hub serves exactly `/mcp` and `/mcp/<slug>`.
            let normalized = match scope {
                McpScope::All => "/mcp".to_owned(),
                McpScope::Virtual(slug) => format!("/mcp/{slug}"),
            };
            if header(":method") != b"POST" || end_of_stream {
                return self.route_to_hub(&admitted.key.hash.to_hex(), Some(&normalized));
            }
            mcp_post = Some(McpPost {
                path: normalized,
                method: optional(rpc::METHOD_HEADER).map(<[u8]>::to_vec),
                name: optional(rpc::NAME_HEADER).map(<[u8]>::to_vec),
            });
        }
        if end_of_stream {
            return self
                .deny(&Denial::BadRequest("the request has no body; it needs a JSON body with 'model'".into()), &none);
        }
        let agent = endpoint == Endpoint::ChatCompletions
            && !agent_step
            && govern::agent_mode(&admitted.record, &SharedRecords(generation), &include);
        // The hub acts as the caller for agent mode and Code Mode's programs.
        let caller_key = (agent || matches!(endpoint, Endpoint::ToolExecute | Endpoint::Mcp))
            .then(|| presented_secret(pairs, admitted.key.source))
            .flatten()
            .map(|secret| String::from_utf8_lossy(secret).into_owned());
        let query = path.splitn(2, |b| *b == b'?').nth(1).unwrap_or_default();
        self.phase = Phase::AwaitingBody(Box::new(Awaiting {
            key: admitted.record,
            endpoint,
            query: String::from_utf8_lossy(query).into_owned(),
            generation,
            control_plane_up: status.as_ref().is_some_and(|s| s.control_plane_up(now)),
            include,
            mcp: mcp_post,
            key_hash: admitted.key.hash.to_hex(),
            agent,
            agent_step,
            caller_key,
            want_cost: optional(WANT_COST_HEADER).is_some_and(|v| v.eq_ignore_ascii_case(b"true")),
            path: String::from_utf8_lossy(path).into_owned(),
            buffered: 0,
        }));
        // Routing waits for `model` in the body (needs `allow_on_headers_stop_iteration`).
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Phase::AwaitingBody(_) = &self.phase else { return Action::Continue };
        let limit = self.settings.as_ref().map_or(0, |s| s.max_request_body_bytes);
        if body_size as u64 > limit {
            let reason = format!("the request body exceeds Warden's limit of {limit} bytes (max_request_body_bytes)");
            return self.deny(&Denial::BadRequest(reason), &RateReport::default());
        }
        if !end_of_stream {
            if let Phase::AwaitingBody(awaiting) = &mut self.phase {
                awaiting.buffered = body_size;
            }
            return Action::Pause;
        }
        let Phase::AwaitingBody(awaiting) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Action::Continue;
        };
        let Awaiting {
            key,
            endpoint,
            query,
            generation,
            control_plane_up,
            include,
            mcp,
            key_hash,
            agent,
            agent_step,
            caller_key,
            want_cost,
            path,
            buffered: _,
        } = *awaiting;
        if agent && let Some(secret) = &caller_key {
            // Agent mode governs each step the hub sends back through the gateway, not this.
            host::set_request_header(AGENT_KEY_HEADER, secret);
            return self.route_to_hub(&key_hash, Some(mcp::AGENT_PATH));
        }
        let body = host::request_body(body_size).unwrap_or_default();
        let now = host::now_ms();
        let Some(settings) = self.settings.clone() else { return Action::Continue };
        let rpc = mcp.is_some();
        let cx = govern::Context {
            records: &SharedRecords(generation),
            counters: &SharedCounters,
            now_ms: now,
            settings: &settings,
            control_plane_up,
            include: &include,
        };
        let (report, decision) = if let Some(post) = mcp {
            let message = match RpcMessage::parse(&body, post.method.as_deref(), post.name.as_deref()) {
                Ok(message) => message,
                Err(refusal) => {
                    self.audit_refusal(&Denial::BadRequest("malformed MCP message".into()));
                    host::send_local_reply(refusal.status, &[("content-type", "application/json")], &refusal.body);
                    return Action::Pause;
                }
            };
            let Some(call) = message.call else {
                return self.route_to_hub(&key_hash, Some(&post.path));
            };
            let id = message.id.unwrap_or_default();
            let (report, decision) = govern::mcp_tool_call(&key, &post.path, &call, &cx);
            match decision {
                Ok(dispatch) => (report, Ok(dispatch)),
                Err(denial) => return self.deny_rpc(&denial, &report, &id),
            }
        } else {
            let decide =
                |key: &VirtualKeyRecord, cx: &govern::Context<'_, SharedRecords, SharedCounters>| match endpoint {
                    Endpoint::ToolExecute => govern::tool_execute(key, &query, &body, cx),
                    _ => govern::inference(key, endpoint, &query, &body, random::next(), cx),
                };
            // A refusal under policy older than the newest (a budget raised a moment ago, say)
            // is decided again under the newest, once.
            let under_newest = || {
                let latest = shared::newer_sync_status(now, generation)?.generation;
                let key = SharedRecords(latest).get::<VirtualKeyRecord>(&key_hash)?;
                Some(decide(&key, &govern::Context { records: &SharedRecords(latest), ..cx }))
            };
            let first = decide(&key, &cx);
            if first.1.is_err() { under_newest().unwrap_or(first) } else { first }
        };
        if !control_plane_up {
            host::increment(self.metrics.without_control_plane, 1);
        }
        let unleased = match &decision {
            Ok(dispatch) => dispatch.budgets.unleased,
            Err(denial) => matches!(denial, Denial::BudgetUnavailable(_)),
        };
        if unleased {
            host::increment(self.metrics.budget_unleased, 1);
        }
        if let Ok(dispatch) = &decision
            && dispatch.upstream == Upstream::Hub
        {
            host::set_request_header(KEY_HASH_HEADER, &key_hash);
            if dispatch.acts_as_caller
                && let Some(secret) = &caller_key
            {
                host::set_request_header(AGENT_KEY_HEADER, secret);
                if agent_step {
                    // Agent mode runs this program unasked: the hub lets it call only
                    // auto-executable tools.
                    host::set_request_header(mcp::AGENT_STEP_HEADER, "1");
                }
            }
        }
        match decision {
            Ok(dispatch) => {
                let request = AsSent { rpc, want_cost, client_path: &path };
                self.dispatch(key.id.clone(), dispatch, report, body_size, request)
            }
            Err(denial) => self.deny(&denial, &report),
        }
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        // A body that ends with trailers is complete only now: it is decided here, never let
        // through undecided.
        let Phase::AwaitingBody(awaiting) = &self.phase else { return Action::Continue };
        let buffered = awaiting.buffered;
        self.on_http_request_body(buffered, true)
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let Phase::Dispatched(d) = &mut self.phase else { return Action::Continue };
        let now = host::now_ms();
        // One read for every header this phase needs, and one write for all it changes.
        let headers = host::response_headers();
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
        d.status = header(":status").and_then(|s| std::str::from_utf8(s).ok()?.parse().ok()).unwrap_or(0);
        // An `/mcp` call's verdict is in its JSON-RPC answer, read as it passes.
        let is_sse = !d.rpc && header("content-type").is_some_and(|v| v.starts_with(b"text/event-stream"));
        if !is_sse {
            d.sse = None;
        }
        let mut added = d.report.headers(now);
        if let Some(left) = d.dispatch.budgets.remaining_micros {
            added.push((BUDGET_HEADER, dollars(left)));
        }
        // A tool call's cost is its price, known once its status is: its body is not read.
        let settled = !d.rpc && (end_of_stream || d.dispatch.upstream == Upstream::Hub);
        if settled {
            settle(d, now);
            if let Some(cost) = d.cost {
                added.push((COST_HEADER, dollars(cost)));
            }
        }
        // Events are dropped and the cost is appended to a stream: its length changes. The cost
        // and budget headers are the filter's alone: an upstream's copy never reaches the client.
        let owned = |name: &str| name == COST_HEADER || name == BUDGET_HEADER;
        let dropped =
            |name: &str| (is_sse && name == "content-length") || owned(name) || added.iter().any(|(n, _)| *n == name);
        if is_sse || !added.is_empty() || headers.iter().any(|(n, _)| owned(n)) {
            let kept = headers.iter().filter(|(n, _)| !dropped(n)).map(|(n, v)| (n.as_str(), v.as_slice()));
            host::set_response_headers(kept.chain(added.iter().map(|(n, v)| (*n, v.as_bytes()))).collect());
        }
        // A JSON answer's cost is known at its end: its headers wait only if the client asked.
        if d.rpc || settled || is_sse || !d.want_cost { Action::Continue } else { Action::Pause }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Phase::Dispatched(d) = &mut self.phase else { return Action::Continue };
        if d.charged {
            return Action::Continue;
        }
        if d.rpc {
            let room = MAX_OUTCOME_PREFIX.saturating_sub(d.json.len());
            if room > 0 {
                d.json.extend(host::response_body(body_size.min(room)).unwrap_or_default());
            }
            if end_of_stream {
                settle(d, host::now_ms());
            }
            return Action::Continue;
        }
        if d.sse.is_none() {
            if d.want_cost {
                // Envoy buffers the body while this pauses: its end is read once, whole.
                if !end_of_stream {
                    return Action::Pause;
                }
                d.keep_tail(body_size);
                settle(d, host::now_ms());
                set_cost_header(d);
                return Action::Continue;
            }
            // Chunks pass as they come; the end of each is kept, for the usage at the end.
            d.keep_tail(body_size);
            if end_of_stream {
                settle(d, host::now_ms());
            }
            return Action::Continue;
        }
        let chunk = host::response_body(body_size).unwrap_or_default();
        let replacement = d.sse.as_mut().and_then(|sse| sse.feed(&chunk, end_of_stream));
        if !end_of_stream {
            if let Some(bytes) = replacement {
                let _ = host::replace_response_body(body_size, &bytes);
            }
            return Action::Continue;
        }
        settle(d, host::now_ms());
        let mut bytes = replacement.unwrap_or(chunk);
        if let Some(cost) = d.cost {
            // Trailing headers do not reach most clients; an SSE comment does and is ignored.
            bytes.extend_from_slice(format!(": {COST_HEADER} {}\n\n", dollars(cost)).as_bytes());
        }
        let _ = host::replace_response_body(body_size, &bytes);
        Action::Continue
    }

    fn on_log(&mut self) {
        // Every stream ends here, completed, failed or cancelled: give back what it holds.
        if let Phase::Dispatched(d) = &mut self.phase {
            if !d.charged {
                settle(d, host::now_ms());
            }
            if d.dispatch.holds_slot {
                limits::release_slot(&d.key_id, &SharedCounters);
            }
        }
    }
}

/// Settles the answer once (see `warden_policy::settlement`) and puts its record in the ledger.
fn settle(d: &mut Dispatched, now_ms: u64) {
    if d.charged {
        return;
    }
    d.charged = true;
    let usage = match &d.sse {
        Some(sse) => sse.usage,
        None => json_usage(&d.json),
    };
    let answer = Answer { status: d.status, usage, rpc: d.rpc.then_some(d.json.as_slice()) };
    let mut settled = settlement::settle(&d.dispatch, answer, &SharedCounters, now_ms);
    d.cost = settled.cost;
    settled.record.id = record_id(now_ms, random::next());
    host::increment(d.usage_dropped, ledger::record(&settled.record));
}

fn set_cost_header(d: &Dispatched) {
    if let Some(cost) = d.cost {
        host::set_response_header(COST_HEADER, &dollars(cost));
    }
}

/// Test-only: kill this VM if it holds the policy stream, to prove the stream heals.
#[cfg(feature = "crash-trigger")]
#[allow(clippy::panic, reason = "the point of this test-only trigger is to crash the VM")]
fn crash_if_leader() {
    if crate::leader::vm_holds_stream() {
        panic!("warden: crash requested by x-warden-test-crash");
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

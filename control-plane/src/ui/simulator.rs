//! What the gateway would answer one request of a key: the filter's own decisions from
//! `warden_policy` (`admit`, then `govern::inference` or `govern::tool_execute`), run on the
//! records published to every Envoy. Counters start empty, and budgets are judged against their
//! whole limit (no lease): the verdict says what the key may do, not how much of it is left.

use crate::admin::AppState;
use crate::mcp::records::Published;
use crate::store::{KeyQuery, StoreError};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use warden_policy::counter::Counters;
use warden_policy::govern::{self, Context, Upstream};
use warden_policy::inference::Endpoint;
use warden_policy::mcp::{INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER, IncludeHeaders, McpClientRecord, exposed_name};
use warden_policy::pricing::dollars;
use warden_policy::records::Records;
use warden_policy::settings::FailMode;
use warden_policy::{Denial, FilterSettings, PolicyHealth, SyncStatus, VirtualKeyRecord, admit};

/// The answer, and each check on the way to it.
pub struct Verdict {
    pub allowed: bool,
    pub status: u16,
    /// The refusal's type (`model_blocked`…); empty when allowed.
    pub kind: String,
    pub message: String,
    pub steps: Vec<String>,
}

impl Verdict {
    fn refused(denial: &Denial, mut steps: Vec<String>) -> Verdict {
        steps.push(format!("refused: {} {} ({})", denial.status(), denial.kind(), denial.code()));
        Verdict {
            allowed: false,
            status: denial.status(),
            kind: denial.kind().to_owned(),
            message: denial.message(),
            steps,
        }
    }

    fn cannot(message: &str) -> Verdict {
        Verdict { allowed: false, status: 0, kind: "not simulated".into(), message: message.into(), steps: Vec::new() }
    }
}

/// Counters that start empty: limits judged as at the start of their windows.
#[derive(Default)]
struct Fresh(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl Counters for Fresh {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        self.0.borrow().get(key).map_or((None, 0), |(v, cas)| (Some(v.clone()), *cas))
    }
    fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
        let mut all = self.0.borrow_mut();
        let current = all.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return false;
        }
        all.insert(key.to_owned(), (value.to_vec(), current + 1));
        true
    }
}

/// One key's verdicts on every tool.
pub struct MatrixRow {
    pub key: String,
    pub key_id: String,
    pub cells: Vec<Cell>,
}

/// What `/v1/mcp/tool/execute` answers one key for one tool: `allowed`, or the refusal's type.
pub struct Cell {
    pub tool: String,
    pub verdict: String,
}

/// Every tool published (by exposed name), and each key's verdict on each, under these include
/// headers (`name: value` lines): the very decision the filter takes on a call.
pub async fn tool_matrix(state: &AppState, include: &str) -> Result<(Vec<String>, Vec<MatrixRow>), StoreError> {
    let records = Published(&state.cache);
    let mut tools = Vec::new();
    for client in state.store.mcp_clients().await? {
        if let Some(record) = records.get::<McpClientRecord>(&client.name) {
            tools.extend(record.tools.iter().map(|t| exposed_name(&record.name, &t.name)));
        }
    }
    tools.sort();
    let settings = FilterSettings { budget_fail_mode: FailMode::Local, ..(*state.publisher.filter_settings()).clone() };
    let (keys, _) = state.store.virtual_keys(&KeyQuery::default()).await?;
    let path = "/v1/mcp/tool/execute?format=chat";
    let rows = keys
        .iter()
        .map(|key| MatrixRow {
            key: key.name.clone(),
            key_id: key.id.clone(),
            cells: tools
                .iter()
                .map(|tool| {
                    let call = json!({"id": "c", "type": "function", "function": {"name": tool, "arguments": "{}"}});
                    let body = call.to_string();
                    let verdict = judge(&records, &key.value_hash, &settings, "POST", path, include, body.as_bytes());
                    let verdict = if verdict.allowed { "allowed".to_owned() } else { verdict.kind };
                    Cell { tool: tool.clone(), verdict }
                })
                .collect(),
        })
        .collect();
    Ok((tools, rows))
}

pub async fn decide(state: &AppState, key_id: &str, method: &str, path: &str, headers: &str, body: &str) -> Verdict {
    let key = match state.store.virtual_key(key_id).await {
        Ok(Some(key)) => key,
        Ok(None) => return Verdict::cannot("No such key."),
        Err(e) => return Verdict::cannot(&format!("The store could not be read: {e}")),
    };
    let settings = FilterSettings { budget_fail_mode: FailMode::Local, ..(*state.publisher.filter_settings()).clone() };
    judge(&Published(&state.cache), &key.value_hash, &settings, method, path, headers, body.as_bytes())
}

/// The decision proper, on `records` (everything but the store's lookup of the key's hash).
fn judge(
    records: &impl Records,
    key_hash: &str,
    settings: &FilterSettings,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Verdict {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let Some(record) = records.get::<VirtualKeyRecord>(key_hash) else {
        return Verdict::cannot("The key is not published to the Envoys yet.");
    };
    let extra: Vec<(String, String)> = headers
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // The key is presented as the filter would find it; the record is the one its hash names.
    let presented = [(":method", method), (":path", path), ("x-bf-vk", "sk-bf-simulated")];
    let pairs: Vec<(&str, &[u8])> = presented
        .iter()
        .map(|(n, v)| (*n, v.as_bytes()))
        .chain(extra.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
        .collect();
    let status = SyncStatus { heard_at_ms: now_ms, version: String::new(), generation: 0 };
    let health = PolicyHealth { bound_ms: settings.staleness_bound_ms };
    let mut steps = Vec::new();
    if let Err(denial) = admit(pairs.iter().copied(), health, Some(&status), |_| Some(Arc::clone(&record)), now_ms) {
        return Verdict::refused(&denial, steps);
    }
    steps.push(format!("admitted: key “{}” is active and not expired", record.name));
    let Some(endpoint) = Endpoint::of(method.as_bytes(), path.as_bytes()) else {
        return Verdict::refused(&Denial::UnknownRoute(path.to_owned()), steps);
    };
    steps.push(format!("route: {method} {path} is {endpoint:?}"));
    match endpoint {
        Endpoint::Models => {
            steps.push("answered by the filter: the models this key may use".into());
            return Verdict { allowed: true, status: 200, kind: String::new(), message: String::new(), steps };
        }
        Endpoint::Mcp => return Verdict::cannot("`/mcp` goes on to the hub, which the simulator does not run."),
        _ => {}
    }
    if body.len() as u64 > settings.max_request_body_bytes {
        let reason = format!("the request body exceeds Warden's limit of {} bytes", settings.max_request_body_bytes);
        return Verdict::refused(&Denial::BadRequest(reason), steps);
    }
    let header = |name: &str| extra.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_bytes());
    let include = IncludeHeaders::parse(header(INCLUDE_CLIENTS_HEADER), header(INCLUDE_TOOLS_HEADER));
    let counters = Fresh::default();
    let cx = Context { records, counters: &counters, now_ms, settings, control_plane_up: true, include: &include };
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let (_, decision) = match endpoint {
        Endpoint::ToolExecute => govern::tool_execute(&record, query, body, &cx),
        _ => govern::inference(&record, endpoint, query, body, 0, &cx),
    };
    match decision {
        Ok(dispatch) => {
            steps.push("body, model, provider, limits and budgets: admitted".into());
            match &dispatch.upstream {
                Upstream::Provider { cluster } => steps.push(format!("sent to {cluster} at {}", dispatch.path)),
                Upstream::Hub => steps.push(format!("sent to the MCP hub at {}", dispatch.path)),
            }
            steps.push(format!("{} charged to {}", dispatch.charged.model, dispatch.charged.key_id));
            steps.push(format!("estimated cost ${} reserved", dollars(dispatch.estimate_micros)));
            Verdict { allowed: true, status: 200, kind: String::new(), message: String::new(), steps }
        }
        Err(denial) => Verdict::refused(&denial, steps),
    }
}

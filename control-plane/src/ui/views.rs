//! What the pages show, shaped from the admin API's JSON answers.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::{Map, Value};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The Unix milliseconds at which today and this month began (UTC).
pub fn day_and_month_start(now: DateTime<Utc>) -> (i64, i64) {
    let day = Utc.with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0).single();
    let month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single();
    (day.map_or(0, |d| d.timestamp_millis()), month.map_or(0, |m| m.timestamp_millis()))
}

/// Usage totals.
pub struct Card {
    pub requests: u64,
    pub tokens: u64,
    pub cost_usd: String,
}

impl Card {
    /// From `/api/usage`'s `totals` (or one of its `groups`).
    pub fn of(totals: &Value) -> Card {
        Card {
            requests: count(&totals["requests"]),
            tokens: count(&totals["input_tokens"]) + count(&totals["output_tokens"]),
            cost_usd: totals["cost_usd"].as_str().unwrap_or("0.000000").to_owned(),
        }
    }
}

/// One row of a usage table.
pub struct UsageRow {
    pub name: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_usd: String,
}

/// Usage grouped by one dimension, the costliest first.
pub struct UsageGroup {
    pub title: &'static str,
    pub rows: Vec<UsageRow>,
}

impl UsageGroup {
    pub fn of(title: &'static str, groups: &Value) -> UsageGroup {
        let mut rows: Vec<(u64, UsageRow)> = groups
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                let card = Card::of(g);
                let name = g["group"].as_str().filter(|n| !n.is_empty()).unwrap_or("(none)").to_owned();
                let row = UsageRow { name, requests: card.requests, tokens: card.tokens, cost_usd: card.cost_usd };
                (count(&g["cost_micros"]), row)
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        UsageGroup { title, rows: rows.into_iter().map(|(_, r)| r).collect() }
    }
}

/// One budget: what its window has spent of its limit.
pub struct BudgetBar {
    pub owner: String,
    /// The key it belongs to, if it is a key's.
    pub key_id: Option<String>,
    pub used_usd: String,
    pub limit_usd: String,
    /// Spent, in % of the limit (may pass 100 by the last request's actual cost).
    pub percent: u64,
    /// The bar's width, at most 100.
    pub width: u64,
    pub over: bool,
    pub window: String,
    pub resets: String,
}

/// The owner fields a budget may carry, and how to name them.
const OWNERS: [(&str, &str); 6] = [
    ("virtual_key_id", "key"),
    ("provider_config_id", "provider config"),
    ("team_id", "team"),
    ("customer_id", "customer"),
    ("model_config_id", "model config"),
    ("provider", "provider"),
];

impl BudgetBar {
    /// From `/api/governance/budgets`'s `budgets`.
    pub fn all(budgets: &Value) -> Vec<BudgetBar> {
        budgets.as_array().into_iter().flatten().map(BudgetBar::of).collect()
    }

    fn of(b: &Value) -> BudgetBar {
        let (field, kind) = OWNERS.iter().find(|(f, _)| !b[*f].is_null()).copied().unwrap_or(("", "owner"));
        let limit = b["effective_max_limit"].as_f64().or_else(|| b["max_limit"].as_f64()).unwrap_or(0.0);
        let used = b["current_usage"].as_f64().unwrap_or(0.0);
        let percent = if limit > 0.0 { (used / limit * 100.0).round().max(0.0) as u64 } else { 0 };
        BudgetBar {
            owner: format!("{kind} {}", text(&b[field])),
            key_id: (field == "virtual_key_id").then(|| text(&b[field])),
            used_usd: format!("{used:.6}"),
            limit_usd: format!("{limit:.6}"),
            percent,
            width: percent.min(100),
            over: used >= limit && limit > 0.0,
            window: text(&b["reset_duration"]),
            resets: text(&b["resets_at"]),
        }
    }
}

/// One virtual key in a list.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub team: String,
    pub customer: String,
    pub active: bool,
    pub prefix: String,
}

impl KeyRow {
    /// From the admin API's `virtual_keys`.
    pub fn all(keys: &Value) -> Vec<KeyRow> {
        let name_or_id = |owner: &Value, id: &Value| match owner["name"].as_str() {
            Some(name) => name.to_owned(),
            None => text(id),
        };
        keys.as_array()
            .into_iter()
            .flatten()
            .map(|k| KeyRow {
                id: text(&k["id"]),
                name: text(&k["name"]),
                team: name_or_id(&k["team"], &k["team_id"]),
                customer: name_or_id(&k["customer"], &k["customer_id"]),
                active: k["is_active"].as_bool().unwrap_or(false),
                prefix: text(&k["value_prefix"]),
            })
            .collect()
    }
}

/// The fields of a key a `PUT` takes, from the key as a `GET` shows it, pretty-printed.
pub fn editable(key: &Value) -> String {
    const FIELDS: [&str; 16] = [
        "name",
        "description",
        "is_active",
        "provider_configs",
        "mcp_configs",
        "team_id",
        "customer_id",
        "budgets",
        "rate_limit",
        "calendar_aligned",
        "allow_all_providers",
        "max_concurrent_requests",
        "prices",
        "expires_at",
        "delete_after_expire",
        "disable_content_logging",
    ];
    let kept: Map<String, Value> =
        FIELDS.iter().filter_map(|f| key.get(*f).map(|v| ((*f).to_owned(), v.clone()))).collect();
    serde_json::to_string_pretty(&Value::Object(kept)).unwrap_or_default()
}

/// An action a key's page asks to confirm, and what it will do.
pub struct Confirm {
    pub action: &'static str,
    pub note: &'static str,
}

/// The actions a key's page asks to confirm.
pub fn key_action(action: &str) -> Option<Confirm> {
    let (action, note) = [
        ("block", "Every Envoy refuses it with 403 once this answers."),
        ("unblock", "Every Envoy admits it again once this answers."),
        ("delete", "This cannot be undone."),
    ]
    .into_iter()
    .find(|(a, _)| *a == action)?;
    Some(Confirm { action, note })
}

/// One resource type's state on a node.
pub struct ResourceRow {
    pub kind: String,
    pub version: String,
    pub nack: Option<String>,
}

/// One Envoy node.
pub struct NodeRow {
    pub id: String,
    pub last_seen: String,
    pub streams: u64,
    pub policy: String,
    pub resources: Vec<ResourceRow>,
}

impl NodeRow {
    /// From `/api/envoy/nodes`'s `nodes`.
    pub fn all(nodes: &Value) -> Vec<NodeRow> {
        nodes
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| NodeRow {
                id: text(&n["node_id"]),
                last_seen: text(&n["last_seen"]),
                streams: count(&n["policy_streams"]),
                policy: match (&n["policy_acked_seq"], &n["policy_nack"]) {
                    (_, nack @ Value::Object(_)) => format!("NACK: {}", text(&nack["reason"])),
                    (Value::Null, _) => "nothing yet".into(),
                    (seq, _) => format!("version {seq}"),
                },
                resources: n["resources"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(kind, r)| ResourceRow {
                        kind: kind.clone(),
                        version: text(&r["acked_version"]),
                        nack: r["nack"].is_object().then(|| text(&r["nack"]["reason"])),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// One audit entry.
pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    /// For a refusal of a known key: the simulator, filled in with its key and model.
    pub replay: Option<String>,
}

impl AuditRow {
    /// From `/api/audit`'s `entries`.
    pub fn all(entries: &Value) -> Vec<AuditRow> {
        entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| AuditRow {
                at: text(&e["at"]),
                actor: text(&e["actor"]),
                action: format!("{} → {}", text(&e["action"]), text(&e["status"])),
                detail: text(&e["detail"]),
                replay: replay(e),
            })
            .collect()
    }
}

/// One MCP client.
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub tools: usize,
    pub error: String,
}

impl ClientRow {
    /// From `/api/mcp/clients`'s `clients`.
    pub fn all(clients: &Value) -> Vec<ClientRow> {
        clients
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| ClientRow {
                id: text(&c["config"]["client_id"]),
                name: text(&c["config"]["name"]),
                state: text(&c["state"]),
                tools: c["tools"].as_array().map_or(0, Vec::len),
                error: text(&c["error"]),
            })
            .collect()
    }
}

/// One request or token limit, as a key holder sees it.
pub struct LimitRow {
    pub what: &'static str,
    pub used: u64,
    pub max: u64,
    pub window: String,
    pub resets: String,
}

impl LimitRow {
    /// From the self-service answer's `rate_limits`.
    pub fn all(limits: &Value) -> Vec<LimitRow> {
        [("requests", "requests"), ("tokens", "tokens")]
            .into_iter()
            .filter(|(field, _)| limits[*field].is_object())
            .map(|(field, what)| {
                let l = &limits[field];
                LimitRow {
                    what,
                    used: count(&l["current_usage"]),
                    max: count(&l["max_limit"]),
                    window: text(&l["reset_duration"]),
                    resets: text(&l["resets_at"]),
                }
            })
            .collect()
    }
}

/// The `provider: models` a key may use, from the self-service answer.
pub fn allowed_models(configs: &Value) -> Vec<String> {
    configs
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let models: Vec<String> = c["allowed_models"].as_array().into_iter().flatten().map(text).collect();
            format!("{}: {}", text(&c["provider"]), models.join(", "))
        })
        .collect()
}

/// A labelled text input of a filter form.
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
}

impl Field {
    pub fn new(name: &'static str, label: &'static str, value: &str) -> Field {
        Field { name, label, value: value.to_owned() }
    }
}

/// `v` for a URL's query string.
pub fn url_encoded(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Usage rows (`/api/usage`'s totals or groups) as CSV. A field that a spreadsheet would read
/// as a formula is quoted with a leading `'`.
pub fn usage_csv(rows: &[Value]) -> String {
    let field = |v: &Value| {
        let text = text(v);
        let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text };
        format!("\"{}\"", text.replace('"', "\"\""))
    };
    let mut csv = String::from("group,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd\n");
    for r in rows {
        let cells = [
            &r["group"],
            &r["requests"],
            &r["input_tokens"],
            &r["cached_input_tokens"],
            &r["output_tokens"],
            &r["cost_usd"],
        ];
        csv.push_str(&cells.map(field).join(","));
        csv.push('\n');
    }
    csv
}

/// One provider, without its keys' values (the admin API never shows them).
pub struct ProviderRow {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub models: String,
    pub keys: Vec<String>,
}

impl ProviderRow {
    /// From `/api/providers`'s `providers`.
    pub fn all(providers: &Value) -> Vec<ProviderRow> {
        providers
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| ProviderRow {
                name: text(&p["name"]),
                kind: text(&p["kind"]),
                base_url: text(&p["base_url"]),
                models: p["models"].as_array().into_iter().flatten().map(text).collect::<Vec<_>>().join(", "),
                keys: p["keys"].as_array().into_iter().flatten().map(|k| text(&k["id"])).collect(),
            })
            .collect()
    }
}

/// One Envoy's lease of one of a key's limits.
pub struct LeaseView {
    pub counter: String,
    pub node: String,
    pub granted: u64,
    pub used: u64,
    pub max: u64,
    pub window_ends: String,
}

impl LeaseView {
    /// From `/api/leases`'s `leases`.
    pub fn all(leases: &Value) -> Vec<LeaseView> {
        leases
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| LeaseView {
                counter: text(&l["counter"]),
                node: text(&l["node"]),
                granted: count(&l["granted"]),
                used: count(&l["used"]),
                max: count(&l["max_micros"]),
                window_ends: DateTime::<Utc>::from_timestamp_millis(l["window_end_ms"].as_i64().unwrap_or(0))
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// One price in force.
pub struct PriceRow {
    pub name: String,
    pub input: u64,
    pub output: u64,
    /// `override` or `default`.
    pub source: String,
}

impl PriceRow {
    /// From `/api/prices`'s `prices`, overrides first.
    pub fn all(prices: &Value) -> Vec<PriceRow> {
        let mut rows: Vec<PriceRow> = prices
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PriceRow {
                name: text(&p["name"]),
                input: count(&p["price"]["input_per_mtok"]),
                output: count(&p["price"]["output_per_mtok"]),
                source: text(&p["source"]),
            })
            .collect();
        rows.sort_by(|a, b| (a.source != "override").cmp(&(b.source != "override")).then_with(|| a.name.cmp(&b.name)));
        rows
    }
}

/// The simulator's address for a refusal the filter reported: its key, and a chat of its model.
fn replay(entry: &Value) -> Option<String> {
    if entry["actor"] != "filter" {
        return None;
    }
    let key_id = text(&entry["target"]).strip_prefix("virtual key ")?.to_owned();
    let detail: Value = serde_json::from_str(entry["detail"].as_str()?).ok()?;
    let model = detail["model"].as_str().filter(|m| !m.is_empty()).unwrap_or("gpt-4o-mini");
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]}).to_string();
    Some(format!("/ui/simulator?key_id={}&body={}", url_encoded(&key_id), url_encoded(&body)))
}

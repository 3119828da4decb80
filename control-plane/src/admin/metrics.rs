//! `GET /metrics`: Prometheus text exposition of what the ledger has recorded and of the xDS
//! state. Labels are providers, models and refusal types — never keys or secrets — so the
//! route needs no admin token.

use super::AppState;
use super::error::ApiError;
use crate::store::UsageTotals;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::fmt::Write;

/// A counter family: name, help, and the total it reads.
type Family = (&'static str, &'static str, fn(&UsageTotals) -> u64);

/// A label value with Prometheus' escapes.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    let by_model = state.store.usage_by_model().await?;
    let families: [Family; 5] = [
        ("warden_requests_total", "Requests served, by provider and model.", |t| t.requests),
        ("warden_input_tokens_total", "Prompt tokens, by provider and model.", |t| t.input_tokens),
        ("warden_cached_input_tokens_total", "Prompt tokens served from the provider's cache.", |t| {
            t.cached_input_tokens
        }),
        ("warden_output_tokens_total", "Completion tokens, by provider and model.", |t| t.output_tokens),
        ("warden_cost_micro_dollars_total", "Spend in micro-dollars, by provider and model.", |t| t.cost_micros),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (provider, model, totals) in &by_model {
            let _ = writeln!(
                out,
                "{name}{{provider=\"{}\",model=\"{}\"}} {}",
                label(provider),
                label(model),
                value(totals)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP warden_denials_total Requests refused by the filters, by type.\n# TYPE warden_denials_total counter"
    );
    for (kind, n) in state.store.denials_by_type().await? {
        let _ = writeln!(out, "warden_denials_total{{type=\"{}\"}} {n}", label(&kind));
    }
    let nodes = state.nodes.all();
    let streams: u64 = nodes.iter().map(|n| u64::from(n.policy_streams)).sum();
    let gauges = [
        ("warden_policy_version", "The policy version being served.", state.cache.policy_seq()),
        ("warden_policy_records", "Policy records being served.", state.cache.policy_len() as u64),
        ("warden_envoy_nodes", "Envoy nodes seen since start.", nodes.len() as u64),
        ("warden_policy_streams", "Open policy streams (one per Envoy process).", streams),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

//! The audit trail of the admin API: every change (POST, PUT, DELETE) is appended, with its
//! request, the state it replaced and its answer, every secret redacted, to the hash-chained
//! audit log; `GET /api/audit` reads it and `GET /api/audit/verify` (or `warden audit-verify`)
//! walks the chain.

use super::AppState;
use super::error::ApiError;
use super::json::Query;
use crate::store::AuditEvent;
use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// Admin bodies are small; a larger one is audited by size only.
const MAX_AUDITED_BODY: usize = 1 << 20;

/// Fields whose values are secrets wherever they appear: a virtual key's or a provider key's
/// `value`, tokens, an MCP client's `headers` and `connection_string` (which may carry a token),
/// a node certificate's private key.
const SECRET_FIELDS: &[&str] = &["value", "admin_token", "token", "headers", "connection_string", "private_key"];

/// The JSON with every secret field's value replaced.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) && !v.is_null() {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The state an update or a delete replaced, as the API shows it (without secrets). Handlers
/// attach it to their answer (`Extension(Before(..))`) for the audit log.
#[derive(Debug, Clone)]
pub struct Before(pub Value);

fn audited(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            redact(&mut v);
            v
        }
        Err(_) => json!(format!("<{} bytes, not JSON>", bytes.len())),
    }
}

/// Middleware: appends every admin change to the audit log once it has been answered.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::PUT | Method::DELETE) {
        return next.run(request).await;
    }
    let action = format!("{} {}", request.method(), request.uri().path());
    let target = request.uri().path().to_owned();
    let actor = if request.extensions().get::<super::DashboardCaller>().is_some() { "dashboard" } else { "admin" };
    let (parts, body) = request.into_parts();
    let Ok(request_bytes) = to_bytes(body, MAX_AUDITED_BODY).await else {
        return ApiError::BadRequest(format!("admin request bodies are limited to {MAX_AUDITED_BODY} bytes"))
            .into_response();
    };
    let request = Request::from_parts(parts, Body::from(request_bytes.clone()));
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let response_bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let before = parts.extensions.get::<Before>().map(|b| {
        let mut state = b.0.clone();
        redact(&mut state);
        state
    });
    let detail = json!({"request": audited(&request_bytes), "before": before, "response": audited(&response_bytes)});
    let event =
        AuditEvent { actor: actor.into(), action, target, status: parts.status.as_u16(), detail: detail.to_string() };
    if let Err(e) = state.store.append_audit(event).await {
        tracing::error!(error = %e, "an admin change could not be written to the audit log");
    }
    Response::from_parts(parts, Body::from(response_bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
    #[serde(default)]
    offset: u32,
}

pub async fn list(State(state): State<AppState>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let entries = state.store.audit(page.limit.unwrap_or(100).min(1_000), page.offset).await?;
    Ok(Json(json!({"entries": entries})))
}

pub async fn verify(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let check = state.store.verify_audit().await?;
    Ok(Json(json!({"intact": check.first_broken.is_none(), "rows": check.rows, "first_broken": check.first_broken})))
}

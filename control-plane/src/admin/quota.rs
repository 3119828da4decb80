//! `GET /api/governance/virtual-keys/quota`: self-service. The virtual key itself is the
//! credential (in any header the gateway accepts); the answer is that key's budgets and rate
//! limits with what the ledger has recorded in their current windows, fleet-wide.

use super::AppState;
use super::error::ApiError;
use crate::model::unix_ms;
use crate::store::{UsageQuery, UsageTotals};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use warden_policy::keys::find_key;
use warden_policy::pricing::dollars;
use warden_policy::{Denial, ResetDuration, Window};

fn rfc3339(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default().to_rfc3339()
}

pub async fn quota(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    let presented = find_key(pairs.iter().copied()).ok_or(ApiError::Denied(Denial::KeyRequired))?;
    let key = state
        .store
        .virtual_key_by_hash(&presented.hash.to_hex())
        .await?
        .ok_or(ApiError::Denied(Denial::KeyNotFound))?;
    let now = unix_ms(Utc::now());
    let anchor = unix_ms(key.created_at);
    let window = |text: &str| -> Option<Window> {
        ResetDuration::parse(text).ok().map(|d| d.window(now, anchor, key.calendar_aligned))
    };
    // What the ledger holds for this key since a window began.
    let used = |start: u64| {
        let query = UsageQuery { key_id: Some(key.id.clone()), from_ms: Some(start), ..UsageQuery::default() };
        let store = state.store.clone();
        async move { Ok::<UsageTotals, ApiError>(store.usage(&query).await?.into_iter().next().unwrap_or_default()) }
    };
    let mut budgets = Vec::new();
    for budget in &key.budgets {
        let Some(w) = window(&budget.reset_duration) else { continue };
        let since = budget.last_reset.map_or(w.start_ms, |at| unix_ms(at).max(w.start_ms));
        let spent = used(since).await?.cost_micros;
        budgets.push(json!({
            "max_limit": budget.max_limit,
            "reset_duration": budget.reset_duration,
            "current_usage": dollars(spent),
            "window_start": rfc3339(w.start_ms),
            "resets_at": rfc3339(w.end_ms),
        }));
    }
    let mut rate_limits = json!({});
    if let Some(rl) = &key.rate_limit {
        if let Some((max, text)) = rl.request_max_limit.zip(rl.request_reset_duration.as_deref())
            && let Some(w) = window(text)
        {
            rate_limits["requests"] = json!({"max_limit": max, "reset_duration": text,
                "current_usage": used(w.start_ms).await?.requests, "resets_at": rfc3339(w.end_ms)});
        }
        if let Some((max, text)) = rl.token_max_limit.zip(rl.token_reset_duration.as_deref())
            && let Some(w) = window(text)
        {
            let t = used(w.start_ms).await?;
            rate_limits["tokens"] = json!({"max_limit": max, "reset_duration": text,
                "current_usage": t.input_tokens + t.output_tokens, "resets_at": rfc3339(w.end_ms)});
        }
    }
    let configs: Vec<Value> = key
        .provider_configs
        .iter()
        .map(|pc| json!({"provider": pc.provider, "allowed_models": pc.allowed_models, "blacklisted_models": pc.blacklisted_models}))
        .collect();
    Ok(Json(json!({
        "virtual_key_name": key.name,
        "is_active": key.is_active,
        "budgets": budgets,
        "rate_limits": rate_limits,
        "allowed_model_configs": configs,
        "max_concurrent_requests": key.max_concurrent_requests,
    })))
}

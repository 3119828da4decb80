//! Budgets and rate limits as resources (Bifrost's `/budgets` and `/rate-limits`): every owner's
//! budgets and limits listed with what the ledger recorded in their current windows, and budget
//! overrides.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, ValidJson};
use super::relations::plain;
use crate::model::{Budget, OverrideMode, RateLimit, VirtualKey, unix_ms};
use crate::store::{CustomerQuery, KeyQuery, ModelConfigQuery, TeamQuery, UsageQuery};
use axum::Json;
use axum::extract::{Extension, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_policy::{ResetDuration, Window};

/// One owner of budgets and limits: how the contract names it, its windows' layout, and which
/// ledger records are its spend.
struct Owner<'a> {
    /// The contract's foreign key (`virtual_key_id`, `team_id`, …) and its value.
    field: &'static str,
    id: String,
    budgets: &'a [Budget],
    rate_limit: Option<&'a RateLimit>,
    created_at: DateTime<Utc>,
    calendar_aligned: bool,
    usage: UsageQuery,
}

impl Owner<'_> {
    fn window(&self, reset_duration: &str, now_ms: u64) -> Option<Window> {
        let span = ResetDuration::parse(reset_duration).ok()?;
        Some(span.window(now_ms, unix_ms(self.created_at), self.calendar_aligned))
    }
}

/// Every owner of budgets or limits in the store.
struct Owners {
    keys: Vec<VirtualKey>,
    teams: Vec<crate::model::Team>,
    customers: Vec<crate::model::Customer>,
    model_configs: Vec<crate::model::ModelConfig>,
    providers: Vec<crate::model::Provider>,
}

impl Owners {
    async fn load(state: &AppState) -> Result<Owners, ApiError> {
        let store = &state.store;
        Ok(Owners {
            keys: store.virtual_keys(&KeyQuery::default()).await?.0,
            teams: store.teams(&TeamQuery::default()).await?.0,
            customers: store.customers(&CustomerQuery::default()).await?.0,
            model_configs: store.model_configs(&ModelConfigQuery::default()).await?.0,
            providers: store.providers().await?,
        })
    }

    fn each(&self) -> Vec<Owner<'_>> {
        let mut all = Vec::new();
        for k in &self.keys {
            let usage = UsageQuery { key_id: Some(k.id.clone()), ..UsageQuery::default() };
            all.push(Owner {
                field: "virtual_key_id",
                id: k.id.clone(),
                budgets: &k.budgets,
                rate_limit: k.rate_limit.as_ref(),
                created_at: k.created_at,
                calendar_aligned: k.calendar_aligned,
                usage: usage.clone(),
            });
            for pc in &k.provider_configs {
                all.push(Owner {
                    field: "provider_config_id",
                    id: pc.id.map_or_else(|| format!("{}/{}", k.id, pc.provider), |id| id.to_string()),
                    budgets: &pc.budgets,
                    rate_limit: pc.rate_limit.as_ref(),
                    created_at: k.created_at,
                    calendar_aligned: k.calendar_aligned,
                    usage: UsageQuery { provider: Some(pc.provider.clone()), ..usage.clone() },
                });
            }
        }
        for t in &self.teams {
            all.push(Owner {
                field: "team_id",
                id: t.id.clone(),
                budgets: &t.budgets,
                rate_limit: t.rate_limit.as_ref(),
                created_at: t.created_at,
                calendar_aligned: t.calendar_aligned,
                usage: UsageQuery { team_id: Some(t.id.clone()), ..UsageQuery::default() },
            });
        }
        for c in &self.customers {
            all.push(Owner {
                field: "customer_id",
                id: c.id.clone(),
                budgets: &c.budgets,
                rate_limit: c.rate_limit.as_ref(),
                created_at: c.created_at,
                calendar_aligned: c.calendar_aligned,
                usage: UsageQuery { customer_id: Some(c.id.clone()), ..UsageQuery::default() },
            });
        }
        for m in &self.model_configs {
            all.push(Owner {
                field: "model_config_id",
                id: m.id.clone(),
                budgets: &m.budgets,
                rate_limit: m.rate_limit.as_ref(),
                created_at: m.created_at,
                calendar_aligned: m.calendar_aligned,
                usage: UsageQuery {
                    model: Some(m.model_name.clone()),
                    provider: m.provider.clone(),
                    ..UsageQuery::default()
                },
            });
        }
        for p in &self.providers {
            all.push(Owner {
                field: "provider",
                id: p.name.clone(),
                budgets: &p.budgets,
                rate_limit: p.rate_limit.as_ref(),
                created_at: p.created_at,
                calendar_aligned: p.calendar_aligned,
                usage: UsageQuery { provider: Some(p.name.clone()), ..UsageQuery::default() },
            });
        }
        all
    }
}

fn instant(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?)
}

fn rfc3339(ms: u64) -> Value {
    instant(ms).map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// For a `cycles` override: the windows it still covers, the current one included.
fn cycles_remaining(budget: &Budget, window: Window, owner: &Owner<'_>) -> Option<u32> {
    let end = unix_ms(budget.override_ends_at?);
    let mut remaining = 0;
    let mut current = window;
    while current.start_ms < end && remaining < budget.override_cycles_total.unwrap_or(0) {
        remaining += 1;
        current = owner.window(&budget.reset_duration, current.end_ms)?;
    }
    Some(remaining)
}

/// A budget as the contract shows it, with its owner, its spend in the current window and the
/// limit in force.
async fn budget_view(state: &AppState, owner: &Owner<'_>, budget: &Budget, now_ms: u64) -> Result<Value, ApiError> {
    let mut shown = plain(budget);
    shown[owner.field] = Value::String(owner.id.clone());
    shown["effective_max_limit"] = json!(budget.effective_max_limit(now_ms));
    if let Some(window) = owner.window(&budget.reset_duration, now_ms) {
        let since = budget.last_reset.map_or(window.start_ms, |at| unix_ms(at).max(window.start_ms));
        let query = UsageQuery { from_ms: Some(since), ..owner.usage.clone() };
        let spent = state.store.usage(&query).await?.into_iter().next().unwrap_or_default().cost_micros;
        shown["current_usage"] = json!(spent as f64 / 1e6);
        shown["window_start"] = rfc3339(window.start_ms);
        shown["resets_at"] = rfc3339(window.end_ms);
        if budget.override_mode == Some(OverrideMode::Cycles) {
            shown["override_cycles_remaining"] = json!(cycles_remaining(budget, window, owner));
        }
    }
    Ok(shown)
}

/// `GET /api/governance/budgets`: every budget of every owner.
pub async fn list_budgets(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let owners = Owners::load(&state).await?;
    let now_ms = unix_ms(Utc::now());
    let mut budgets = Vec::new();
    for owner in owners.each() {
        for budget in owner.budgets {
            budgets.push(budget_view(&state, &owner, budget, now_ms).await?);
        }
    }
    Ok(Json(json!({"count": budgets.len(), "budgets": budgets})))
}

/// `GET /api/governance/rate-limits`: every owner's request and token limits, with what the
/// ledger recorded in their current windows.
pub async fn list_rate_limits(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let owners = Owners::load(&state).await?;
    let now_ms = unix_ms(Utc::now());
    let mut limits = Vec::new();
    for owner in owners.each() {
        let Some(limit) = owner.rate_limit else { continue };
        let mut shown = plain(limit);
        shown["id"] = Value::String(format!("{}:{}", owner.field, owner.id));
        shown[owner.field] = Value::String(owner.id.clone());
        let windows =
            [("token", limit.token_reset_duration.as_deref()), ("request", limit.request_reset_duration.as_deref())];
        for (dimension, reset) in windows {
            let Some(window) = reset.and_then(|r| owner.window(r, now_ms)) else { continue };
            let query = UsageQuery { from_ms: Some(window.start_ms), ..owner.usage.clone() };
            let used = state.store.usage(&query).await?.into_iter().next().unwrap_or_default();
            let count = match dimension {
                "token" => used.input_tokens + used.output_tokens,
                _ => used.requests,
            };
            shown[format!("{dimension}_current_usage")] = json!(count);
            shown[format!("{dimension}_last_reset")] = rfc3339(window.start_ms);
        }
        limits.push(shown);
    }
    Ok(Json(json!({"count": limits.len(), "rate_limits": limits})))
}

/// The body of a budget override (`PUT …/budgets/{budget_id}/override`, as Bifrost takes it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    amount: f64,
    mode: OverrideMode,
    #[serde(default)]
    cycles: Option<u32>,
}

/// The key and the budget of it named `budget_id` (its own, or one of its provider configs').
fn key_budget<'k>(key: &'k mut VirtualKey, budget_id: &str) -> Result<&'k mut Budget, ApiError> {
    let own = key.budgets.iter_mut();
    let configs = key.provider_configs.iter_mut().flat_map(|pc| pc.budgets.iter_mut());
    own.chain(configs)
        .find(|b| b.id.as_deref() == Some(budget_id))
        .ok_or_else(|| ApiError::NotFound("Budget not found".into()))
}

async fn change_override(
    state: &AppState,
    key_id: &str,
    budget_id: &str,
    change: impl FnOnce(&mut Budget, &dyn Fn(u64) -> Window, u64),
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut key =
        state.store.virtual_key(key_id).await?.ok_or_else(|| ApiError::NotFound("Virtual key not found".into()))?;
    let before = Before(plain(&key));
    let now = Utc::now();
    let (anchor, aligned) = (unix_ms(key.created_at), key.calendar_aligned);
    let budget = key_budget(&mut key, budget_id)?;
    let span = ResetDuration::parse(&budget.reset_duration)
        .map_err(|e| ApiError::BadRequest(format!("the budget's reset_duration: {e}")))?;
    // The budget's window at an instant, laid out as its owner's windows are.
    let window_at = |at_ms: u64| span.window(at_ms, anchor, aligned);
    change(budget, &window_at, unix_ms(now));
    let shown = json!({"budget": plain(budget), "effective_max_limit": budget.effective_max_limit(unix_ms(now))});
    key.updated_at = now;
    if !state.store.update_virtual_key(&key).await? {
        return Err(ApiError::NotFound("Virtual key not found".into()));
    }
    state.publisher.publish_keys(std::slice::from_ref(&key)).await?;
    tracing::info!(key = %key.id, budget = %budget_id, "budget override changed");
    Ok((Extension(before), Json(shown)))
}

/// `PUT /api/governance/virtual-keys/{id}/budgets/{budget_id}/override`: `max_limit + amount`
/// for `cycles` windows (the current one counting) or until removed.
pub async fn put_override(
    State(state): State<AppState>,
    Path((key_id, budget_id)): Path<(String, String)>,
    ValidJson(req): ValidJson<OverrideRequest>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    if !(req.amount.is_finite() && req.amount > 0.0) {
        return Err(ApiError::BadRequest("amount: must be a positive number of dollars".into()));
    }
    let cycles = match (req.mode, req.cycles) {
        (OverrideMode::Cycles, Some(n)) if n >= 1 => Some(n),
        (OverrideMode::Cycles, _) => {
            return Err(ApiError::BadRequest("cycles: must be at least 1 with mode cycles".into()));
        }
        (OverrideMode::Forever, _) => None,
    };
    change_override(&state, &key_id, &budget_id, |budget, window_at, now_ms| {
        let current = window_at(now_ms);
        // The window it starts in, then n - 1 more.
        let ends_at = cycles.map(|n| (1..n).fold(current.end_ms, |end, _| window_at(end).end_ms.max(end)));
        budget.override_amount = Some(req.amount);
        budget.override_mode = Some(req.mode);
        budget.override_cycles_total = cycles;
        budget.override_anchor_reset = instant(current.start_ms);
        budget.override_ends_at = ends_at.and_then(instant);
    })
    .await
}

/// `DELETE /api/governance/virtual-keys/{id}/budgets/{budget_id}/override`.
pub async fn delete_override(
    State(state): State<AppState>,
    Path((key_id, budget_id)): Path<(String, String)>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    change_override(&state, &key_id, &budget_id, |budget, _, _| {
        budget.override_amount = None;
        budget.override_mode = None;
        budget.override_cycles_total = None;
        budget.override_anchor_reset = None;
        budget.override_ends_at = None;
    })
    .await
}

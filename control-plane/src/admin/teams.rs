//! `/api/governance/teams` (Bifrost's paths and bodies), in the virtual keys' shapes.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, Query, ValidJson, merge_budgets, page, present};
use super::references;
use super::relations::{self, plain};
use crate::model::{Budget, RateLimit, Team};
use crate::publish::records::publish_teams;
use crate::store::{Deletion, OnReferenced, TeamQuery};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_policy::RecordKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    name: String,
    customer_id: Option<String>,
    #[serde(default)]
    budgets: Vec<Budget>,
    /// Legacy singular form; joins `budgets`.
    budget: Option<Budget>,
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    calendar_aligned: bool,
}

/// Absent fields stay as they are; `null` clears `customer_id` and `rate_limit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    customer_id: Option<Option<String>>,
    budgets: Option<Vec<Budget>>,
    budget: Option<Budget>,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimit>>,
    calendar_aligned: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    #[serde(default)]
    offset: u32,
    search: Option<String>,
    customer_id: Option<String>,
    /// Bifrost's flag; Warden always reads the store.
    #[serde(rename = "from_memory")]
    _from_memory: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Refuse (409) while keys belong to the team, instead of clearing their `team_id`
    /// (Bifrost's behaviour, the default).
    #[serde(default)]
    strict: bool,
}

fn not_found() -> ApiError {
    ApiError::NotFound("Team not found".into())
}

async fn existing(state: &AppState, id: &str) -> Result<Team, ApiError> {
    state.store.team(id).await?.ok_or_else(not_found)
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateTeam>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let team = Team {
        id: uuid::Uuid::new_v4().to_string(),
        name: req.name,
        customer_id: req.customer_id,
        budgets: merge_budgets(req.budgets, req.budget),
        rate_limit: req.rate_limit,
        calendar_aligned: req.calendar_aligned,
        created_at: now,
        updated_at: now,
    };
    team.validate()?;
    references::customer_exists(&state, team.customer_id.as_deref()).await?;
    state.store.insert_team(&team).await.map_err(ApiError::on_write("team"))?;
    publish_teams(&state.cache, std::slice::from_ref(&team));
    tracing::info!(id = %team.id, name = %team.name, "team created");
    Ok((StatusCode::OK, Json(json!({"message": "Team created successfully", "team": plain(&team)}))))
}

pub async fn list(State(state): State<AppState>, Query(params): Query<ListParams>) -> Result<Json<Value>, ApiError> {
    let query = TeamQuery {
        search: params.search,
        customer_id: params.customer_id,
        limit: params.limit,
        offset: params.offset,
    };
    let (teams, total) = state.store.teams(&query).await?;
    let mut shown = Vec::with_capacity(teams.len());
    for one in &teams {
        shown.push(relations::team(&state, one).await?);
    }
    Ok(Json(page("teams", shown, total, params.limit, params.offset)))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let team = existing(&state, &id).await?;
    Ok(Json(json!({"team": relations::team(&state, &team).await?})))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateTeam>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut team = existing(&state, &id).await?;
    let before = Before(plain(&team));
    if let Some(v) = req.name {
        team.name = v;
    }
    if let Some(v) = req.customer_id {
        references::customer_exists(&state, v.as_deref()).await?;
        team.customer_id = v;
    }
    if req.budgets.is_some() || req.budget.is_some() {
        team.budgets = merge_budgets(req.budgets.unwrap_or_default(), req.budget);
    }
    if let Some(v) = req.rate_limit {
        team.rate_limit = v;
    }
    if let Some(v) = req.calendar_aligned {
        team.calendar_aligned = v;
    }
    team.updated_at = Utc::now();
    team.validate()?;
    if !state.store.update_team(&team).await.map_err(ApiError::on_write("team"))? {
        return Err(not_found());
    }
    publish_teams(&state.cache, std::slice::from_ref(&team));
    tracing::info!(id = %team.id, "team updated");
    Ok((Extension(before), Json(json!({"message": "Team updated successfully", "team": plain(&team)}))))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let on_referenced = if params.strict { OnReferenced::Refuse } else { OnReferenced::Detach { at: Utc::now() } };
    match state.store.delete_team(&id, on_referenced).await? {
        Deletion::NotFound => Err(not_found()),
        Deletion::Referenced { keys, .. } => Err(ApiError::Conflict(format!(
            "Team still has {keys} virtual key(s); move or delete them first, or delete without ?strict=true \
             to clear their team_id"
        ))),
        Deletion::Deleted { entity, detached_keys, .. } => {
            state.publisher.publish_keys(&detached_keys).await?;
            state.cache.remove(&RecordKind::Team.name(&entity.id));
            tracing::info!(id = %entity.id, detached_keys = detached_keys.len(), "team deleted");
            Ok((Extension(Before(plain(&entity))), Json(json!({"message": "Team deleted successfully"}))))
        }
    }
}

//! `/api/governance/customers` (Bifrost's paths and bodies), in the virtual keys' shapes.

use super::AppState;
use super::audit::Before;
use super::error::ApiError;
use super::json::{Path, Query, ValidJson, merge_budgets, page, present};
use super::relations::{self, plain};
use crate::model::{Budget, Customer, RateLimit};
use crate::publish::records::{publish_customers, publish_teams};
use crate::store::{CustomerQuery, Deletion, OnReferenced};
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
pub struct CreateCustomer {
    name: String,
    #[serde(default)]
    budgets: Vec<Budget>,
    /// Legacy singular form; joins `budgets`.
    budget: Option<Budget>,
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    calendar_aligned: bool,
}

/// Absent fields stay as they are; `null` clears `rate_limit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    name: Option<String>,
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
    /// Bifrost's flag; Warden always reads the store.
    #[serde(rename = "from_memory")]
    _from_memory: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Refuse (409) while teams or keys belong to the customer, instead of clearing their
    /// `customer_id` (Bifrost's behaviour, the default).
    #[serde(default)]
    strict: bool,
}

fn not_found() -> ApiError {
    ApiError::NotFound("Customer not found".into())
}

async fn existing(state: &AppState, id: &str) -> Result<Customer, ApiError> {
    state.store.customer(id).await?.ok_or_else(not_found)
}

pub async fn create(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<CreateCustomer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Utc::now();
    let customer = Customer {
        id: uuid::Uuid::new_v4().to_string(),
        name: req.name,
        budgets: merge_budgets(req.budgets, req.budget),
        rate_limit: req.rate_limit,
        calendar_aligned: req.calendar_aligned,
        created_at: now,
        updated_at: now,
    };
    customer.validate()?;
    state.store.insert_customer(&customer).await.map_err(ApiError::on_write("customer"))?;
    publish_customers(&state.cache, std::slice::from_ref(&customer));
    tracing::info!(id = %customer.id, name = %customer.name, "customer created");
    Ok((StatusCode::OK, Json(json!({"message": "Customer created successfully", "customer": plain(&customer)}))))
}

pub async fn list(State(state): State<AppState>, Query(params): Query<ListParams>) -> Result<Json<Value>, ApiError> {
    let query = CustomerQuery { search: params.search, limit: params.limit, offset: params.offset };
    let (customers, total) = state.store.customers(&query).await?;
    let mut shown = Vec::with_capacity(customers.len());
    for one in &customers {
        shown.push(relations::customer(&state, one).await?);
    }
    Ok(Json(page("customers", shown, total, params.limit, params.offset)))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let customer = existing(&state, &id).await?;
    Ok(Json(json!({"customer": relations::customer(&state, &customer).await?})))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateCustomer>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let mut customer = existing(&state, &id).await?;
    let before = Before(plain(&customer));
    if let Some(v) = req.name {
        customer.name = v;
    }
    if req.budgets.is_some() || req.budget.is_some() {
        customer.budgets = merge_budgets(req.budgets.unwrap_or_default(), req.budget);
    }
    if let Some(v) = req.rate_limit {
        customer.rate_limit = v;
    }
    if let Some(v) = req.calendar_aligned {
        customer.calendar_aligned = v;
    }
    customer.updated_at = Utc::now();
    customer.validate()?;
    if !state.store.update_customer(&customer).await.map_err(ApiError::on_write("customer"))? {
        return Err(not_found());
    }
    publish_customers(&state.cache, std::slice::from_ref(&customer));
    tracing::info!(id = %customer.id, "customer updated");
    Ok((Extension(before), Json(json!({"message": "Customer updated successfully", "customer": plain(&customer)}))))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<(Extension<Before>, Json<Value>), ApiError> {
    let on_referenced = if params.strict { OnReferenced::Refuse } else { OnReferenced::Detach { at: Utc::now() } };
    match state.store.delete_customer(&id, on_referenced).await? {
        Deletion::NotFound => Err(not_found()),
        Deletion::Referenced { teams, keys } => Err(ApiError::Conflict(format!(
            "Customer still has {teams} team(s) and {keys} virtual key(s); move or delete them first, or \
             delete without ?strict=true to clear their customer_id"
        ))),
        Deletion::Deleted { entity, detached_teams, detached_keys } => {
            publish_teams(&state.cache, &detached_teams);
            state.publisher.publish_keys(&detached_keys).await?;
            state.cache.remove(&RecordKind::Customer.name(&entity.id));
            tracing::info!(
                id = %entity.id,
                detached_teams = detached_teams.len(),
                detached_keys = detached_keys.len(),
                "customer deleted"
            );
            Ok((Extension(Before(plain(&entity))), Json(json!({"message": "Customer deleted successfully"}))))
        }
    }
}

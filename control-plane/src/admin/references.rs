//! Checks that the team or customer a request points at exists, so a typo is a 400 rather than
//! an owner no limit is ever found for. Virtual keys have no foreign keys in the store, so
//! these checks are the only guard for them.

use super::AppState;
use super::error::ApiError;
use crate::model::Invalid;

/// 400 naming `team_id` unless it is absent or names a team.
pub async fn team_exists(state: &AppState, team_id: Option<&str>) -> Result<(), ApiError> {
    let Some(id) = team_id else { return Ok(()) };
    match state.store.team(id).await? {
        Some(_) => Ok(()),
        None => Err(Invalid::new("team_id", format!("no team with id '{id}'")).into()),
    }
}

/// 400 naming `customer_id` unless it is absent or names a customer.
pub async fn customer_exists(state: &AppState, customer_id: Option<&str>) -> Result<(), ApiError> {
    let Some(id) = customer_id else { return Ok(()) };
    match state.store.customer(id).await? {
        Some(_) => Ok(()),
        None => Err(Invalid::new("customer_id", format!("no customer with id '{id}'")).into()),
    }
}

/// Both of a virtual key's possible owners.
pub async fn owners_exist(state: &AppState, team_id: Option<&str>, customer_id: Option<&str>) -> Result<(), ApiError> {
    team_exists(state, team_id).await?;
    customer_exists(state, customer_id).await
}

//! Every admin API failure, rendered in the gateway's one error shape (docs/admin-api.md).

use crate::model::Invalid;
use crate::store::StoreError;
use crate::store::settings::SettingError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// The client sent something wrong; the message names the field.
    BadRequest(String),
    Unauthorized,
    NotFound(String),
    /// The request clashes with what is stored (a taken name, an entity still in use).
    Conflict(String),
    /// Our fault: logged in full, answered with a generic message.
    Internal(String),
    /// A virtual key refused on a self-service route, exactly as the gateway refuses it.
    Denied(warden_policy::Denial),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::BadRequest(format!("{}: {}", e.field, e.reason))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field } => {
                ApiError::BadRequest(format!("{field}: a virtual key with this {field} already exists"))
            }
            StoreError::Backend(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<SettingError> for ApiError {
    fn from(e: SettingError) -> Self {
        StoreError::from(e).into()
    }
}

impl ApiError {
    /// Maps a store failure on writing one `entity` (e.g. "team"): a unique clash is a 409.
    pub fn on_write(entity: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |e| match e {
            StoreError::Conflict { field } => {
                ApiError::Conflict(format!("{field}: a {entity} with this {field} already exists"))
            }
            e => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin API: send the admin token as 'Authorization: Bearer <token>'".to_owned(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Denied(denial) => {
                let status = StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::FORBIDDEN);
                let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
                return (status, json, denial.body()).into_response();
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "admin API internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error; see the control plane's log".to_owned(),
                )
            }
        };
        let body = json!({
            "error": {"message": message, "type": kind, "code": kind},
            "type": kind,
            "status_code": status.as_u16(),
        });
        (status, Json(body)).into_response()
    }
}

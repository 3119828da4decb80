//! What requests carry: a JSON extractor whose every rejection is a 400 in the API's error
//! shape, naming the field at fault (serde alone says "invalid type … at line 1 column 19"),
//! query and path extractors whose rejections take the same shape (axum's answer in plain
//! text), and the body conventions the handlers share.

use super::error::ApiError;
use crate::model::Budget;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// The query string, as axum's `Query`, refused in the API's error shape.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Path parameters, as axum's `Path`, refused in the API's error shape.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("the request body is empty; send a JSON object".into()));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut deserializer).map(ValidJson).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::BadRequest(format!("malformed JSON: {inner}"))
            } else if path == "." {
                ApiError::BadRequest(inner.to_string())
            } else {
                ApiError::BadRequest(format!("{path}: {inner}"))
            }
        })
    }
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, via `default`), so a
/// partial update can clear a field.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Bifrost's legacy singular `budget` joins `budgets` rather than being dropped (#5673).
/// Every budget gets an id when first stored.
pub fn merge_budgets(mut budgets: Vec<Budget>, legacy: Option<Budget>) -> Vec<Budget> {
    budgets.extend(legacy);
    crate::model::budget_ids(&mut budgets);
    budgets
}

/// One page of a list, in Bifrost's shape: `{<name>: [...], count, total_count, limit, offset}`.
pub fn page(
    name: &str,
    items: Vec<serde_json::Value>,
    total: u64,
    limit: Option<u32>,
    offset: u32,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "count": items.len(),
        "total_count": total,
        "limit": limit,
        "offset": offset,
    });
    body[name] = serde_json::Value::Array(items);
    body
}

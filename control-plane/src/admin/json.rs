//! A JSON body extractor whose every rejection is a 400 in the API's error shape, naming the
//! field at fault (serde alone says "invalid type … at line 1 column 19").

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

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

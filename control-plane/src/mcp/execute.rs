//! The hub's HTTP side, reached only through Envoy: `POST /v1/mcp/tool/execute`. The filter has
//! already authorised the call for the key and its headers and reserved its price; Envoy adds
//! the hub token from SDS, so a caller that bypasses Envoy is refused.

use super::Hub;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use warden_policy::Denial;
use warden_policy::mcp::{ExecuteFormat, ToolCall, ToolOutput};

/// The hub's router.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new().route("/v1/mcp/tool/execute", post(execute)).with_state(hub)
}

fn answer(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refuse(denial: &Denial) -> Response {
    answer(StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::BAD_GATEWAY), denial.body())
}

fn from_envoy(hub: &Hub, headers: &HeaderMap) -> bool {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = format!("Bearer {}", hub.endpoint.token);
    // Comparing hashes keeps the comparison time independent of the token's content.
    Sha256::digest(presented.as_bytes()) == Sha256::digest(expected.as_bytes())
}

async fn execute(State(hub): State<Arc<Hub>>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    if !from_envoy(&hub, &headers) {
        let reason = "the MCP hub answers only Envoy's Warden filter; send tool calls to the gateway";
        return answer(StatusCode::UNAUTHORIZED, Denial::BadRequest(reason.into()).body());
    }
    let call = ExecuteFormat::of_query(query.as_deref().unwrap_or_default())
        .and_then(|format| Ok((format, ToolCall::parse(format, &body)?)));
    let (format, call) = match call {
        Ok(parsed) => parsed,
        Err(denial) => return refuse(&denial),
    };
    let Some((client, tool)) = call.split() else { return refuse(&Denial::ToolUnknown(call.name.clone())) };
    match hub.call(client, tool, call.arguments.clone()).await {
        Ok(result) => {
            let body = ToolOutput::of_result(&result).body(format, &call);
            answer(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(denial) => refuse(&denial),
    }
}

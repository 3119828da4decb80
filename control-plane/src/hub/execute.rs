//! `POST /v1/mcp/tool/execute`. The filter has already authorised the call for the key and its
//! headers and reserved its price.

use super::Hub;
use crate::codemode::Gateway;
use crate::gateway::include_headers;
use crate::mcp::records::Caller;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use warden_policy::Denial;
use warden_policy::codemode::is_meta;
use warden_policy::mcp::{AGENT_KEY_HEADER, AGENT_STEP_HEADER, ExecuteFormat, ToolCall, ToolOutput};

/// How a Code Mode program reaches the gateway as its caller: the key the filter handed over
/// (for `executeToolCode` only), the caller's include headers, and whether agent mode runs it.
pub fn gateway_of(headers: &HeaderMap) -> Option<Gateway> {
    let secret = headers.get(AGENT_KEY_HEADER)?.to_str().ok()?.to_owned();
    let unattended = headers.contains_key(AGENT_STEP_HEADER);
    Some(Gateway { secret, include: include_headers(headers), unattended })
}

fn answer(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refuse(denial: &Denial) -> Response {
    answer(StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::BAD_GATEWAY), denial.body())
}

pub(super) async fn execute(
    State(hub): State<Arc<Hub>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = ExecuteFormat::of_query(query.as_deref().unwrap_or_default())
        .and_then(|format| Ok((format, ToolCall::parse(format, &body)?)));
    let (format, call) = match call {
        Ok(parsed) => parsed,
        Err(denial) => return refuse(&denial),
    };
    if is_meta(&call.name) {
        let Some(caller) = Caller::of(&headers, "", hub.cache()) else { return refuse(&Denial::KeyNotFound) };
        return match hub.code_mode.call(&caller, gateway_of(&headers), &call.name, &call.arguments).await {
            Ok((content, is_error)) => {
                let body = ToolOutput { content, is_error, structured: None }.body(format, &call);
                answer(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
            }
            Err(denial) => refuse(&denial),
        };
    }
    let Some((client, tool)) = call.split() else { return refuse(&Denial::ToolUnknown(call.name.clone())) };
    match hub.connections.call(client, tool, call.arguments.clone()).await {
        Ok(result) => {
            let mut output = ToolOutput::of_result(&result);
            if !ExecuteFormat::wants_structured(query.as_deref().unwrap_or_default()) {
                output.structured = None;
            }
            let body = output.body(format, &call);
            answer(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(denial) => refuse(&denial),
    }
}

#[cfg(test)]
mod tests {
    use super::super::router;
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn post(hub: Arc<Hub>, authorization: Option<String>, query: &str, body: &str) -> (StatusCode, String) {
        let mut request = Request::post(format!("/v1/mcp/tool/execute{query}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response =
            router(hub, Vec::new()).oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn only_envoy_with_the_token_gets_through() {
        let hub = Arc::new(Hub::new(Arc::default(), "127.0.0.1:1".into(), "http://127.0.0.1:1"));
        let call = r#"{"id":"c","type":"function","function":{"name":"fs-read","arguments":"{}"}}"#;
        let (status, body) = post(hub.clone(), None, "", call).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _) = post(hub.clone(), Some("Bearer wdn-hub-guess".into()), "", call).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let token = Some(format!("Bearer {}", hub.endpoint.token));
        // With the token: a client the hub does not have is a clear 502, bad input a 400.
        let (status, body) = post(hub.clone(), token.clone(), "?format=chat", call).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("mcp_server_unavailable") && body.contains("'fs'"), "{body}");
        let (status, body) = post(hub.clone(), token.clone(), "?format=xml", call).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = post(hub, token, "", "{").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

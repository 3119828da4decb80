//! `warden mock-provider`: an OpenAI-compatible upstream for demos, tests and benchmarks, so
//! Warden works without a real API key.
//!
//! - `POST /v1/chat/completions`: JSON, or SSE when `stream: true` (with a final usage chunk
//!   when `stream_options.include_usage` is set). Token usage is deterministic: prompt tokens =
//!   ⌈characters of all message contents / 4⌉, completion tokens = words of the reply.
//! - `POST /v1/responses` (JSON, or events ending in `response.completed` with the usage),
//!   `POST /v1/embeddings`, `GET /v1/models`.
//! - Scripting for tests: `POST /mock/script` queues replies (content, `tool_calls`, an error
//!   status, a delay) served in order before the default reply; `GET /mock/requests` lists what reached
//!   the upstream (path, headers, body) so tests can see what Envoy forwarded.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Models the mock answers for; anything else gets OpenAI's 404 `model_not_found`.
pub const MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "claude-3-5-sonnet-latest",
    "claude-3-5-haiku-latest",
    "gemini-2.0-flash",
    "text-embedding-3-small",
];

/// How many recent requests `GET /mock/requests` keeps.
const RECORDED: usize = 100;

#[derive(Debug, clap::Args)]
pub struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,
    /// Delay before every answer, to imitate a provider's latency.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

/// A scripted reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedReply {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Value>,
    /// Answer with this HTTP status and an OpenAI-style error instead.
    #[serde(default)]
    pub status: Option<u16>,
    /// Hold the answer this long (a slow provider, requests in flight).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

#[derive(Default)]
struct Mock {
    latency: Duration,
    script: Mutex<VecDeque<ScriptedReply>>,
    seen: Mutex<VecDeque<Value>>,
    /// Every request since the last clear, beyond the recorded ones too.
    seen_total: std::sync::atomic::AtomicU64,
}

type Shared = Arc<Mock>;

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %args.addr, "mock provider serving");
    axum::serve(listener, router(Duration::from_millis(args.latency_ms))).await?;
    Ok(())
}

pub fn router(latency: Duration) -> Router {
    let state = Arc::new(Mock { latency, ..Default::default() });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/mock/script", post(script))
        .route("/mock/requests", get(requests).delete(clear_requests))
        .with_state(state)
}

fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    (status, Json(json!({"error": {"message": message, "type": kind, "code": code, "param": null}}))).into_response()
}

/// Records the request and parses its body; `Err` is the answer to send instead.
async fn receive(mock: &Mock, path: &str, headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    let header_map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    {
        let mut seen = mock.seen.lock().unwrap_or_else(|p| p.into_inner());
        mock.seen_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if seen.len() == RECORDED {
            seen.pop_front();
        }
        seen.push_back(json!({
            "path": path,
            "headers": header_map,
            "body": parsed.as_ref().ok().cloned().unwrap_or_else(|| Value::String(String::from_utf8_lossy(body).into_owned())),
        }));
    }
    if !mock.latency.is_zero() {
        tokio::time::sleep(mock.latency).await;
    }
    let body = parsed.map_err(|e| {
        error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}"), "invalid_request_error", "invalid_json")
    })?;
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    if !MODELS.contains(&model) {
        let message = format!("The model `{model}` does not exist or you do not have access to it.");
        return Err(error(StatusCode::NOT_FOUND, &message, "invalid_request_error", "model_not_found"));
    }
    Ok(body)
}

/// ⌈characters / 4⌉ over every message's text content.
fn prompt_tokens(body: &Value) -> u64 {
    let chars: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .map(|m| match m.get("content") {
                    Some(Value::String(s)) => s.chars().count(),
                    Some(other) => other.to_string().chars().count(),
                    None => 0,
                })
                .sum()
        })
        .unwrap_or(0);
    (chars as u64).div_ceil(4).max(1)
}

async fn chat(State(mock): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match receive(&mock, "/v1/chat/completions", &headers, &body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let scripted = mock.script.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    let reply = scripted.unwrap_or_default();
    if let Some(ms) = reply.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = reply.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "scripted upstream error", "api_error", "scripted");
    }
    let content = match (&reply.content, &reply.tool_calls) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(format!("Hello from the Warden mock provider ({model}).")),
    };
    let prompt = prompt_tokens(&body);
    let completion = content.as_deref().map_or(1, |c| c.split_whitespace().count() as u64);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let finish = if reply.tool_calls.is_some() { "tool_calls" } else { "stop" };
    let id = format!("chatcmpl-mock-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let chunk = |delta: Value, finish: Option<&str>| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        if let Some(text) = &content {
            let words: Vec<&str> = text.split_inclusive(' ').collect();
            events.extend(words.iter().map(|w| chunk(json!({"content": w}), None)));
        }
        if let Some(calls) = &reply.tool_calls {
            events.push(chunk(json!({"tool_calls": with_indexes(calls)}), None));
        }
        events.push(chunk(json!({}), Some(finish)));
        if include_usage {
            events.push(json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [], "usage": usage}));
        }
        let stream = futures::stream::iter(
            events
                .into_iter()
                .map(|e| Event::default().data(e.to_string()))
                .chain(std::iter::once(Event::default().data("[DONE]")))
                .map(Ok::<_, Infallible>),
        );
        return Sse::new(stream).into_response();
    }
    let mut message = json!({"role": "assistant", "content": content});
    if let Some(calls) = reply.tool_calls {
        message["tool_calls"] = calls;
    }
    Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }))
    .into_response()
}

/// Streamed tool calls carry an `index` each.
fn with_indexes(calls: &Value) -> Value {
    match calls.as_array() {
        Some(list) => Value::Array(
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut c = c.clone();
                    c["index"] = json!(i);
                    c
                })
                .collect(),
        ),
        None => calls.clone(),
    }
}

async fn embeddings(State(mock): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match receive(&mock, "/v1/embeddings", &headers, &body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or_default().to_owned()).collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "'input' must be a string or an array of strings",
                "invalid_request_error",
                "invalid_input",
            );
        }
    };
    let tokens: u64 = inputs.iter().map(|i| (i.chars().count() as u64).div_ceil(4).max(1)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let seed = text.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let vector: Vec<f64> = (0..8).map(|d| f64::from(seed.rotate_left(d * 4) % 1000) / 1000.0).collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    Json(json!({"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

/// The responses API: `input` as a string or a list of messages; JSON, or the event stream
/// ending in `response.completed`, which carries the usage.
async fn responses(State(mock): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match receive(&mock, "/v1/responses", &headers, &body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let chars = match &body["input"] {
        Value::String(s) => s.chars().count(),
        other => other.to_string().chars().count(),
    };
    let input = (chars as u64).div_ceil(4).max(1);
    let text = format!("Hello from the Warden mock provider ({model}).");
    let output = text.split_whitespace().count() as u64;
    let id = format!("resp_mock_{}", uuid::Uuid::new_v4().simple());
    let usage = json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output});
    let completed = json!({"id": id, "object": "response", "status": "completed", "model": model,
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}],
        "usage": usage});
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let events = [
            ("response.output_text.delta", json!({"type": "response.output_text.delta", "delta": text})),
            ("response.completed", json!({"type": "response.completed", "response": completed})),
        ];
        let stream = futures::stream::iter(
            events
                .into_iter()
                .map(|(name, data)| Ok::<_, Infallible>(Event::default().event(name).data(data.to_string()))),
        );
        return Sse::new(stream).into_response();
    }
    Json(completed).into_response()
}

async fn models() -> Json<Value> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "warden-mock"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn script(State(mock): State<Shared>, Json(replies): Json<Vec<ScriptedReply>>) -> StatusCode {
    mock.script.lock().unwrap_or_else(|p| p.into_inner()).extend(replies);
    StatusCode::NO_CONTENT
}

/// The latest requests; the count of all of them in `x-mock-requests-total`.
async fn requests(State(mock): State<Shared>) -> impl IntoResponse {
    let seen = mock.seen.lock().unwrap_or_else(|p| p.into_inner());
    let total = mock.seen_total.load(std::sync::atomic::Ordering::Relaxed);
    ([("x-mock-requests-total", total.to_string())], Json(Value::Array(seen.iter().cloned().collect())))
}

async fn clear_requests(State(mock): State<Shared>) -> StatusCode {
    let mut seen = mock.seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.clear();
    mock.seen_total.store(0, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, String) {
        let req =
            Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        (status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn usage_is_deterministic_and_unknown_models_are_404() {
        let app = router(Duration::ZERO);
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "12345678"}]});
        let (status, text) = post(&app, "/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::OK);
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["usage"], json!({"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}));
        let (status, text) = post(&app, "/v1/chat/completions", json!({"model": "gpt-9", "messages": []})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(text.contains("model_not_found"));
    }

    #[tokio::test]
    async fn scripted_tool_calls_and_errors_come_first_in_order() {
        let app = router(Duration::ZERO);
        let calls = json!([{"id": "call_1", "type": "function", "function": {"name": "fs-read", "arguments": "{}"}}]);
        let script = json!([{"tool_calls": calls}, {"status": 503}]);
        let req = Request::post("/mock/script")
            .header("content-type", "application/json")
            .body(Body::from(script.to_string()))
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::NO_CONTENT);
        let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        let (_, text) = post(&app, "/v1/chat/completions", chat.clone()).await;
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(reply["choices"][0]["message"]["tool_calls"], calls);
        assert_eq!(post(&app, "/v1/chat/completions", chat.clone()).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(post(&app, "/v1/chat/completions", chat).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn streams_end_with_a_usage_chunk_only_when_asked() {
        let app = router(Duration::ZERO);
        let chat = |usage: bool| {
            json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": usage},
                   "messages": [{"role": "user", "content": "hi"}]})
        };
        let (_, with) = post(&app, "/v1/chat/completions", chat(true)).await;
        let events: Vec<&str> = with.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let usage: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], 8);
        assert_eq!(usage["choices"], json!([]));
        let (_, without) = post(&app, "/v1/chat/completions", chat(false)).await;
        assert!(!without.contains("\"usage\""));
    }
}

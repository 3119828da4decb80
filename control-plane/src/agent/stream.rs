//! Agent mode for `stream: true` callers: an SSE stream of `chat.completion.chunk`s. While tools
//! run, chunks with no choices carry a `warden_agent` object (`round`, `tool`, `tool_call_id`,
//! `status`: `running`, then `ok`, `error` or `timeout`), which OpenAI SDKs pass over. The final
//! answer follows as role/content, tool-call and finish chunks, then a usage chunk (usage summed
//! across steps, with `warden_agent.steps`), then `[DONE]`. A failed step ends the stream with
//! an `error` event carrying the gateway's refusal.

use super::{Failed, Progress};
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::future::Future;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub fn respond<F>(mut progress: mpsc::Receiver<Progress>, run: F) -> Response
where
    F: Future<Output = Result<(Value, u32), Failed>> + Send + 'static,
{
    let (events, body) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let id = format!("chatcmpl-agent-{}", uuid::Uuid::new_v4().simple());
        let created = chrono::Utc::now().timestamp();
        let chunk = |extra: Value| {
            let mut chunk =
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": "", "choices": []});
            if let (Value::Object(c), Value::Object(e)) = (&mut chunk, extra) {
                c.extend(e);
            }
            event(&chunk)
        };
        let report = |p: Progress| {
            chunk(
                json!({"warden_agent": {"round": p.round, "tool": p.tool, "tool_call_id": p.tool_call_id, "status": p.status}}),
            )
        };
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                biased;
                // A caller that went away stops the loop: no more steps are spent for it.
                () = events.closed() => return,
                Some(p) = progress.recv() => {
                    if events.send(report(p)).await.is_err() {
                        return;
                    }
                }
                outcome = &mut run => break outcome,
            }
        };
        let mut frames: Vec<Bytes> = std::iter::from_fn(|| progress.try_recv().ok()).map(report).collect();
        frames.extend(match outcome {
            Ok((answer, steps)) => answer_chunks(&answer, steps, &chunk),
            Err(failed) => vec![event(&failed.body)],
        });
        for frame in frames.into_iter().chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n"))) {
            if events.send(frame).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(body).map(Ok::<Bytes, std::convert::Infallible>));
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        [("x-accel-buffering", "no")],
        body,
    )
        .into_response()
}

fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The final `chat.completion` as chunks.
fn answer_chunks(answer: &Value, steps: u32, chunk: &impl Fn(Value) -> Bytes) -> Vec<Bytes> {
    let choice = &answer["choices"][0];
    let message = &choice["message"];
    let mut frames = vec![chunk(json!({
        "model": answer["model"],
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": message["content"]}, "finish_reason": null}],
    }))];
    if let Some(calls) = message["tool_calls"].as_array().filter(|c| !c.is_empty()) {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"index": i, "id": c["id"], "type": "function", "function": c["function"]}))
            .collect();
        frames.push(chunk(json!({
            "model": answer["model"],
            "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": null}],
        })));
    }
    frames.push(chunk(json!({
        "model": answer["model"],
        "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
    })));
    frames.push(chunk(json!({"model": answer["model"], "usage": answer["usage"], "warden_agent": {"steps": steps}})));
    frames
}

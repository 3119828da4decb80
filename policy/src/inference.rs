//! The OpenAI-compatible inference API as the filter sees it: which endpoint a request is for,
//! what its body asks for, how the body is rewritten for the provider, and the usage a
//! response reports (JSON or server-sent events).

use crate::Denial;
use crate::pricing::Usage;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The endpoints Warden governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions` (legacy completions)
    Completions,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models`: answered by the filter with what the key may use.
    Models,
    /// `POST /v1/mcp/tool/execute`: one MCP tool call, executed by the hub.
    ToolExecute,
    /// `/mcp` and `/mcp/<slug>` (`POST`, `GET`, `DELETE`): Warden as an MCP server, served by
    /// the hub.
    Mcp,
}

impl Endpoint {
    /// The endpoint of a method and path (query string ignored); `None` for anything else.
    pub fn of(method: &[u8], path: &[u8]) -> Option<Endpoint> {
        let path = path.split(|b| *b == b'?').next().unwrap_or_default();
        let path = path.strip_suffix(b"/").unwrap_or(path);
        match (method, path) {
            (b"POST", b"/v1/chat/completions") => Some(Endpoint::ChatCompletions),
            (b"POST", b"/v1/completions") => Some(Endpoint::Completions),
            (b"POST", b"/v1/responses") => Some(Endpoint::Responses),
            (b"POST", b"/v1/embeddings") => Some(Endpoint::Embeddings),
            (b"GET", b"/v1/models") => Some(Endpoint::Models),
            (b"POST", b"/v1/mcp/tool/execute") => Some(Endpoint::ToolExecute),
            (b"POST" | b"GET" | b"DELETE", _) if crate::rpc::McpScope::of(path).is_some() => Some(Endpoint::Mcp),
            _ => None,
        }
    }

    /// The path below `/v1`, to put under a provider's base path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Responses => "/responses",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Models => "/models",
            Endpoint::ToolExecute => "/mcp/tool/execute",
            Endpoint::Mcp => "/mcp",
        }
    }

    /// The shape in which MCP tools are injected into this endpoint's bodies, if they are.
    pub fn tool_shape(self) -> Option<crate::mcp::ToolShape> {
        match self {
            Endpoint::ChatCompletions => Some(crate::mcp::ToolShape::Chat),
            Endpoint::Responses => Some(crate::mcp::ToolShape::Responses),
            _ => None,
        }
    }

    /// Whether a streamed response reports usage only when asked (`stream_options`).
    fn usage_on_request(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }
}

/// An inference request body: the few fields Warden reads, and the bytes as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceBody<'b> {
    bytes: &'b [u8],
    /// The `model` as sent.
    pub model: String,
    /// Whether the response will be a stream of server-sent events.
    pub stream: bool,
    /// Whether the client asked for the usage chunk itself (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// The most output tokens the client allows (`max_tokens`, `max_completion_tokens` or
    /// `max_output_tokens`).
    pub max_output_tokens: Option<u64>,
    /// How many answers it asks for (`n`): each may be that long. 1 when absent or unreadable.
    pub choices: u64,
}

/// The most answers one request is counted for (`n`), whatever it asks.
const MAX_CHOICES: u64 = 128;

/// The fields Warden reads. Everything else is skipped without being built, so reading a large
/// prompt costs a scan, not a tree of allocations.
#[derive(Deserialize)]
struct Peek {
    model: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_output_tokens: Option<Value>,
    n: Option<Value>,
}

impl<'b> InferenceBody<'b> {
    /// Reads a request body; refuses what is not a JSON object with a string `model`.
    pub fn parse(bytes: &'b [u8]) -> Result<InferenceBody<'b>, Denial> {
        let peek: Peek = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Denial::BadRequest("the request body must be a JSON object".into()),
            _ => Denial::BadRequest(format!("the request body is not valid JSON: {e}")),
        })?;
        let model = match peek.model {
            Some(Value::String(m)) if !m.trim().is_empty() => m,
            Some(_) => return Err(Denial::BadRequest("'model' must be a non-empty string".into())),
            None => return Err(Denial::BadRequest("the request body has no 'model'".into())),
        };
        let stream = peek.stream.as_ref().and_then(Value::as_bool).unwrap_or(false);
        let client_wants_usage =
            peek.stream_options.as_ref().and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let max_output_tokens = [&peek.max_completion_tokens, &peek.max_tokens, &peek.max_output_tokens]
            .into_iter()
            .find_map(|v| v.as_ref().and_then(Value::as_u64));
        let choices = peek.n.as_ref().and_then(Value::as_u64).map_or(1, |n| n.clamp(1, MAX_CHOICES));
        Ok(InferenceBody { bytes, model, stream, client_wants_usage, max_output_tokens, choices })
    }

    /// The body to send upstream, if it must change: `model` renamed for the provider,
    /// `stream_options.include_usage` added to streams so their tokens can be counted, and the
    /// MCP `tools` the request may use appended. `None` leaves the client's bytes untouched.
    /// A body that must change but cannot be read whole (nested over 128 levels, a lone
    /// surrogate, bytes that are not UTF-8) is refused: unchanged it would not be governed.
    pub fn rewrite(
        &self,
        endpoint: Endpoint,
        upstream_model: &str,
        tools: Vec<Value>,
    ) -> Result<Option<Vec<u8>>, Denial> {
        let rename = upstream_model != self.model;
        let ask_usage = self.stream && endpoint.usage_on_request() && !self.client_wants_usage;
        if !rename && !ask_usage && tools.is_empty() {
            return Ok(None);
        }
        let mut body: Map<String, Value> = serde_json::from_slice(self.bytes)
            .map_err(|e| Denial::BadRequest(format!("the request body cannot be read whole: {e}")))?;
        let injected = crate::mcp::inject(&mut body, tools);
        if !rename && !ask_usage && !injected {
            return Ok(None);
        }
        if rename {
            body.insert("model".into(), Value::String(upstream_model.to_owned()));
        }
        if ask_usage {
            let options = body.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(o) = options {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        serde_json::to_vec(&body)
            .map(Some)
            .map_err(|e| Denial::BadRequest(format!("the request body cannot be rewritten: {e}")))
    }

    /// The usage to reserve a budget for: the prompt estimated from the body's size plus
    /// `added_bytes` (the tools Warden injects), and the client's output cap (or
    /// `default_output` when it sets none).
    pub fn estimated_usage(&self, default_output: u64, added_bytes: usize) -> crate::pricing::Usage {
        crate::pricing::Usage {
            input_tokens: crate::pricing::estimate_prompt_tokens(self.bytes.len() + added_bytes),
            cached_input_tokens: 0,
            output_tokens: self.max_output_tokens.unwrap_or(default_output).saturating_mul(self.choices),
        }
    }

    /// Whether the response's usage chunk is Warden's addition, to be hidden from the client.
    pub fn hide_usage_chunk(&self, endpoint: Endpoint) -> bool {
        self.stream && endpoint.usage_on_request() && !self.client_wants_usage
    }
}

/// A `usage` object as providers send it (chat, completions, embeddings or responses shape),
/// read field by field: a count that is not a whole number reads as absent.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    prompt_tokens: Option<Value>,
    input_tokens: Option<Value>,
    completion_tokens: Option<Value>,
    output_tokens: Option<Value>,
    total_tokens: Option<Value>,
    prompt_tokens_details: Option<WireDetails>,
    input_tokens_details: Option<WireDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDetails {
    cached_tokens: Option<Value>,
}

impl WireUsage {
    /// The tokens it reports, if it reports any.
    fn tokens(&self) -> Option<Usage> {
        let count = |v: &Option<Value>| v.as_ref().and_then(Value::as_u64);
        let input = count(&self.prompt_tokens).or_else(|| count(&self.input_tokens));
        let output = count(&self.completion_tokens).or_else(|| count(&self.output_tokens));
        let total = count(&self.total_tokens);
        if input.is_none() && output.is_none() && total.is_none() {
            return None;
        }
        let cached = [&self.prompt_tokens_details, &self.input_tokens_details]
            .iter()
            .find_map(|d| count(&d.as_ref()?.cached_tokens))
            .unwrap_or(0);
        let input = input.unwrap_or(0);
        // A total without a split (embeddings report prompt and total only) counts as input.
        let output = output.unwrap_or_else(|| total.unwrap_or(0).saturating_sub(input));
        Some(Usage { input_tokens: input, cached_input_tokens: cached, output_tokens: output })
    }
}

/// The tokens of a `usage` value, if it is an object that reports any.
fn usage_of(usage: &Value) -> Option<Usage> {
    WireUsage::deserialize(usage).ok()?.tokens()
}

/// The tokens a JSON response body reports, if it reports any.
///
/// Providers put `usage` at the end of the answer, so it is found from the tail: the last
/// `"usage":` key, and only the value after it is parsed. The body may be just the answer's
/// last [`USAGE_TAIL`] bytes. Inside a JSON string a quote is escaped, so the bytes `"usage"`
/// followed by a colon are always a key (without the colon, a value such as `"type":"usage"`).
pub fn json_usage(body: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let mut end = body.len();
    while let Some(at) = body[..end].windows(KEY.len()).rposition(|w| w == KEY) {
        end = at;
        let Some(rest) = body[at + KEY.len()..].trim_ascii_start().strip_prefix(b":") else { continue };
        let usage = serde_json::Deserializer::from_slice(rest).into_iter::<WireUsage>().next()?.ok()?;
        return usage.tokens();
    }
    None
}

/// How much of a JSON answer's end is kept to find its usage (see [`json_usage`]).
pub const USAGE_TAIL: usize = 16 << 10;

/// Reads a stream of server-sent events chunk by chunk as they pass: finds the event that
/// reports usage (a chat chunk with `usage`, or the responses API's `response.completed`),
/// and drops Warden's own usage chunk when the client did not ask for it. An event split
/// across chunks is carried over to the next one.
#[derive(Debug, Default)]
pub struct SseUsage {
    pending: Vec<u8>,
    hide_usage_chunk: bool,
    /// The usage reported so far (the last report wins).
    pub usage: Option<Usage>,
}

impl SseUsage {
    /// A reader; `hide_usage_chunk` from [`InferenceBody::hide_usage_chunk`].
    pub fn new(hide_usage_chunk: bool) -> SseUsage {
        SseUsage { hide_usage_chunk, ..SseUsage::default() }
    }

    /// Reads one chunk. Returns the bytes to send in its place when they differ (a usage chunk
    /// was dropped, or an event was held back until it is complete); `None` to pass it as is.
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        if !self.hide_usage_chunk {
            // Only scanning: the chunk passes as is; keep the incomplete tail for the next.
            self.pending.extend_from_slice(chunk);
            let complete = last_event_end(&self.pending).unwrap_or(0);
            let events: Vec<u8> = self.pending.drain(..complete).collect();
            self.scan(&events);
            if end_of_stream {
                let rest = std::mem::take(&mut self.pending);
                self.scan(&rest);
            }
            return None;
        }
        self.pending.extend_from_slice(chunk);
        let complete = if end_of_stream { self.pending.len() } else { last_event_end(&self.pending).unwrap_or(0) };
        let events: Vec<u8> = self.pending.drain(..complete).collect();
        let mut out = Vec::with_capacity(events.len());
        for event in split_events(&events) {
            if !self.is_usage_only(event) {
                out.extend_from_slice(event);
            }
        }
        (out.as_slice() != chunk).then_some(out)
    }

    fn scan(&mut self, events: &[u8]) {
        for event in split_events(events) {
            if let Some(tokens) = event_usage(event).and_then(|(_, t)| t) {
                self.usage = Some(tokens);
            }
        }
    }

    /// Records the event's usage; true if it is a chunk that carries only usage.
    fn is_usage_only(&mut self, event: &[u8]) -> bool {
        match event_usage(event) {
            Some((usage_only, tokens)) => {
                if let Some(t) = tokens {
                    self.usage = Some(t);
                }
                usage_only
            }
            None => false,
        }
    }
}

/// Where the last complete event of `buf` ends (after its blank line).
fn last_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).rposition(|w| w == b"\r\n\r\n").map(|i| i + 4);
    lf.max(crlf)
}

/// Splits complete events, each with its terminating blank line.
fn split_events(buf: &[u8]) -> Vec<&[u8]> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < buf.len() {
        let end = if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else {
            None
        };
        match end {
            Some(e) => {
                events.push(&buf[start..e]);
                start = e;
                i = e;
            }
            None => i += 1,
        }
    }
    if start < buf.len() {
        events.push(&buf[start..]);
    }
    events
}

/// If an event's data reports usage: whether it carries nothing else (no choices), and the
/// tokens. `None` for events without usage (the common case, decided without parsing JSON).
fn event_usage(event: &[u8]) -> Option<(bool, Option<Usage>)> {
    if !event.windows(7).any(|w| w == b"\"usage\"") {
        return None;
    }
    let data: Vec<u8> = event
        .split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .flat_map(|d| d.trim_ascii().iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    let value: Value = serde_json::from_slice(&data).ok()?;
    let usage = value.get("usage").or_else(|| value.get("response").and_then(|r| r.get("usage")))?;
    if usage.is_null() {
        return None;
    }
    let usage_only = value.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
    Some((usage_only, usage_of(usage)))
}

#[cfg(test)]
#[path = "inference_tests.rs"]
mod tests;

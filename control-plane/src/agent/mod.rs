//! Agent mode (Bifrost's, streaming added; docs/agent-mode.md): a chat whose key may auto-execute
//! tools comes here from the filter. The loop calls the model through the gateway as the caller
//! (each step is governed, limited and billed like any chat of that key), runs the tool calls the
//! key may auto-execute in parallel (each through the gateway's `/v1/mcp/tool/execute`, priced and
//! audited like a direct call), appends their results and calls the model again, until the model
//! answers without tool calls, asks for a tool that is not auto-executable, or the depth runs out.

mod stream;

use crate::codemode;
use crate::gateway::{GatewayClient, include_headers};
use crate::mcp::records::{Caller, Published};
use crate::model::ToolManagerConfig;
use crate::xds::Cache;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde_json::{Map, Value, json};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use warden_policy::Denial;
use warden_policy::codemode::{EXECUTE_TOOL_CODE, calls_are_static, is_meta, static_calls};
use warden_policy::mcp::{self, AGENT_KEY_HEADER, AGENT_STEP_HEADER};
use warden_policy::records::Records;

/// How many model calls the answer took.
const STEPS_HEADER: &str = "x-warden-agent-steps";
/// The longest one model step may take (the gateway's route timeout).
const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a tool call may take when the tool manager's timeout is unreadable.
const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Agent mode's part of the tool manager's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most rounds of tool execution in one chat.
    pub max_depth: u32,
    /// How long one tool call may take.
    pub tool_timeout: Duration,
}

impl From<&ToolManagerConfig> for Config {
    fn from(settings: &ToolManagerConfig) -> Config {
        Config {
            max_depth: settings.max_agent_depth,
            tool_timeout: settings.tool_timeout().unwrap_or(DEFAULT_TOOL_TIMEOUT),
        }
    }
}

/// Where agent mode sends its steps, what it judges with, and its settings.
pub struct Agent {
    gateway: GatewayClient,
    /// The published policy records.
    cache: Arc<Cache>,
    config: RwLock<Config>,
}

impl Agent {
    pub fn new(gateway: GatewayClient, cache: Arc<Cache>, config: Config) -> Agent {
        Agent { gateway, cache, config: RwLock::new(config) }
    }

    fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// A step's failure: the gateway's answer, passed on to the caller as it is.
struct Failed {
    status: StatusCode,
    body: Value,
}

impl Failed {
    fn of(denial: &Denial) -> Failed {
        let status = StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        Failed { status, body: serde_json::from_slice(&denial.body()).unwrap_or(Value::Null) }
    }
}

/// What agent mode tells a streaming caller while tools run (see [`stream`]).
#[derive(Debug, Clone)]
pub struct Progress {
    pub round: u32,
    pub tool: String,
    pub tool_call_id: String,
    /// `running`, then `ok`, `error` or `timeout`.
    pub status: &'static str,
}

/// One agent-mode chat.
struct Run {
    agent: Arc<Agent>,
    caller: Caller,
    secret: String,
    /// The caller's include headers, forwarded with every step.
    include: Vec<(&'static str, HeaderValue)>,
    config: Config,
    progress: Option<mpsc::Sender<Progress>>,
}

/// `POST /v1/agent/chat/completions`, routed here by the filter.
pub async fn chat(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(caller) = Caller::of(&headers, mcp::AGENT_PATH, &agent.cache) else {
        return refuse(&Denial::KeyNotFound);
    };
    let Some(secret) = headers.get(AGENT_KEY_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return refuse(&Denial::KeyRequired);
    };
    let mut request: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(o)) => o,
        _ => {
            return refuse(&Denial::BadRequest(
                "the request body must be a JSON object with 'model' and 'messages'".into(),
            ));
        }
    };
    let streaming = request.remove("stream").and_then(|v| v.as_bool()).unwrap_or(false);
    request.remove("stream_options");
    let include = include_headers(&headers);
    let config = agent.config();
    let mut run = Run { agent, caller, secret, include, config, progress: None };
    if !streaming {
        return match run.run(request).await {
            Ok((answer, steps)) => answered(StatusCode::OK, &answer, steps),
            Err(failed) => answered(failed.status, &failed.body, 0),
        };
    }
    let (progress, events) = mpsc::channel(64);
    run.progress = Some(progress);
    stream::respond(events, async move { run.run(request).await })
}

fn answered(status: StatusCode, body: &Value, steps: u32) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if steps > 0 {
        response.headers_mut().insert(STEPS_HEADER, HeaderValue::from(steps));
    }
    response
}

fn refuse(denial: &Denial) -> Response {
    let failed = Failed::of(denial);
    answered(failed.status, &failed.body, 0)
}

/// Token counts summed across steps.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    prompt: u64,
    completion: u64,
}

impl Usage {
    fn add(&mut self, usage: &Value) {
        self.prompt += usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
        self.completion += usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    }

    fn json(self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion,
               "total_tokens": self.prompt + self.completion})
    }
}

impl Run {
    /// Runs the loop; the final answer (usage summed) and how many model calls it took.
    async fn run(&mut self, mut request: Map<String, Value>) -> Result<(Value, u32), Failed> {
        let mut usage = Usage::default();
        let mut executed: Vec<Value> = Vec::new();
        let mut round = 0;
        loop {
            let mut answer = self.model(&request, round).await?;
            usage.add(&answer["usage"]);
            let message = answer["choices"][0]["message"].clone();
            let calls: Vec<Value> = message["tool_calls"].as_array().cloned().unwrap_or_default();
            let mixed = calls.iter().any(|c| !self.auto(c));
            if calls.is_empty() || mixed || round >= self.config.max_depth {
                // A batch with a call the caller must run is left whole to the caller.
                if mixed && !executed.is_empty() {
                    answer = summary(answer, &executed, calls);
                }
                answer["usage"] = usage.json();
                return Ok((answer, round + 1));
            }
            round += 1;
            let results = join_all(calls.iter().map(|call| self.execute(call, round))).await;
            let messages = request.entry("messages").or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(messages) = messages {
                messages.push(message);
                messages.extend(results.iter().cloned());
            }
            executed.extend(results);
        }
    }

    /// Whether a tool call is one this key may have run without asking.
    fn auto(&self, call: &Value) -> bool {
        let name = call["function"]["name"].as_str().unwrap_or_default();
        if is_meta(name) {
            return self.meta_auto(name, call);
        }
        let Some((client, tool)) = name.split_once(mcp::SEPARATOR) else { return false };
        let Some(client) = Published(&self.agent.cache).get::<mcp::McpClientRecord>(client) else { return false };
        client.tools.iter().any(|t| t.name == tool)
            && mcp::auto_executes(self.caller.key.grants(), &client, tool, &self.caller.include)
    }

    /// Code Mode's read-only meta-tools always run by themselves; a program only when every
    /// tool it calls, as far as can be seen without running it, does.
    fn meta_auto(&self, name: &str, call: &Value) -> bool {
        let servers = codemode::servers(&self.agent.cache, &self.caller);
        if servers.is_empty() {
            return false;
        }
        if name != EXECUTE_TOOL_CODE {
            return true;
        }
        let arguments: Value = call["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_else(|| call["function"]["arguments"].clone());
        let code = arguments["code"].as_str().unwrap_or_default();
        let names: Vec<&str> = servers.iter().map(|(s, _)| s.as_str()).collect();
        let records = Published(&self.agent.cache);
        calls_are_static(code, &names)
            && static_calls(code, &names).iter().all(|(server, tool)| {
                records.get::<mcp::McpClientRecord>(server).is_some_and(|client| {
                    mcp::auto_executes(self.caller.key.grants(), &client, tool, &self.caller.include)
                })
            })
    }

    fn post(&self, path: &str, step: u32) -> reqwest::RequestBuilder {
        self.agent.gateway.post(path, &self.secret, &self.include).header(AGENT_STEP_HEADER, step.to_string())
    }

    /// One model call through the gateway.
    async fn model(&self, request: &Map<String, Value>, round: u32) -> Result<Value, Failed> {
        let sent = self.post("/v1/chat/completions", round).json(request).timeout(STEP_TIMEOUT).send().await;
        let unreachable = |e: reqwest::Error| {
            tracing::warn!(error = %e, "agent mode could not reach the gateway");
            Failed::of(&Denial::ToolUnavailable("agent mode could not reach the gateway for a model step".into()))
        };
        let response = sent.map_err(unreachable)?;
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let body: Value = response.json().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(Failed { status, body });
        }
        Ok(body)
    }

    /// Runs one tool call through the gateway; its tool message, whatever happened (the model
    /// reads failures and may try otherwise).
    async fn execute(&self, call: &Value, round: u32) -> Value {
        let id = call["id"].as_str().unwrap_or_default().to_owned();
        let tool = call["function"]["name"].as_str().unwrap_or_default().to_owned();
        self.report(round, &tool, &id, "running").await;
        let mut timeout = self.config.tool_timeout;
        if tool == EXECUTE_TOOL_CODE {
            // A program gets the same budget in the sandbox; its own timeout answer should win.
            timeout += Duration::from_secs(5);
        }
        let sent = self.post("/v1/mcp/tool/execute?format=chat", round).json(call).timeout(timeout).send().await;
        let (status, content, is_error) = match sent {
            Err(e) if e.is_timeout() => {
                ("timeout", format!("MCP tool '{tool}' did not answer within {} ms", timeout.as_millis()), true)
            }
            Err(_) => ("error", format!("MCP tool '{tool}' could not be reached through the gateway"), true),
            Ok(response) => {
                let ok = response.status().is_success();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if ok {
                    let is_error = body["is_error"].as_bool().unwrap_or(false);
                    let content = body["content"].as_str().unwrap_or_default().to_owned();
                    (if is_error { "error" } else { "ok" }, content, is_error)
                } else {
                    let why = body["error"]["message"].as_str().unwrap_or("the tool call was refused").to_owned();
                    ("error", why, true)
                }
            }
        };
        self.report(round, &tool, &id, status).await;
        let mut message = json!({"role": "tool", "tool_call_id": id, "content": content});
        if is_error {
            message["is_error"] = Value::Bool(true);
        }
        message
    }

    async fn report(&self, round: u32, tool: &str, id: &str, status: &'static str) {
        if let Some(progress) = &self.progress {
            let event = Progress { round, tool: tool.to_owned(), tool_call_id: id.to_owned(), status };
            let _ = progress.send(event).await;
        }
    }
}

/// The contract's answer when the model asks for tools of both kinds after some have run: the
/// executed results as JSON in `content`, the pending calls in `tool_calls`, `finish_reason`
/// `stop`.
fn summary(mut answer: Value, executed: &[Value], pending: Vec<Value>) -> Value {
    let results: Vec<Value> = executed
        .iter()
        .map(|m| json!({"tool_call_id": m["tool_call_id"], "content": m["content"], "is_error": m.get("is_error").is_some()}))
        .collect();
    let choice = &mut answer["choices"][0];
    choice["message"]["content"] = Value::String(json!({"executed_tool_results": results}).to_string());
    choice["message"]["tool_calls"] = Value::Array(pending);
    choice["finish_reason"] = Value::String("stop".into());
    answer
}

//! A proxy-wasm host on wasmtime that loads the real filter `.wasm`, for deterministic tests of
//! what Envoy would do with it.
//!
//! [`Proxy`] is one Envoy process: its shared data (with CAS), its metrics (summed over VMs, as
//! Envoy does) and a clock the test controls. [`Vm`] is one worker's VM, created in Envoy's
//! order (`_initialize`, root context, `on_vm_start`, `on_configure`), with request headers,
//! local replies, gRPC streams and ticks. Envoy's quirks are simulated where Warden depends on
//! them: request headers are gone once `on_request_headers` has returned. Imports the filter
//! does not use trap, so a new hostcall shows up as a failing test, not a silent no-op.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::{Caller, Engine, Extern, Instance, Linker, Module, Store, TypedFunc};

/// proxy-wasm statuses.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const EMPTY: i32 = 7;
const CAS_MISMATCH: i32 = 8;

/// Buffer and map types of the ABI.
const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const PLUGIN_CONFIGURATION: i32 = 7;
const GRPC_RECEIVE_BUFFER: i32 = 5;
const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
/// Filter actions.
const CONTINUE: i32 = 0;

/// One Envoy process: what all its VMs share.
pub struct Proxy {
    engine: Engine,
    module: Module,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    data: Mutex<HashMap<String, (Vec<u8>, u32)>>,
    cas: AtomicU32,
    now_ms: AtomicU64,
    metrics: Mutex<BTreeMap<String, i64>>,
    /// Shared queues by name; a queue's id is its index + 1.
    queues: Mutex<Vec<(String, std::collections::VecDeque<Vec<u8>>)>>,
}

/// A local reply the filter sent.
#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A gRPC stream the filter opened.
#[derive(Debug, Clone)]
pub struct GrpcStream {
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub sent: Vec<Vec<u8>>,
    pub open: bool,
}

/// One HTTP exchange as Envoy drives it through the filter: the request, and the response the
/// upstream gives if the request gets there. Bodies are lists of chunks.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub request_body: Vec<Vec<u8>>,
    /// Trailers after the body: the last body chunk then does not end the stream.
    pub request_trailers: Vec<(String, Vec<u8>)>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<Vec<u8>>,
}

impl Exchange {
    /// A request with these headers and this body in one chunk.
    pub fn request(headers: &[(&str, &str)], body: &[u8]) -> Exchange {
        Exchange {
            request_headers: headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
            request_body: if body.is_empty() { Vec::new() } else { vec![body.to_vec()] },
            ..Exchange::default()
        }
    }

    /// The request ends with these trailers.
    pub fn with_trailers(mut self, trailers: &[(&str, &str)]) -> Exchange {
        self.request_trailers = trailers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
        self
    }

    /// The upstream's answer: status, content type and body chunks.
    pub fn respond(mut self, status: u16, content_type: &str, chunks: Vec<Vec<u8>>) -> Exchange {
        self.response_headers = vec![
            (":status".into(), status.to_string().into_bytes()),
            ("content-type".into(), content_type.as_bytes().to_vec()),
        ];
        self.response_body = chunks;
        self
    }
}

/// What became of one request.
#[derive(Debug)]
pub struct Outcome {
    /// The header phase's answer: 0 = Continue, 1 = Pause.
    pub action: i32,
    pub reply: Option<LocalReply>,
    /// The request headers as they went upstream.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The request body as it went upstream.
    pub body: Vec<u8>,
    /// Whether the request reached the upstream.
    pub forwarded: bool,
    /// The response headers and body as the client got them.
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<u8>,
    /// Foreign functions the filter called, by name.
    pub foreign_calls: Vec<String>,
    /// Wasm instructions each callback ran (wasmtime fuel), by export name.
    pub instructions: BTreeMap<String, u64>,
    /// Hostcalls the filter made, by import name.
    pub hostcalls: BTreeMap<String, u64>,
    /// Hostcalls that returned data: each one re-enters the VM to allocate its copy, the
    /// crossing that costs most on Envoy's V8.
    pub data_returns: u64,
    /// Header callbacks that stopped iteration: each one holds the stream in Envoy.
    pub pauses: u64,
}

impl Outcome {
    /// Wasm instructions over every callback of the exchange.
    pub fn total_instructions(&self) -> u64 {
        self.instructions.values().sum()
    }

    /// Hostcalls that returned no data.
    pub fn other_hostcalls(&self) -> u64 {
        self.hostcalls.values().sum::<u64>() - self.data_returns
    }

    /// Shared-queue enqueues: each one wakes the VM that drains the queue, on another thread.
    pub fn enqueues(&self) -> u64 {
        self.hostcalls.get("proxy_enqueue_shared_queue").copied().unwrap_or(0)
    }
}

fn find(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

impl Outcome {
    pub fn header(&self, name: &str) -> Option<String> {
        find(&self.headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        find(&self.response_headers, name)
    }

    /// The status the client got: the local reply's, or the upstream's.
    pub fn status(&self) -> u32 {
        match &self.reply {
            Some(r) => r.status,
            None => find(&self.response_headers, ":status").and_then(|s| s.parse().ok()).unwrap_or(0),
        }
    }

    /// The body the client got, as JSON.
    pub fn json(&self) -> serde_json::Value {
        match &self.reply {
            Some(r) => r.json(),
            None => serde_json::from_slice(&self.response_body).unwrap_or(serde_json::Value::Null),
        }
    }
}

pub struct VmState {
    shared: Arc<Shared>,
    plugin_config: Vec<u8>,
    properties: HashMap<String, Vec<u8>>,
    request_headers: Vec<(String, Vec<u8>)>,
    headers_readable: bool,
    request_body: Vec<u8>,
    response_headers: Vec<(String, Vec<u8>)>,
    response_headers_readable: bool,
    response_body: Vec<u8>,
    foreign_calls: Vec<String>,
    /// Wasm instructions run per callback since the exchange began.
    instructions: BTreeMap<String, u64>,
    /// Hostcalls made since the exchange began, by import name.
    hostcalls: BTreeMap<String, u64>,
    /// Of those, the ones that returned data.
    data_returns: u64,
    reply: Option<LocalReply>,
    streams: BTreeMap<u32, GrpcStream>,
    /// Unary gRPC calls the filter made, by token: (service/method, request message).
    calls: BTreeMap<u32, (String, Vec<u8>)>,
    next_token: u32,
    grpc_buffer: Vec<u8>,
    tick_ms: u32,
    metric_names: HashMap<u32, String>,
    pub logs: Vec<String>,
}

pub struct Vm {
    store: Store<VmState>,
    instance: Instance,
    root: u32,
    next_context: u32,
}

type Result<T> = wasmtime::Result<T>;

impl Proxy {
    pub fn load(path: &Path) -> Proxy {
        // Fuel counts the wasm instructions each callback runs: a deterministic profile of the
        // filter's hot path (see `Outcome::instructions`).
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        // Cranelift compiles each `.wasm` once per test process; every proxy shares the result.
        static COMPILED: Mutex<BTreeMap<PathBuf, (Engine, Module)>> = Mutex::new(BTreeMap::new());
        let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        let (engine, module) = compiled
            .entry(path.to_owned())
            .or_insert_with(|| {
                let engine = Engine::new(&config).unwrap_or_else(|e| panic!("wasmtime engine: {e}"));
                let module =
                    Module::from_file(&engine, path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
                (engine, module)
            })
            .clone();
        Proxy { engine, module, shared: Arc::default() }
    }

    pub fn set_now_ms(&self, ms: u64) {
        self.shared.now_ms.store(ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: u64) {
        self.shared.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.data.lock().unwrap().get(key).map(|(v, _)| v.clone())
    }

    /// Overwrites a shared-data value, as another VM (or a bug) might.
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        let cas = self.shared.cas.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.data.lock().unwrap().insert(key.to_owned(), (value.to_vec(), cas));
    }

    pub fn metric(&self, name: &str) -> i64 {
        self.shared.metrics.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// A new VM with `plugin_config`; `Err` if instantiation traps. The second value is what
    /// `on_configure` answered.
    pub fn vm(&self, plugin_config: &str) -> Result<(Vm, bool)> {
        let state = VmState {
            shared: self.shared.clone(),
            plugin_config: plugin_config.as_bytes().to_vec(),
            properties: HashMap::from([("xds\0node\0id".to_owned(), b"harness-node".to_vec())]),
            request_headers: Vec::new(),
            headers_readable: false,
            request_body: Vec::new(),
            response_headers: Vec::new(),
            response_headers_readable: false,
            response_body: Vec::new(),
            foreign_calls: Vec::new(),
            instructions: BTreeMap::new(),
            hostcalls: BTreeMap::new(),
            data_returns: 0,
            reply: None,
            streams: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_token: 1,
            grpc_buffer: Vec::new(),
            tick_ms: 0,
            metric_names: HashMap::new(),
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_fuel(u64::MAX)?;
        let mut linker = Linker::new(&self.engine);
        define_host(&mut linker)?;
        linker.define_unknown_imports_as_traps(&self.module)?;
        let instance = linker.instantiate(&mut store, &self.module)?;
        let mut vm = Vm { store, instance, root: 0, next_context: 1 };
        vm.call::<(), ()>("_initialize", ())?;
        let configured = vm.configure(plugin_config)?;
        Ok((vm, configured))
    }
}

impl Vm {
    fn call<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(&mut self, name: &str, params: P) -> Result<R> {
        let f: TypedFunc<P, R> = self.instance.get_typed_func(&mut self.store, name)?;
        let before = self.store.get_fuel()?;
        let result = f.call(&mut self.store, params);
        let used = before.saturating_sub(self.store.get_fuel()?);
        *self.store.data_mut().instructions.entry(name.to_owned()).or_default() += used;
        result
    }

    /// A new root context with `plugin_config`, as Envoy does for every configuration update.
    pub fn configure(&mut self, plugin_config: &str) -> Result<bool> {
        self.store.data_mut().plugin_config = plugin_config.as_bytes().to_vec();
        let root = self.next_context;
        self.next_context += 1;
        self.call::<(i32, i32), ()>("proxy_on_context_create", (root as i32, 0))?;
        let started: i32 = self.call("proxy_on_vm_start", (root as i32, 0))?;
        let configured: i32 = self.call("proxy_on_configure", (root as i32, plugin_config.len() as i32))?;
        self.root = root;
        Ok(started != 0 && configured != 0)
    }

    pub fn tick(&mut self) -> Result<()> {
        let root = self.root as i32;
        self.call("proxy_on_tick", root)
    }

    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_ms
    }

    /// Runs one request that has only headers.
    pub fn request(&mut self, headers: &[(&str, &[u8])]) -> Result<Outcome> {
        let request_headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
        self.exchange(Exchange { request_headers, ..Exchange::default() })
    }

    /// Runs one exchange through every phase, as Envoy does: request headers (readable until
    /// the filter lets them go), request body (buffered while the filter pauses), response
    /// headers and body (streamed chunk by chunk), then the log and the context's end.
    /// What a filter that lets the request go sends upstream: the body buffered so far, and the
    /// headers as they are now if they were still held.
    fn release_request(&mut self, body: &mut Vec<u8>, headers_sent: &mut Vec<(String, Vec<u8>)>) {
        body.extend(std::mem::take(&mut self.store.data_mut().request_body));
        if self.store.data().headers_readable {
            *headers_sent = self.store.data().request_headers.clone();
            self.store.data_mut().headers_readable = false;
        }
    }

    pub fn exchange(&mut self, exchange: Exchange) -> Result<Outcome> {
        let ctx = self.next_context as i32;
        self.next_context += 1;
        {
            let state = self.store.data_mut();
            state.request_headers = exchange.request_headers;
            state.headers_readable = true;
            state.reply = None;
            state.foreign_calls.clear();
            state.instructions.clear();
            state.hostcalls.clear();
            state.data_returns = 0;
        }
        self.call::<(i32, i32), ()>("proxy_on_context_create", (ctx, self.root as i32))?;
        let n = self.store.data().request_headers.len() as i32;
        let no_body = exchange.request_body.is_empty() as i32;
        let action: i32 = self.call("proxy_on_request_headers", (ctx, n, no_body))?;
        let mut pauses = u64::from(action != CONTINUE && self.store.data().reply.is_none());
        let mut forwarded = action == CONTINUE && self.store.data().reply.is_none();
        let mut headers_sent = self.store.data().request_headers.clone();
        let mut body = Vec::new();
        if action == CONTINUE {
            self.store.data_mut().headers_readable = false;
        }
        let chunks = exchange.request_body.len();
        let trailers = exchange.request_trailers;
        for (i, chunk) in exchange.request_body.into_iter().enumerate() {
            if self.store.data().reply.is_some() {
                break;
            }
            self.store.data_mut().request_body.extend(chunk);
            let size = self.store.data().request_body.len() as i32;
            let end = (i + 1 == chunks && trailers.is_empty()) as i32;
            let r: i32 = self.call("proxy_on_request_body", (ctx, size, end))?;
            if r == CONTINUE && self.store.data().reply.is_none() {
                self.release_request(&mut body, &mut headers_sent);
                forwarded = true;
            } else if end == 1 && self.store.data().reply.is_none() {
                wasmtime::bail!("the filter paused at the end of the request body: the request would hang");
            }
        }
        if !trailers.is_empty() && !forwarded && self.store.data().reply.is_none() {
            let n = trailers.len() as i32;
            let r: i32 = self.call("proxy_on_request_trailers", (ctx, n))?;
            if r == CONTINUE && self.store.data().reply.is_none() {
                self.release_request(&mut body, &mut headers_sent);
                forwarded = true;
            } else if self.store.data().reply.is_none() {
                wasmtime::bail!("the filter paused at the request's trailers: the request would hang");
            }
        } else if chunks == 0 && action != CONTINUE && self.store.data().reply.is_none() {
            wasmtime::bail!("the filter paused a request without a body: it would hang");
        }
        let reply = self.store.data_mut().reply.take();
        let forwarded = forwarded && reply.is_none();
        let mut response_body = Vec::new();
        if forwarded && !exchange.response_headers.is_empty() {
            let state = self.store.data_mut();
            state.response_headers = exchange.response_headers;
            state.response_headers_readable = true;
            let n = state.response_headers.len() as i32;
            let no_body = exchange.response_body.is_empty() as i32;
            let paused: i32 = self.call("proxy_on_response_headers", (ctx, n, no_body))?;
            pauses += u64::from(paused != CONTINUE);
            // Paused headers stay writable until the body lets them go (Envoy buffers it).
            self.store.data_mut().response_headers_readable = paused != CONTINUE;
            let chunks = exchange.response_body.len();
            for (i, chunk) in exchange.response_body.into_iter().enumerate() {
                self.store.data_mut().response_body.extend(chunk);
                let size = self.store.data().response_body.len() as i32;
                let end = i + 1 == chunks;
                let r: i32 = self.call("proxy_on_response_body", (ctx, size, end as i32))?;
                if r == CONTINUE {
                    response_body.extend(std::mem::take(&mut self.store.data_mut().response_body));
                    self.store.data_mut().response_headers_readable = false;
                } else if end {
                    wasmtime::bail!("the filter paused at the end of the response body: the response would hang");
                }
            }
            self.store.data_mut().response_headers_readable = false;
        }
        self.call::<i32, ()>("proxy_on_log", ctx)?;
        let _: i32 = self.call("proxy_on_done", ctx)?;
        self.call::<i32, ()>("proxy_on_delete", ctx)?;
        let state = self.store.data_mut();
        state.headers_readable = false;
        state.request_body.clear();
        Ok(Outcome {
            action,
            reply,
            headers: if forwarded { headers_sent } else { state.request_headers.clone() },
            body,
            forwarded,
            response_headers: std::mem::take(&mut state.response_headers),
            response_body,
            foreign_calls: state.foreign_calls.clone(),
            instructions: std::mem::take(&mut state.instructions),
            hostcalls: std::mem::take(&mut state.hostcalls),
            data_returns: std::mem::take(&mut state.data_returns),
            pauses,
        })
    }

    pub fn request_str(&mut self, headers: &[(&str, &str)]) -> Result<Outcome> {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        self.request(&raw)
    }

    pub fn streams(&self) -> &BTreeMap<u32, GrpcStream> {
        &self.store.data().streams
    }

    /// Unary gRPC calls made so far, by token: `service/method` and the request message.
    pub fn calls(&self) -> &BTreeMap<u32, (String, Vec<u8>)> {
        &self.store.data().calls
    }

    /// Answers a unary call: a message (status OK), or a gRPC status without one.
    pub fn answer_call(&mut self, token: u32, answer: std::result::Result<&[u8], u32>) -> Result<()> {
        match answer {
            Ok(message) => self.deliver(token, message),
            Err(status) => {
                self.call::<(i32, i32, i32), ()>("proxy_on_grpc_close", (self.root as i32, token as i32, status as i32))
            }
        }
    }

    pub fn open_stream(&self) -> Option<u32> {
        self.streams().iter().rev().find(|(_, s)| s.open).map(|(t, _)| *t)
    }

    /// Delivers a gRPC message on a stream, as Envoy does when the control plane sends one.
    pub fn deliver(&mut self, token: u32, message: &[u8]) -> Result<()> {
        self.store.data_mut().grpc_buffer = message.to_vec();
        self.call::<(i32, i32, i32), ()>(
            "proxy_on_grpc_receive",
            (self.root as i32, token as i32, message.len() as i32),
        )
    }

    /// Closes a stream from the server's side with a gRPC status.
    pub fn close_stream(&mut self, token: u32, status: u32) -> Result<()> {
        if let Some(s) = self.store.data_mut().streams.get_mut(&token) {
            s.open = false;
        }
        self.call::<(i32, i32, i32), ()>("proxy_on_grpc_close", (self.root as i32, token as i32, status as i32))
    }

    pub fn logs(&self) -> &[String] {
        &self.store.data().logs
    }

    /// Deletes the root context, as Envoy does when a VM's plugin goes away.
    pub fn shutdown(&mut self) -> Result<()> {
        let root = self.root as i32;
        let _: i32 = self.call("proxy_on_done", root)?;
        self.call("proxy_on_delete", root)
    }
}

// === the hostcalls ===

fn memory(caller: &mut Caller<'_, VmState>) -> Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => wasmtime::bail!("the module exports no memory"),
    }
}

fn read(caller: &mut Caller<'_, VmState>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0u8; len as u32 as usize];
    mem.read(&*caller, ptr as u32 as usize, &mut buf)?;
    Ok(buf)
}

fn read_string(caller: &mut Caller<'_, VmState>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8(read(caller, ptr, len)?)?)
}

fn write(caller: &mut Caller<'_, VmState>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    mem.write(&mut *caller, ptr as u32 as usize, bytes)?;
    Ok(())
}

/// Copies `data` into guest memory the guest allocates, and writes its address and size to the
/// two return pointers.
fn give(caller: &mut Caller<'_, VmState>, data: &[u8], ret_ptr: i32, ret_len: i32) -> Result<()> {
    let alloc = match caller.get_export("proxy_on_memory_allocate").or_else(|| caller.get_export("malloc")) {
        Some(Extern::Func(f)) => f.typed::<i32, i32>(&*caller)?,
        _ => wasmtime::bail!("the module exports no allocator"),
    };
    caller.data_mut().data_returns += 1;
    let addr = alloc.call(&mut *caller, data.len() as i32)?;
    write(caller, addr, data)?;
    write(caller, ret_ptr, &(addr as u32).to_le_bytes())?;
    write(caller, ret_len, &(data.len() as u32).to_le_bytes())
}

/// The ABI's map encoding: count, then (key length, value length) pairs, then NUL-terminated
/// keys and values.
fn encode_map(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v);
        out.push(0);
    }
    out
}

fn decode_map(bytes: &[u8]) -> Vec<(String, String)> {
    if bytes.len() < 4 {
        return Vec::new();
    }
    let n = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let mut p = 4 + n * 8;
    (0..n)
        .map(|i| {
            let s = 4 + i * 8;
            let kl = u32::from_le_bytes(bytes[s..s + 4].try_into().unwrap()) as usize;
            let vl = u32::from_le_bytes(bytes[s + 4..s + 8].try_into().unwrap()) as usize;
            let k = String::from_utf8_lossy(&bytes[p..p + kl]).into_owned();
            p += kl + 1;
            let v = String::from_utf8_lossy(&bytes[p..p + vl]).into_owned();
            p += vl + 1;
            (k, v)
        })
        .collect()
}

/// A header map, while Envoy lets the filter touch it.
fn header_map(state: &mut VmState, map: i32) -> Option<&mut Vec<(String, Vec<u8>)>> {
    match map {
        REQUEST_HEADERS if state.headers_readable => Some(&mut state.request_headers),
        RESPONSE_HEADERS if state.response_headers_readable => Some(&mut state.response_headers),
        _ => None,
    }
}

impl VmState {
    fn count_hostcall(&mut self, name: &str) {
        *self.hostcalls.entry(name.to_owned()).or_default() += 1;
    }
}

fn define_host(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, VmState>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_log");
            let message = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
            c.data_mut().logs.push(format!("[{level}] {message}"));
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: Caller<'_, VmState>, ret: i32| -> Result<i32> {
        c.data_mut().count_hostcall("proxy_get_log_level");
        write(&mut c, ret, &1u32.to_le_bytes())?;
        Ok(OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, VmState>, ret: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_get_current_time_nanoseconds");
            let nanos = c.data().shared.now_ms.load(Ordering::SeqCst) * 1_000_000;
            write(&mut c, ret, &nanos.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", |mut c: Caller<'_, VmState>, ms: i32| -> i32 {
        c.data_mut().count_hostcall("proxy_set_tick_period_milliseconds");
        c.data_mut().tick_ms = ms as u32;
        OK
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, VmState>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_get_buffer_bytes");
            let data = match kind {
                PLUGIN_CONFIGURATION => c.data().plugin_config.clone(),
                GRPC_RECEIVE_BUFFER => c.data().grpc_buffer.clone(),
                REQUEST_BODY => c.data().request_body.clone(),
                RESPONSE_BODY => c.data().response_body.clone(),
                _ => return Ok(NOT_FOUND),
            };
            let start = (start as u32 as usize).min(data.len());
            let end = start.saturating_add(max as u32 as usize).min(data.len());
            give(&mut c, &data[start..end], ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, VmState>, kind: i32, start: i32, len: i32, dp: i32, dl: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_set_buffer_bytes");
            let data = read(&mut c, dp, dl)?;
            let buffer = match kind {
                REQUEST_BODY => &mut c.data_mut().request_body,
                RESPONSE_BODY => &mut c.data_mut().response_body,
                _ => return Ok(BAD_ARGUMENT),
            };
            let start = (start as u32 as usize).min(buffer.len());
            let end = start.saturating_add(len as u32 as usize).min(buffer.len());
            buffer.splice(start..end, data);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, VmState>, map: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_get_header_map_pairs");
            let Some(headers) = header_map(c.data_mut(), map) else { return Ok(BAD_ARGUMENT) };
            let encoded = encode_map(headers);
            give(&mut c, &encoded, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, VmState>, map: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_set_header_map_pairs");
            let pairs = decode_map(&read(&mut c, ptr, len)?);
            let Some(headers) = header_map(c.data_mut(), map) else { return Ok(BAD_ARGUMENT) };
            // As Envoy does: every header removed, then the pairs added.
            *headers = pairs.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, VmState>, map: i32, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_get_header_map_value");
            let key = read_string(&mut c, kp, kl)?;
            let Some(headers) = header_map(c.data_mut(), map) else { return Ok(BAD_ARGUMENT) };
            let Some(value) = headers.iter().find(|(n, _)| *n == key).map(|(_, v)| v.clone()) else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &value, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, VmState>, map: i32, kp: i32, kl: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_remove_header_map_value");
            let key = read_string(&mut c, kp, kl)?;
            let Some(headers) = header_map(c.data_mut(), map) else { return Ok(BAD_ARGUMENT) };
            headers.retain(|(n, _)| *n != key);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, VmState>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_replace_header_map_value");
            let key = read_string(&mut c, kp, kl)?;
            let value = read(&mut c, vp, vl)?;
            let Some(headers) = header_map(c.data_mut(), map) else { return Ok(BAD_ARGUMENT) };
            headers.retain(|(n, _)| *n != key);
            headers.push((key, value));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Caller<'_, VmState>, np: i32, nl: i32, _ap: i32, _al: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_call_foreign_function");
            let name = read_string(&mut c, np, nl)?;
            c.data_mut().foreign_calls.push(name);
            write(&mut c, ret_ptr, &0u32.to_le_bytes())?;
            write(&mut c, ret_len, &0u32.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, VmState>,
         status: i32,
         _dp: i32,
         _dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32|
         -> Result<i32> {
            c.data_mut().count_hostcall("proxy_send_local_response");
            let body = read(&mut c, bp, bl)?;
            let headers = decode_map(&read(&mut c, hp, hl)?);
            c.data_mut().reply = Some(LocalReply { status: status as u32, headers, body });
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, VmState>, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32, ret_cas: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_get_shared_data");
            let key = read_string(&mut c, kp, kl)?;
            let found = c.data().shared.data.lock().unwrap().get(&key).cloned();
            let Some((value, cas)) = found else { return Ok(NOT_FOUND) };
            give(&mut c, &value, ret_ptr, ret_len)?;
            write(&mut c, ret_cas, &cas.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, VmState>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_set_shared_data");
            let key = read_string(&mut c, kp, kl)?;
            let value = read(&mut c, vp, vl)?;
            let shared = c.data().shared.clone();
            let mut data = shared.data.lock().unwrap();
            let cas = cas as u32;
            if cas != 0 && data.get(&key).is_some_and(|(_, current)| *current != cas) {
                return Ok(CAS_MISMATCH);
            }
            let next = shared.cas.fetch_add(1, Ordering::SeqCst) + 1;
            data.insert(key, (value, next));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, VmState>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_get_property");
            let path = read_string(&mut c, pp, pl)?;
            let Some(value) = c.data().properties.get(&path).cloned() else { return Ok(NOT_FOUND) };
            give(&mut c, &value, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: Caller<'_, VmState>,
         up: i32,
         ul: i32,
         sp: i32,
         sl: i32,
         mp: i32,
         ml: i32,
         _mdp: i32,
         _mdl: i32,
         ret: i32|
         -> Result<i32> {
            c.data_mut().count_hostcall("proxy_grpc_stream");
            let stream = GrpcStream {
                cluster: read_string(&mut c, up, ul)?,
                service: read_string(&mut c, sp, sl)?,
                method: read_string(&mut c, mp, ml)?,
                sent: Vec::new(),
                open: true,
            };
            let token = c.data().next_token;
            c.data_mut().next_token += 1;
            c.data_mut().streams.insert(token, stream);
            write(&mut c, ret, &token.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Caller<'_, VmState>, np: i32, nl: i32, ret: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_register_shared_queue");
            let name = read_string(&mut c, np, nl)?;
            let shared = c.data().shared.clone();
            let mut queues = shared.queues.lock().unwrap();
            let id = match queues.iter().position(|(n, _)| *n == name) {
                Some(i) => i + 1,
                None => {
                    queues.push((name, Default::default()));
                    queues.len()
                }
            };
            write(&mut c, ret, &(id as u32).to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, VmState>, _vp: i32, _vl: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_resolve_shared_queue");
            let name = read_string(&mut c, np, nl)?;
            let found = c.data().shared.queues.lock().unwrap().iter().position(|(n, _)| *n == name);
            let Some(i) = found else { return Ok(NOT_FOUND) };
            write(&mut c, ret, &(i as u32 + 1).to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: Caller<'_, VmState>, id: i32, dp: i32, dl: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_enqueue_shared_queue");
            let item = read(&mut c, dp, dl)?;
            let shared = c.data().shared.clone();
            let mut queues = shared.queues.lock().unwrap();
            let Some((_, queue)) = queues.get_mut((id as usize).wrapping_sub(1)) else { return Ok(NOT_FOUND) };
            queue.push_back(item);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, VmState>, id: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_dequeue_shared_queue");
            let shared = c.data().shared.clone();
            let item = {
                let mut queues = shared.queues.lock().unwrap();
                let Some((_, queue)) = queues.get_mut((id as usize).wrapping_sub(1)) else { return Ok(NOT_FOUND) };
                queue.pop_front()
            };
            let Some(item) = item else { return Ok(EMPTY) };
            give(&mut c, &item, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: Caller<'_, VmState>,
         up: i32,
         ul: i32,
         sp: i32,
         sl: i32,
         mp: i32,
         ml: i32,
         _mdp: i32,
         _mdl: i32,
         msgp: i32,
         msgl: i32,
         _timeout: i32,
         ret: i32|
         -> Result<i32> {
            c.data_mut().count_hostcall("proxy_grpc_call");
            let _cluster = read_string(&mut c, up, ul)?;
            let name = format!("{}/{}", read_string(&mut c, sp, sl)?, read_string(&mut c, mp, ml)?);
            let message = read(&mut c, msgp, msgl)?;
            let token = c.data().next_token;
            c.data_mut().next_token += 1;
            c.data_mut().calls.insert(token, (name, message));
            write(&mut c, ret, &token.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: Caller<'_, VmState>, token: i32, mp: i32, ml: i32, _end: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_grpc_send");
            let message = read(&mut c, mp, ml)?;
            match c.data_mut().streams.get_mut(&(token as u32)) {
                Some(s) if s.open => {
                    s.sent.push(message);
                    Ok(OK)
                }
                _ => Ok(NOT_FOUND),
            }
        },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap("env", name, |mut c: Caller<'_, VmState>, token: i32| -> i32 {
            c.data_mut().count_hostcall("proxy_grpc_cancel");
            match c.data_mut().streams.get_mut(&(token as u32)) {
                Some(s) if s.open => {
                    s.open = false;
                    OK
                }
                _ => NOT_FOUND,
            }
        })?;
    }
    linker.func_wrap("env", "proxy_set_effective_context", |mut c: Caller<'_, VmState>, _ctx: i32| -> i32 {
        c.data_mut().count_hostcall("proxy_set_effective_context");
        OK
    })?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller<'_, VmState>, _kind: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            c.data_mut().count_hostcall("proxy_define_metric");
            let name = read_string(&mut c, np, nl)?;
            let id = c.data().metric_names.iter().find(|(_, n)| **n == name).map(|(id, _)| *id);
            let id = id.unwrap_or_else(|| {
                let id = c.data().metric_names.len() as u32 + 1;
                c.data_mut().metric_names.insert(id, name);
                id
            });
            write(&mut c, ret, &id.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_record_metric", |mut c: Caller<'_, VmState>, id: i32, value: i64| -> i32 {
        c.data_mut().count_hostcall("proxy_record_metric");
        match c.data().metric_names.get(&(id as u32)) {
            Some(name) => {
                c.data().shared.metrics.lock().unwrap().insert(name.clone(), value);
                OK
            }
            None => NOT_FOUND,
        }
    })?;
    linker.func_wrap("env", "proxy_increment_metric", |mut c: Caller<'_, VmState>, id: i32, by: i64| -> i32 {
        c.data_mut().count_hostcall("proxy_increment_metric");
        match c.data().metric_names.get(&(id as u32)) {
            Some(name) => {
                *c.data().shared.metrics.lock().unwrap().entry(name.clone()).or_default() += by;
                OK
            }
            None => NOT_FOUND,
        }
    })?;
    // WASI: random bytes (std's hash maps seed from them; Envoy provides them too), no stdio
    // output, no environment.
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut c: Caller<'_, VmState>, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().count_hostcall("random_get");
            let bytes: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
            write(&mut c, ptr, &bytes)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_sizes_get",
        |mut c: Caller<'_, VmState>, n: i32, size: i32| -> Result<i32> {
            c.data_mut().count_hostcall("environ_sizes_get");
            write(&mut c, n, &0u32.to_le_bytes())?;
            write(&mut c, size, &0u32.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_get",
        |mut c: Caller<'_, VmState>, _a: i32, _b: i32| -> i32 {
            c.data_mut().count_hostcall("environ_get");
            0
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut c: Caller<'_, VmState>, _fd: i32, iovs: i32, n: i32, written: i32| -> Result<i32> {
            c.data_mut().count_hostcall("fd_write");
            let mut total = 0u32;
            for i in 0..n {
                let iov = read(&mut c, iovs + i * 8, 8)?;
                total += u32::from_le_bytes(iov[4..8].try_into().unwrap());
            }
            write(&mut c, written, &total.to_le_bytes())?;
            Ok(0)
        },
    )?;
    Ok(())
}

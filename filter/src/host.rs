//! The one boundary between Warden and the proxy-wasm host.
//!
//! Every hostcall goes through here and comes back as a plain value or a [`HostError`]; no
//! proxy-wasm `Status` leaves this file. The calls are a trait, [`Host`]: [`Envoy`] makes them
//! (only the SDK's `hostcalls` functions are used: the trait wrappers, and the string getters
//! which unwrap UTF-8, panic on statuses Envoy really returns); native unit tests swap in
//! `fake_host::FakeEnvoy`, an Envoy in memory, so request logic is tested without wasm. The
//! functions below are what the rest of the filter calls.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A hostcall that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// A compare-and-swap write lost the race.
    CasMismatch,
    /// Any other status; the host could not do what was asked.
    Failed(Status),
}

impl From<Status> for HostError {
    fn from(status: Status) -> Self {
        match status {
            Status::CasMismatch => HostError::CasMismatch,
            other => HostError::Failed(other),
        }
    }
}

/// Every hostcall the filter makes, as plain values.
pub trait Host {
    fn current_time() -> Option<SystemTime>;
    fn set_tick_period(period: Duration) -> Result<(), HostError>;
    /// A shared-data value and its CAS token.
    fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes shared data; `cas` of `None` overwrites unconditionally.
    fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    fn buffer(kind: BufferType, start: usize, size: usize) -> Option<Vec<u8>>;
    fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), HostError>;
    fn map(kind: MapType) -> Vec<(String, Vec<u8>)>;
    fn set_map(kind: MapType, pairs: Vec<(&str, &[u8])>);
    /// Sets one entry of a header map; `None` removes it.
    fn set_map_value(kind: MapType, name: &str, value: Option<&str>);
    fn property(path: &[&str]) -> Option<Vec<u8>>;
    fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]);
    fn open_grpc_stream(cluster: &str, service: &str, method: &str) -> Result<u32, HostError>;
    fn send_grpc_message(token: u32, message: &[u8]) -> Result<(), HostError>;
    fn cancel_grpc_stream(token: u32);
    fn dispatch_grpc_call(
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    fn register_queue(name: &str) -> Option<u32>;
    fn resolve_queue(vm_id: &str, name: &str) -> Option<u32>;
    fn enqueue(queue: u32, item: &[u8]) -> bool;
    fn dequeue(queue: u32) -> Option<Vec<u8>>;
    fn define_metric(kind: MetricType, name: &str) -> Option<u32>;
    fn record_metric(id: u32, value: u64);
    fn increment_metric(id: u32, by: i64);
}

/// The real host: Envoy, through proxy-wasm's hostcalls.
#[cfg_attr(test, expect(dead_code, reason = "native unit tests run on fake_host"))]
pub struct Envoy;

impl Host for Envoy {
    fn current_time() -> Option<SystemTime> {
        hostcalls::get_current_time().ok()
    }
    fn set_tick_period(period: Duration) -> Result<(), HostError> {
        Ok(hostcalls::set_tick_period(period)?)
    }
    fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        Ok(hostcalls::set_shared_data(key, Some(value), cas)?)
    }
    fn buffer(kind: BufferType, start: usize, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(kind, start, size).ok().flatten()
    }
    fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), HostError> {
        Ok(hostcalls::set_buffer(kind, start, size, value)?)
    }
    fn map(kind: MapType) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(kind).unwrap_or_default()
    }
    fn set_map(kind: MapType, pairs: Vec<(&str, &[u8])>) {
        let _ = hostcalls::set_map_bytes(kind, pairs);
    }
    fn set_map_value(kind: MapType, name: &str, value: Option<&str>) {
        let _ = match value {
            Some(value) => hostcalls::set_map_value(kind, name, Some(value)),
            None => hostcalls::remove_map_value(kind, name),
        };
    }
    fn property(path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
    fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
    }
    fn open_grpc_stream(cluster: &str, service: &str, method: &str) -> Result<u32, HostError> {
        Ok(hostcalls::open_grpc_stream(cluster, service, method, Vec::new())?)
    }
    fn send_grpc_message(token: u32, message: &[u8]) -> Result<(), HostError> {
        Ok(hostcalls::send_grpc_stream_message(token, Some(message), false)?)
    }
    fn cancel_grpc_stream(token: u32) {
        let _ = hostcalls::cancel_grpc_stream(token);
    }
    fn dispatch_grpc_call(
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        Ok(hostcalls::dispatch_grpc_call(cluster, service, method, Vec::new(), Some(message), timeout)?)
    }
    fn register_queue(name: &str) -> Option<u32> {
        hostcalls::register_shared_queue(name).ok()
    }
    fn resolve_queue(vm_id: &str, name: &str) -> Option<u32> {
        hostcalls::resolve_shared_queue(vm_id, name).ok().flatten()
    }
    fn enqueue(queue: u32, item: &[u8]) -> bool {
        hostcalls::enqueue_shared_queue(queue, Some(item)).is_ok()
    }
    fn dequeue(queue: u32) -> Option<Vec<u8>> {
        hostcalls::dequeue_shared_queue(queue).ok().flatten()
    }
    fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
        hostcalls::define_metric(kind, name).ok()
    }
    fn record_metric(id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
    fn increment_metric(id: u32, by: i64) {
        let _ = hostcalls::increment_metric(id, by);
    }
}

/// The host the filter runs on.
#[cfg(not(test))]
type Active = Envoy;
#[cfg(test)]
type Active = crate::fake_host::FakeEnvoy;

fn since_epoch() -> Option<Duration> {
    Active::current_time()?.duration_since(UNIX_EPOCH).ok()
}

/// Milliseconds since the Unix epoch by the host's clock; 0 if the host will not say.
pub fn now_ms() -> u64 {
    since_epoch().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Nanoseconds since the Unix epoch by the host's clock; 0 if the host will not say.
pub fn now_ns() -> u64 {
    since_epoch().map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn set_tick_period(ms: u64) -> Result<(), HostError> {
    Active::set_tick_period(Duration::from_millis(ms))
}

/// A shared-data value and its CAS token.
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    Active::shared_get(key)
}

/// Writes shared data; `cas` of `None` overwrites unconditionally.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
    Active::shared_set(key, value, cas)
}

/// The plugin configuration of the current root context.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    Active::buffer(BufferType::PluginConfiguration, 0, usize::MAX)
}

/// An Envoy property such as `["node", "id"]`, as UTF-8 text.
pub fn property(path: &[&str]) -> Option<String> {
    String::from_utf8(Active::property(path)?).ok()
}

/// Every request header as `(lower-case name, raw value)`; empty when Envoy has none to give.
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    Active::map(MapType::HttpRequestHeaders)
}

pub fn remove_request_header(name: &str) {
    Active::set_map_value(MapType::HttpRequestHeaders, name, None);
}

pub fn set_request_header(name: &str, value: &str) {
    Active::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
}

/// A slice of the request body buffered so far (`on_http_request_body`).
pub fn request_body(size: usize) -> Option<Vec<u8>> {
    Active::buffer(BufferType::HttpRequestBody, 0, size)
}

/// Replaces the first `size` bytes of the request body.
pub fn replace_request_body(size: usize, body: &[u8]) -> Result<(), HostError> {
    Active::set_buffer(BufferType::HttpRequestBody, 0, size, body)
}

/// The current chunk of the response body (`on_http_response_body`).
pub fn response_body(size: usize) -> Option<Vec<u8>> {
    response_body_range(0, size)
}

/// `size` bytes of the current response body chunk from `start`.
pub fn response_body_range(start: usize, size: usize) -> Option<Vec<u8>> {
    Active::buffer(BufferType::HttpResponseBody, start, size)
}

/// Replaces the first `size` bytes of the response body chunk.
pub fn replace_response_body(size: usize, body: &[u8]) -> Result<(), HostError> {
    Active::set_buffer(BufferType::HttpResponseBody, 0, size, body)
}

/// Every response header as `(lower-case name, raw value)`: one crossing for all of them.
pub fn response_headers() -> Vec<(String, Vec<u8>)> {
    Active::map(MapType::HttpResponseHeaders)
}

/// Replaces every response header with `pairs`: one crossing for any number of changes (Envoy
/// removes the headers it had, then adds these).
pub fn set_response_headers(pairs: Vec<(&str, &[u8])>) {
    Active::set_map(MapType::HttpResponseHeaders, pairs);
}

pub fn set_response_header(name: &str, value: &str) {
    Active::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
}

/// Answers the request locally. Envoy sends it once the current callback returns.
pub fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    Active::send_local_reply(status, headers, body);
}

/// Opens a gRPC stream on `cluster`; returns its token.
pub fn open_grpc_stream(cluster: &str, service: &str, method: &str) -> Result<u32, HostError> {
    Active::open_grpc_stream(cluster, service, method)
}

pub fn send_grpc_message(token: u32, message: &[u8]) -> Result<(), HostError> {
    Active::send_grpc_message(token, message)
}

/// Registers (or takes over) a shared queue of this VM id; returns its id.
pub fn register_queue(name: &str) -> Option<u32> {
    Active::register_queue(name)
}

/// Finds a queue another VM registered.
pub fn resolve_queue(vm_id: &str, name: &str) -> Option<u32> {
    Active::resolve_queue(vm_id, name)
}

pub fn enqueue(queue: u32, item: &[u8]) -> bool {
    Active::enqueue(queue, item)
}

/// The oldest item of a queue, if any.
pub fn dequeue(queue: u32) -> Option<Vec<u8>> {
    Active::dequeue(queue)
}

/// Sends one unary gRPC call; the answer arrives in `on_grpc_call_response`.
pub fn dispatch_grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, HostError> {
    Active::dispatch_grpc_call(cluster, service, method, message, timeout)
}

/// Cancels a stream. Envoy delivers no close callback for it afterwards.
pub fn cancel_grpc_stream(token: u32) {
    Active::cancel_grpc_stream(token);
}

/// The gRPC message just received, inside `on_grpc_stream_message`.
pub fn grpc_message(size: usize) -> Option<Vec<u8>> {
    Active::buffer(BufferType::GrpcReceiveBuffer, 0, size)
}

/// A counter exported by Envoy as `wasmcustom.<name>`; `None` if the host refuses (then
/// increments are no-ops: a metric never fails a request).
pub fn counter(name: &str) -> Option<u32> {
    Active::define_metric(MetricType::Counter, name)
}

/// A gauge exported by Envoy as `wasmcustom.<name>`; every VM that defines the name shares it.
pub fn gauge(name: &str) -> Option<u32> {
    Active::define_metric(MetricType::Gauge, name)
}

pub fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        Active::record_metric(id, value);
    }
}

pub fn increment(metric: Option<u32>, by: i64) {
    if let Some(id) = metric.filter(|_| by != 0) {
        Active::increment_metric(id, by);
    }
}

//! An Envoy in memory for native unit tests: one per test thread, holding what a request's
//! callbacks read (headers, bodies, shared data, the clock) and recording what they do (headers
//! written, the local reply, metrics). The wasmtime harness (`tests/harness`) runs the real
//! `.wasm` against the ABI; this runs the request logic natively, fast and step by step.

use crate::host::{Host, HostError};
use proxy_wasm::types::{BufferType, MapType, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// What the fake Envoy holds.
#[derive(Default)]
pub struct State {
    pub now_ms: u64,
    /// Shared data: value and CAS token.
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<u8>,
    pub local_reply: Option<LocalReply>,
    /// Metric names by id, and their values.
    pub metrics: Vec<(String, i64)>,
    pub queues: Vec<(String, Vec<Vec<u8>>)>,
}

impl State {
    /// A request header's value, as text.
    pub fn request_header(&self, name: &str) -> Option<String> {
        header(&self.request_headers, name)
    }

    /// A response header's value, as text.
    pub fn response_header(&self, name: &str) -> Option<String> {
        header(&self.response_headers, name)
    }

    /// A metric's value by name.
    pub fn metric(&self, name: &str) -> i64 {
        self.metrics.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    fn headers_mut(&mut self, kind: MapType) -> &mut Vec<(String, Vec<u8>)> {
        match kind {
            MapType::HttpResponseHeaders => &mut self.response_headers,
            _ => &mut self.request_headers,
        }
    }

    fn body_mut(&mut self, kind: BufferType) -> &mut Vec<u8> {
        match kind {
            BufferType::HttpResponseBody => &mut self.response_body,
            _ => &mut self.request_body,
        }
    }
}

fn header(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Reads or changes this thread's fake Envoy.
pub fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

pub struct FakeEnvoy;

impl Host for FakeEnvoy {
    fn current_time() -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_millis(with(|s| s.now_ms)))
    }
    fn set_tick_period(_: Duration) -> Result<(), HostError> {
        Ok(())
    }
    fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        with(|s| s.shared.get(key).map_or((None, None), |(v, cas)| (Some(v.clone()), Some(*cas))))
    }
    fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        with(|s| {
            let current = s.shared.get(key).map_or(0, |(_, c)| *c);
            if cas.is_some_and(|cas| cas != current) {
                return Err(HostError::CasMismatch);
            }
            s.shared.insert(key.to_owned(), (value.to_vec(), current + 1));
            Ok(())
        })
    }
    fn buffer(kind: BufferType, start: usize, size: usize) -> Option<Vec<u8>> {
        with(|s| {
            let body = s.body_mut(kind);
            let end = start.saturating_add(size).min(body.len());
            body.get(start..end).map(<[u8]>::to_vec)
        })
    }
    fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), HostError> {
        with(|s| {
            let body = s.body_mut(kind);
            let end = start.saturating_add(size).min(body.len());
            body.splice(start.min(end)..end, value.iter().copied());
        });
        Ok(())
    }
    fn map(kind: MapType) -> Vec<(String, Vec<u8>)> {
        with(|s| s.headers_mut(kind).clone())
    }
    fn set_map(kind: MapType, pairs: Vec<(&str, &[u8])>) {
        with(|s| *s.headers_mut(kind) = pairs.into_iter().map(|(n, v)| (n.to_owned(), v.to_vec())).collect());
    }
    fn set_map_value(kind: MapType, name: &str, value: Option<&str>) {
        with(|s| {
            let headers = s.headers_mut(kind);
            headers.retain(|(n, _)| n != name);
            if let Some(value) = value {
                headers.push((name.to_owned(), value.as_bytes().to_vec()));
            }
        });
    }
    fn property(_: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let headers = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        with(|s| s.local_reply = Some(LocalReply { status, headers, body: body.to_vec() }));
    }
    fn open_grpc_stream(_: &str, _: &str, _: &str) -> Result<u32, HostError> {
        Err(HostError::Failed(proxy_wasm::types::Status::InternalFailure))
    }
    fn send_grpc_message(_: u32, _: &[u8]) -> Result<(), HostError> {
        Err(HostError::Failed(proxy_wasm::types::Status::InternalFailure))
    }
    fn cancel_grpc_stream(_: u32) {}
    fn dispatch_grpc_call(_: &str, _: &str, _: &str, _: &[u8], _: Duration) -> Result<u32, HostError> {
        Err(HostError::Failed(proxy_wasm::types::Status::InternalFailure))
    }
    fn register_queue(name: &str) -> Option<u32> {
        with(|s| {
            let id = s.queues.iter().position(|(n, _)| n == name).unwrap_or_else(|| {
                s.queues.push((name.to_owned(), Vec::new()));
                s.queues.len() - 1
            });
            u32::try_from(id).ok()
        })
    }
    fn resolve_queue(_: &str, name: &str) -> Option<u32> {
        with(|s| s.queues.iter().position(|(n, _)| n == name).and_then(|id| u32::try_from(id).ok()))
    }
    fn enqueue(queue: u32, item: &[u8]) -> bool {
        with(|s| s.queues.get_mut(queue as usize).map(|(_, items)| items.push(item.to_vec())).is_some())
    }
    fn dequeue(queue: u32) -> Option<Vec<u8>> {
        with(|s| {
            let items = &mut s.queues.get_mut(queue as usize)?.1;
            (!items.is_empty()).then(|| items.remove(0))
        })
    }
    fn define_metric(_: MetricType, name: &str) -> Option<u32> {
        with(|s| {
            let id = s.metrics.iter().position(|(n, _)| n == name).unwrap_or_else(|| {
                s.metrics.push((name.to_owned(), 0));
                s.metrics.len() - 1
            });
            u32::try_from(id).ok()
        })
    }
    fn record_metric(id: u32, value: u64) {
        with(|s| {
            if let Some(metric) = s.metrics.get_mut(id as usize) {
                metric.1 = i64::try_from(value).unwrap_or(i64::MAX);
            }
        });
    }
    fn increment_metric(id: u32, by: i64) {
        with(|s| {
            if let Some(metric) = s.metrics.get_mut(id as usize) {
                metric.1 += by;
            }
        });
    }
}

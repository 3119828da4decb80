//! The real filter `.wasm` in the wasmtime proxy-wasm host (`warden_tests::harness`): header
//! precedence, every refusal, header stripping, hostile input, the policy stream's xDS rules
//! and the leader election, on a clock the tests control.

mod governance;
mod hot_path;
mod policy_stream;
mod requests;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use warden_policy::lease::{LeaseGrant, LeaseReply, LeaseRequest, LeaseWant};
use warden_policy::records::{ProviderGrant, ProviderRecord};
use warden_policy::sync::{HEARTBEAT_TYPE_URL, POLICY_TYPE_URL};
use warden_policy::{KeyHash, RecordKind, VirtualKeyRecord};
use warden_tests::harness::{Exchange, Outcome, Proxy, Vm};

pub const SETTINGS: &str = r#"{"control_plane_cluster":"warden_xds","staleness_bound_ms":10000}"#;
pub const T0: u64 = 1_800_000_000_000;

/// A proxy with one configured VM that holds the policy stream.
pub fn leader() -> (Proxy, Vm, u32) {
    let proxy = Proxy::load(&warden_tests::filter_wasm());
    proxy.set_now_ms(T0);
    let (mut vm, configured) = proxy.vm(SETTINGS).unwrap();
    assert!(configured, "{:?}", vm.logs());
    vm.tick().unwrap();
    let token = vm.open_stream().expect("the only VM opens the policy stream");
    (proxy, vm, token)
}

thread_local! {
    static ANSWERED: std::cell::RefCell<std::collections::HashSet<u32>> = Default::default();
}

/// Ticks the leader and answers its lease call (made by the tick, or by the arrival of records
/// before) with `grant(want)` = (granted, free) for each want; returns the wants.
pub fn answer_leases(vm: &mut Vm, grant: impl Fn(&LeaseWant) -> (u64, u64)) -> Vec<LeaseWant> {
    answer_leases_with(vm, grant, false)
}

/// [`answer_leases`], asking every lease back (`reclaim`) or not.
pub fn answer_leases_with(vm: &mut Vm, grant: impl Fn(&LeaseWant) -> (u64, u64), reclaim: bool) -> Vec<LeaseWant> {
    for _ in 0..4 {
        vm.tick().unwrap();
        let wants = answer_lease_call(vm, &grant, reclaim);
        // The leader's first call is a heartbeat with nothing in it; the wants come next.
        if !wants.is_empty() {
            return wants;
        }
    }
    panic!("no lease call with wants");
}

/// Answers the leader's newest lease call, which must not have been answered yet, with
/// `grant(want)` = (granted, free) for each want; returns the wants.
pub fn answer_lease_call(vm: &mut Vm, grant: impl Fn(&LeaseWant) -> (u64, u64), reclaim: bool) -> Vec<LeaseWant> {
    let (token, message) = vm
        .calls()
        .iter()
        .rev()
        .find(|(_, (name, _))| name == "warden.v1.Quota/Lease")
        .map(|(t, (_, m))| (*t, m.clone()))
        .expect("a lease call");
    assert!(ANSWERED.with(|a| a.borrow_mut().insert(token)), "no new lease call");
    let request = LeaseRequest::decode(message.as_slice()).unwrap();
    let grants = request
        .wants
        .iter()
        .map(|w| {
            let (granted, free) = grant(w);
            // Every answer newer than the last: the answered calls so far number them.
            let version = ANSWERED.with(|a| a.borrow().len() as u64);
            let (counter, window_start_ms) = (w.counter.clone(), w.window_start_ms);
            // What is neither this Envoy's nor free was spent by the others.
            let others_used = w.max.saturating_sub(granted).saturating_sub(free);
            LeaseGrant { counter, window_start_ms, granted, free, version, reclaim, max: w.max, others_used }
        })
        .collect();
    vm.answer_call(token, Ok(&LeaseReply { grants }.encode_to_vec())).unwrap();
    request.wants
}

/// A key that may use every model of the mock provider.
pub fn record(id: &str, active: bool, expires_at_ms: Option<u64>) -> VirtualKeyRecord {
    let mut r = VirtualKeyRecord::new(id, format!("name-{id}"), active);
    r.expires_at_ms = expires_at_ms;
    r.provider_configs = vec![grant("mock", Some(1.0))];
    r
}

pub fn grant(provider: &str, weight: Option<f64>) -> ProviderGrant {
    ProviderGrant {
        provider: provider.into(),
        weight,
        allowed_models: vec!["*".into()],
        blacklisted_models: vec![],
        key_ids: vec!["*".into()],
        rate_limit: None,
        budgets: vec![],
    }
}

/// A provider with one API key and any model.
pub fn provider(name: &str) -> ProviderRecord {
    ProviderRecord {
        name: name.into(),
        models: vec![],
        key_ids: vec!["main".into()],
        base_path: "/v1".into(),
        request_timeout_ms: None,
        limits: Default::default(),
    }
}

/// The resource name of a key's record.
pub fn key_name(secret: &str) -> String {
    RecordKind::VirtualKey.name(&KeyHash::of(secret.as_bytes()).to_hex())
}

pub fn resource(secret: &str, record: &VirtualKeyRecord) -> Resource {
    named(&key_name(secret), record)
}

/// Any record under its resource name.
pub fn named(name: &str, record: &impl serde::Serialize) -> Resource {
    let value = serde_json::to_vec(record).unwrap();
    Resource {
        name: name.into(),
        version: format!("v-{}", value.len()),
        resource: Some(Any { type_url: POLICY_TYPE_URL.into(), value }),
        ..Default::default()
    }
}

pub const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
pub const USAGE_BODY: &str =
    r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}"#;

/// A chat completion with these headers, answered by the upstream with 12 tokens.
pub fn chat(vm: &mut Vm, headers: &[(&str, &str)]) -> wasmtime::Result<Outcome> {
    let mut all = vec![(":method", "POST"), (":path", "/v1/chat/completions")];
    all.extend_from_slice(headers);
    let exchange = Exchange::request(&all, CHAT_BODY.as_bytes()).respond(
        200,
        "application/json",
        vec![USAGE_BODY.as_bytes().to_vec()],
    );
    vm.exchange(exchange)
}

pub fn response(nonce: &str, resources: Vec<Resource>, removed: Vec<String>) -> Vec<u8> {
    DeltaDiscoveryResponse {
        system_version_info: nonce.into(),
        resources,
        removed_resources: removed,
        type_url: POLICY_TYPE_URL.into(),
        nonce: nonce.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn heartbeat(version: &str) -> Vec<u8> {
    DeltaDiscoveryResponse {
        system_version_info: version.into(),
        type_url: HEARTBEAT_TYPE_URL.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The last message the filter sent on a stream, decoded as Envoy's own type.
pub fn last_sent(vm: &Vm, token: u32) -> DeltaDiscoveryRequest {
    let sent = vm.streams()[&token].sent.last().expect("a message was sent").clone();
    DeltaDiscoveryRequest::decode(sent.as_slice()).expect("a DeltaDiscoveryRequest")
}

/// A leader holding `keys` (secret, record) and the mock provider, with a fresh heartbeat.
pub fn with_keys(keys: &[(&str, VirtualKeyRecord)]) -> (Proxy, Vm, u32) {
    let (proxy, mut vm, token) = leader();
    let mut resources: Vec<Resource> = keys.iter().map(|(s, r)| resource(s, r)).collect();
    resources.push(named("provider:mock", &provider("mock")));
    vm.deliver(token, &response("1", resources, vec![])).unwrap();
    vm.deliver(token, &heartbeat("1")).unwrap();
    (proxy, vm, token)
}

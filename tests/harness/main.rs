//! The real filter `.wasm` in the wasmtime proxy-wasm host (`warden_tests::harness`): header
//! precedence, every refusal, header stripping, hostile input, the policy stream's xDS rules
//! and the leader election, on a clock the tests control.

mod policy_stream;
mod requests;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use warden_policy::sync::{HEARTBEAT_TYPE_URL, POLICY_TYPE_URL};
use warden_policy::{KeyHash, VirtualKeyRecord};
use warden_tests::harness::{Proxy, Vm};

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

pub fn record(id: &str, active: bool, expires_at_ms: Option<u64>) -> VirtualKeyRecord {
    VirtualKeyRecord { id: id.into(), name: format!("name-{id}"), is_active: active, expires_at_ms }
}

pub fn resource(secret: &str, record: &VirtualKeyRecord) -> Resource {
    Resource {
        name: KeyHash::of(secret.as_bytes()).to_string(),
        version: format!("v-{}", record.is_active),
        resource: Some(Any { type_url: POLICY_TYPE_URL.into(), value: serde_json::to_vec(record).unwrap() }),
        ..Default::default()
    }
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

/// A leader holding `keys` (secret, record), with a fresh heartbeat.
pub fn with_keys(keys: &[(&str, VirtualKeyRecord)]) -> (Proxy, Vm, u32) {
    let (proxy, mut vm, token) = leader();
    let resources = keys.iter().map(|(s, r)| resource(s, r)).collect();
    vm.deliver(token, &response("1", resources, vec![])).unwrap();
    vm.deliver(token, &heartbeat("1")).unwrap();
    (proxy, vm, token)
}

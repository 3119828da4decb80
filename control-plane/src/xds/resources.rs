//! Envoy resources built from Warden's state.

use super::cache::{FilterConfig, content_version};
use envoy_types::pb::envoy::config::core::v3::{
    AsyncDataSource, DataSource, TypedExtensionConfig, async_data_source, data_source,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{PluginConfig, VmConfig, plugin_config};
use envoy_types::pb::google::protobuf::StringValue;
use envoy_types::util::pack_any;
use prost::Message;
use warden_policy::FilterSettings;

/// The name of the filter in the bootstrap's `config_discovery` and of its ECDS resource.
pub const FILTER_NAME: &str = "warden";
/// Shared data is keyed by this `vm_id`: every worker and every filter update sees the same
/// policy records.
pub const VM_ID: &str = "warden";

/// The ECDS resource that delivers the filter: its code, its settings, `FAIL_RELOAD`.
///
/// `settings` is sent as given: the filter, not the control plane, is the judge of what it
/// accepts, and says so by ACK or NACK (the node status shows which).
pub fn filter_config(wasm_path: &str, settings: &FilterSettings) -> FilterConfig {
    let settings_json = serde_json::to_string(settings).unwrap_or_default();
    let plugin = PluginConfig {
        name: FILTER_NAME.into(),
        root_id: FILTER_NAME.into(),
        vm: Some(plugin_config::Vm::VmConfig(VmConfig {
            vm_id: VM_ID.into(),
            runtime: "envoy.wasm.runtime.v8".into(),
            code: Some(AsyncDataSource {
                specifier: Some(async_data_source::Specifier::Local(DataSource {
                    specifier: Some(data_source::Specifier::Filename(wasm_path.into())),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        configuration: Some(pack_any(StringValue { value: settings_json })),
        // A panic must not leave a worker dead (FAIL_CLOSED) or ungoverned (FAIL_OPEN).
        failure_policy: envoy_types::pb::envoy::extensions::wasm::v3::FailurePolicy::FailReload as i32,
        ..Default::default()
    };
    let resource = pack_any(TypedExtensionConfig {
        name: FILTER_NAME.into(),
        typed_config: Some(pack_any(Wasm { config: Some(plugin) })),
    });
    FilterConfig { version: content_version(&resource.encode_to_vec()), resource }
}

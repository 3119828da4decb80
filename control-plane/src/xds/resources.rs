//! Envoy resources built from Warden's state.

use super::cache::{FilterConfig, ResourceSet, content_version};
use crate::model::{Provider, Upstream};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{HeaderMutation as Mutation, header_mutation};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, AsyncDataSource, ConfigSource, DataSource, SocketAddress,
    TransportSocket, TypedExtensionConfig, address, async_data_source, config_source, data_source, socket_address,
    transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::filters::http::credential_injector::v3::CredentialInjector;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{HeaderMutation, Mutations};
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{HttpFilter, http_filter};
use envoy_types::pb::envoy::extensions::http::injected_credentials::generic::v3::Generic;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, GenericSecret, SdsSecretConfig, Secret, SubjectAltNameMatcher,
    UpstreamTlsContext, common_tls_context, secret, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{HttpProtocolOptions, http_protocol_options};
use envoy_types::pb::envoy::extensions::wasm::v3::{PluginConfig, VmConfig, plugin_config};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::StringValue;
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration as ProtoDuration};
use envoy_types::util::pack_any;
use prost::Message;
use warden_policy::FilterSettings;
use warden_policy::mcp::HUB_CLUSTER;
use warden_policy::records::{provider_cluster, provider_secret};

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
        // The filter pauses the headers until it has read `model` from the body; without this
        // Envoy turns the headers' StopIteration into StopAll, which holds back the body too.
        allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let resource = pack_any(TypedExtensionConfig {
        name: FILTER_NAME.into(),
        typed_config: Some(pack_any(Wasm { config: Some(plugin) })),
    });
    FilterConfig { name: FILTER_NAME.into(), version: content_version(&resource.encode_to_vec()), resource }
}

/// The CA bundle Envoy verifies https providers against, unless told otherwise.
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The clusters (CDS) and secrets (SDS) of every provider key: one cluster per key, which
/// injects its key from an SDS secret as `authorization: Bearer …` (the credential injector as
/// an upstream filter, so the key never passes through the filter or a route).
pub fn provider_resources(providers: &[Provider], ca_file: &str) -> (ResourceSet, ResourceSet) {
    let mut clusters = ResourceSet::new();
    let mut secrets = ResourceSet::new();
    for provider in providers {
        let Ok(upstream) = Upstream::parse(&provider.base_url) else { continue };
        for key in &provider.keys {
            let cluster = provider_cluster(&provider.name, &key.id);
            let secret = provider_secret(&provider.name, &key.id);
            let timeout = provider.timeouts.connect_ms;
            let built = key_cluster(&cluster, &secret, &upstream, timeout, ca_file, Audience::Provider);
            clusters.insert(cluster.clone(), pack_any(built));
            secrets.insert(secret.clone(), pack_any(generic_secret(&secret, &key.value)));
        }
    }
    (clusters, secrets)
}

/// The hub's cluster and the secret of its token: Envoy adds `authorization: Bearer <token>` to
/// every tool call it routes there, so the hub can refuse callers that bypass the filter.
pub fn hub_resources(advertise: &str, token: &str, clusters: &mut ResourceSet, secrets: &mut ResourceSet) {
    let Ok(upstream) = Upstream::parse(&format!("http://{advertise}")) else { return };
    let secret = "warden-hub-token";
    clusters
        .insert(HUB_CLUSTER.into(), pack_any(key_cluster(HUB_CLUSTER, secret, &upstream, 1_000, "", Audience::Hub)));
    secrets.insert(secret.into(), pack_any(generic_secret(secret, token)));
}

fn generic_secret(name: &str, value: &str) -> Secret {
    Secret {
        name: name.into(),
        r#type: Some(secret::Type::GenericSecret(GenericSecret {
            secret: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(value.into())),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

fn key_cluster(
    name: &str,
    secret: &str,
    upstream: &Upstream,
    connect_timeout_ms: u64,
    ca_file: &str,
    audience: Audience,
) -> Cluster {
    let address = Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: upstream.host.clone(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(upstream.port))),
            ..Default::default()
        })),
    };
    let endpoint = LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(address),
            hostname: upstream.host.clone(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let injector = CredentialInjector {
        // Without it the client's own Authorization (its virtual key) would go upstream.
        overwrite: true,
        credential: Some(TypedExtensionConfig {
            name: "envoy.http.injected_credentials.generic".into(),
            typed_config: Some(pack_any(Generic {
                credential: Some(SdsSecretConfig {
                    name: secret.into(),
                    sds_config: Some(ConfigSource {
                        resource_api_version: ApiVersion::V3 as i32,
                        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                            AggregatedConfigSource {},
                        )),
                        ..Default::default()
                    }),
                }),
                header: "authorization".into(),
                header_value_prefix: "Bearer ".into(),
            })),
        }),
        ..Default::default()
    };
    let filter = |name: &str, config: Any| HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    };
    let protocol = HttpProtocolOptions {
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(
                    http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(Default::default()),
                ),
            },
        )),
        http_filters: [
            (audience == Audience::Provider)
                .then(|| filter("envoy.filters.http.header_mutation", pack_any(internal_headers_removed()))),
            Some(filter("envoy.filters.http.credential_injector", pack_any(injector))),
            Some(filter("envoy.filters.http.upstream_codec", pack_any(UpstreamCodec {}))),
        ]
        .into_iter()
        .flatten()
        .collect(),
        ..Default::default()
    };
    let transport_socket = upstream.tls.then(|| TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(UpstreamTlsContext {
            sni: upstream.host.clone(),
            common_tls_context: Some(CommonTlsContext {
                validation_context_type: Some(common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(DataSource {
                            specifier: Some(data_source::Specifier::Filename(ca_file.into())),
                            ..Default::default()
                        }),
                        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                            san_type: subject_alt_name_matcher::SanType::Dns as i32,
                            matcher: Some(StringMatcher {
                                match_pattern: Some(string_matcher::MatchPattern::Exact(upstream.host.clone())),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        }))),
    });
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::StrictDns as i32)),
        connect_timeout: Some(ProtoDuration {
            seconds: (connect_timeout_ms / 1_000) as i64,
            nanos: ((connect_timeout_ms % 1_000) * 1_000_000) as i32,
        }),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints { lb_endpoints: vec![endpoint], ..Default::default() }],
            ..Default::default()
        }),
        transport_socket,
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            pack_any(protocol),
        )]
        .into(),
        ..Default::default()
    }
}

/// Who a key cluster leads to: the hub reads Warden's own `x-warden-*` headers (the caller's
/// key hash, agent mode's key), a provider never sees them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    Provider,
    Hub,
}

/// Every `x-warden-*` header, removed on the way to a provider: the route was chosen by one of
/// them and the hub reads others, but a provider gets none (they name keys and the cluster).
fn internal_headers_removed() -> HeaderMutation {
    let warden_prefix = StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Prefix("x-warden-".into())),
        ..Default::default()
    };
    HeaderMutation {
        mutations: Some(Mutations {
            request_mutations: vec![Mutation {
                action: Some(header_mutation::Action::RemoveOnMatch(header_mutation::RemoveOnMatch {
                    key_matcher: Some(warden_prefix),
                })),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

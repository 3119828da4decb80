//! Providers in process: the API never shows a key value; Envoy gets one cluster per key that
//! injects the key from its SDS secret, and the secret is the only place the value lives.

use super::tests::{app, call};
use super::*;
use crate::xds::cache::PolicyChange;
use axum::http::{Method, StatusCode};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{address, config_source, data_source, socket_address, transport_socket};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::extensions::filters::http::credential_injector::v3::CredentialInjector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
use envoy_types::pb::envoy::extensions::http::injected_credentials::generic::v3::Generic;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    Secret, UpstreamTlsContext, common_tls_context, secret, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use warden_policy::RecordKind;
use warden_policy::records::ProviderRecord;

const PROVIDERS: &str = "/api/providers";
const GEMINI: &str = "https://generativelanguage.googleapis.com/v1beta/openai";
const KEY_1: &str = "AIza-first-key-value-0001";
const KEY_2: &str = "AIza-second-key-value-0002";
const CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// POSTs `body`, expects 201, and returns the created provider.
async fn create(app: &Router, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, PROVIDERS, Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["provider"].clone()
}

/// Gemini through its OpenAI endpoint, with two keys.
fn gemini() -> Value {
    json!({"name": "gemini", "base_url": GEMINI, "models": ["gemini-2.0-flash"],
           "keys": [{"id": "k1", "value": KEY_1}, {"id": "k2", "value": KEY_2}]})
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap()
}

/// The provider record the filters receive, if published.
fn record(state: &AppState, provider: &str) -> Option<ProviderRecord> {
    let name = RecordKind::Provider.name(provider);
    let (changes, _) = state.cache.since(0);
    changes.into_iter().find_map(|change| match change {
        PolicyChange::Upsert { name: n, entry } if n == name => Some(serde_json::from_slice(&entry.body).unwrap()),
        _ => None,
    })
}

/// Every resource of one Envoy type in the cache, decoded, by name.
fn envoy_resources<T: Message + Name + Default>(state: &AppState) -> BTreeMap<String, T> {
    let set = state.cache.resources(&T::type_url());
    set.resources.into_iter().map(|(name, any)| (name, unpack(&any))).collect()
}

fn unpack<T: Message + Name + Default>(any: &Any) -> T {
    assert_eq!(any.type_url, T::type_url());
    T::decode(any.value.as_slice()).unwrap()
}

/// The key value a secret holds inline.
fn secret_value(secret: &Secret) -> &str {
    let Some(secret::Type::GenericSecret(generic)) = &secret.r#type else { panic!("not a generic secret") };
    match &generic.secret.as_ref().unwrap().specifier {
        Some(data_source::Specifier::InlineString(value)) => value,
        other => panic!("not inline: {other:?}"),
    }
}

/// The providers' resources: the MCP hub's cluster and secret are always published with them.
fn names<T>(resources: &BTreeMap<String, T>) -> Vec<&str> {
    resources.keys().map(String::as_str).filter(|n| !n.starts_with("warden-hub")).collect()
}

#[tokio::test]
async fn create_answers_201_with_the_provider_but_never_a_key_value() {
    let (app, _) = app().await;
    let mut body = gemini();
    body["rate_limit"] = json!({"request_max_limit": 100, "request_reset_duration": "1m"});
    let (status, created) = call(&app, Method::POST, PROVIDERS, Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["message"], "Provider created successfully");

    let mut provider = created["provider"].clone();
    let created_at = provider.as_object_mut().unwrap().remove("created_at").unwrap();
    let updated_at = provider.as_object_mut().unwrap().remove("updated_at").unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created_at.as_str().unwrap()).is_ok(), "{created_at}");
    assert_eq!(created_at, updated_at);
    assert_eq!(
        provider,
        json!({"name": "gemini", "kind": "openai", "base_url": GEMINI, "models": ["gemini-2.0-flash"],
               "keys": [{"id": "k1"}, {"id": "k2"}], "budgets": [],
               "timeouts": {"connect_ms": 5000, "request_ms": 300000},
               "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1m"},
               "calendar_aligned": false})
    );

    let (status, list) = call(&app, Method::GET, PROVIDERS, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((list["count"].clone(), list["providers"][0]["name"].clone()), (json!(1), json!("gemini")));
    let (status, one) = call(&app, Method::GET, &format!("{PROVIDERS}/gemini"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["provider"]["keys"], json!([{"id": "k1"}, {"id": "k2"}]));
    for shown in [&created, &list, &one] {
        let text = shown.to_string();
        assert!(!text.contains(KEY_1) && !text.contains(KEY_2), "a key value is shown: {text}");
        assert!(!text.contains("\"value\""), "{text}");
    }
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_a_taken_name_a_409() {
    let (app, state) = app().await;
    create(&app, gemini()).await;
    let cases = [
        (json!({"name": "Gemini", "base_url": GEMINI}), "name: must be"),
        (json!({"name": "-x", "base_url": GEMINI}), "name: must be"),
        (json!({"name": "x", "base_url": "ftp://x"}), "base_url: must start with http:// or https://"),
        (json!({"name": "x", "base_url": "http://h/v1?x=1"}), "base_url: must not carry a query"),
        (json!({"name": "x", "base_url": "http://h:port"}), "base_url: bad port"),
        (
            json!({"name": "x", "base_url": GEMINI, "keys": [{"id": "k", "value": "a"}, {"id": "k", "value": "b"}]}),
            "keys: lists the id 'k' twice",
        ),
        (json!({"name": "x", "base_url": GEMINI, "keys": [{"id": "k", "value": " "}]}), "keys[0].value"),
        (json!({"name": "x", "base_url": GEMINI, "keys": [{"id": "k"}]}), "keys[0].value: is required"),
        (json!({"name": "x", "base_url": GEMINI, "keys": [{"id": "k/1", "value": "v"}]}), "keys[0].id"),
        (json!({"name": "x", "base_url": GEMINI, "models": ["*"]}), "models: "),
        (json!({"name": "x", "base_url": GEMINI, "timeouts": {"connect_ms": 0}}), "timeouts: "),
        (json!({"name": "x", "base_url": GEMINI, "kind": "anthropic"}), "kind: unknown variant"),
        (json!({"name": "x", "base_url": GEMINI, "region": "eu"}), "unknown field `region`"),
        (
            json!({"name": "x", "base_url": GEMINI, "keys": [{"id": "k", "value": "v", "weight": 1}]}),
            "keys[0].weight: unknown field `weight`",
        ),
        (
            json!({"name": "x", "base_url": GEMINI, "rate_limit": {"request_max_limit": 5}}),
            "rate_limit.request_reset_duration",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = call(&app, Method::POST, PROVIDERS, Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(message(&answer).contains(expected), "{body}: {}", message(&answer));
    }

    let (status, answer) = call(&app, Method::POST, PROVIDERS, Some(&gemini().to_string())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(message(&answer), "name: a provider with this name already exists");
    assert_eq!(names(&envoy_resources::<Cluster>(&state)).len(), 2, "a refused provider publishes nothing");
}

#[tokio::test]
async fn put_keeps_the_value_of_a_listed_key_and_null_clears_the_rate_limit() {
    let (app, state) = app().await;
    let mut body = gemini();
    body["rate_limit"] = json!({"request_max_limit": 100, "request_reset_duration": "1m"});
    create(&app, body).await;
    let path = format!("{PROVIDERS}/gemini");

    // k1 listed without a value keeps it; k2 is dropped; k3 is new.
    let put = json!({"keys": [{"id": "k1"}, {"id": "k3", "value": "AIza-third"}], "rate_limit": null});
    let (status, updated) = call(&app, Method::PUT, &path, Some(&put.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["message"], "Provider updated successfully");
    assert_eq!(updated["provider"]["keys"], json!([{"id": "k1"}, {"id": "k3"}]));
    assert_eq!(updated["provider"]["rate_limit"], Value::Null);
    assert_eq!(updated["provider"]["models"], json!(["gemini-2.0-flash"]), "an omitted field stays");
    assert!(!updated.to_string().contains("AIza-third"));
    let secrets = envoy_resources::<Secret>(&state);
    assert_eq!(names(&secrets), ["warden-provider-key/gemini/k1", "warden-provider-key/gemini/k3"]);
    assert_eq!(secret_value(&secrets["warden-provider-key/gemini/k1"]), KEY_1);
    assert!(record(&state, "gemini").unwrap().limits.rate_limit.is_none());

    let put = json!({"keys": [{"id": "k1"}, {"id": "k4"}]});
    let (status, answer) = call(&app, Method::PUT, &path, Some(&put.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(message(&answer), "keys[1].value: is required for the new key id 'k4'");
    let (status, answer) = call(&app, Method::PUT, &path, Some(r#"{"name":"renamed"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(message(&answer).contains("unknown field `name`"), "{answer}");
    let (status, answer) = call(&app, Method::PUT, &path, Some(r#"{"base_url":"ftp://x"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(message(&answer).starts_with("base_url:"), "{answer}");

    let (_, shown) = call(&app, Method::GET, &path, None).await;
    assert_eq!(shown["provider"]["keys"], json!([{"id": "k1"}, {"id": "k3"}]), "a refused PUT changes nothing");
    assert_eq!(shown["provider"]["base_url"], GEMINI);
}

#[tokio::test]
async fn unknown_providers_are_404() {
    let (app, _) = app().await;
    let path = format!("{PROVIDERS}/nope");
    for (method, body) in [(Method::GET, None), (Method::PUT, Some("{}")), (Method::DELETE, None)] {
        let (status, answer) = call(&app, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {answer}");
        assert_eq!(message(&answer), "Provider 'nope' not found");
    }
}

#[tokio::test]
async fn the_filters_get_key_ids_and_the_base_path_but_no_key_value() {
    let (app, state) = app().await;
    create(&app, gemini()).await;
    create(&app, json!({"name": "mock", "base_url": "http://h:1", "keys": [{"id": "only", "value": "mock-key"}]}))
        .await;

    let gemini = record(&state, "gemini").expect("published on create");
    assert_eq!(gemini.base_path, "/v1beta/openai");
    assert_eq!((gemini.key_ids, gemini.models), (vec!["k1".to_owned(), "k2".into()], vec!["gemini-2.0-flash".into()]));
    assert_eq!(gemini.request_timeout_ms, Some(300_000));
    assert_eq!(record(&state, "mock").unwrap().base_path, "/v1");

    let (changes, _) = state.cache.since(0);
    for change in changes {
        if let PolicyChange::Upsert { name, entry } = change {
            let body = String::from_utf8_lossy(&entry.body);
            assert!(!body.contains(KEY_1) && !body.contains("mock-key"), "{name} carries a key value: {body}");
        }
    }
}

#[tokio::test]
async fn each_key_becomes_a_cluster_that_injects_its_secret() {
    let (app, state) = app().await;
    create(&app, gemini()).await;
    create(&app, json!({"name": "mock", "base_url": "http://h:1", "keys": [{"id": "only", "value": "mock-key"}]}))
        .await;

    let clusters = envoy_resources::<Cluster>(&state);
    assert_eq!(
        names(&clusters),
        ["warden-provider/gemini/k1", "warden-provider/gemini/k2", "warden-provider/mock/only"]
    );
    let secrets = envoy_resources::<Secret>(&state);
    assert_eq!(
        names(&secrets),
        ["warden-provider-key/gemini/k1", "warden-provider-key/gemini/k2", "warden-provider-key/mock/only"]
    );
    assert_eq!(secret_value(&secrets["warden-provider-key/gemini/k2"]), KEY_2);
    assert_eq!(secret_value(&secrets["warden-provider-key/mock/only"]), "mock-key");

    let k1 = &clusters["warden-provider/gemini/k1"];
    assert_eq!(k1.name, "warden-provider/gemini/k1");
    assert_eq!(
        k1.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::StrictDns as i32))
    );
    assert_eq!(k1.connect_timeout.map(|d| (d.seconds, d.nanos)), Some((5, 0)));
    assert_eq!(endpoint(k1), ("generativelanguage.googleapis.com".to_owned(), 443));
    let context = tls(k1).expect("https is TLS");
    assert_eq!(context.sni, "generativelanguage.googleapis.com");
    let Some(common_tls_context::ValidationContextType::ValidationContext(validation)) =
        context.common_tls_context.unwrap().validation_context_type
    else {
        panic!("no validation context")
    };
    let ca = validation.trusted_ca.unwrap().specifier;
    assert_eq!(ca, Some(data_source::Specifier::Filename(CA_FILE.into())));
    let [san] = validation.match_typed_subject_alt_names.as_slice() else { panic!("one SAN matcher") };
    assert_eq!(san.san_type, subject_alt_name_matcher::SanType::Dns as i32);
    let pattern = san.matcher.as_ref().unwrap().match_pattern.clone();
    assert_eq!(pattern, Some(string_matcher::MatchPattern::Exact("generativelanguage.googleapis.com".into())));
    assert_eq!(injected_secret(k1), "warden-provider-key/gemini/k1");

    let mock = &clusters["warden-provider/mock/only"];
    assert_eq!(endpoint(mock), ("h".to_owned(), 1));
    assert!(tls(mock).is_none(), "plain http has no TLS");
    assert_eq!(injected_secret(mock), "warden-provider-key/mock/only");

    for (name, cluster) in &clusters {
        let bytes = cluster.encode_to_vec();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY_1) && !text.contains(KEY_2) && !text.contains("mock-key"), "{name} holds a key");
    }
}

/// The host and port of a cluster's one endpoint.
fn endpoint(cluster: &Cluster) -> (String, u32) {
    let assignment = cluster.load_assignment.as_ref().unwrap();
    assert_eq!(assignment.cluster_name, cluster.name);
    let [locality] = assignment.endpoints.as_slice() else { panic!("one locality") };
    let [lb] = locality.lb_endpoints.as_slice() else { panic!("one endpoint") };
    let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier else { panic!("no endpoint") };
    let Some(address::Address::SocketAddress(socket)) = &endpoint.address.as_ref().unwrap().address else {
        panic!("no socket address")
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = socket.port_specifier else { panic!("no port") };
    (socket.address.clone(), port)
}

fn tls(cluster: &Cluster) -> Option<UpstreamTlsContext> {
    let socket = cluster.transport_socket.as_ref()?;
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else { panic!("untyped") };
    Some(unpack(any))
}

/// Checks the cluster's upstream filter chain (x-warden-* removed, the credential injector, then
/// the codec, which must come last) and returns the name of the secret it injects.
fn injected_secret(cluster: &Cluster) -> String {
    let options = &cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let options: HttpProtocolOptions = unpack(options);
    let filters: Vec<&str> = options.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.credential_injector",
            "envoy.filters.http.upstream_codec"
        ]
    );
    let Some(http_filter::ConfigType::TypedConfig(any)) = &options.http_filters[1].config_type else {
        panic!("untyped injector")
    };
    let injector: CredentialInjector = unpack(any);
    assert!(injector.overwrite, "the client's own authorization would go upstream");
    let credential = injector.credential.unwrap();
    let generic: Generic = unpack(credential.typed_config.as_ref().unwrap());
    assert_eq!((generic.header.as_str(), generic.header_value_prefix.as_str()), ("authorization", "Bearer "));
    let sds = generic.credential.unwrap();
    let source = sds.sds_config.unwrap().config_source_specifier;
    assert!(matches!(source, Some(config_source::ConfigSourceSpecifier::Ads(_))), "{source:?}");
    sds.name
}

#[tokio::test]
async fn delete_withdraws_the_record_clusters_and_secrets() {
    let (app, state) = app().await;
    create(&app, gemini()).await;
    create(&app, json!({"name": "mock", "base_url": "http://h:1", "keys": [{"id": "only", "value": "mock-key"}]}))
        .await;

    let (status, answer) = call(&app, Method::DELETE, &format!("{PROVIDERS}/gemini"), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["message"], "Provider deleted successfully");
    assert!(record(&state, "gemini").is_none());
    assert!(record(&state, "mock").is_some(), "the other provider stays");
    assert_eq!(names(&envoy_resources::<Cluster>(&state)), ["warden-provider/mock/only"]);
    assert_eq!(names(&envoy_resources::<Secret>(&state)), ["warden-provider-key/mock/only"]);

    let (status, _) = call(&app, Method::DELETE, &format!("{PROVIDERS}/mock"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        names(&envoy_resources::<Cluster>(&state)).is_empty() && names(&envoy_resources::<Secret>(&state)).is_empty()
    );
    // The hub's cluster stays, its token injected from SDS like a provider key.
    let secrets = envoy_resources::<Secret>(&state);
    assert_eq!(secret_value(&secrets["warden-hub-token"]), format!("{}", state.hub.endpoint.token));
    assert!(envoy_resources::<Cluster>(&state).contains_key("warden-hub"));
    let (_, list) = call(&app, Method::GET, PROVIDERS, None).await;
    assert_eq!(list, json!({"providers": [], "count": 0}));
}

#[tokio::test]
async fn rotating_a_key_changes_its_secret_but_not_the_clusters() {
    let (app, state) = app().await;
    create(&app, gemini()).await;
    let clusters_before = state.cache.resources(&Cluster::type_url());
    let secrets_before = state.cache.resources(&Secret::type_url());

    let put = json!({"keys": [{"id": "k1", "value": "AIza-rotated"}, {"id": "k2"}]});
    let (status, updated) = call(&app, Method::PUT, &format!("{PROVIDERS}/gemini"), Some(&put.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{updated}");

    assert_eq!(state.cache.resources(&Cluster::type_url()), clusters_before, "clusters are re-sent for nothing");
    assert_ne!(state.cache.resources(&Secret::type_url()).version, secrets_before.version);
    let secrets = envoy_resources::<Secret>(&state);
    assert_eq!(secret_value(&secrets["warden-provider-key/gemini/k1"]), "AIza-rotated");
    assert_eq!(secret_value(&secrets["warden-provider-key/gemini/k2"]), KEY_2);
}

//! `warden serve`'s files and its xDS port as built, over real TLS: who may connect, and as whom.

use super::*;
use crate::pki::Issued;
use crate::store::SqlStore;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::Any;
use prost::Name;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use warden_policy::lease::{LEASE_METHOD, LeaseReply, LeaseRequest, QUOTA_SERVICE};

const SECRET: &str = "warden-provider-key/main";

struct Port {
    address: String,
    authority: Authority,
}

/// The xDS port with mutual TLS, one provider key's secret in the cache.
async fn serve_tls() -> Port {
    let store: Arc<dyn Store> = Arc::new(SqlStore::in_memory().await.unwrap());
    let authority = Authority::load_or_create(store.as_ref()).await.unwrap();
    let cache = Arc::new(Cache::default());
    let secret = Any { type_url: Secret::type_url(), value: b"sk-provider".to_vec() };
    cache.set_resources(&Secret::type_url(), [(SECRET.to_owned(), secret)].into_iter().collect());
    let ads = AdsServer::new(cache.clone(), Arc::default(), Duration::from_secs(3600));
    let server = xds_server(ads, store, cache, Some(server_tls(&authority).unwrap())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
    Port { address, authority }
}

/// A TLS channel trusting `ca`, presenting `identity` when given.
async fn connect(port: &Port, ca: &str, identity: Option<&Issued>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name(crate::pki::SERVER_NAME);
    if let Some(issued) = identity {
        tls = tls.identity(Identity::from_pem(&issued.certificate, &issued.private_key));
    }
    Endpoint::from_shared(format!("https://{}", port.address))?.tls_config(tls)?.connect().await
}

/// Asks for the provider key's secret as `node_id`: the secret's name, or the refusal.
async fn ask_secret(channel: Channel, node_id: &str) -> Result<Vec<String>, tonic::Status> {
    let request = DiscoveryRequest {
        node: Some(Node { id: node_id.into(), ..Default::default() }),
        type_url: Secret::type_url(),
        resource_names: vec![SECRET.into()],
        ..Default::default()
    };
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut responses = client.stream_aggregated_resources(futures::stream::iter([request])).await?.into_inner();
    let response = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer"))??
        .ok_or_else(|| tonic::Status::aborted("stream ended"))?;
    Ok(response.resources.iter().map(|r| r.type_url.clone()).collect())
}

async fn lease(channel: Channel, node: &str) -> Result<LeaseReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = format!("/{QUOTA_SERVICE}/{LEASE_METHOD}").parse().unwrap();
    let request = tonic::Request::new(LeaseRequest { node: node.into(), wants: Vec::new() });
    let reply = grpc.unary(request, path, tonic_prost::ProstCodec::default()).await?;
    Ok(reply.into_inner())
}

#[tokio::test]
async fn a_node_certificate_gets_its_own_nodes_secrets_and_leases() {
    let port = serve_tls().await;
    let edge = port.authority.node("edge-a").unwrap();
    let channel = connect(&port, port.authority.certificate(), Some(&edge)).await.unwrap();
    assert_eq!(ask_secret(channel.clone(), "edge-a").await.unwrap(), [Secret::type_url()]);
    assert!(lease(channel, "edge-a").await.is_ok());
}

#[tokio::test]
async fn a_node_certificate_cannot_speak_as_another_node() {
    let port = serve_tls().await;
    let edge = port.authority.node("edge-a").unwrap();
    let channel = connect(&port, port.authority.certificate(), Some(&edge)).await.unwrap();
    let refused = ask_secret(channel.clone(), "edge-b").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    let refused = lease(channel, "edge-b").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
}

#[tokio::test]
async fn no_certificate_a_foreign_one_or_plaintext_gets_nothing() {
    let port = serve_tls().await;
    let ca = port.authority.certificate();
    // No client certificate: the handshake or the first call fails.
    let refused = match connect(&port, ca, None).await {
        Ok(channel) => ask_secret(channel, "edge-a").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a caller without a certificate got the secret");
    // A certificate of another CA (another Warden's, or self-made).
    let store = SqlStore::in_memory().await.unwrap();
    let foreign = Authority::load_or_create(&store).await.unwrap().node("edge-a").unwrap();
    let refused = match connect(&port, ca, Some(&foreign)).await {
        Ok(channel) => ask_secret(channel, "edge-a").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate of another CA got the secret");
    // Plaintext HTTP/2, as the reproduction sent it.
    let plain = Endpoint::from_shared(format!("http://{}", port.address)).unwrap().connect().await;
    let refused = match plain {
        Ok(channel) => ask_secret(channel, "edge-a").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plaintext caller got the secret");
}

#[tokio::test]
async fn the_data_folder_and_database_are_the_owner_s_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = DatabaseArgs { data_dir: data.clone(), database_url: None };
    let _store = args.open(true).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("warden.db")), 0o600);
}

//! The ADS server over a real gRPC connection: nonces, ACK, NACK parking, delta chunks and
//! removals.

use super::*;
use crate::xds::cache::FilterConfig;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::google::rpc;
use std::collections::HashMap;
use tokio_stream::wrappers::TcpListenerStream;

async fn serve(
    cache: Arc<Cache>,
    nodes: Arc<NodeRegistry>,
) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Heartbeats only right after the initial sync: an hour apart keeps them out of the way.
    let ads = AdsServer::new(cache, nodes, Duration::from_secs(3600));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(ads))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")).await.unwrap()
}

fn filter(version: &str) -> FilterConfig {
    let resource = Any { type_url: "t".into(), value: version.as_bytes().to_vec() };
    FilterConfig { name: "warden".into(), version: version.into(), resource }
}

async fn next<T>(stream: &mut Streaming<T>) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(300), stream.message()).await.ok().and_then(|m| m.ok().flatten())
}

#[tokio::test]
async fn a_nacked_filter_is_parked_until_the_next_change() {
    let cache = Arc::new(Cache::default());
    let nodes = Arc::new(NodeRegistry::default());
    cache.set_filter(filter("v1"));
    let mut client = serve(cache.clone(), nodes.clone()).await;
    let (tx, rx) = mpsc::channel(4);
    let mut responses = client.stream_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let request = |version: &str, nonce: &str, error: Option<&str>| DiscoveryRequest {
        node: Some(Node { id: "n1".into(), ..Default::default() }),
        type_url: TypedExtensionConfig::type_url(),
        resource_names: vec!["warden".into()],
        version_info: version.into(),
        response_nonce: nonce.into(),
        error_detail: error.map(|m| rpc::Status { code: 3, message: m.into(), ..Default::default() }),
        ..Default::default()
    };

    tx.send(request("", "", None)).await.unwrap();
    let first = next(&mut responses).await.expect("the filter config");
    assert_eq!((first.version_info.as_str(), first.nonce.as_str()), ("v1", "1"));

    tx.send(request("", "1", Some("Unable to create Wasm plugin warden"))).await.unwrap();
    assert!(next(&mut responses).await.is_none(), "a NACKed version was resent");
    let status = &nodes.all()[0];
    let nack = status.resources["filter"].nack.as_ref().expect("the NACK is recorded");
    assert_eq!((nack.version.as_str(), nack.reason.as_str()), ("v1", "Unable to create Wasm plugin warden"));

    // A stale nonce is ignored; a new version is sent.
    tx.send(request("", "0", None)).await.unwrap();
    assert!(next(&mut responses).await.is_none());
    cache.set_filter(filter("v2"));
    let second = next(&mut responses).await.expect("the new version");
    assert_eq!((second.version_info.as_str(), second.nonce.as_str()), ("v2", "2"));
    tx.send(request("v2", "2", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = &nodes.all()[0];
    assert_eq!(status.resources["filter"].acked_version.as_deref(), Some("v2"));
    assert!(status.resources["filter"].nack.is_none());
}

#[tokio::test]
async fn delta_sends_differences_in_chunks_then_changes_and_removals() {
    let cache = Arc::new(Cache::default());
    let nodes = Arc::new(NodeRegistry::default());
    cache.upsert((0..1200).map(|i| (format!("k{i:04}"), format!("{{\"i\":{i}}}").into_bytes())));
    let mut client = serve(cache.clone(), nodes.clone()).await;
    let (tx, rx) = mpsc::channel(4);
    let mut responses = client.delta_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let held: HashMap<String, String> = [
        ("k0000".to_string(), super::super::cache::content_version(b"{\"i\":0}")),
        ("gone".to_string(), "x".to_string()),
    ]
    .into();
    tx.send(DeltaDiscoveryRequest {
        node: Some(Node { id: "n1".into(), ..Default::default() }),
        type_url: POLICY_TYPE_URL.into(),
        initial_resource_versions: held,
        ..Default::default()
    })
    .await
    .unwrap();

    let (mut added, mut removed, mut nonces) = (0, Vec::new(), Vec::new());
    loop {
        let r = next(&mut responses).await.expect("a response");
        if r.type_url == HEARTBEAT_TYPE_URL {
            break;
        }
        assert!(r.resources.len() <= CHUNK);
        assert!(r.resources.iter().all(|res| res.name != "k0000"), "an unchanged record was resent");
        added += r.resources.len();
        removed.extend(r.removed_resources);
        nonces.push(r.nonce);
    }
    assert_eq!((added, removed.as_slice()), (1199, ["gone".to_string()].as_slice()));
    assert_eq!(nonces, ["1", "2", "3"]);
    tx.send(DeltaDiscoveryRequest {
        type_url: POLICY_TYPE_URL.into(),
        response_nonce: "3".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Let the ACK land before the next change moves the stream's nonce on.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(nodes.all()[0].policy_acked_seq, Some(1200));

    cache.remove("k0001");
    cache.upsert([("k0002".to_string(), b"{\"i\":\"changed\"}".to_vec())]);
    let mut seen = Vec::new();
    while let Some(r) = next(&mut responses).await {
        seen.extend(r.resources.into_iter().map(|res| format!("+{}", res.name)));
        seen.extend(r.removed_resources.into_iter().map(|n| format!("-{n}")));
    }
    seen.sort();
    assert_eq!(seen, ["+k0002", "-k0001"]);
}

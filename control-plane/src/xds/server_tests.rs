//! The ADS server over a real gRPC connection: nonces, ACK, NACK parking (the filter, clusters
//! and secrets share one stream, each type on its own), delta chunks and removals.

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
    // Heartbeats only right after the initial sync: an hour apart keeps them out of the way.
    serve_ads(AdsServer::new(cache, nodes, Duration::from_secs(3600))).await
}

async fn serve_ads(ads: AdsServer) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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

/// A filter's first policy request: its node and the records it holds.
fn subscription(node: &str, held: HashMap<String, String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node { id: node.into(), ..Default::default() }),
        type_url: POLICY_TYPE_URL.into(),
        initial_resource_versions: held,
        ..Default::default()
    }
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
    tx.send(subscription("n1", held)).await.unwrap();

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

#[tokio::test]
async fn a_new_stream_waits_for_the_store_before_it_is_told_what_to_delete() {
    // A replica behind the store: the record exists (another control plane created it) but
    // is not in this cache until it catches up.
    let cache = Arc::new(Cache::default());
    let behind = cache.clone();
    let catch_up: CatchUp = Arc::new(move || {
        let cache = behind.clone();
        Box::pin(async move { cache.upsert([("vk:new".to_string(), b"{}".to_vec())]) })
    });
    let ads = AdsServer::new(cache, Arc::new(NodeRegistry::default()), Duration::from_secs(3600));
    let mut client = serve_ads(ads.with_catch_up(catch_up)).await;
    let (tx, rx) = mpsc::channel(4);
    let mut responses = client.delta_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let held: HashMap<String, String> = [("vk:new".to_string(), super::super::cache::content_version(b"{}"))].into();
    let node = Some(Node { id: "n1".into(), ..Default::default() });
    let subscribe = DeltaDiscoveryRequest {
        node,
        type_url: POLICY_TYPE_URL.into(),
        initial_resource_versions: held,
        ..Default::default()
    };
    tx.send(subscribe).await.unwrap();
    let mut removed = Vec::new();
    while let Some(r) = next(&mut responses).await {
        if r.type_url == HEARTBEAT_TYPE_URL {
            break;
        }
        removed.extend(r.removed_resources);
    }
    assert!(removed.is_empty(), "a record the store holds was withdrawn: {removed:?}");
}

// === CDS and SDS on the state-of-the-world stream ===

/// One Envoy-like ADS stream of node `n1`.
struct Envoy {
    tx: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
}

impl Envoy {
    async fn connect(cache: &Arc<Cache>, nodes: &Arc<NodeRegistry>) -> Envoy {
        let mut client = serve(cache.clone(), nodes.clone()).await;
        let (tx, rx) = mpsc::channel(4);
        let responses = client.stream_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
        Envoy { tx, responses }
    }

    /// Asks for `names` of `type_url`; `answering` is the response this request ACKs, or NACKs
    /// with `error`.
    async fn request(
        &self,
        type_url: String,
        names: &[&str],
        answering: Option<&DiscoveryResponse>,
        error: Option<&str>,
    ) {
        let request = DiscoveryRequest {
            node: Some(Node { id: "n1".into(), ..Default::default() }),
            type_url,
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: answering.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: answering.map(|r| r.nonce.clone()).unwrap_or_default(),
            error_detail: error.map(|m| rpc::Status { code: 3, message: m.into(), ..Default::default() }),
            ..Default::default()
        };
        self.tx.send(request).await.unwrap();
    }

    /// Every response until the stream goes quiet.
    async fn drain(&mut self) -> Vec<DiscoveryResponse> {
        let mut all = Vec::new();
        while let Some(response) = next(&mut self.responses).await {
            all.push(response);
        }
        all
    }
}

/// Clusters and secrets named `warden-provider/<key>` and `warden-provider-key/<key>`; a
/// secret holds `value`.
fn publish(cache: &Cache, keys: &[(&str, &str)]) {
    let secrets = keys.iter().map(|(key, value)| {
        let name = format!("warden-provider-key/{key}");
        let secret = Any { type_url: Secret::type_url(), value: format!("{name}={value}").into_bytes() };
        (name, secret)
    });
    cache.set_resources(&Secret::type_url(), secrets.collect());
    let clusters = keys.iter().map(|(key, _)| {
        let name = format!("warden-provider/{key}");
        (name.clone(), Any { type_url: Cluster::type_url(), value: name.into_bytes() })
    });
    cache.set_resources(&Cluster::type_url(), clusters.collect());
}

/// The names of the resources a response carries (the fakes above hold their own name).
fn carried(response: &DiscoveryResponse) -> Vec<String> {
    response.resources.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect()
}

/// Waits (briefly) until the node's status satisfies `check`.
async fn node_status(nodes: &NodeRegistry, check: impl Fn(&super::super::status::NodeStatus) -> bool) {
    for _ in 0..100 {
        if nodes.all().first().is_some_and(&check) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("node status never matched: {:?}", nodes.all());
}

#[tokio::test]
async fn clusters_are_a_wildcard_and_secrets_are_sent_only_once_asked_for() {
    let (cache, nodes) = (Arc::new(Cache::default()), Arc::new(NodeRegistry::default()));
    publish(&cache, &[("a", "key-a")]);
    let mut envoy = Envoy::connect(&cache, &nodes).await;

    envoy.request(Cluster::type_url(), &[], None, None).await;
    let cds = next(&mut envoy.responses).await.expect("every cluster");
    assert_eq!(
        (cds.type_url.as_str(), carried(&cds)),
        (Cluster::type_url().as_str(), vec!["warden-provider/a".into()])
    );
    assert_eq!(cds.version_info, cache.resources(&Cluster::type_url()).version);

    // Envoy ACKs the clusters and, warming them, asks for their secret.
    envoy.request(Cluster::type_url(), &[], Some(&cds), None).await;
    envoy.request(Secret::type_url(), &["warden-provider-key/a"], None, None).await;
    let sds = next(&mut envoy.responses).await.expect("the secret asked for");
    assert_eq!(sds.type_url, Secret::type_url());
    assert_eq!(carried(&sds), ["warden-provider-key/a=key-a"]);
    assert_ne!(sds.nonce, cds.nonce);
    let status = &nodes.all()[0];
    assert_eq!(status.resources["clusters"].acked_version.as_deref(), Some(cds.version_info.as_str()));
    envoy.request(Secret::type_url(), &["warden-provider-key/a"], Some(&sds), None).await;

    // A second key: the clusters are sent again; its secret only once Envoy asks for it.
    publish(&cache, &[("a", "key-a"), ("b", "key-b")]);
    let sent = envoy.drain().await;
    let [cds2] = sent.as_slice() else { panic!("one response expected: {sent:?}") };
    assert_eq!(cds2.type_url, Cluster::type_url());
    assert_eq!(carried(cds2), ["warden-provider/a", "warden-provider/b"]);
    assert_ne!(cds2.version_info, cds.version_info);

    envoy.request(Cluster::type_url(), &[], Some(cds2), None).await;
    envoy.request(Secret::type_url(), &["warden-provider-key/a", "warden-provider-key/b"], Some(&sds), None).await;
    let sds2 = next(&mut envoy.responses).await.expect("both secrets");
    assert_eq!(sds2.type_url, Secret::type_url());
    assert_eq!(carried(&sds2), ["warden-provider-key/a=key-a", "warden-provider-key/b=key-b"]);
    assert!(envoy.drain().await.is_empty());
}

#[tokio::test]
async fn a_nacked_cluster_version_is_parked_while_secrets_keep_flowing() {
    let (cache, nodes) = (Arc::new(Cache::default()), Arc::new(NodeRegistry::default()));
    publish(&cache, &[("a", "key-a")]);
    let mut envoy = Envoy::connect(&cache, &nodes).await;
    envoy.request(Cluster::type_url(), &[], None, None).await;
    let cds = next(&mut envoy.responses).await.expect("the clusters");
    envoy.request(Secret::type_url(), &["warden-provider-key/a"], None, None).await;
    let sds = next(&mut envoy.responses).await.expect("the secret");

    envoy.request(Cluster::type_url(), &[], Some(&cds), Some("cluster: unknown upstream filter")).await;
    node_status(&nodes, |s| s.resources.get("clusters").is_some_and(|c| c.nack.is_some())).await;
    let nack = nodes.all()[0].resources["clusters"].nack.clone().unwrap();
    assert_eq!((nack.version, nack.reason.as_str()), (cds.version_info.clone(), "cluster: unknown upstream filter"));
    assert!(envoy.drain().await.is_empty(), "a NACKed version was resent");

    // Nonces are per type: each of these answers the other type's response, so is stale.
    envoy.request(Cluster::type_url(), &[], Some(&sds), None).await;
    envoy.request(Secret::type_url(), &["warden-provider-key/a"], Some(&cds), Some("stale")).await;

    // A rotated key flows; the parked clusters, unchanged, are not resent.
    publish(&cache, &[("a", "key-a-rotated")]);
    let sent = envoy.drain().await;
    let [sds2] = sent.as_slice() else { panic!("one response expected: {sent:?}") };
    assert_eq!(
        (sds2.type_url.clone(), carried(sds2)),
        (Secret::type_url(), vec!["warden-provider-key/a=key-a-rotated".into()])
    );
    let status = &nodes.all()[0];
    assert!(status.resources["clusters"].acked_version.is_none(), "a stale ACK was recorded");
    assert!(status.resources["clusters"].nack.is_some(), "a stale ACK cleared the NACK");
    assert!(!status.resources.contains_key("secrets"), "a stale NACK was recorded: {status:?}");

    // A change to the clusters unparks them; its ACK is recorded and clears the NACK.
    publish(&cache, &[("a", "key-a-rotated"), ("b", "key-b")]);
    let sent = envoy.drain().await;
    let cds2 = sent.iter().find(|r| r.type_url == Cluster::type_url()).expect("the changed clusters");
    assert_eq!(carried(cds2), ["warden-provider/a", "warden-provider/b"]);
    envoy.request(Cluster::type_url(), &[], Some(cds2), None).await;
    let acked = cds2.version_info.clone();
    node_status(&nodes, |s| s.resources["clusters"].acked_version.as_ref() == Some(&acked)).await;
    assert!(nodes.all()[0].resources["clusters"].nack.is_none());
}

#[tokio::test]
async fn a_nacked_secret_stays_parked_when_another_secret_changes() {
    let (cache, nodes) = (Arc::new(Cache::default()), Arc::new(NodeRegistry::default()));
    publish(&cache, &[("a", "key-a"), ("b", "key-b")]);
    let mut envoy = Envoy::connect(&cache, &nodes).await;
    envoy.request(Secret::type_url(), &["warden-provider-key/a"], None, None).await;
    let sds = next(&mut envoy.responses).await.expect("the secret");
    envoy.request(Secret::type_url(), &["warden-provider-key/a"], Some(&sds), Some("bad secret")).await;
    node_status(&nodes, |s| s.resources.get("secrets").is_some_and(|c| c.nack.is_some())).await;

    publish(&cache, &[("a", "key-a"), ("b", "key-b-rotated")]);
    assert!(envoy.drain().await.is_empty(), "the rejected secret was resent unchanged");
    publish(&cache, &[("a", "key-a-rotated"), ("b", "key-b-rotated")]);
    let sent = envoy.drain().await;
    let [sds2] = sent.as_slice() else { panic!("one response expected: {sent:?}") };
    assert_eq!(carried(sds2), ["warden-provider-key/a=key-a-rotated"]);
}

/// Another VM of an Envoy takes the policy stream over holding every record: the control plane
/// still answers (empty), and that answer's ACK tells admin changes the node holds the version.
#[tokio::test]
async fn a_stream_that_already_holds_everything_is_answered_and_its_ack_counts() {
    let cache = Arc::new(Cache::default());
    let nodes = Arc::new(NodeRegistry::default());
    cache.upsert([("k1".to_owned(), b"{}".to_vec())]);
    let mut client = serve(cache.clone(), nodes.clone()).await;
    let (tx, rx) = mpsc::channel(4);
    let mut responses = client.delta_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let held: HashMap<String, String> = [("k1".to_string(), super::super::cache::content_version(b"{}"))].into();
    tx.send(subscription("n1", held)).await.unwrap();
    let answer = next(&mut responses).await.expect("an answer although nothing changed");
    assert_eq!((answer.type_url.as_str(), answer.resources.len()), (POLICY_TYPE_URL, 0));
    let seq = cache.policy_seq();
    assert_eq!(answer.system_version_info, seq.to_string());
    let ack =
        DeltaDiscoveryRequest { type_url: POLICY_TYPE_URL.into(), response_nonce: answer.nonce, ..Default::default() };
    tx.send(ack).await.unwrap();
    let propagation = nodes.applied(seq, Duration::from_secs(5)).await;
    assert_eq!((propagation.applied, propagation.connected), (1, 1));
}

//! The admin API in process (no socket): shapes, validation, secrets, publishing.

use super::*;
use crate::publish::FilterSource;
use crate::store::SqlStore;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_policy::{FilterSettings, KeyHash, RecordKind, VirtualKeyRecord};

pub(crate) const TOKEN: &str = "admin-token-for-tests-0123";

pub(crate) async fn app() -> (Router, AppState) {
    let store: Arc<dyn Store> = Arc::new(SqlStore::in_memory().await.unwrap());
    let cache = Arc::new(Cache::default());
    let filter = FilterSource::new("/filter.wasm".into(), FilterSettings::for_cluster("warden_xds"), &cache);
    let hub = Arc::new(crate::hub::Hub::new(cache.clone(), "127.0.0.1:8082".into(), "http://127.0.0.1:8080"));
    let provider_ca_file = "/etc/ssl/certs/ca-certificates.crt".to_owned();
    let publisher = Arc::new(Publisher::new(store.clone(), cache.clone(), hub.clone(), filter, provider_ca_file));
    let authority = Arc::new(crate::pki::Authority::load_or_create(store.as_ref()).await.unwrap());
    let state = AppState {
        store,
        cache,
        nodes: Arc::new(NodeRegistry::default()),
        publisher,
        admin_token_sha256: token_hash(TOKEN),
        hub,
        // The commands and hosts the in-process tests configure.
        mcp_hosts: Arc::new(crate::model::McpHosts {
            stdio_commands: ["/nonexistent/mcp-server", "x", "/bin/other"].map(String::from).to_vec(),
            private_urls: true,
        }),
        authority,
    };
    (router(state.clone()), state)
}

pub(crate) async fn call(app: &Router, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const KEYS: &str = "/api/governance/virtual-keys";

async fn create(app: &Router, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, KEYS, Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["virtual_key"].clone()
}

/// Creates a team or customer (`path` "teams"/"customers", `field` "team"/"customer"); its id.
async fn create_owner(app: &Router, path: &str, field: &str) -> Value {
    let body = json!({"name": format!("{field}-1")}).to_string();
    let (status, created) = call(app, Method::POST, &format!("/api/governance/{path}"), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created[field]["id"].clone()
}

fn published(state: &AppState, secret: &str) -> Option<VirtualKeyRecord> {
    let (changes, _) = state.cache.since(0);
    let name = RecordKind::VirtualKey.name(&KeyHash::of(secret.as_bytes()).to_string());
    changes.into_iter().find_map(|c| match c {
        crate::xds::cache::PolicyChange::Upsert { name: n, entry } if n == name => {
            serde_json::from_slice(&entry.body).ok()
        }
        _ => None,
    })
}

#[tokio::test]
async fn every_route_but_health_needs_the_admin_token() {
    let (app, _) = app().await;
    for (auth, expected) in [(None, 401), (Some("Bearer wrong-token-wrong-token"), 401), (Some(TOKEN), 401)] {
        let mut req = Request::builder().uri(KEYS);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status().as_u16(), expected);
    }
    let resp = app.clone().oneshot(Request::builder().uri("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn create_shows_the_secret_once_and_stores_only_its_hash() {
    let (app, state) = app().await;
    let team = create_owner(&app, "teams", "team").await;
    let key = create(
        &app,
        json!({"name": "team-a", "description": "d", "team_id": team,
               "provider_configs": [{"provider": "openai", "weight": null, "allowed_models": ["gpt-4o-mini"]}],
               "mcp_configs": [{"mcp_client_name": "filesystem", "tools_to_execute": ["*"]}],
               "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}],
               "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1m"},
               "allow_all_providers": false, "disable_content_logging": true, "calendar_aligned": true}),
    )
    .await;
    let secret = key["value"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-bf-") && secret.len() == 42, "{secret}");
    assert_eq!(key["value_prefix"], &secret[..10]);
    assert!(key.get("value_hash").is_none());
    assert_eq!(key["provider_configs"][0]["weight"], Value::Null);
    assert_eq!(key["is_active"], true);
    assert_eq!(
        (key["disable_content_logging"].clone(), key["delete_after_expire"].clone()),
        (json!(true), Value::Null)
    );

    let id = key["id"].as_str().unwrap();
    let (status, got) = call(&app, Method::GET, &format!("{KEYS}/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!got.to_string().contains(&secret), "GET shows the secret");
    assert_eq!(got["virtual_key"]["budgets"][0]["reset_duration"], "1M");

    let record = published(&state, &secret).expect("published under the key's hash");
    assert_eq!((record.id.as_str(), record.is_active), (id, true));
}

#[tokio::test]
async fn an_existing_key_can_be_imported() {
    let (app, state) = app().await;
    let key = create(&app, json!({"name": "imported", "value": "sk-bf-existing-bifrost-key-1234"})).await;
    assert_eq!(key["value"], "sk-bf-existing-bifrost-key-1234");
    assert!(published(&state, "sk-bf-existing-bifrost-key-1234").is_some());
    let (status, body) = call(&app, Method::POST, KEYS, Some(r#"{"name":"x","value":"short"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("value:"), "{body}");
    let (status, body) =
        call(&app, Method::POST, KEYS, Some(r#"{"name":"again","value":"sk-bf-existing-bifrost-key-1234"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("value:"), "{body}");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let (app, _) = app().await;
    create(&app, json!({"name": "taken"})).await;
    let cases = [
        (r#"{"name":"a","colour":"red"}"#, "unknown field `colour`"),
        (r#"{"name":"a","is_active":"yes"}"#, "is_active: invalid type"),
        (r#"{"name":"a","provider_configs":[{"provider":"openai","weight":"x"}]}"#, "provider_configs[0].weight"),
        (
            r#"{"name":"a","team_id":"t","customer_id":"c"}"#,
            "team_id: VirtualKey cannot be attached to both Team and Customer",
        ),
        (r#"{"name":"taken"}"#, "name: a virtual key with this name already exists"),
        (
            r#"{"name":"a","provider_configs":[{"provider":"openai","allowed_models":["*","gpt-4o"]}]}"#,
            "provider_configs[0].allowed_models",
        ),
        (
            r#"{"name":"a","budgets":[{"max_limit":1,"reset_duration":"fortnightly"}]}"#,
            "budgets[0].reset_duration: invalid reset duration",
        ),
        (r#"{"name":"a","budgets":[{"max_limit":0,"reset_duration":"1d"}]}"#, "budgets[0].max_limit"),
        (r#"{"name":"a","rate_limit":{"token_max_limit":5}}"#, "rate_limit.token_reset_duration: is required"),
        (r#"{"name":"a","expires_at":"2001-01-01T00:00:00Z"}"#, "expires_at: must lie in the future"),
        (r#"{"name":"a","expires_at":"tomorrow"}"#, "expires_at: must be an RFC 3339 time"),
        (r#"{"name":"a","delete_after_expire":true}"#, "delete_after_expire: requires expires_at"),
        (r#"{"name":"a""#, "malformed JSON"),
        (r#"{"description":"no name"}"#, "missing field `name`"),
        ("", "the request body is empty"),
    ];
    for (body, expected) in cases {
        let (status, answer) = call(&app, Method::POST, KEYS, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
        assert_eq!(answer["type"], "invalid_request");
        assert_eq!(answer["status_code"], 400);
    }
}

#[tokio::test]
async fn put_leaves_what_it_omits_and_null_clears() {
    let (app, state) = app().await;
    let (team, customer) =
        (create_owner(&app, "teams", "team").await, create_owner(&app, "customers", "customer").await);
    let key =
        create(&app, json!({"name": "k", "team_id": team, "budget": {"max_limit": 5, "reset_duration": "1d"}})).await;
    assert_eq!(key["budgets"][0]["max_limit"], 5.0, "the singular budget is kept");
    let path = format!("{KEYS}/{}", key["id"].as_str().unwrap());

    let (status, updated) =
        call(&app, Method::PUT, &path, Some(r#"{"description":"changed","is_active":false}"#)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["virtual_key"]["team_id"], team, "an omitted team_id stays");
    assert_eq!(updated["virtual_key"]["budgets"][0]["max_limit"], 5.0);
    assert!(!published(&state, key["value"].as_str().unwrap()).unwrap().is_active);

    let body = json!({"customer_id": customer}).to_string();
    let (status, answer) = call(&app, Method::PUT, &path, Some(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let body = json!({"customer_id": customer, "team_id": null}).to_string();
    let (status, updated) = call(&app, Method::PUT, &path, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["virtual_key"]["team_id"].clone(), updated["virtual_key"]["customer_id"].clone()),
        (Value::Null, customer)
    );

    let (status, _) = call(&app, Method::PUT, &format!("{KEYS}/nope"), Some("{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_pages_and_delete_withdraws_the_record() {
    let (app, state) = app().await;
    let mut secrets = Vec::new();
    for i in 0..5 {
        secrets.push(create(&app, json!({"name": format!("key-{i}")})).await);
    }
    let (_, page) = call(&app, Method::GET, &format!("{KEYS}?limit=2&offset=1"), None).await;
    assert_eq!((page["count"].clone(), page["total_count"].clone()), (json!(2), json!(5)));
    assert_eq!(page["virtual_keys"][0]["name"], "key-1");
    let (_, found) = call(&app, Method::GET, &format!("{KEYS}?search=key-3"), None).await;
    assert_eq!(found["total_count"], 1);

    let id = secrets[0]["id"].as_str().unwrap();
    let (status, _) = call(&app, Method::DELETE, &format!("{KEYS}/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, Method::GET, &format!("{KEYS}/{id}"), None).await;
    assert_eq!((status, body["error"]["message"].as_str()), (StatusCode::NOT_FOUND, Some("Virtual key not found")));
    assert!(published(&state, secrets[0]["value"].as_str().unwrap()).is_none());
    assert_eq!(state.cache.policy_len(), 4);
}

#[tokio::test]
async fn filter_settings_are_typed_and_pushed() {
    let (app, state) = app().await;
    let before = state.cache.filter().unwrap().version;
    let (status, body) =
        call(&app, Method::PUT, "/api/envoy/filter-settings", Some(r#"{"control_plane_cluster":"x","nope":1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/envoy/filter-settings",
        Some(r#"{"control_plane_cluster":"warden_xds","staleness_bound_ms":60000}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(state.cache.filter().unwrap().version, before);
    let (_, shown) = call(&app, Method::GET, "/api/envoy/filter-settings", None).await;
    assert_eq!(shown["settings"]["staleness_bound_ms"], 60000);
}

#[tokio::test]
async fn prices_have_defaults_overrides_and_a_fallback() {
    let (app, state) = app().await;
    crate::publish::records::publish_prices(&state.cache, state.store.as_ref(), None).await.unwrap();
    let (status, list) = call(&app, Method::GET, "/api/prices", None).await;
    assert_eq!(status, StatusCode::OK);
    let mini = list["prices"].as_array().unwrap().iter().find(|p| p["name"] == "gpt-4o-mini").unwrap().clone();
    assert_eq!(mini["source"], "default");
    assert_eq!(mini["price"]["input_per_mtok"], 150_000);

    let cheap = r#"{"input_per_mtok": 1, "output_per_mtok": 2}"#;
    for name in ["gpt-4o-mini", "mock/gpt-4o-mini", "*"] {
        let (status, body) = call(&app, Method::PUT, &format!("/api/prices/{name}"), Some(cheap)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    let (status, body) = call(&app, Method::PUT, "/api/prices/x", Some(r#"{"input_per_mtok": -1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) =
        call(&app, Method::PUT, "/api/prices/x", Some(r#"{"input_per_mtok":1,"output_per_mtok":1,"colour":1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let names: Vec<String> = state
        .cache
        .initial(&Default::default())
        .0
        .into_iter()
        .filter_map(|c| match c {
            crate::xds::cache::PolicyChange::Upsert { name, .. } => Some(name),
            crate::xds::cache::PolicyChange::Remove { .. } => None,
        })
        .filter(|n| n.starts_with("price:"))
        .collect();
    assert!(names.contains(&"price:*".to_owned()) && names.contains(&"price:mock/gpt-4o-mini".to_owned()));

    // Removing an override brings the default back; removing the fallback withdraws it.
    assert_eq!(call(&app, Method::DELETE, "/api/prices/gpt-4o-mini", None).await.0, StatusCode::OK);
    assert_eq!(call(&app, Method::DELETE, "/api/prices/*", None).await.0, StatusCode::OK);
    assert_eq!(call(&app, Method::DELETE, "/api/prices/*", None).await.0, StatusCode::NOT_FOUND);
    let (_, list) = call(&app, Method::GET, "/api/prices", None).await;
    let mini = list["prices"].as_array().unwrap().iter().find(|p| p["name"] == "gpt-4o-mini").unwrap().clone();
    assert_eq!((mini["source"].as_str(), mini["price"]["input_per_mtok"].as_u64()), (Some("default"), Some(150_000)));
    assert!(!list.to_string().contains("\"name\":\"*\""));
}

#[tokio::test]
async fn a_node_certificate_is_issued_once_for_a_valid_node_id_and_its_key_is_never_audited() {
    let (app, _) = app().await;
    let (status, issued) = call(&app, Method::POST, "/api/envoy/nodes/edge-1/certificate", None).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["server_name"], "warden-xds");
    for field in ["certificate", "ca_certificate"] {
        assert!(issued[field].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{field}");
    }
    let key = issued["private_key"].as_str().unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let (status, refused) = call(&app, Method::POST, "/api/envoy/nodes/a%20b/certificate", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (_, log) = call(&app, Method::GET, "/api/audit", None).await;
    let text = log.to_string();
    let body = key.lines().nth(1).unwrap();
    assert!(!text.contains(body), "the node's private key reached the audit log");
    assert!(text.contains("POST /api/envoy/nodes/edge-1/certificate") && text.contains("[redacted]"));
}

#[tokio::test]
async fn admin_changes_are_audited_with_secrets_redacted() {
    let (app, _) = app().await;
    let (_, created) = call(&app, Method::POST, "/api/governance/virtual-keys", Some(r#"{"name":"audited"}"#)).await;
    let secret = created["virtual_key"]["value"].as_str().unwrap().to_owned();
    let id = created["virtual_key"]["id"].as_str().unwrap().to_owned();
    call(&app, Method::PUT, &format!("/api/governance/virtual-keys/{id}"), Some(r#"{"is_active":false}"#)).await;
    let provider = r#"{"name":"p","base_url":"http://127.0.0.1:1","keys":[{"id":"k","value":"sk-provider-secret"}]}"#;
    call(&app, Method::POST, "/api/providers", Some(provider)).await;
    let (status, log) = call(&app, Method::GET, "/api/audit", None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["POST /api/providers", &format!("PUT /api/governance/virtual-keys/{id}"), "POST /api/governance/virtual-keys"]
    );
    // The update records what it replaced, and what it became.
    let detail: Value = serde_json::from_str(log["entries"][1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["before"]["is_active"], true);
    assert_eq!(detail["response"]["virtual_key"]["is_active"], false);
    // Deleting the provider records it whole, its key's value redacted.
    call(&app, Method::DELETE, "/api/providers/p", None).await;
    let (_, log) = call(&app, Method::GET, "/api/audit", None).await;
    let detail: Value = serde_json::from_str(log["entries"][0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["before"]["name"], "p");
    assert_eq!(detail["before"]["keys"][0]["id"], "k");
    let text = log.to_string();
    assert!(!text.contains(&secret) && !text.contains("sk-provider-secret"), "a secret reached the audit log");
    assert!(text.contains("[redacted]"));
    let (_, check) = call(&app, Method::GET, "/api/audit/verify", None).await;
    assert_eq!((check["intact"].as_bool(), check["rows"].as_u64()), (Some(true), Some(4)));
}

#[tokio::test]
async fn only_a_successful_change_tells_the_other_control_planes() {
    let (app, state) = app().await;
    let generation = || crate::store::settings::policy_generation(state.store.as_ref());
    call(&app, Method::GET, KEYS, None).await;
    let (status, _) = call(&app, Method::POST, KEYS, Some(r#"{"name":"a","colour":"red"}"#)).await;
    assert_eq!((status, generation().await.unwrap()), (StatusCode::BAD_REQUEST, 0));
    create(&app, json!({"name": "replicated"})).await;
    assert_eq!(generation().await.unwrap(), 1);
}

#[tokio::test]
async fn a_key_can_carry_its_own_prices() {
    let (app, state) = app().await;
    let body = r#"{"name":"priced","prices":{"gpt-4o":{"input_per_mtok":1,"output_per_mtok":2}}}"#;
    let (status, created) = call(&app, Method::POST, "/api/governance/virtual-keys", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["virtual_key"]["prices"]["gpt-4o"]["output_per_mtok"], 2);
    let id = created["virtual_key"]["id"].as_str().unwrap();
    let key = state.store.virtual_key(id).await.unwrap().unwrap();
    assert_eq!(key.record(&Default::default()).prices["gpt-4o"].input_per_mtok, 1, "the filters get the key's prices");
    let bad = r#"{"name":"bad","prices":{"gpt-4o":{"input_per_mtok":1,"output_per_mtok":2,"per_token":3}}}"#;
    assert_eq!(call(&app, Method::POST, "/api/governance/virtual-keys", Some(bad)).await.0, StatusCode::BAD_REQUEST);
}

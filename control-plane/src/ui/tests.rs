//! The dashboard in process: who may see and change what, and that a change made here is the
//! admin API's (audited, published to the Envoys).

use crate::admin::tests::{TOKEN, app, call};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_policy::records::Records;
use warden_policy::{KeyHash, VirtualKeyRecord};

/// The dashboard and admin API as `warden serve` mounts them; the admin router, to check.
async fn dashboard() -> (Router, Router, crate::admin::AppState) {
    let (admin, state) = app().await;
    (admin.clone().merge(super::router(state.clone(), admin.clone())), admin, state)
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    html: String,
}

async fn send(ui: &Router, method: Method, path: &str, cookie: Option<&str>, form: Option<&str>) -> Page {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let request = request.body(form.map_or_else(Body::empty, |f| Body::from(f.to_owned()))).unwrap();
    let response = ui.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page { status, headers, html: String::from_utf8_lossy(&bytes).into_owned() }
}

fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{k}={}", super::views::url_encoded(v))).collect::<Vec<_>>().join("&")
}

/// Signs in; the cookie to send, and the session's CSRF token (read from a page's form).
async fn sign_in(ui: &Router) -> (String, String) {
    let answer = send(ui, Method::POST, "/ui/login", None, Some(&form(&[("token", TOKEN)]))).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = send(ui, Method::GET, "/ui/keys", Some(&cookie), None).await;
    let csrf = page.html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, csrf)
}

async fn keys(admin: &Router) -> Vec<Value> {
    let (_, listed) = call(admin, Method::GET, "/api/governance/virtual-keys", None).await;
    listed["virtual_keys"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn no_page_answers_without_a_session() {
    let (ui, _, _) = dashboard().await;
    assert_eq!(send(&ui, Method::GET, "/", None, None).await.headers[header::LOCATION], "/ui");
    for path in ["/ui", "/ui/keys", "/ui/keys/x", "/ui/fleet", "/ui/audit", "/ui/simulator"] {
        let page = send(&ui, Method::GET, path, None, None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.headers[header::LOCATION], "/ui/login", "{path}");
        // A made-up session is no session.
        let forged = send(&ui, Method::GET, path, Some("warden_ui=00"), None).await;
        assert_eq!(forged.status, StatusCode::SEE_OTHER, "{path}");
    }
    let change = send(&ui, Method::POST, "/ui/keys", None, Some(&form(&[("csrf", "x"), ("name", "k")]))).await;
    assert_eq!(change.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_in_takes_the_admin_token_only_and_sets_a_strict_http_only_cookie() {
    let (ui, admin, _) = dashboard().await;
    let wrong = send(&ui, Method::POST, "/ui/login", None, Some(&form(&[("token", "nope")]))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.html.contains("That is not the admin token"));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    // A virtual key is no admin token.
    let (_, created) = call(&admin, Method::POST, "/api/governance/virtual-keys", Some(r#"{"name":"k"}"#)).await;
    let secret = created["virtual_key"]["value"].as_str().unwrap();
    let with_key = send(&ui, Method::POST, "/ui/login", None, Some(&form(&[("token", secret)]))).await;
    assert_eq!(with_key.status, StatusCode::UNAUTHORIZED);

    let right = send(&ui, Method::POST, "/ui/login", None, Some(&form(&[("token", TOKEN)]))).await;
    assert_eq!((right.status, &right.headers[header::LOCATION]), (StatusCode::SEE_OTHER, &"/ui".parse().unwrap()));
    let cookie = right.headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    let session = cookie.split(';').next().unwrap();
    let overview = send(&ui, Method::GET, "/ui", Some(session), None).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.html.contains("<h1>Overview</h1>"), "{}", overview.html);
}

#[tokio::test]
async fn a_change_without_the_session_csrf_token_is_refused_and_changes_nothing() {
    let (ui, admin, _) = dashboard().await;
    let (cookie, csrf) = sign_in(&ui).await;
    let forged =
        send(&ui, Method::POST, "/ui/keys", Some(&cookie), Some(&form(&[("csrf", "forged"), ("name", "x")]))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let missing = send(&ui, Method::POST, "/ui/keys", Some(&cookie), Some("name=x")).await;
    assert!(missing.status.is_client_error());
    assert!(keys(&admin).await.is_empty());
    // Another session's token does not do either.
    let (other, _) = sign_in(&ui).await;
    let crossed =
        send(&ui, Method::POST, "/ui/keys", Some(&other), Some(&form(&[("csrf", &csrf), ("name", "x")]))).await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert!(keys(&admin).await.is_empty());
}

#[tokio::test]
async fn a_key_created_here_is_shown_once_blocked_with_a_confirmation_and_audited_as_the_dashboard() {
    let (ui, admin, state) = dashboard().await;
    let (cookie, csrf) = sign_in(&ui).await;
    let created = send(
        &ui,
        Method::POST,
        "/ui/keys",
        Some(&cookie),
        Some(&form(&[("csrf", &csrf), ("name", "ci"), ("body", "{}")])),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    let value = created.html.split("id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(value.starts_with("sk-bf-"), "{value}");
    let listed = keys(&admin).await;
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    // Shown once: the list and the key's page show only its prefix.
    let key_page = send(&ui, Method::GET, &format!("/ui/keys/{id}"), Some(&cookie), None).await;
    assert!(
        !key_page.html.contains(&value)
            && !send(&ui, Method::GET, "/ui/keys", Some(&cookie), None).await.html.contains(&value)
    );
    // Blocking asks first, then blocks: the published record every Envoy enforces says so.
    let ask = send(&ui, Method::GET, &format!("/ui/keys/{id}?confirm=block"), Some(&cookie), None).await;
    assert!(ask.html.contains("Yes, block it"), "{}", ask.html);
    let hash = KeyHash::of(value.as_bytes()).to_hex();
    let published = |state: &crate::admin::AppState| {
        crate::mcp::records::Published(&state.cache).get::<VirtualKeyRecord>(&hash).map(|r| r.is_active)
    };
    assert_eq!(published(&state), Some(true));
    let blocked =
        send(&ui, Method::POST, &format!("/ui/keys/{id}/block"), Some(&cookie), Some(&form(&[("csrf", &csrf)]))).await;
    assert_eq!(blocked.status, StatusCode::OK, "{}", blocked.html);
    assert!(blocked.html.contains("blocked"));
    assert_eq!(published(&state), Some(false));
    let (_, audit) = call(&admin, Method::GET, "/api/audit", None).await;
    let actors: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert!(actors.contains(&("dashboard", "POST /api/governance/virtual-keys")), "{actors:?}");
    assert!(actors.contains(&("dashboard", &*format!("PUT /api/governance/virtual-keys/{id}"))), "{actors:?}");
    // Edited as JSON: every field the admin API takes.
    let edited = send(
        &ui,
        Method::POST,
        &format!("/ui/keys/{id}/edit"),
        Some(&cookie),
        Some(&form(&[("csrf", &csrf), ("body", &json!({"name": "ci-renamed", "is_active": true}).to_string())])),
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.html);
    assert_eq!((keys(&admin).await[0]["name"].as_str(), published(&state)), (Some("ci-renamed"), Some(true)));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let (ui, _, _) = dashboard().await;
    let (cookie, csrf) = sign_in(&ui).await;
    let out = send(&ui, Method::POST, "/ui/logout", Some(&cookie), Some(&form(&[("csrf", &csrf)]))).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(send(&ui, Method::GET, "/ui", Some(&cookie), None).await.headers[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn the_simulator_decides_with_the_filter_s_policy_on_the_published_records() {
    let (ui, admin, _) = dashboard().await;
    let provider = json!({"name": "openai", "base_url": "https://api.openai.com", "models": ["gpt-4o-mini"],
                          "keys": [{"id": "k1", "value": "sk-provider-secret-0123456789"}]});
    let (status, answer) = call(&admin, Method::POST, "/api/providers", Some(&provider.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let key = json!({"name": "sim", "provider_configs": [{"provider": "openai", "weight": 1, "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"]}]});
    let (_, created) = call(&admin, Method::POST, "/api/governance/virtual-keys", Some(&key.to_string())).await;
    let id = created["virtual_key"]["id"].as_str().unwrap().to_owned();
    let (cookie, csrf) = sign_in(&ui).await;
    let decide = |path: &'static str, body: String| {
        let (ui, cookie, csrf, id) = (ui.clone(), cookie.clone(), csrf.clone(), id.clone());
        async move {
            let fields =
                [("csrf", csrf.as_str()), ("key_id", &id), ("method", "POST"), ("path", path), ("body", &body)];
            send(&ui, Method::POST, "/ui/simulator", Some(&cookie), Some(&form(&fields))).await.html
        }
    };
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let allowed = decide("/v1/chat/completions", chat("gpt-4o-mini")).await;
    assert!(allowed.contains("Allowed") && allowed.contains("sent to warden-provider/openai/k1"), "{allowed}");
    let blocked = decide("/v1/chat/completions", chat("gpt-4o")).await;
    assert!(blocked.contains("Refused: 403 model_blocked"), "{blocked}");
    let unknown = decide("/v1/nothing", chat("gpt-4o-mini")).await;
    assert!(unknown.contains("Refused: 404"), "{unknown}");
    let malformed = decide("/v1/chat/completions", "{".into()).await;
    assert!(malformed.contains("Refused: 400"), "{malformed}");
}

#[tokio::test]
async fn a_key_holder_sees_only_their_own_key_and_never_an_operator_page() {
    let (ui, admin, _) = dashboard().await;
    let mine = json!({"name": "holder-key", "budgets": [{"max_limit": 5.0, "reset_duration": "1d"}],
        "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h"}});
    let (_, created) = call(&admin, Method::POST, "/api/governance/virtual-keys", Some(&mine.to_string())).await;
    let secret = created["virtual_key"]["value"].as_str().unwrap().to_owned();
    call(&admin, Method::POST, "/api/governance/virtual-keys", Some(r#"{"name":"someone-else"}"#)).await;

    let wrong = send(&ui, Method::POST, "/ui/me/login", None, Some(&form(&[("key", "sk-bf-not-a-key")]))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let right = send(&ui, Method::POST, "/ui/me/login", None, Some(&form(&[("key", &secret)]))).await;
    assert_eq!((right.status, &right.headers[header::LOCATION]), (StatusCode::SEE_OTHER, &"/ui/me".parse().unwrap()));
    let set = right.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("warden_me=") && set.contains("Path=/ui/me") && set.contains("HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap();

    let page = send(&ui, Method::GET, "/ui/me", Some(cookie), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("holder-key") && page.html.contains("$5.000000"), "{}", page.html);
    assert!(page.html.contains("requests") && !page.html.contains("someone-else"), "{}", page.html);
    assert!(!page.html.contains(&secret), "the key is not echoed back");
    // A key holder's session opens no operator page, and an operator's no key holder's.
    for path in ["/ui", "/ui/keys", "/ui/audit"] {
        assert_eq!(send(&ui, Method::GET, path, Some(cookie), None).await.headers[header::LOCATION], "/ui/login");
    }
    let (operator, _) = sign_in(&ui).await;
    assert_eq!(send(&ui, Method::GET, "/ui/me", Some(&operator), None).await.headers[header::LOCATION], "/ui/me/login");
}

#[tokio::test]
async fn the_usage_explorer_filters_groups_and_downloads_csv() {
    let (ui, _, state) = dashboard().await;
    let record = |id: &str, key: &str, model: &str, cost: u64| warden_policy::ledger::UsageRecord {
        id: id.into(),
        at_ms: 1_800_000_000_000,
        key_id: key.into(),
        provider: "openai".into(),
        model: model.into(),
        input_tokens: 10,
        output_tokens: 5,
        cost_micros: cost,
        status: 200,
        ..Default::default()
    };
    let records =
        [record("a", "k1", "gpt-4o", 300), record("b", "k1", "gpt-4o-mini", 20), record("c", "=cmd", "gpt-4o", 1_000)];
    state.store.write_usage(&records).await.unwrap();
    let (cookie, _) = sign_in(&ui).await;
    let page = send(&ui, Method::GET, "/ui/usage?key_id=k1&group_by=model", Some(&cookie), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("$0.000320"), "k1's total: {}", page.html);
    assert!(page.html.contains("<td>gpt-4o</td>") && page.html.contains("<td>gpt-4o-mini</td>"), "{}", page.html);
    let csv = send(&ui, Method::GET, "/ui/usage.csv?group_by=key", Some(&cookie), None).await;
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.html.lines().collect();
    assert_eq!(lines[0], "group,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd");
    // Costliest first; a field a spreadsheet would run as a formula is defused.
    assert_eq!(lines[1], r#""'=cmd","1","10","0","5","0.001000""#);
    assert_eq!(lines[2], r#""k1","2","20","0","10","0.000320""#);
    assert_eq!(send(&ui, Method::GET, "/ui/usage.csv", None, None).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_provider_key_is_rotated_here_and_never_shown() {
    let (ui, _, state) = dashboard().await;
    let (cookie, csrf) = sign_in(&ui).await;
    let provider = json!({"name": "openai", "base_url": "https://api.openai.com", "models": ["gpt-4o-mini"],
        "keys": [{"id": "k1", "value": "sk-first-secret-0123456789"}, {"id": "k2", "value": "sk-other-secret-0123456789"}]});
    let added = send(
        &ui,
        Method::POST,
        "/ui/providers",
        Some(&cookie),
        Some(&form(&[("csrf", &csrf), ("body", &provider.to_string())])),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.html);
    assert!(added.html.contains("Rotate k1") && added.html.contains("Rotate k2"));
    let fields = [("csrf", csrf.as_str()), ("key_id", "k1"), ("value", "sk-rotated-secret-0123456789")];
    let rotated = send(&ui, Method::POST, "/ui/providers/openai/rotate", Some(&cookie), Some(&form(&fields))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.html);
    assert!(rotated.html.contains("Key &#39;k1&#39; of &#39;openai&#39; rotated"), "{}", rotated.html);
    let stored = state.store.provider("openai").await.unwrap().unwrap();
    let values: Vec<(&str, &str)> = stored.keys.iter().map(|k| (k.id.as_str(), k.value.as_str())).collect();
    assert_eq!(values, [("k1", "sk-rotated-secret-0123456789"), ("k2", "sk-other-secret-0123456789")]);
    for page in [&added.html, &rotated.html, &send(&ui, Method::GET, "/ui/providers", Some(&cookie), None).await.html] {
        assert!(!page.contains("secret-0123456789"), "a key value on a page");
    }
    let stale = [("csrf", "forged"), ("key_id", "k1"), ("value", "sk-attacker")];
    assert_eq!(
        send(&ui, Method::POST, "/ui/providers/openai/rotate", Some(&cookie), Some(&form(&stale))).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn teams_customers_and_model_configs_are_created_edited_and_deleted_here() {
    let (ui, admin, _) = dashboard().await;
    let (cookie, csrf) = sign_in(&ui).await;
    for (kind, body, list) in [
        ("teams", json!({"name": "research"}), "teams"),
        ("customers", json!({"name": "acme"}), "customers"),
        ("model-configs", json!({"model_name": "gpt-4o"}), "model_configs"),
    ] {
        let created = send(
            &ui,
            Method::POST,
            &format!("/ui/org/{kind}"),
            Some(&cookie),
            Some(&form(&[("csrf", &csrf), ("body", &body.to_string())])),
        )
        .await;
        assert_eq!(created.status, StatusCode::OK, "{kind}: {}", created.html);
        let (_, listed) = call(&admin, Method::GET, &format!("/api/governance/{kind}"), None).await;
        let id = listed[list][0]["id"].as_str().unwrap().to_owned();
        let edit = json!({"budgets": [{"max_limit": 7.0, "reset_duration": "1d"}]}).to_string();
        let saved = send(
            &ui,
            Method::POST,
            &format!("/ui/org/{kind}/{id}/edit"),
            Some(&cookie),
            Some(&form(&[("csrf", &csrf), ("body", &edit)])),
        )
        .await;
        assert_eq!(saved.status, StatusCode::OK, "{kind}: {}", saved.html);
        let (_, listed) = call(&admin, Method::GET, &format!("/api/governance/{kind}"), None).await;
        assert_eq!(listed[list][0]["budgets"][0]["max_limit"], 7.0, "{kind}: {listed}");
        let ask = send(&ui, Method::GET, &format!("/ui/org/{kind}/{id}?confirm=delete"), Some(&cookie), None).await;
        assert!(ask.html.contains("Yes, delete it"), "{kind}");
        let deleted = send(
            &ui,
            Method::POST,
            &format!("/ui/org/{kind}/{id}/delete"),
            Some(&cookie),
            Some(&form(&[("csrf", &csrf)])),
        )
        .await;
        assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{kind}: {}", deleted.html);
        let (_, listed) = call(&admin, Method::GET, &format!("/api/governance/{kind}"), None).await;
        assert_eq!(listed[list].as_array().map(Vec::len), Some(0), "{kind}: {listed}");
    }
    assert_eq!(send(&ui, Method::GET, "/ui/org/nothing", Some(&cookie), None).await.status, StatusCode::NOT_FOUND);
    let forged =
        send(&ui, Method::POST, "/ui/org/teams", Some(&cookie), Some(&form(&[("csrf", "x"), ("body", "{}")]))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_price_is_set_and_its_override_removed_here() {
    let (ui, admin, _) = dashboard().await;
    let (cookie, csrf) = sign_in(&ui).await;
    let fields =
        [("csrf", csrf.as_str()), ("name", "openai/gpt-4o"), ("input_per_mtok", "1234"), ("output_per_mtok", "5678")];
    let set = send(&ui, Method::POST, "/ui/prices", Some(&cookie), Some(&form(&fields))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.html);
    let price = |listed: &Value| {
        listed["prices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "openai/gpt-4o")
            .map(|p| p["price"]["input_per_mtok"].clone())
    };
    let (_, listed) = call(&admin, Method::GET, "/api/prices", None).await;
    assert_eq!(price(&listed), Some(json!(1234)));
    let bad = [("csrf", csrf.as_str()), ("name", "x"), ("input_per_mtok", "1.5"), ("output_per_mtok", "2")];
    assert_eq!(
        send(&ui, Method::POST, "/ui/prices", Some(&cookie), Some(&form(&bad))).await.status,
        StatusCode::BAD_REQUEST
    );
    let removed = send(
        &ui,
        Method::POST,
        "/ui/prices/remove",
        Some(&cookie),
        Some(&form(&[("csrf", &csrf), ("name", "openai/gpt-4o")])),
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.html);
    let (_, listed) = call(&admin, Method::GET, "/api/prices", None).await;
    assert_ne!(price(&listed), Some(json!(1234)));
}

#[tokio::test]
async fn a_refusal_in_the_audit_log_opens_in_the_simulator() {
    let (ui, _, state) = dashboard().await;
    let detail = json!({"id": "r1", "model": "gpt-4o", "provider": "openai"}).to_string();
    let event = crate::store::AuditEvent {
        actor: "filter".into(),
        action: "denied model_blocked/model_blocked".into(),
        target: "virtual key k-42".into(),
        status: 403,
        detail,
    };
    state.store.append_audit(event).await.unwrap();
    let (cookie, _) = sign_in(&ui).await;
    let audit = send(&ui, Method::GET, "/ui/audit", Some(&cookie), None).await;
    let link = audit.html.split("<a href=\"").find(|s| s.starts_with("/ui/simulator?")).expect("a replay link");
    // As a browser reads the attribute: askama writes `&` as `&#38;`.
    let link = link.split('"').next().unwrap().replace("&#38;", "&");
    let simulator = send(&ui, Method::GET, &link, Some(&cookie), None).await;
    assert_eq!(simulator.status, StatusCode::OK);
    assert!(simulator.html.contains("&#34;model&#34;:&#34;gpt-4o&#34;"), "the refused model: {}", simulator.html);
}

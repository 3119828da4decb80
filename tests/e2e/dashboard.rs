//! The dashboard end to end: in headless Chromium (`tests/ui/dashboard.py`, Playwright driving
//! Debian's Chromium), and its simulator against the real gateway.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use warden_tests::python_bin;
use warden_tests::stack::{ADMIN_TOKEN, MOCK_PROVIDER, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_creates_a_key_uses_it_watches_its_spend_and_blocks_it() {
    let _alone = warden_tests::heavy_or_timed().await;
    let stack = Stack::start().await;
    // `WARDEN_SCREENSHOTS=docs/ui` refreshes the README's screenshots; else they are checked and dropped.
    let temporary = tempfile::tempdir().expect("a folder for the screenshots");
    let shots =
        std::env::var_os("WARDEN_SCREENSHOTS").map_or_else(|| temporary.path().to_owned(), std::path::PathBuf::from);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ui/dashboard.py");
    let out = Command::new(python_bin())
        .arg(script)
        .env("ADMIN_URL", stack.admin(""))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GATEWAY_URL", stack.gateway(""))
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("dashboard: ok"), "{stdout}");
    for page in ["login", "overview", "keys", "key", "usage", "providers", "mcp", "fleet", "audit", "simulator"] {
        let png = std::fs::metadata(shots.join(format!("{page}.png"))).map(|m| m.len()).unwrap_or(0);
        assert!(png > 1_000, "no screenshot of {page}");
    }
}

/// A signed-in dashboard session: its cookie and CSRF token.
async fn sign_in(stack: &Stack, http: &reqwest::Client) -> (String, String) {
    let answer = http.post(stack.admin("/ui/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(stack.admin("/ui/simulator")).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, csrf)
}

/// The status the simulator says the gateway answers (200 for allowed).
async fn simulated(
    stack: &Stack,
    http: &reqwest::Client,
    session: &(String, String),
    key_id: &str,
    path: &str,
    body: &str,
) -> u16 {
    let form = [
        ("csrf", session.1.as_str()),
        ("key_id", key_id),
        ("method", "POST"),
        ("path", path),
        ("headers", ""),
        ("body", body),
    ];
    let page = http.post(stack.admin("/ui/simulator")).header("cookie", &session.0).form(&form).send().await.unwrap();
    let html = page.text().await.unwrap();
    let verdict = html.split("id=\"verdict\">").nth(1).unwrap_or_else(|| panic!("no verdict: {html}"));
    if verdict.contains(">Allowed<") {
        return 200;
    }
    let status = verdict.split("Refused: ").nth(1).and_then(|s| s.split(' ').next()).unwrap_or_default();
    status.parse().unwrap_or_else(|_| panic!("no status in the verdict: {verdict}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_agrees_with_the_gateway_on_generated_requests() {
    let stack = Stack::start().await;
    let admin = |k: &str| {
        json!({"name": k, "provider_configs": [{"provider": MOCK_PROVIDER, "weight": 1,
        "allowed_models": ["gpt-4o-mini", "regex:gpt-4o-2.*"], "blacklisted_models": ["gpt-4o-2024-08-06"], "key_ids": ["*"]}]})
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for (name, extra) in [
        ("sim-open", json!({})),
        ("sim-blocked", json!({"is_active": false})),
        // Expires a moment after it is created.
        ("sim-expired", json!({"expires_at": (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339()})),
        ("sim-no-provider", json!({"provider_configs": []})),
    ] {
        let mut body = admin(name);
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, created) =
            stack.admin_call(reqwest::Method::POST, "/api/governance/virtual-keys", Some(body)).await;
        assert!(status < 300, "{created}");
        let key: &Value = &created["virtual_key"];
        keys.push((key["id"].as_str().unwrap().to_owned(), key["value"].as_str().unwrap().to_owned()));
    }
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let session = sign_in(&stack, &http).await;
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let bodies = [
        chat("gpt-4o-mini"),
        // Allowed by the pattern; refused by the blacklist (both models the mock serves).
        chat("gpt-4o"),
        chat("gpt-4.1"),
        chat("mock/gpt-4o-mini"),
        chat("claude-3-5-sonnet"),
        chat("other/gpt-4o-mini"),
        "{not json".to_owned(),
        json!({"messages": []}).to_string(),
    ];
    let paths = ["/v1/chat/completions", "/v1/nothing"];
    let (mut compared, mut statuses) = (0, std::collections::BTreeMap::new());
    for (key_id, secret) in &keys {
        for path in paths {
            for body in &bodies {
                let expected = simulated(&stack, &http, &session, key_id, path, body).await;
                let answer = http
                    .post(stack.gateway(path))
                    .bearer_auth(secret)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let got = answer.status().as_u16();
                assert_eq!(
                    got, expected,
                    "key {key_id}, POST {path} {body}: the gateway said {got}, the simulator {expected}"
                );
                compared += 1;
                *statuses.entry(got).or_insert(0) += 1;
            }
        }
    }
    assert!(compared >= 50, "{compared} requests compared");
    // Allowed, and several kinds of refusal, were among them.
    for status in [200, 400, 403, 404] {
        assert!(statuses.contains_key(&status), "no {status} among {statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_permission_matrix_is_what_tool_execute_answers() {
    let stack = Stack::start().await;
    let time = warden_tests::mcp_server_bin("WARDEN_MCP_TIME", "venv/bin/mcp-server-time");
    let client = json!({"name": "time", "connection_type": "stdio", "tools_to_execute": ["*"],
        "stdio_config": {"command": time, "args": ["--local-timezone", "UTC"]}});
    crate::mcp::add_client(&stack, client).await;
    crate::mcp::wait_connected(&stack, &["time"]).await;
    let grant = |tools: Value| json!([{"mcp_client_name": "time", "tools_to_execute": tools}]);
    let keys = [
        stack.create_key(json!({"name": "matrix-all", "mcp_configs": grant(json!(["*"]))})).await,
        stack.create_key(json!({"name": "matrix-one", "mcp_configs": grant(json!(["get_current_time"]))})).await,
        stack.create_key(json!({"name": "matrix-none"})).await,
        stack
            .create_key(json!({"name": "matrix-blocked", "is_active": false, "mcp_configs": grant(json!(["*"]))}))
            .await,
    ];
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (cookie, _) = sign_in(&stack, &http).await;
    let html = http.get(stack.admin("/ui/mcp")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let cells: Vec<(String, String, String)> = html
        .split("<td data-key=\"")
        .skip(1)
        .map(|cell| {
            let field =
                |name: &str| cell.split(&format!("{name}=\"")).nth(1).unwrap().split('"').next().unwrap().to_owned();
            (cell.split('"').next().unwrap().to_owned(), field("data-tool"), field("data-verdict"))
        })
        .collect();
    let arguments = |tool: &str| match tool {
        "time-convert_time" => json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"}),
        _ => json!({"timezone": "UTC"}),
    };
    let mut checked = std::collections::BTreeMap::new();
    for (key_id, tool, verdict) in &cells {
        let Some(key) = keys.iter().find(|k| &k.id == key_id) else { continue };
        let call = json!({"id": "c1", "type": "function", "function": {"name": tool, "arguments": arguments(tool).to_string()}});
        let answer = http
            .post(stack.gateway("/v1/mcp/tool/execute?format=chat"))
            .bearer_auth(&key.secret)
            .json(&call)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or_default();
        if verdict == "allowed" {
            assert_eq!(status, 200, "{tool} for {key_id}: the matrix says allowed, the gateway {status} {body}");
        } else {
            assert!(status >= 400, "{tool} for {key_id}: the matrix says {verdict}, the gateway {status} {body}");
            assert_eq!(body["error"]["type"], *verdict, "{tool} for {key_id}");
        }
        *checked.entry(verdict.clone()).or_insert(0) += 1;
    }
    // Both of the server's tools for each of the four keys, allowed and refused among them.
    assert_eq!(checked.values().sum::<i32>(), 8, "{cells:?}");
    for verdict in ["allowed", "mcp_tool_blocked", "virtual_key_blocked"] {
        assert!(checked.contains_key(verdict), "no {verdict} cell among {checked:?}");
    }
}

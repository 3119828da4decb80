//! `/api/mcp/*` in process: validation, the immutable connection, redaction, the records and
//! index the filters receive, and a server that cannot start.

use super::tests::{app, call};
use super::*;
use crate::xds::cache::PolicyChange;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use warden_policy::mcp::{McpClientRecord, McpIndex};

const CLIENT: &str = "/api/mcp/client";

/// The record the cache serves under `name`, if any (`None` once withdrawn).
fn record<T: serde::de::DeserializeOwned>(state: &AppState, name: &str) -> Option<T> {
    let (changes, _) = state.cache.since(0);
    changes.into_iter().find_map(|change| match change {
        PolicyChange::Upsert { name: n, entry } if n == name => Some(serde_json::from_slice(&entry.body).unwrap()),
        _ => None,
    })
}

fn missing_program() -> Value {
    json!({
        "name": "ghost", "connection_type": "stdio",
        "stdio_config": {"command": "/nonexistent/mcp-server"},
        "headers": {"authorization": "Bearer s3cret", "x-api-key": "env.GHOST_KEY"},
        "tools_to_execute": ["*"], "tool_pricing": {"search": 0.002},
    })
}

#[tokio::test]
async fn bad_clients_are_400s_naming_the_field() {
    let (app, _) = app().await;
    let cases = [
        (json!({"name": "my-fs", "connection_type": "stdio", "stdio_config": {"command": "x"}}), "name:"),
        (json!({"name": "fs", "connection_type": "sse", "connection_string": "http://x/sse"}), "Streamable HTTP"),
        (json!({"name": "fs", "connection_type": "http", "connection_string": "ftp://x"}), "connection_string"),
        (json!({"name": "fs", "connection_type": "stdio"}), "stdio_config.command"),
        (json!({"name": "fs", "connection_type": "grpc"}), "connection_type"),
        (
            json!({"name": "fs", "connection_type": "stdio", "stdio_config": {"command": "x"}, "tools_to_execute": ["*", "a"]}),
            "tools_to_execute",
        ),
        (json!({"name": "fs", "connection_type": "stdio", "stdio_config": {"command": "x"}, "bogus": 1}), "bogus"),
        (
            json!({"name": "fs", "connection_type": "stdio", "stdio_config": {"command": "x", "envs": ["WARDEN_DATABASE_URL"]}}),
            "WARDEN_",
        ),
        (json!({"name": "fs", "connection_type": "http", "connection_string": "env.WARDEN_ADMIN_TOKEN"}), "WARDEN_"),
        (
            json!({"name": "fs", "connection_type": "stdio", "stdio_config": {"command": "x"}, "tool_pricing": {"a": 1e9}}),
            "tool_pricing.a",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = call(&app, Method::POST, CLIENT, Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(expected), "{body}: {answer}");
    }
}

#[tokio::test]
async fn a_client_is_published_redacted_and_withdrawn() {
    let (app, state) = app().await;
    let (status, created) = call(&app, Method::POST, CLIENT, Some(&missing_program().to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["client"]["config"]["client_id"].as_str().unwrap().to_owned();
    let (status, _) = call(&app, Method::POST, CLIENT, Some(&missing_program().to_string())).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The filters get the ceiling and the price in µ$; the index lists allow_by_default clients.
    let published: McpClientRecord = record(&state, "mcp:ghost").unwrap();
    assert_eq!((published.tools_to_execute, published.tool_pricing["search"]), (vec!["*".to_owned()], 2_000));
    assert_eq!(record::<McpIndex>(&state, "mcp:*").unwrap().allow_by_default, Vec::<String>::new());

    // A program that does not exist: the state says why, the hub keeps retrying.
    let mut listed = Value::Null;
    for _ in 0..50 {
        (_, listed) = call(&app, Method::GET, "/api/mcp/clients", None).await;
        if listed["clients"][0]["state"] == "error" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let shown = &listed["clients"][0];
    assert_eq!(shown["state"], "error", "{listed}");
    assert!(shown["error"].as_str().unwrap().contains("cannot start '/nonexistent/mcp-server'"), "{shown}");
    assert_eq!(shown["config"]["headers"], json!({"authorization": "<redacted>", "x-api-key": "env.GHOST_KEY"}));
    assert_eq!(listed["total_count"], 1);

    // The connection is immutable; the rest changes in place and is republished.
    let path = format!("{CLIENT}/{id}");
    let moved = json!({"stdio_config": {"command": "/bin/other"}}).to_string();
    let (status, answer) = call(&app, Method::PUT, &path, Some(&moved)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // A GET's redacted values sent back mean "unchanged": the stored secret stays.
    let round_trip = json!({"headers": shown["config"]["headers"]}).to_string();
    let (status, answer) = call(&app, Method::PUT, &path, Some(&round_trip)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stored = state.store.mcp_client(&id).await.unwrap().unwrap();
    assert_eq!(stored.headers["authorization"], "Bearer s3cret");
    let narrowed = json!({"tools_to_execute": ["search"], "allow_by_default": true}).to_string();
    let (status, _) = call(&app, Method::PUT, &path, Some(&narrowed)).await;
    assert_eq!(status, StatusCode::OK);
    let published: McpClientRecord = record(&state, "mcp:ghost").unwrap();
    assert_eq!(published.tools_to_execute, ["search"]);
    assert_eq!(record::<McpIndex>(&state, "mcp:*").unwrap().allow_by_default, ["ghost"]);

    let (status, _) = call(&app, Method::POST, &format!("{path}/reconnect"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    // The audit log never holds the headers or the URL.
    let (_, log) = call(&app, Method::GET, "/api/audit", None).await;
    assert!(!log.to_string().contains("s3cret"), "{log}");
    assert!(record::<McpClientRecord>(&state, "mcp:ghost").is_none(), "the record is withdrawn");
    let (status, _) = call(&app, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, Method::POST, &format!("{path}/reconnect"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_stdio_command_the_operator_did_not_allow_is_a_400() {
    let (app, _state) = app().await;
    let shell =
        json!({"name": "sh", "connection_type": "stdio", "stdio_config": {"command": "/bin/sh", "args": ["-c", "id"]}});
    let (status, answer) = call(&app, Method::POST, CLIENT, Some(&shell.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("stdio_config.command:"), "{answer}");
}

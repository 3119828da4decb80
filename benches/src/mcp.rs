//! The MCP part of the benchmark: one tool call through Envoy, the filter and the hub
//! (`/v1/mcp/tool/execute`) against the same call made directly to the same Streamable HTTP
//! server with rmcp, sequentially on one connection each, interleaved round by round.

use anyhow::{Context, bail};
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use std::time::{Duration, Instant};

/// Latencies of both paths, in µs, sorted.
pub struct ToolLatencies {
    pub direct: Vec<f64>,
    pub gateway: Vec<f64>,
}

/// Times `calls` calls of the server's `add` tool each way. `execute_url` is the gateway's
/// `/v1/mcp/tool/execute`, `mcp_url` the server's own endpoint.
pub async fn measure(execute_url: &str, key: &str, mcp_url: &str, calls: usize) -> anyhow::Result<ToolLatencies> {
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let direct = ClientConfig::default()
        .serve_with_lifecycle(StreamableHttpClientTransport::from_uri(mcp_url.to_owned()), lifecycle)
        .await
        .context("connecting to the MCP server directly")?;
    let http = reqwest::Client::new();
    let body =
        json!({"id": "c", "type": "function", "function": {"name": "bench-add", "arguments": "{\"a\":2,\"b\":40}"}});
    let mut latencies = ToolLatencies { direct: Vec::with_capacity(calls), gateway: Vec::with_capacity(calls) };
    let warm_up = 50;
    let round = 50;
    let mut n = 0;
    while n < calls + warm_up {
        for _ in 0..round {
            let args = json!({"a": 2, "b": 40}).as_object().cloned().unwrap_or_default();
            let start = Instant::now();
            let result = direct.call_tool(CallToolRequestParams::new("add").with_arguments(args)).await?;
            let took = start.elapsed();
            if result.is_error == Some(true) {
                bail!("the direct call failed: {result:?}");
            }
            if n >= warm_up {
                latencies.direct.push(took.as_secs_f64() * 1e6);
            }
            let start = Instant::now();
            let answer = http.post(execute_url).bearer_auth(key).json(&body).send().await?;
            let status = answer.status();
            let text = answer.text().await?;
            let took = start.elapsed();
            if !status.is_success() || !text.contains("42") {
                bail!("the call through the gateway failed ({status}): {text}");
            }
            if n >= warm_up {
                latencies.gateway.push(took.as_secs_f64() * 1e6);
            }
            n += 1;
        }
        // Let other work on this shared machine settle between rounds alike for both paths.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.direct.sort_by(f64::total_cmp);
    latencies.gateway.sort_by(f64::total_cmp);
    Ok(latencies)
}

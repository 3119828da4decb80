//! The gateway (Envoy's listener) as the hub reaches it. Agent mode's model steps and tool
//! calls, and Code Mode's tool calls, go there with the caller's key, so that each is judged,
//! limited, priced and billed like any request of that key.

use axum::http::{HeaderMap, HeaderValue};
use warden_policy::mcp::{INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER};

/// Sends requests to the gateway as a caller.
#[derive(Clone)]
pub struct GatewayClient {
    url: String,
    http: reqwest::Client,
}

impl GatewayClient {
    /// `url` is the gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(url: &str) -> GatewayClient {
        GatewayClient { url: url.trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    /// A POST to the gateway as a caller: its key and include headers.
    pub fn post(&self, path: &str, secret: &str, include: &[(&'static str, HeaderValue)]) -> reqwest::RequestBuilder {
        let mut request = self.http.post(format!("{}{path}", self.url)).header("x-bf-vk", secret);
        for (name, value) in include {
            request = request.header(*name, value.as_bytes());
        }
        request
    }
}

/// The caller's include headers, to send on with calls made as the caller.
pub fn include_headers(headers: &HeaderMap) -> Vec<(&'static str, HeaderValue)> {
    [INCLUDE_CLIENTS_HEADER, INCLUDE_TOOLS_HEADER]
        .into_iter()
        .filter_map(|name| headers.get(name).map(|v| (name, v.clone())))
        .collect()
}

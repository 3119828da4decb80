//! How an admin change reaches beyond its handler, one middleware each.
//!
//! To the other control planes on the same database ([`replicate`]): a successful change bumps
//! the store's policy generation; they poll it, and each republishes from the store.
//!
//! To the Envoys connected to this control plane ([`wait_applied`]): the change answers once
//! they enforce it: a key is usable, a raised budget spendable, a revoked key refused, the moment
//! its call returns. How far it got is said in the `x-warden-applied` header (`2/2 envoys in
//! 3 ms`); an Envoy that does not answer within [`APPLY_WAIT`] is not waited for longer (and is
//! logged).

use super::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;

/// The longest an admin change waits for the Envoys to apply it.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Says how many Envoys applied a change, and how long it took.
pub const APPLIED_HEADER: &str = "x-warden-applied";

/// Middleware: runs a change (POST, PUT, DELETE) as one publication of this control plane's
/// snapshot, so that a republication of the whole store never interleaves with it, and once it
/// succeeded tells the other control planes.
pub async fn replicate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::PUT | Method::DELETE) {
        return next.run(request).await;
    }
    let response = state.publisher.change(next.run(request)).await;
    if response.status().is_success()
        && let Err(e) = state.publisher.mark_changed().await
    {
        tracing::error!(error = %e, "other control planes will not see this change until they restart");
    }
    response
}

/// Middleware: after a successful change, waits until the connected Envoys apply it.
pub async fn wait_applied(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut response = next.run(request).await;
    if !changes || !response.status().is_success() {
        return response;
    }
    let seq = state.cache.policy_seq();
    let propagation = state.nodes.applied(seq, APPLY_WAIT).await;
    if propagation.applied < propagation.connected {
        tracing::warn!(
            applied = propagation.applied,
            connected = propagation.connected,
            version = seq,
            "an admin change was not applied by every connected Envoy in time"
        );
    }
    if let Ok(value) = HeaderValue::from_str(&propagation.header()) {
        response.headers_mut().insert(APPLIED_HEADER, value);
    }
    response
}

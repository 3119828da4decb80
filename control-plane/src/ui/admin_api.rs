//! The dashboard's way to read and change anything: the admin API itself, called in process.
//! A change made from the dashboard runs the very handlers a `curl` would (validation, the
//! audit log, publication, the wait for every Envoy), with the dashboard as the caller.

use crate::admin::DashboardCaller;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// The most of an admin answer the dashboard reads.
const MAX_ANSWER: usize = 16 << 20;

/// The admin API, as a service the dashboard calls.
#[derive(Clone)]
pub struct AdminApi(pub Router);

/// An answer: its status and its JSON body (`Null` when it had none).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The admin API's error message, for a page to show.
    pub fn error(&self) -> Option<String> {
        (!self.status.is_success()).then(|| {
            let message = self.body["error"]["message"].as_str().unwrap_or("the admin API refused the change");
            format!("{} ({})", message, self.status.as_u16())
        })
    }
}

impl AdminApi {
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// A self-service read, with a virtual key as the credential (no admin rights).
    pub async fn as_key_holder(&self, key: &str, path: &str) -> Answer {
        let request = Request::builder().method(Method::GET).uri(path).header("x-bf-vk", key).body(Body::empty());
        match request {
            Ok(request) => self.send(request).await,
            Err(_) => Answer { status: StatusCode::BAD_REQUEST, body: Value::Null },
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(extensions) = request.extensions_mut() {
            extensions.insert(DashboardCaller);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let Ok(request) = request.body(body) else {
            return Answer { status: StatusCode::BAD_REQUEST, body: Value::Null };
        };
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let Ok(response) = self.0.clone().oneshot(request).await;
        let status = response.status();
        let bytes = to_bytes(response.into_body(), MAX_ANSWER).await.unwrap_or_default();
        Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }
}

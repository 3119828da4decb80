//! Which key opened each 2025-11-25 `/mcp` session, and how many one key may hold.
//!
//! A session id is no credential: another key's request on it (a call, its GET stream, a
//! DELETE) is answered as for an unknown session. A key holds at most
//! [`MAX_SESSIONS_PER_KEY`] sessions: opening one more closes its own oldest, so one key cannot
//! fill the hub with sessions nor push out other keys'. Past [`MAX_SESSIONS`] in all, the
//! oldest session closes. A closed session is closed in rmcp too, never left ownerless.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use warden_policy::mcp::KEY_HASH_HEADER;

pub const SESSION_HEADER: &str = "mcp-session-id";
/// Sessions one key may hold open.
pub const MAX_SESSIONS_PER_KEY: usize = 16;
/// Sessions the hub holds open in all.
const MAX_SESSIONS: usize = 10_000;

pub struct Sessions {
    owners: Mutex<Owners>,
    manager: Arc<LocalSessionManager>,
}

/// Sessions by owner, oldest first.
#[derive(Default)]
struct Owners {
    by_session: HashMap<String, String>,
    by_key: HashMap<String, VecDeque<String>>,
    order: VecDeque<String>,
}

impl Owners {
    /// Records `session` as `key`'s; returns the sessions that must close to make room.
    fn open(&mut self, session: String, key: String) -> Vec<String> {
        if self.by_session.insert(session.clone(), key.clone()).is_some() {
            return Vec::new();
        }
        self.order.push_back(session.clone());
        let mine = self.by_key.entry(key).or_default();
        mine.push_back(session);
        let mut closing: Vec<String> = Vec::new();
        if mine.len() > MAX_SESSIONS_PER_KEY {
            closing.extend(mine.pop_front());
        }
        if self.order.len() > MAX_SESSIONS {
            closing.extend(self.order.front().cloned());
        }
        for session in &closing {
            self.forget(session);
        }
        closing
    }

    fn forget(&mut self, session: &str) {
        let Some(key) = self.by_session.remove(session) else { return };
        self.order.retain(|s| s != session);
        if let Some(mine) = self.by_key.get_mut(&key) {
            mine.retain(|s| s != session);
            if mine.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

impl Sessions {
    pub fn new(manager: Arc<LocalSessionManager>) -> Sessions {
        Sessions { owners: Mutex::default(), manager }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn owner(&self, session: &str) -> Option<String> {
        self.owners().by_session.get(session).cloned()
    }

    async fn open(&self, session: String, key: String) {
        let closing = self.owners().open(session, key);
        for session in closing {
            let _ = self.manager.close_session(&session.into()).await;
        }
    }

    fn close(&self, session: &str) {
        self.owners().forget(session);
    }
}

/// Middleware of `/mcp`: a session answers only its own key, and new sessions are recorded.
pub async fn bind(State(sessions): State<Arc<Sessions>>, request: Request, next: Next) -> Response {
    let text = |v: &HeaderValue| v.to_str().ok().map(str::to_owned);
    let key = request.headers().get(KEY_HASH_HEADER).and_then(text).unwrap_or_default();
    let session = request.headers().get(SESSION_HEADER).and_then(text);
    if let Some(session) = &session
        && sessions.owner(session).is_none_or(|owner| owner != key)
        && sessions.manager.has_session(&session.as_str().into()).await.unwrap_or(false)
    {
        return (StatusCode::NOT_FOUND, "Session not found").into_response();
    }
    let deleting = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    // rmcp ends a session with 202; clients (the Python SDK) expect 200 or 204 and warn.
    if deleting && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    if let Some(opened) = response.headers().get(SESSION_HEADER).and_then(text) {
        sessions.open(opened, key).await;
    }
    if let (true, Some(session)) = (deleting && response.status().is_success(), session) {
        sessions.close(&session);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_past_its_sessions_closes_its_own_oldest_and_no_one_elses() {
        let manager = Arc::new(LocalSessionManager::default());
        let sessions = Sessions::new(manager.clone());
        let mut opened = Vec::new();
        for _ in 0..=MAX_SESSIONS_PER_KEY {
            let (id, _transport) = manager.create_session().await.unwrap();
            sessions.open(id.to_string(), "greedy".into()).await;
            opened.push(id);
        }
        let (other, _transport) = manager.create_session().await.unwrap();
        sessions.open(other.to_string(), "other".into()).await;
        assert!(!manager.has_session(&opened[0]).await.unwrap(), "the greedy key's oldest session is closed");
        assert_eq!(sessions.owner(&opened[0]), None);
        for id in &opened[1..] {
            assert!(manager.has_session(id).await.unwrap());
            assert_eq!(sessions.owner(id).as_deref(), Some("greedy"));
        }
        assert_eq!(sessions.owner(&other).as_deref(), Some("other"));
        assert_eq!(sessions.owners().by_key["greedy"].len(), MAX_SESSIONS_PER_KEY);
    }
}

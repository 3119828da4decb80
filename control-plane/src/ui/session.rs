//! Dashboard sessions. Signing in with the admin token opens a session: a random id in an
//! HttpOnly, SameSite=Strict cookie (scripts cannot read it, other sites cannot send it), which
//! expires. Every change also carries the session's CSRF token in its form, checked against the
//! session, so a page of another origin cannot act with it even where SameSite is not honoured.

use axum::http::HeaderMap;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "warden_ui";
/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept: signing in past it drops the oldest.
const MAX_SESSIONS: usize = 256;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every change must carry.
    pub csrf: String,
    expires: Instant,
}

/// The open sessions, by id. In memory: a restart signs everyone out.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session; returns its id (the cookie's value).
    pub fn open(&self) -> String {
        let id = random_token();
        let session = Session { csrf: random_token(), expires: Instant::now() + LIFETIME };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), session);
        id
    }

    /// The live session a request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Ends the session a request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
    }
}

impl Session {
    /// Whether a form's CSRF token is this session's (compared in constant time).
    pub fn allows(&self, token: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// 32 random bytes from the OS-seeded CSPRNG, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session id in a request's `Cookie` header.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value))
}

/// The `Set-Cookie` value that opens a session in the browser.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}", LIFETIME.as_secs())
}

/// The `Set-Cookie` value that ends it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

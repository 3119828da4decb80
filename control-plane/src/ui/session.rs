//! Dashboard sessions. Signing in opens a session: a random id in an HttpOnly, SameSite=Strict
//! cookie (scripts cannot read it, other sites cannot send it), which expires. Every change also
//! carries the session's CSRF token in its form, checked against the session, so a page of
//! another origin cannot act with it even where SameSite is not honoured. Operators (the admin
//! token) and key holders (`/ui/me`, their virtual key) have separate stores and cookies: one
//! kind of session never opens the other's pages.

use axum::http::HeaderMap;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The open sessions of one kind, by id, each with what it holds (`T`). In memory: a restart
/// signs everyone out.
pub struct Sessions<T> {
    /// Its cookie's name.
    cookie: &'static str,
    /// The pages the cookie is sent to.
    path: &'static str,
    open: Mutex<HashMap<String, (Session, T)>>,
}

impl<T: Clone> Sessions<T> {
    pub fn new(cookie: &'static str, path: &'static str) -> Self {
        Sessions { cookie, path, open: Mutex::new(HashMap::new()) }
    }

    /// Opens a session holding `held`; returns its id (the cookie's value).
    pub fn open(&self, held: T) -> String {
        let id = random_token();
        let session = Session { csrf: random_token(), expires: Instant::now() + LIFETIME };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, (s, _)| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, (s, _))| s.expires).map(|(id, _)| id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), (session, held));
        id
    }

    /// The live session a request's cookie names, and what it holds.
    pub fn of(&self, headers: &HeaderMap) -> Option<(Session, T)> {
        let id = cookie(headers, self.cookie)?;
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id).filter(|(s, _)| s.expires > Instant::now()).cloned()
    }

    /// Ends the session a request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, self.cookie) {
            self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
    }

    /// The `Set-Cookie` value that opens session `id` in the browser.
    pub fn set_cookie(&self, id: &str) -> String {
        format!("{}={id}; Path={}; HttpOnly; SameSite=Strict; Max-Age={}", self.cookie, self.path, LIFETIME.as_secs())
    }

    /// The `Set-Cookie` value that ends it.
    pub fn clear_cookie(&self) -> String {
        format!("{}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0", self.cookie, self.path)
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

/// The value of cookie `name` in a request's `Cookie` header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(n, value)| (n == name).then_some(value))
}

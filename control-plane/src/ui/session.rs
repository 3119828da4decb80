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
/// The most sessions kept of one kind: signing in past it drops the oldest.
const MAX_SESSIONS: usize = 4_096;

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
    /// The most sessions holding the same thing: one key holder signing in again and again
    /// drops their own oldest session, never another holder's.
    per_holder: usize,
    open: Mutex<HashMap<String, (Session, T)>>,
}

impl<T: Clone + PartialEq> Sessions<T> {
    pub fn new(cookie: &'static str, path: &'static str, per_holder: usize) -> Self {
        Sessions { cookie, path, per_holder, open: Mutex::new(HashMap::new()) }
    }

    /// Opens a session holding `held`; returns its id (the cookie's value).
    pub fn open(&self, held: T) -> String {
        let id = random_token();
        let session = Session { csrf: random_token(), expires: Instant::now() + LIFETIME };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, (s, _)| s.expires > now);
        let same = open.values().filter(|(_, h)| *h == held).count();
        let evict = |open: &mut HashMap<String, (Session, T)>, of_holder: bool| {
            let candidates = open.iter().filter(|(_, (_, h))| !of_holder || *h == held);
            if let Some(oldest) = candidates.min_by_key(|(_, (s, _))| s.expires).map(|(id, _)| id.clone()) {
                open.remove(&oldest);
            }
        };
        if same >= self.per_holder {
            evict(&mut open, true);
        } else if open.len() >= MAX_SESSIONS {
            evict(&mut open, false);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(sessions: &Sessions<String>, id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::COOKIE, format!("{}={id}", sessions.cookie).parse().unwrap());
        headers
    }

    #[test]
    fn a_holder_signing_in_again_and_again_drops_only_their_own_oldest_session() {
        let sessions = Sessions::new("warden_me", "/ui/me", 4);
        let other = sessions.open("other-key".to_owned());
        let mine: Vec<String> = (0..6).map(|_| sessions.open("my-key".to_owned())).collect();
        assert!(sessions.of(&with_cookie(&sessions, &other)).is_some(), "another holder's session stays");
        let live = mine.iter().filter(|id| sessions.of(&with_cookie(&sessions, id)).is_some()).count();
        assert_eq!(live, 4);
        assert!(sessions.of(&with_cookie(&sessions, &mine[5])).is_some(), "the newest is kept");
    }
}

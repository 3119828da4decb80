//! Which VM holds the policy stream: a lease in shared data, won by compare-and-swap.
//!
//! Every root context ticks; the one holding an unexpired lease renews it, the others stay
//! followers. A crashed leader stops renewing and another VM takes over once its lease runs out.
//! Envoy's main-thread VM ticks first but serves no requests, and a VM reloaded after a crash
//! (Envoy's FAIL_RELOAD) only reappears on a worker, so a VM that has served requests may
//! take the lease from one that has not: the stream then lives where crashes are noticed and
//! healed.

use crate::{host, shared::LEADER_KEY};
use std::cell::Cell;

const ROOT_IDS_KEY: &str = "warden:root-ids";

thread_local! {
    // One VM runs on one thread: whether this VM's policy stream is open now.
    static HOLDS_STREAM: Cell<bool> = const { Cell::new(false) };
}

/// Notes whether this VM's policy stream is open (each tick, and when the VM stops).
pub fn set_holds_stream(open: bool) {
    HOLDS_STREAM.with(|h| h.set(open));
}

/// Whether this VM currently holds the policy stream.
#[cfg(feature = "crash-trigger")]
pub fn vm_holds_stream() -> bool {
    HOLDS_STREAM.with(Cell::get)
}

/// A lease as stored: `"<holder> <expires_ms> <served 0|1>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_ms: u64,
    pub served: bool,
}

impl Lease {
    fn encode(&self) -> String {
        format!("{} {} {}", self.holder, self.expires_ms, u8::from(self.served))
    }

    fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        let holder = parts.next()?.to_owned();
        let expires_ms = parts.next()?.parse().ok()?;
        let served = parts.next()? == "1";
        Some(Lease { holder, expires_ms, served })
    }
}

/// A name for a root context, unique within this Envoy process: a counter in shared data.
/// (Clocks and context ids both repeat across VMs.)
pub fn allocate_id() -> Option<String> {
    for _ in 0..16 {
        let (value, cas) = host::shared_get(ROOT_IDS_KEY);
        let last: u64 = value.as_deref().and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
        let next = last + 1;
        if host::shared_set(ROOT_IDS_KEY, next.to_string().as_bytes(), cas).is_ok() {
            return Some(format!("root{next}"));
        }
    }
    None
}

/// Whether `me` should write a fresh lease over `current`.
pub fn should_claim(current: Option<&Lease>, me: &str, served: bool, now_ms: u64) -> bool {
    match current {
        None => true,
        Some(lease) if lease.holder == me => true,
        Some(lease) => lease.expires_ms <= now_ms || (served && !lease.served),
    }
}

/// Claims or renews the lease for `me`; returns whether `me` holds it afterwards.
pub fn hold(me: &str, served: bool, lease_ms: u64, now_ms: u64) -> bool {
    let (value, cas) = host::shared_get(LEADER_KEY);
    let current = value.as_deref().and_then(Lease::decode);
    if !should_claim(current.as_ref(), me, served, now_ms) {
        return false;
    }
    let mine = Lease { holder: me.to_owned(), expires_ms: now_ms + lease_ms, served };
    if host::shared_set(LEADER_KEY, mine.encode().as_bytes(), cas).is_err() {
        return false;
    }
    // CAS has no insert-if-absent: two VMs can both "win" an empty key. Read it back; the loser
    // sees the other's name and backs off, the next tick settles it for good.
    host::shared_get(LEADER_KEY).0.as_deref().and_then(Lease::decode).is_some_and(|l| l.holder == me)
}

/// Gives the lease up at once (a root context going away), so another VM need not wait.
pub fn release(me: &str) {
    let (value, cas) = host::shared_get(LEADER_KEY);
    if value.as_deref().and_then(Lease::decode).is_some_and(|l| l.holder == me) {
        let _ = host::shared_set(LEADER_KEY, b"", cas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, expires_ms: u64, served: bool) -> Lease {
        Lease { holder: holder.into(), expires_ms, served }
    }

    #[test]
    fn lease_round_trips() {
        let l = lease("a1-2", 99, true);
        assert_eq!(Lease::decode(l.encode().as_bytes()), Some(l));
        assert_eq!(Lease::decode(b""), None);
        assert_eq!(Lease::decode(b"x y 1"), None);
    }

    #[test]
    fn claim_rules() {
        assert!(should_claim(None, "me", false, 0));
        assert!(should_claim(Some(&lease("me", 10, false)), "me", false, 5));
        assert!(!should_claim(Some(&lease("other", 10, false)), "me", false, 5));
        assert!(should_claim(Some(&lease("other", 10, false)), "me", false, 10));
        // A VM that serves requests displaces one that does not, never the reverse.
        assert!(should_claim(Some(&lease("other", 10, false)), "me", true, 5));
        assert!(!should_claim(Some(&lease("other", 10, true)), "me", true, 5));
    }
}

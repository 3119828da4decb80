//! What Warden's tests need and no shipped code does: a throwaway PostgreSQL server, and free
//! ports for test servers.
//!
//! A dev-dependency only. The control plane's store tests and the end-to-end tests (which run
//! several `warden` replicas on one database) both start their server here, so there is one way
//! to find the binaries, drop root, pick a port and clean up.

mod postgres;

pub use postgres::{Postgres, fresh_database};
use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Where [`free_port`] looks: below Linux's ephemeral range (32768 and up), which the kernel
/// hands to outgoing connections. A port from that range, free a moment ago, can be taken by
/// some client's connection before the server given it binds it (a control plane once failed to
/// start so).
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port on 127.0.0.1 that was free a moment ago, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<(u32, HashSet<u16>)>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Test binaries run one after another; each starts at its own place in the range.
    let (next, seen) = given.get_or_insert_with(|| (std::process::id().wrapping_mul(7_919), HashSet::new()));
    let span = u32::from(PORTS.end - PORTS.start);
    for _ in 0..span {
        *next = next.wrapping_add(1);
        let port = PORTS.start + u16::try_from(*next % span).expect("within the range");
        if !seen.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            seen.insert(port);
            return port;
        }
    }
    panic!("no free port in {PORTS:?}")
}

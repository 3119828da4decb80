//! What Warden's tests need and no shipped code does: a throwaway PostgreSQL server.
//!
//! A dev-dependency only. The control plane's store tests and the end-to-end tests (which run
//! several `warden` replicas on one database) both start their server here, so there is one way
//! to find the binaries, drop root, pick a port and clean up.

mod postgres;

pub use postgres::{Postgres, fresh_database};

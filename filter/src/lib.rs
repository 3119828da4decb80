//! Warden's proxy-wasm filter: a thin adapter between Envoy and `warden-policy`.
//!
//! Requests are judged in `request.rs` by `warden_policy` (`admit`, then `govern::inference`)
//! against records and counters in shared data (`shared.rs`). One VM per Envoy, elected in
//! `leader.rs`, keeps the policy stream (`policy_stream.rs`) and writes those records, reports
//! usage (`ledger.rs`) and keeps this Envoy's budget leases (`leases.rs`). Every hostcall goes
//! through `host.rs`, behind a trait that native unit tests fill with an Envoy in memory
//! (`fake_host.rs`).

#[cfg(test)]
mod fake_host;
mod host;
mod leader;
mod leases;
mod ledger;
mod metrics;
mod policy_stream;
mod random;
mod request;
mod root;
mod shared;
mod xds;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::WardenRoot::new()));
}}

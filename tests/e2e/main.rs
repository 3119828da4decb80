//! End to end on 127.0.0.1: real Envoy 1.40 (`--concurrency 2`), `warden serve` and the mock
//! provider, each started by the test and killed by pid when it ends. See README.md in this
//! folder for what each scenario proves.

mod agent;
mod bifrost;
mod changes;
mod clients;
mod codemode;
mod dashboard;
mod fleet;
mod governance;
mod ledger;
mod lifecycle;
mod mcp;
mod mcp_server;
mod resilience;
mod scale;

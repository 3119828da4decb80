//! The `warden` control plane: the admin API (`admin`), the store (SQLite or PostgreSQL), what
//! is published from the store (`publish`), the xDS server (the filter and policy records),
//! budget and limit leases and the usage ledger (`quota`; leases are sized by `allocation`),
//! mutual TLS on the xDS port (`pki`), the MCP hub (`hub`), which composes the MCP servers'
//! connections and catalog (`mcp`), agent mode (`agent`) and Code Mode (`codemode`), reaching the
//! gateway as the caller (`gateway`), the Envoy bootstrap, and the mock provider.

pub mod admin;
pub mod agent;
pub mod allocation;
pub mod bootstrap;
pub mod codemode;
pub mod gateway;
pub mod hub;
pub mod mcp;
pub mod mock_provider;
pub mod model;
pub mod pki;
pub mod publish;
pub mod quota;
pub mod serve;
pub mod store;
pub mod ui;
pub mod xds;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Warden: AI traffic governance inside Envoy")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: store, admin API, xDS.
    Serve(serve::ServeArgs),
    /// Run an OpenAI-compatible mock provider.
    MockProvider(mock_provider::MockArgs),
    /// Print the Envoy bootstrap for a Warden node (and fetch its xDS certificate).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Run one Code Mode program sent on standard input (started by `serve`, one per program).
    #[command(name = "codemode-worker", hide = true)]
    CodemodeWorker,
    /// Check that the audit log's hash chain is intact; exits non-zero if it is not.
    AuditVerify {
        /// The database, as given to `serve`.
        #[command(flatten)]
        database: serve::DatabaseArgs,
    },
}

/// Runs one subcommand to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::MockProvider(args) => mock_provider::run(args).await,
        Command::Bootstrap(args) => bootstrap::run(args).await,
        Command::CodemodeWorker => codemode::worker::serve().await,
        Command::AuditVerify { database } => {
            use store::AuditStore;
            let store = database.open(false).await?;
            let check = store.verify_audit().await?;
            match check.first_broken {
                None => {
                    println!("audit log intact: {} entries", check.rows);
                    Ok(())
                }
                Some(seq) => anyhow::bail!("audit log broken at entry {seq} of {}", check.rows),
            }
        }
    }
}

use clap::Parser;
use tracing_subscriber::EnvFilter;
use warden_control_plane::{Cli, Command};

fn main() -> anyhow::Result<()> {
    // sqlx logs PostgreSQL's notices at info ("relation _sqlx_migrations already exists").
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A Code Mode worker runs one program: one thread drives it, whatever the host's cores (each
    // worker thread's stack would count against the worker's address-space limit).
    let mut runtime = match cli.command {
        Command::CodemodeWorker => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().build()?.block_on(warden_control_plane::run(cli))
}

//! `warden serve`: the store, the admin API and the xDS server in one process.

use crate::admin::{self, AppState};
use crate::hub::Hub;
use crate::pki::Authority;
use crate::publish::{FilterSource, Publisher};
use crate::quota::{Lease, Report, Unary};
use crate::store::{SqlStore, Store, redacted_url, settings};
use crate::xds::resources::DEFAULT_CA_FILE;
use crate::xds::server::CatchUp;
use crate::xds::{AdsServer, Cache, NodeRegistry};
use anyhow::Context;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warden_policy::FilterSettings;
use warden_policy::settings::{BudgetAdmission, HEARTBEAT_INTERVAL_MS};

/// How often a control plane looks for changes made through another one on its database.
const STORE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,
    /// Address of the xDS (ADS) gRPC server that Envoy and the filter connect to.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds_addr: SocketAddr,
    /// Address of the MCP hub, where Envoy sends `/v1/mcp/tool/execute` (port 0: any free one).
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub hub_addr: SocketAddr,
    /// The hub's `host:port` as Envoy reaches it (e.g. `warden:8082` in docker-compose);
    /// `--hub-addr` when unset.
    #[arg(long)]
    pub hub_advertise: Option<String>,
    /// Browser origins that may call `/mcp` (CORS preflights answered for them); requests with
    /// any other `Origin` are refused with 403.
    #[arg(long = "mcp-allowed-origin")]
    pub mcp_allowed_origins: Vec<String>,
    /// The gateway (Envoy's listener) as the hub reaches it: agent mode sends each step's
    /// model call and tool calls there, as the caller's key.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The admin bearer token. Without it (and without a file), one is generated at the first
    /// start and printed once; only its hash is kept.
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin bearer token.
    #[arg(long, conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// The filter's .wasm as Envoy will load it (a path on Envoy's machine).
    #[arg(long)]
    pub filter_wasm: PathBuf,
    /// The Envoy cluster through which the filter reaches this server.
    #[arg(long, default_value = "warden_xds")]
    pub control_plane_cluster: String,
    /// The CA bundle Envoy verifies https providers against (a path on Envoy's machine).
    #[arg(long, default_value = DEFAULT_CA_FILE)]
    pub provider_ca_file: String,
    /// Initial staleness bound of the filter's policy, until changed by the admin API.
    #[arg(long)]
    pub staleness_bound_ms: Option<u64>,
    /// A command stdio MCP servers may run; repeat for several. Without any, stdio servers are
    /// refused: the admin token alone cannot start a program on this host.
    #[arg(long = "mcp-stdio-command")]
    pub mcp_stdio_commands: Vec<String>,
    /// Let MCP servers' URLs name loopback, private or link-local hosts (this host's own ports,
    /// a cloud's metadata service); refused by default.
    #[arg(long)]
    pub mcp_allow_private_urls: bool,
    /// Serve xDS, usage and leases in plaintext, to anyone who reaches `--xds-addr`, provider keys
    /// included. Without it the port takes mutual TLS only, from Envoys holding a node
    /// certificate of this control plane's CA (`warden bootstrap` fetches one).
    #[arg(long)]
    pub insecure_xds: bool,
    /// Initial budget admission (`spent`, Bifrost's; or `reserve`), until changed by the admin
    /// API.
    #[arg(long, value_parser = parse_admission)]
    pub budget_admission: Option<BudgetAdmission>,
}

/// Where the store is; `serve` and `audit-verify` take the same flags.
#[derive(Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Folder of the default database, the SQLite file `<data-dir>/warden.db`.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// The database instead: `sqlite://<file>`, or `postgres://<user>:<password>@<host>/<database>`,
    /// which several `warden` replicas may share. Its password is never logged.
    #[arg(long, env = "WARDEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redacted_url))
            .finish()
    }
}

impl DatabaseArgs {
    /// Opens the store and brings its schema up to date. `create_data_dir`: create the folder of
    /// the default SQLite file if it is missing (`serve`), rather than fail (`audit-verify`).
    pub async fn open(&self, create_data_dir: bool) -> anyhow::Result<SqlStore> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                if create_data_dir {
                    std::fs::create_dir_all(&self.data_dir)
                        .with_context(|| format!("creating {}", self.data_dir.display()))?;
                }
                format!("sqlite://{}", self.data_dir.join("warden.db").display())
            }
        };
        let store = SqlStore::connect(&url).await?;
        if self.database_url.is_none() {
            owner_only(&self.data_dir)?;
        }
        tracing::info!(url = %redacted_url(&url), "{} store ready", store.database());
        Ok(store)
    }
}

/// Makes the data folder and the database files in it readable by their owner alone: they hold
/// provider API keys and the hashes of virtual keys and of the admin token.
fn owner_only(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {}", path.display()))
    };
    set(dir, 0o700)?;
    for name in ["warden.db", "warden.db-wal", "warden.db-shm"] {
        let file = dir.join(name);
        if file.exists() {
            set(&file, 0o600)?;
        }
    }
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Processes of this user (a stdio MCP server, a Code Mode worker gone rogue) may not read
    // this one's memory or /proc/<pid>/environ, where the admin token or database URL may be.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("marking the process not dumpable")?;
    let store: Arc<dyn Store> = Arc::new(args.database.open(true).await?);
    let admin_token_sha256 = admin_token(&args, store.as_ref()).await?;
    let authority = Arc::new(Authority::load_or_create(store.as_ref()).await?);

    let cache = Arc::new(Cache::default());
    let nodes = Arc::new(NodeRegistry::default());
    let settings = match settings::filter_settings(store.as_ref()).await? {
        Some(settings) => settings,
        None => {
            let mut s = FilterSettings::for_cluster(&args.control_plane_cluster);
            if let Some(bound) = args.staleness_bound_ms {
                s.staleness_bound_ms = bound;
            }
            if let Some(admission) = args.budget_admission {
                s.budget_admission = admission;
            }
            s
        }
    };
    let wasm_path = std::path::absolute(&args.filter_wasm)?.display().to_string();
    let filter = FilterSource::new(wasm_path, settings, &cache);
    let hub_listener = tokio::net::TcpListener::bind(args.hub_addr)
        .await
        .with_context(|| format!("binding the MCP hub to {}", args.hub_addr))?;
    // Port 0 picks a free port: Envoy is told the one bound.
    let bound = hub_listener.local_addr()?;
    let hub = Arc::new(Hub::new(
        cache.clone(),
        args.hub_advertise.clone().unwrap_or_else(|| bound.to_string()),
        &args.gateway_url,
    ));
    let publisher =
        Arc::new(Publisher::new(store.clone(), cache.clone(), hub.clone(), filter, args.provider_ca_file.clone()));
    let state = AppState {
        store,
        cache: cache.clone(),
        nodes: nodes.clone(),
        publisher: publisher.clone(),
        admin_token_sha256,
        hub: hub.clone(),
        mcp_hosts: Arc::new(crate::model::McpHosts {
            stdio_commands: args.mcp_stdio_commands.clone(),
            private_urls: args.mcp_allow_private_urls,
        }),
        authority: authority.clone(),
    };
    publisher.start().await?;
    tracing::info!(records = cache.policy_len(), "policy loaded from the store");
    tokio::spawn(publisher.clone().follow(STORE_POLL));
    let admin_listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin API to {}", args.admin_addr))?;
    let xds_listener = tokio::net::TcpListener::bind(args.xds_addr)
        .await
        .with_context(|| format!("binding the xDS server to {}", args.xds_addr))?;
    tracing::info!(admin = %args.admin_addr, xds = %args.xds_addr, hub = %bound, "warden serving");

    let catch_up: CatchUp = Arc::new(move || {
        let publisher = publisher.clone();
        Box::pin(async move { publisher.catch_up().await })
    });
    let ads = AdsServer::new(cache, nodes, Duration::from_millis(HEARTBEAT_INTERVAL_MS)).with_catch_up(catch_up);
    let tls = if args.insecure_xds {
        tracing::warn!(xds = %args.xds_addr, "xDS in plaintext (--insecure-xds): whoever reaches it gets the provider keys");
        None
    } else {
        Some(server_tls(&authority)?)
    };
    let xds = xds_server(ads, state.store.clone(), state.cache.clone(), tls)?
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(xds_listener), shutdown());
    // The dashboard shares the admin address and calls the admin API in process.
    let admin_app = admin::router(state.clone()).merge(crate::ui::router(state.clone(), admin::router(state)));
    let admin = axum::serve(admin_listener, admin_app).with_graceful_shutdown(shutdown());
    let stopping = hub.clone();
    // Open `/mcp` streams would hold the graceful shutdown: they end as soon as it starts.
    let hub_server = axum::serve(hub_listener, crate::hub::router(hub.clone(), args.mcp_allowed_origins.clone()))
        .with_graceful_shutdown(async move {
            shutdown().await;
            stopping.shutdown();
        });
    let served = tokio::select! {
        r = xds => r.context("xDS server"),
        r = admin => r.context("admin API"),
        r = hub_server => r.context("MCP hub"),
    };
    hub.shutdown();
    served
}

/// The xDS port's gRPC server: ADS, usage reports and leases; behind `tls` (mutual) unless none.
pub fn xds_server(
    ads: AdsServer,
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> anyhow::Result<tonic::transport::server::Router> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    Ok(server
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(AggregatedDiscoveryServiceServer::new(ads))
        .add_service(Unary(Report(store.clone())))
        .add_service(Unary(Lease(store, cache))))
}

/// The xDS port's TLS: this replica's certificate, and client certificates required from the CA.
pub fn server_tls(authority: &Authority) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity};
    let server = authority.server()?;
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(Identity::from_pem(server.certificate, server.private_key))
        .client_ca_root(Certificate::from_pem(authority.certificate()))
        .timeout(Duration::from_secs(10)))
}

/// The admin token's hash: from the flag, the file, the store, or newly generated (printed once).
async fn admin_token(args: &ServeArgs, store: &dyn Store) -> anyhow::Result<[u8; 32]> {
    let given = match (&args.admin_token, &args.admin_token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned(),
        ),
        (None, None) => None,
    };
    if let Some(token) = given {
        anyhow::ensure!(token.len() >= 16, "the admin token needs at least 16 characters");
        return Ok(admin::token_hash(&token));
    }
    if let Some(hash) = settings::admin_token_sha256(store).await? {
        return Ok(hash);
    }
    let token = format!("wdn-admin-{}", uuid::Uuid::new_v4().simple());
    let hash = admin::token_hash(&token);
    if settings::insert_admin_token_sha256(store, hash).await? {
        println!("Generated admin token (shown once, only its hash is kept): {token}");
        return Ok(hash);
    }
    // Another replica on the same database generated one since we looked (and printed it): use
    // that one, so every replica accepts the same token.
    tracing::info!("another replica generated the admin token; using it");
    settings::admin_token_sha256(store).await?.context("the stored admin token hash vanished")
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

fn parse_admission(text: &str) -> Result<BudgetAdmission, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("'{text}' is not a budget admission: use spent or reserve"))
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;

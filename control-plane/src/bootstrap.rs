//! `warden bootstrap`: renders the Envoy bootstrap of a Warden node from `envoy/bootstrap.yaml`,
//! and in Warden mode fetches the node's certificate for the xDS port's mutual TLS from the
//! control plane's admin API.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TEMPLATE: &str = include_str!("../../envoy/bootstrap.yaml");
const FRAGMENTS: &str = include_str!("../../envoy/fragments.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The Warden filter, its policy and the provider clusters, all from the control plane.
    Warden,
    /// No filter, one static upstream (benchmark baseline).
    Bare,
    /// A static proxy-wasm filter from `--wasm` and one static upstream (benchmark baseline:
    /// the empty filter).
    Wasm,
}

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    #[arg(long, default_value = "warden-envoy")]
    pub node_id: String,
    /// Where Envoy accepts client traffic.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Envoy's admin interface.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// The control plane's xDS address, `host:port` (a DNS name works, e.g. in docker-compose).
    /// Several, comma-separated, for control planes that share one database: Envoy spreads
    /// its calls over them and its streams fail over.
    #[arg(long, default_value = "127.0.0.1:18000", value_delimiter = ',')]
    pub xds: Vec<String>,
    /// The static upstream of `--mode bare|wasm`, `http://host:port`. In Warden mode providers
    /// are created through the admin API instead.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    pub upstream: String,
    #[arg(long, value_enum, default_value_t = Mode::Warden)]
    pub mode: Mode,
    /// The .wasm of `--mode wasm`.
    #[arg(long, required_if_eq("mode", "wasm"))]
    pub wasm: Option<PathBuf>,
    /// The plugin configuration of `--mode wasm`'s filter, as text (the benchmark's recipes).
    #[arg(long, default_value = "")]
    pub wasm_config: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the node's certificate, its key and the CA go (Warden mode).
    #[arg(long, default_value = "xds-tls")]
    pub tls_dir: PathBuf,
    /// The control plane's admin API, which issues the node's certificate.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub control_plane: String,
    /// The admin bearer token, for the certificate.
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin bearer token.
    #[arg(long, conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// Connect to control planes started with `--insecure-xds`: plaintext, no certificate.
    #[arg(long)]
    pub insecure_xds: bool,
}

/// How long to wait for the control plane's admin API (it may be starting alongside).
const CONTROL_PLANE_WAIT: Duration = Duration::from_secs(30);

fn host_port(text: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text.rsplit_once(':').with_context(|| format!("{what} must be host:port"))?;
    let port = port.parse().with_context(|| format!("{what} must be host:port"))?;
    if host.is_empty() {
        bail!("{what} has no host");
    }
    Ok((host.to_owned(), port))
}

pub fn render(args: &BootstrapArgs) -> anyhow::Result<String> {
    let fragments: Vec<&str> = FRAGMENTS.split("\n---\n").collect();
    let [dynamic, xds_cluster, warden_filter, wasm_filter, warden_routes, static_routes, static_upstream, xds_tls] =
        fragments[..]
    else {
        bail!("envoy/fragments.yaml must hold eight fragments");
    };
    // The fragments file opens with a comment before the first fragment.
    let dynamic: String = dynamic.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    let mut xds_endpoints = Vec::new();
    for address in &args.xds {
        let (host, port) = host_port(address, "--xds")?;
        xds_endpoints.push(format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}"
        ));
    }
    let text = match args.mode {
        Mode::Warden => {
            let tls = if args.insecure_xds {
                String::new()
            } else {
                xds_tls.replace("{{TLS_DIR}}", &std::path::absolute(&args.tls_dir)?.display().to_string())
            };
            TEMPLATE
                .replace("{{DYNAMIC_RESOURCES}}", &dynamic)
                .replace("{{ROUTES}}", warden_routes)
                .replace("{{HTTP_FILTERS}}", warden_filter)
                .replace("{{STATIC_CLUSTERS}}", &xds_cluster.replace("{{XDS_TLS}}", &tls))
        }
        Mode::Bare | Mode::Wasm => {
            let authority = args
                .upstream
                .strip_prefix("http://")
                .context("--upstream must be http://host:port (benchmark baselines only)")?;
            let (host, port) = host_port(authority.trim_end_matches('/'), "--upstream")?;
            let filters = match (args.mode, &args.wasm) {
                (Mode::Wasm, Some(path)) => {
                    if args.wasm_config.contains(['\'', '\n']) {
                        bail!("--wasm-config may not hold quotes or line breaks");
                    }
                    wasm_filter
                        .replace("{{WASM_PATH}}", &std::path::absolute(path)?.display().to_string())
                        .replace("{{WASM_CONFIG}}", &args.wasm_config)
                }
                (Mode::Wasm, None) => bail!("--wasm is required with --mode wasm"),
                _ => String::new(),
            };
            TEMPLATE
                .replace("{{DYNAMIC_RESOURCES}}", "")
                .replace("{{ROUTES}}", static_routes)
                .replace("{{HTTP_FILTERS}}", &filters)
                .replace("{{STATIC_CLUSTERS}}", static_upstream)
                .replace("{{UPSTREAM_HOST}}", &host)
                .replace("{{UPSTREAM_PORT}}", &port.to_string())
        }
    };
    Ok(text
        .replace("{{NODE_ID}}", &args.node_id)
        .replace("{{ADMIN_HOST}}", &args.admin.ip().to_string())
        .replace("{{ADMIN_PORT}}", &args.admin.port().to_string())
        .replace("{{LISTEN_HOST}}", &args.listen.ip().to_string())
        .replace("{{LISTEN_PORT}}", &args.listen.port().to_string())
        .replace("{{XDS_ENDPOINTS}}", &xds_endpoints.join("\n")))
}

pub async fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    if args.mode == Mode::Warden && !args.insecure_xds {
        fetch_certificate(&args).await?;
    }
    let text = render(&args)?;
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Asks the control plane for this node's certificate and writes it, its key (owner-only) and
/// the CA into `--tls-dir`.
async fn fetch_certificate(args: &BootstrapArgs) -> anyhow::Result<()> {
    let token = match (&args.admin_token, &args.admin_token_file) {
        (Some(token), _) => token.trim().to_owned(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned()
        }
        (None, None) => bail!(
            "the node's xDS certificate comes from the admin API: give --admin-token-file or \
             WARDEN_ADMIN_TOKEN (or --insecure-xds for a control plane without TLS)"
        ),
    };
    let url = format!("{}/api/envoy/nodes/{}/certificate", args.control_plane.trim_end_matches('/'), args.node_id);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let start = Instant::now();
    let response = loop {
        match http.post(&url).bearer_auth(&token).send().await {
            Ok(response) if !response.status().is_server_error() => break response,
            failed if start.elapsed() > CONTROL_PLANE_WAIT => {
                let why = failed.map_or_else(|e| e.to_string(), |r| r.status().to_string());
                bail!("no certificate from {url} within {CONTROL_PLANE_WAIT:?}: {why}");
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await.with_context(|| format!("{url} answered {status}"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body["error"]["message"].as_str().unwrap_or("no reason given"));
    }
    let pem = |field: &str| body[field].as_str().with_context(|| format!("{url} sent no {field}"));
    write_tls_dir(&args.tls_dir, pem("certificate")?, pem("private_key")?, pem("ca_certificate")?)
}

fn write_tls_dir(dir: &Path, certificate: &str, private_key: &str, ca: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let write = |name: &str, text: &str, mode: u32| -> anyhow::Result<()> {
        let path = dir.join(name);
        // Replaced, not rewritten in place: a key file never exists with wider permissions.
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        Ok(())
    };
    write("node-key.pem", private_key, 0o600)?;
    write("node.pem", certificate, 0o644)?;
    write("ca.pem", ca, 0o644)
}

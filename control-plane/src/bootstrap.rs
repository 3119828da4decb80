//! `warden bootstrap`: renders the Envoy bootstrap of a Warden node from `envoy/bootstrap.yaml`.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;

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
}

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
    let [dynamic, xds_cluster, warden_filter, wasm_filter, warden_routes, static_routes, static_upstream] =
        fragments[..]
    else {
        bail!("envoy/fragments.yaml must hold seven fragments");
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
        Mode::Warden => TEMPLATE
            .replace("{{DYNAMIC_RESOURCES}}", &dynamic)
            .replace("{{ROUTES}}", warden_routes)
            .replace("{{HTTP_FILTERS}}", warden_filter)
            .replace("{{STATIC_CLUSTERS}}", xds_cluster),
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

pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let text = render(&args)?;
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

//! `warden bootstrap`: renders the Envoy bootstrap of a Warden node from `envoy/bootstrap.yaml`.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;

const TEMPLATE: &str = include_str!("../../envoy/bootstrap.yaml");
const FRAGMENTS: &str = include_str!("../../envoy/fragments.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The Warden filter, delivered with its policy by the control plane over ADS.
    Warden,
    /// No filter at all (benchmark baseline).
    Bare,
    /// A static proxy-wasm filter from `--wasm` (benchmark baseline: the empty filter).
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
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds: String,
    /// The OpenAI-compatible upstream, `http://host:port` or `https://host[:port]`, no path.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    pub upstream: String,
    #[arg(long, value_enum, default_value_t = Mode::Warden)]
    pub mode: Mode,
    /// The .wasm of `--mode wasm`.
    #[arg(long, required_if_eq("mode", "wasm"))]
    pub wasm: Option<PathBuf>,
    /// An SDS file holding the provider's API key as a generic secret named `provider-key`;
    /// Envoy injects it as `authorization: Bearer <key>` on every upstream request.
    #[arg(long)]
    pub upstream_sds: Option<PathBuf>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

struct Upstream {
    host: String,
    port: u16,
    tls: bool,
}

fn parse_upstream(url: &str) -> anyhow::Result<Upstream> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        bail!("--upstream must start with http:// or https:// (got '{url}')");
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        bail!("--upstream takes no path: requests keep theirs (e.g. /v1/chat/completions)");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().with_context(|| format!("bad port in '{url}'"))?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        bail!("--upstream has no host");
    }
    Ok(Upstream { host: host.to_owned(), port, tls })
}

pub fn render(args: &BootstrapArgs) -> anyhow::Result<String> {
    let upstream = parse_upstream(&args.upstream)?;
    let (xds_host, xds_port) = args.xds.rsplit_once(':').context("--xds must be host:port")?;
    let xds_port: u16 = xds_port.parse().context("--xds must be host:port")?;
    let fragments: Vec<&str> = FRAGMENTS.split("\n---\n").collect();
    let [dynamic, xds_cluster, warden_filter, wasm_filter, tls, credential] = fragments[..] else {
        bail!("envoy/fragments.yaml must hold six fragments");
    };
    let credential = match &args.upstream_sds {
        Some(path) => credential.replace("{{SDS_PATH}}", &std::path::absolute(path)?.display().to_string()),
        None => String::new(),
    };
    let (dynamic, xds_cluster, filters) = match args.mode {
        Mode::Warden => (dynamic, xds_cluster, warden_filter.to_owned()),
        Mode::Bare => ("", "", String::new()),
        Mode::Wasm => {
            let path = args.wasm.as_ref().context("--wasm is required with --mode wasm")?;
            let path = std::path::absolute(path)?;
            ("", "", wasm_filter.replace("{{WASM_PATH}}", &path.display().to_string()))
        }
    };
    // The fragments file opens with a comment before the first fragment.
    let dynamic: String = dynamic.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    let text = TEMPLATE
        .replace("{{DYNAMIC_RESOURCES}}", &dynamic)
        .replace("{{XDS_CLUSTER}}", xds_cluster)
        .replace("{{HTTP_FILTERS}}", &filters)
        .replace("{{UPSTREAM_TLS}}", if upstream.tls { tls } else { "" })
        .replace("{{UPSTREAM_CREDENTIAL}}", &credential)
        .replace("{{HOST_REWRITE}}", if upstream.tls { "                  auto_host_rewrite: true" } else { "" })
        .replace("{{NODE_ID}}", &args.node_id)
        .replace("{{ADMIN_HOST}}", &args.admin.ip().to_string())
        .replace("{{ADMIN_PORT}}", &args.admin.port().to_string())
        .replace("{{LISTEN_HOST}}", &args.listen.ip().to_string())
        .replace("{{LISTEN_PORT}}", &args.listen.port().to_string())
        .replace("{{XDS_HOST}}", xds_host)
        .replace("{{XDS_PORT}}", &xds_port.to_string())
        .replace("{{UPSTREAM_HOST}}", &upstream.host)
        .replace("{{UPSTREAM_PORT}}", &upstream.port.to_string());
    Ok(text)
}

pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let text = render(&args)?;
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

//! `make bench`: the load benchmark. Starts the mock provider, the control plane and Envoy in
//! five set-ups on 127.0.0.1, drives each with oha at a fixed rate and then flat out, measures
//! revocation, and writes the tables into `docs/benchmarks.md` between the `bench` markers.
//!
//! Numbers from one run on one machine are only comparable with each other: every variant runs
//! in the same run, and `docs/benchmarks.md` shows the machine.

mod mcp;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// Sent with every request: the cluster the empty filter routes to when it stands in for Warden's
/// (`warden_shell` in `benches/empty-filter`); every other set-up ignores it.
const SHELL_CLUSTER_HEADER: &str = "x-bench-cluster";

#[derive(Parser)]
struct Args {
    #[arg(long)]
    warden: PathBuf,
    #[arg(long)]
    envoy: PathBuf,
    #[arg(long)]
    oha: PathBuf,
    #[arg(long)]
    wasm: PathBuf,
    #[arg(long)]
    empty_wasm: PathBuf,
    /// The document whose tables to rewrite (`docs/benchmarks.md`).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per second of the fixed-rate runs.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Runs per measurement; the table shows the median run.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Revocations to time.
    #[arg(long, default_value_t = 200)]
    revocations: usize,
    /// Seconds per run of each unit-cost recipe (the empty filter making one kind of crossing).
    #[arg(long, default_value_t = 5)]
    unit_seconds: u64,
    /// The Python with the `mcp` package, to run the MCP server of the tool-call benchmark.
    #[arg(long)]
    python: PathBuf,
    /// That server (`tests/mcp/edge_server.py`).
    #[arg(long)]
    mcp_server: PathBuf,
    /// Tool calls to time each way.
    #[arg(long, default_value_t = 1000)]
    tool_calls: usize,
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(command: &mut Command, log: &Path) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(log)?;
    let child = command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn()?;
    Ok(Proc(child))
}

/// User plus system CPU time of a process, in µs (from /proc, in clock ticks of 10 ms).
fn cpu_time_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10_000.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Measured {
    /// CPU time the proxy process spent per request (µs), when there is a proxy.
    cpu_us: Option<f64>,
    /// CPU time the control plane spent per request (µs) meanwhile.
    warden_cpu_us: Option<f64>,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    ok: u64,
    total: u64,
}

/// One oha run; `rate` None = as fast as it goes.
fn oha(
    args: &Args,
    url: &str,
    key: Option<&str>,
    body: &str,
    rate: Option<u32>,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let mut cmd = Command::new(&args.oha);
    cmd.args([
        "-z",
        &format!("{seconds}s"),
        "-c",
        &args.connections.to_string(),
        "--no-tui",
        "--output-format",
        "json",
    ])
    .args(["-m", "POST", "-H", "content-type: application/json", "-d", body])
    .args(["-H", &format!("{SHELL_CLUSTER_HEADER}: {}", shell_cluster())]);
    if let Some(rate) = rate {
        cmd.args(["-q", &rate.to_string()]);
    }
    if let Some(key) = key {
        cmd.args(["-H", &format!("authorization: Bearer {key}")]);
    }
    let out = cmd.arg(url).output().context("running oha")?;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("oha's JSON")?;
    let codes = report["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let total: u64 = codes.values().filter_map(Value::as_u64).sum();
    let ok = codes.get("200").and_then(Value::as_u64).unwrap_or(0);
    Ok(Measured {
        cpu_us: None,
        warden_cpu_us: None,
        rps: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_us: report["latencyPercentiles"]["p50"].as_f64().unwrap_or(f64::NAN) * 1e6,
        p99_us: report["latencyPercentiles"]["p99"].as_f64().unwrap_or(f64::NAN) * 1e6,
        ok,
        total,
    })
}

/// Polls with four fresh connections (so every worker answers) until all get `status`.
async fn wait_status(url: &str, key: &str, status: u16, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
        let mut all = true;
        for _ in 0..4 {
            let got = fresh.get(url).bearer_auth(key).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            all &= got == status;
        }
        if all {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{url} did not answer {status} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until a chat completion through `url` succeeds (the provider clusters and their
/// secrets arrive over xDS after Envoy is up).
async fn wait_chat(http: &reqwest::Client, url: &str, key: &str, body: &str, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let req = http
            .post(url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header(SHELL_CLUSTER_HEADER, shell_cluster())
            .body(body.to_owned());
        if req.send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{url} did not serve a chat completion within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The provider cluster the empty filter routes to in Warden's place.
fn shell_cluster() -> String {
    warden_policy::records::provider_cluster("mock", "main")
}

/// Starts `warden serve` serving `wasm` as the filter, with its own store and ports, and creates
/// the benchmark's two providers on the mock; returns it, its admin URL and its xDS port.
/// A running `warden serve`: where its admin API and its xDS port are.
struct ControlPlane {
    admin: String,
    xds_port: u16,
}

async fn start_warden(
    args: &Args,
    dir: &Path,
    name: &str,
    wasm: &Path,
    mock_port: u16,
) -> anyhow::Result<(Proc, ControlPlane)> {
    let (admin_port, xds_port) = (free_port()?, free_port()?);
    let warden = spawn(
        Command::new(&args.warden)
            .args(["serve", "--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .args(["--xds-addr", &format!("127.0.0.1:{xds_port}"), "--hub-addr", "127.0.0.1:0"])
            // The tool-call benchmark's MCP server listens on 127.0.0.1.
            .arg("--mcp-allow-private-urls")
            .args(["--admin-token", ADMIN_TOKEN, "--data-dir"])
            .arg(dir.join(format!("data-{name}")))
            .arg("--filter-wasm")
            .arg(wasm),
        &dir.join(format!("{name}.log")),
    )?;
    let http = reqwest::Client::new();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let start = Instant::now();
    while http.get(format!("{admin}/health")).send().await.is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("warden ({name}) did not start; see {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for provider in ["mock", "mock-b"] {
        let body = json!({"name": provider, "base_url": format!("http://127.0.0.1:{mock_port}/v1"),
                          "keys": [{"id": "main", "value": format!("sk-{provider}-provider-key")}]});
        let resp = http.post(format!("{admin}/api/providers")).bearer_auth(ADMIN_TOKEN).json(&body).send().await?;
        anyhow::ensure!(resp.status() == 201, "creating provider {provider}: {}", resp.text().await?);
    }
    Ok((warden, ControlPlane { admin, xds_port }))
}

/// The run with the median p99 (then throughput): a field-wise median would mix runs.
fn median(runs: impl Iterator<Item = anyhow::Result<Measured>>) -> anyhow::Result<Measured> {
    let mut runs = runs.collect::<anyhow::Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.p99_us.total_cmp(&b.p99_us).then(a.rps.total_cmp(&b.rps)));
    let mid = runs.len() / 2;
    Ok(runs.swap_remove(mid))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(String::from("?"), |kb| format!("{} GiB", kb / 1024 / 1024));
    format!("{cores} cores ({cpu}), {mem}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("warden-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let http = reqwest::Client::new();
    let mock_port = free_port()?;
    let _mock = spawn(
        Command::new(&args.warden).args(["mock-provider", "--addr", &format!("127.0.0.1:{mock_port}")]),
        &dir.join("mock.log"),
    )?;
    let (_warden, governed) = start_warden(&args, &dir, "warden", &args.wasm, mock_port).await?;
    let admin = governed.admin.clone();
    // The same configuration served with the empty filter in Warden's place: what Warden's
    // Envoy configuration costs before the filter does any work.
    let (_shell_warden, shell) = start_warden(&args, &dir, "shell", &args.empty_wasm, mock_port).await?;
    let limits = json!({"request_max_limit": 1_000_000_000u64, "request_reset_duration": "1h",
                        "token_max_limit": 1_000_000_000_000u64, "token_reset_duration": "1d"});
    let grant = |p: &str| {
        json!({"provider": p, "weight": 0.5, "allowed_models": ["gpt-4o", "regex:gpt-4o-mini.*"],
               "blacklisted_models": ["gpt-4o-realtime"], "key_ids": ["*"], "rate_limit": limits})
    };
    let created: Value = http
        .post(format!("{admin}/api/governance/virtual-keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "bench", "provider_configs": [grant("mock"), grant("mock-b")], "rate_limit": limits}))
        .send()
        .await?
        .json()
        .await?;
    let key = created["virtual_key"]["value"].as_str().context("key")?.to_owned();
    let key_id = created["virtual_key"]["id"].as_str().context("key id")?.to_owned();

    let padding = "x".repeat(900);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": padding}]}).to_string();

    let warden_pid = _warden.0.id();
    // The Warden row stays last (revocation and tool calls go through it).
    let variants = [
        ("mock provider, direct", None),
        ("Envoy, no filter", Some(("bare", None, &governed))),
        ("Envoy + empty proxy-wasm filter", Some(("wasm", Some(&args.empty_wasm), &governed))),
        ("Envoy with Warden's configuration + the empty filter in Warden's place", Some(("warden", None, &shell))),
        ("Envoy + Warden filter, full governance", Some(("warden", None, &governed))),
    ];
    // Every set-up runs at once and the measurements interleave round by round, so a slow
    // moment of this shared machine hits all set-ups alike instead of one.
    let (mut setups, mut envoys) = (Vec::new(), Vec::new());
    for (name, envoy) in variants {
        let (url, pid) = match envoy {
            None => (format!("http://127.0.0.1:{mock_port}/v1/chat/completions"), None),
            Some((mode, wasm, control_plane)) => {
                let upstream = format!("http://127.0.0.1:{mock_port}");
                let mut extra = vec!["--mode", mode];
                if mode != "warden" {
                    extra.extend(["--upstream", upstream.as_str()]);
                }
                let wasm = wasm.map(|w| w.to_string_lossy().into_owned());
                if let Some(wasm) = &wasm {
                    extra.extend(["--wasm", wasm.as_str()]);
                }
                let name = if std::ptr::eq(control_plane, &shell) { "shell" } else { mode };
                let (envoy, url) = start_envoy(&args, &dir, name, control_plane, &extra, &key, &body).await?;
                let pid = envoy.0.id();
                envoys.push(envoy);
                (url, Some(pid))
            }
        };
        oha(&args, &url, Some(&key), &body, Some(args.rate), 2)?; // warm-up
        setups.push((name, url, pid, Vec::new(), Vec::new()));
    }
    for _ in 0..args.runs {
        for (_, url, _, fixed, _) in &mut setups {
            fixed.push(oha(&args, url, Some(&key), &body, Some(args.rate), args.seconds));
        }
        // Flat out, the proxy's CPU time per request is what the filter costs, free of the
        // queueing that blurs latencies on two shared cores.
        for (_, url, pid, _, max) in &mut setups {
            max.push(flat_out(&args, url, &key, &body, *pid, warden_pid, args.seconds));
        }
    }
    let mut rows = Vec::new();
    for (name, url, _, fixed, max) in setups {
        let (fixed, max) = (median(fixed.into_iter())?, median(max.into_iter())?);
        eprintln!(
            "{name}: {:.0} rps at fixed rate, p50 {:.0} µs, p99 {:.0} µs; max {:.0} rps, {:?} µs CPU/request",
            fixed.rps, fixed.p50_us, fixed.p99_us, max.rps, max.cpu_us
        );
        anyhow::ensure!(fixed.ok == fixed.total && max.ok == max.total, "{name}: non-200 answers during the run");
        rows.push((name, url, fixed, max));
    }

    let units = unit_costs(&args, &dir, &governed, mock_port, &key, &body, warden_pid).await?;
    let mut revocations = Vec::new();
    let warden_url = rows.last().map(|r| r.1.clone()).context("no Warden set-up")?;
    let models = warden_url.replace("/chat/completions", "/models");
    for _ in 0..args.revocations {
        let put = |active: bool| {
            http.put(format!("{admin}/api/governance/virtual-keys/{key_id}"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"is_active": active}))
                .send()
        };
        let sent = Instant::now();
        put(false).await?;
        wait_status(&models, &key, 403, Duration::from_secs(5)).await?;
        revocations.push(sent.elapsed().as_secs_f64() * 1e3);
        put(true).await?;
        wait_status(&models, &key, 200, Duration::from_secs(5)).await?;
    }
    let execute_url = warden_url.replace("/chat/completions", "/mcp/tool/execute?format=chat");
    let tools = tool_calls(&args, &http, &admin, &dir, &execute_url).await?;
    let rows: Vec<(&str, Measured, Measured)> = rows.into_iter().map(|(n, _, f, m)| (n, f, m)).collect();
    revocations.sort_by(f64::total_cmp);
    let mut table = render_table(&args, &rows, &revocations);
    table.push_str(&render_tools(&tools));
    table.push_str(&render_units(&args, &units));
    println!("{table}");
    if let Some(doc) = &args.doc {
        let text = std::fs::read_to_string(doc)?;
        let (begin, end) = ("<!-- bench:begin -->", "<!-- bench:end -->");
        let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
            bail!("no bench markers in {}", doc.display())
        };
        let updated = format!("{}{begin}\n{table}\n{}", &text[..a], &text[b..]);
        std::fs::write(doc, updated)?;
        eprintln!("wrote the table into {}", doc.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One run flat out, with the CPU time the proxy (`pid`) and the control plane spent per request.
fn flat_out(
    args: &Args,
    url: &str,
    key: &str,
    body: &str,
    pid: Option<u32>,
    warden_pid: u32,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let before = (pid.and_then(cpu_time_us), cpu_time_us(warden_pid));
    let mut m = oha(args, url, Some(key), body, None, seconds)?;
    let after = (pid.and_then(cpu_time_us), cpu_time_us(warden_pid));
    let per_request = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| (a - b) / m.total.max(1) as f64);
    m.cpu_us = per_request(before.0, after.0);
    m.warden_cpu_us = per_request(before.1, after.1);
    Ok(m)
}

/// Starts an Envoy with `bootstrap` rendered by `warden bootstrap` from `extra` arguments and
/// waits until it serves a chat; returns it and its chat URL.
async fn start_envoy(
    args: &Args,
    dir: &Path,
    name: &str,
    control_plane: &ControlPlane,
    extra: &[&str],
    key: &str,
    body: &str,
) -> anyhow::Result<(Proc, String)> {
    let (listen, envoy_admin) = (free_port()?, free_port()?);
    let bootstrap = dir.join(format!("envoy-{name}.yaml"));
    let rendered = Command::new(&args.warden)
        .args(["bootstrap", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{envoy_admin}")])
        .args(["--xds", &format!("127.0.0.1:{}", control_plane.xds_port)])
        // Warden mode: the node's certificate for the xDS port's mutual TLS.
        .args(["--control-plane", &control_plane.admin, "--admin-token", ADMIN_TOKEN, "--tls-dir"])
        .arg(dir.join(format!("tls-{name}")))
        .args(extra)
        .arg("--out")
        .arg(&bootstrap)
        .status()?;
    anyhow::ensure!(rendered.success(), "warden bootstrap failed");
    let envoy = spawn(
        Command::new(&args.envoy).arg("-c").arg(&bootstrap).args(["--concurrency", "2", "--use-dynamic-base-id"]),
        &dir.join(format!("envoy-{name}.log")),
    )?;
    let chat = format!("http://127.0.0.1:{listen}/v1/chat/completions");
    wait_chat(&reqwest::Client::new(), &chat, key, body, Duration::from_secs(30)).await?;
    Ok((envoy, chat))
}

/// The unit-cost recipes of `benches/empty-filter`: (recipe, crossings per request, what).
const RECIPES: [(&str, u32, &str); 6] = [
    ("shared_reads 10", 10, "shared-data read (64 bytes)"),
    ("header_writes 10", 10, "request-header write"),
    ("body_pause", 1, "request paused until its body is buffered"),
    ("answer_pause", 1, "answer paused until its body is buffered"),
    ("clear_route_cache", 1, "route chosen again"),
    ("enqueue", 1, "shared-queue enqueue (drained by another VM)"),
];

/// A recipe's Envoy CPU per request and that of the empty filter, medians of interleaved runs.
struct UnitCost {
    recipe: &'static str,
    crossings: u32,
    what: &'static str,
    cpu_us: f64,
    empty_cpu_us: f64,
}

/// Prices each crossing: the empty filter making it, flat out, against the empty filter alone.
async fn unit_costs(
    args: &Args,
    dir: &Path,
    control_plane: &ControlPlane,
    mock_port: u16,
    key: &str,
    body: &str,
    warden_pid: u32,
) -> anyhow::Result<Vec<UnitCost>> {
    let upstream = format!("http://127.0.0.1:{mock_port}");
    let empty = args.empty_wasm.to_string_lossy().into_owned();
    let mut envoys = Vec::new();
    for (i, recipe) in std::iter::once("").chain(RECIPES.iter().map(|r| r.0)).enumerate() {
        let extra = ["--mode", "wasm", "--upstream", &upstream, "--wasm", &empty, "--wasm-config", recipe];
        envoys.push(start_envoy(args, dir, &format!("unit-{i}"), control_plane, &extra, key, body).await?);
    }
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); envoys.len()];
    for _ in 0..args.runs {
        for (i, (envoy, url)) in envoys.iter().enumerate() {
            let m = flat_out(args, url, key, body, Some(envoy.0.id()), warden_pid, args.unit_seconds)?;
            anyhow::ensure!(m.ok == m.total, "unit-cost recipe {i}: non-200 answers");
            cpu[i].push(m.cpu_us.unwrap_or(f64::NAN));
        }
    }
    let medians: Vec<f64> = cpu
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(f64::total_cmp);
            runs[runs.len() / 2]
        })
        .collect();
    Ok(RECIPES
        .iter()
        .zip(&medians[1..])
        .map(|(&(recipe, crossings, what), &cpu_us)| UnitCost {
            recipe,
            crossings,
            what,
            cpu_us,
            empty_cpu_us: medians[0],
        })
        .collect())
}

fn render_units(args: &Args, units: &[UnitCost]) -> String {
    let Some(first) = units.first() else { return String::new() };
    let mut t = format!(
        "\nWhat each crossing costs Envoy here: the empty filter making it on every request (`benches/empty-filter`), \
         flat out, median of {} interleaved runs of {} s; the empty filter alone used {:.1} µs of Envoy CPU per request.\n\n\
         | crossing | recipe | Envoy CPU per request | per crossing |\n|---|---|---|---|\n",
        args.runs, args.unit_seconds, first.empty_cpu_us
    );
    for u in units {
        let each = (u.cpu_us - u.empty_cpu_us) / f64::from(u.crossings);
        t.push_str(&format!("| {} | `{}` | {:.1} µs | {each:+.1} µs |\n", u.what, u.recipe, u.cpu_us));
    }
    t
}

/// Starts the MCP server, connects the hub to it, grants a key its `add` tool, and times the
/// tool call both ways.
async fn tool_calls(
    args: &Args,
    http: &reqwest::Client,
    admin: &str,
    dir: &Path,
    execute_url: &str,
) -> anyhow::Result<mcp::ToolLatencies> {
    let port = free_port()?;
    let _server = spawn(
        Command::new(&args.python).arg(&args.mcp_server).args(["--transport", "http", "--port", &port.to_string()]),
        &dir.join("mcp-server.log"),
    )?;
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let client =
        json!({"name": "bench", "connection_type": "http", "connection_string": mcp_url, "tools_to_execute": ["*"]});
    let resp = http.post(format!("{admin}/api/mcp/client")).bearer_auth(ADMIN_TOKEN).json(&client).send().await?;
    anyhow::ensure!(resp.status() == 201, "creating the MCP client: {}", resp.text().await?);
    let grant =
        json!({"name": "bench-mcp", "mcp_configs": [{"mcp_client_name": "bench", "tools_to_execute": ["add"]}]});
    let created: Value = http
        .post(format!("{admin}/api/governance/virtual-keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&grant)
        .send()
        .await?
        .json()
        .await?;
    let key = created["virtual_key"]["value"].as_str().context("key")?.to_owned();
    let body =
        json!({"id": "c", "type": "function", "function": {"name": "bench-add", "arguments": "{\"a\":1,\"b\":1}"}});
    let start = Instant::now();
    loop {
        let answer = http.post(execute_url).bearer_auth(&key).json(&body).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the tool never became callable through the gateway; see {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let latencies = mcp::measure(execute_url, &key, &mcp_url, args.tool_calls).await?;
    eprintln!(
        "MCP add: direct p50 {:.0} µs, through the gateway p50 {:.0} µs",
        percentile(&latencies.direct, 0.5),
        percentile(&latencies.gateway, 0.5)
    );
    Ok(latencies)
}

fn render_tools(t: &mcp::ToolLatencies) -> String {
    let (d50, d99) = (percentile(&t.direct, 0.5), percentile(&t.direct, 0.99));
    let (g50, g99) = (percentile(&t.gateway, 0.5), percentile(&t.gateway, 0.99));
    format!(
        "\nMCP tool call (`add` on the Python `mcp` 2.3 server over Streamable HTTP, {} sequential calls each way, \
         interleaved): directly with rmcp p50 {d50:.0} µs, p99 {d99:.0} µs; `POST /v1/mcp/tool/execute` through Envoy, \
         the filter and the hub p50 {g50:.0} µs, p99 {g99:.0} µs. Added by Warden: p50 **{:+.0} µs**, p99 **{:+.0} µs** \
         (target: ≤ 1 ms at p50).\n",
        t.direct.len(),
        delta(g50, d50),
        delta(g99, d99),
    )
}

/// A difference rounded to whole µs, without a "-0".
fn delta(a: f64, b: f64) -> f64 {
    let d = (a - b).round();
    if d == 0.0 { 0.0 } else { d }
}

fn render_table(args: &Args, rows: &[(&str, Measured, Measured)], revocations: &[f64]) -> String {
    let mut t = format!(
        "Measured by `make bench` on {}, on {}. oha, {} connections, POST /v1/chat/completions with a \
         1 KiB body, median of {} interleaved runs of {} s; Envoy 1.40 with `--concurrency 2`; everything on one machine (the load \
         generator competes for the same cores).\n\n",
        machine(),
        Command::new("date")
            .arg("+%F")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default(),
        args.connections,
        args.runs,
        args.seconds,
    );
    t.push_str(&format!(
        "| set-up | p50 at {} rps | p99 at {} rps | max rps | proxy CPU per request | `warden` CPU per request |\n\
         |---|---|---|---|---|---|\n",
        args.rate, args.rate
    ));
    let micros = |v: Option<f64>| v.map_or("—".to_owned(), |c| format!("{c:.1} µs"));
    for (name, fixed, max) in rows {
        // The control plane does per-request work only for the Warden row's requests.
        let warden_cpu = if name.starts_with("Envoy + Warden") { micros(max.warden_cpu_us) } else { "—".to_owned() };
        t.push_str(&format!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} | {} | {warden_cpu} |\n",
            fixed.p50_us,
            fixed.p99_us,
            max.rps,
            micros(max.cpu_us)
        ));
    }
    if let [_, bare, empty, shell, warden] = rows {
        t.push_str(&format!(
            "\nWarden's added latency at {} rps: over the empty proxy-wasm filter p50 **{:+.0} µs**, p99 **{:+.0} µs**; \
             over Envoy without a filter p50 **{:+.0} µs**, p99 **{:+.0} µs**. Throughput with Warden: **{:.0} %** of \
             Envoy without a filter, **{:.0} %** of Envoy with the empty filter. Envoy CPU per request: Warden adds \
             **{:.1} µs** over the empty proxy-wasm filter and **{:.1} µs** over no filter.\n",
            args.rate,
            delta(warden.1.p50_us, empty.1.p50_us),
            delta(warden.1.p99_us, empty.1.p99_us),
            delta(warden.1.p50_us, bare.1.p50_us),
            delta(warden.1.p99_us, bare.1.p99_us),
            100.0 * warden.2.rps / bare.2.rps,
            100.0 * warden.2.rps / empty.2.rps,
            warden.2.cpu_us.zip(empty.2.cpu_us).map_or(f64::NAN, |(w, e)| w - e),
            warden.2.cpu_us.zip(bare.2.cpu_us).map_or(f64::NAN, |(w, b)| w - b),
        ));
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map_or(f64::NAN, |(a, b)| a / b);
        let both = warden.2.cpu_us.zip(warden.2.warden_cpu_us).map(|(e, w)| e + w);
        t.push_str(&format!(
            "\nAgainst the targets (issue 14): Envoy CPU per governed request **{:.2}×** the empty filter's \
             (≤ 1.25×); Envoy and `warden` together **{:.2}×** (≤ 1.5×); throughput **{:.0} %** of the empty \
             filter's (≥ 80 %); p99 at {} rps **{:+.2} ms** over the empty filter's (≤ +1 ms).\n",
            ratio(warden.2.cpu_us, empty.2.cpu_us),
            ratio(both, empty.2.cpu_us),
            100.0 * warden.2.rps / empty.2.rps,
            args.rate,
            (warden.1.p99_us - empty.1.p99_us) / 1e3,
        ));
        t.push_str(&format!(
            "\nWhere Warden's Envoy CPU goes: the empty filter in Warden's place, on Warden's own Envoy configuration \
             (the body held until buffered, the route chosen by header, per-key provider clusters with the credential \
             injector), uses **{:.1} µs** (**{:.2}×** the empty filter's): the floor of this configuration before any \
             governance. The Warden filter's own work adds **{:.1} µs** to it.\n",
            shell.2.cpu_us.unwrap_or(f64::NAN),
            ratio(shell.2.cpu_us, empty.2.cpu_us),
            warden.2.cpu_us.zip(shell.2.cpu_us).map_or(f64::NAN, |(w, s)| w - s),
        ));
    }
    if !revocations.is_empty() {
        t.push_str(&format!(
            "\nRevocation (admin `PUT is_active:false` → 403 on four fresh connections), {} trials: p50 **{:.1} ms**, \
             p99 **{:.1} ms**, max {:.1} ms.\n",
            revocations.len(),
            percentile(revocations, 0.5),
            percentile(revocations, 0.99),
            revocations.last().copied().unwrap_or(f64::NAN),
        ));
    }
    t
}

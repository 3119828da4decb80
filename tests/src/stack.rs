//! A whole Warden node on 127.0.0.1 for end-to-end tests: the mock provider, `warden serve` and
//! Envoy 1.40 with `--concurrency 2`, each a child of the test on its own free ports.

use crate::{Proc, envoy_bin, free_port, test_filter_wasm, warden_bin};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
/// The browser origin `/mcp` admits in every node.
pub const MCP_ALLOWED_ORIGIN: &str = "http://localhost:6274";

/// Ports and files of one node. Dropping it kills the processes (printing their logs if the
/// test failed) before the folder goes, and a failed test's folder is kept for a post-mortem.
pub struct Stack {
    pub gateway_port: u16,
    pub envoy_admin_port: u16,
    pub admin_port: u16,
    pub xds_port: u16,
    pub mock_port: u16,
    pub options: Options,
    pub mock: Proc,
    pub warden: Option<Proc>,
    pub envoy: Option<Proc>,
    /// Further control planes on the same database ([`Options::control_planes`]).
    pub replicas: Vec<Replica>,
    /// Further Envoys ([`Options::envoys`]), each its own node.
    pub fleet: Vec<FleetEnvoy>,
    pub http: reqwest::Client,
    pub dir: TempDir,
}

/// A further `warden serve` on the stack's database.
pub struct Replica {
    pub admin_port: u16,
    pub xds_port: u16,
    pub proc: Proc,
}

/// A further Envoy with the filter, a node of its own.
/// A port chosen for Envoy was taken by the time it bound it.
struct PortTaken;

pub struct FleetEnvoy {
    pub gateway_port: u16,
    pub admin_port: u16,
    pub proc: Proc,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
        }
    }
}

/// How a node differs from the default one.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The filter's staleness bound (else the default).
    pub staleness_bound_ms: Option<u64>,
    /// The API key of the mock provider (else [`MOCK_PROVIDER_KEY`]).
    pub provider_key: Option<String>,
    /// The store (else SQLite in the stack's folder).
    pub database_url: Option<String>,
    /// Control planes on that store, every Envoy connected to all of them (else one).
    pub control_planes: usize,
    /// Envoys (else one).
    pub envoys: usize,
    /// The filter's budget admission, `spent` or `reserve` (else the default, `spent`).
    pub budget_admission: Option<&'static str>,
}

/// The provider every node starts with: the mock, under this name, with one API key.
pub const MOCK_PROVIDER: &str = "mock";
pub const MOCK_PROVIDER_KEY: &str = "sk-mock-provider-key-0123456789";

/// A created key: its id and its secret.
pub struct Key {
    pub id: String,
    pub secret: String,
}

impl Stack {
    /// Starts all three and waits until Envoy serves with the filter and its policy.
    pub async fn start() -> Stack {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Stack {
        let dir = tempfile::Builder::new().prefix("warden-e2e-").tempdir().expect("temp dir");
        let mock_port = free_port();
        let mut mock_cmd = Command::new(warden_bin());
        mock_cmd.args(["mock-provider", "--addr", &format!("127.0.0.1:{mock_port}")]);
        let mock = Proc::spawn("mock-provider", mock_cmd, dir.path());
        let mut stack = Stack {
            gateway_port: free_port(),
            envoy_admin_port: free_port(),
            admin_port: free_port(),
            xds_port: free_port(),
            mock_port,
            options,
            mock,
            warden: None,
            envoy: None,
            replicas: Vec::new(),
            fleet: Vec::new(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("http client"),
            dir,
        };
        stack.start_warden().await;
        for n in 1..stack.options.control_planes {
            let (admin_port, xds_port) = (free_port(), free_port());
            let proc = stack.spawn_warden(&format!("warden-{}", n + 1), admin_port, xds_port).await;
            stack.replicas.push(Replica { admin_port, xds_port, proc });
        }
        let key = stack.options.provider_key.clone().unwrap_or_else(|| MOCK_PROVIDER_KEY.into());
        let provider = json!({
            "name": MOCK_PROVIDER,
            "base_url": stack.mock("/v1"),
            "keys": [{"id": "main", "value": key}],
        });
        let (status, body) = stack.admin_call(reqwest::Method::POST, "/api/providers", Some(provider)).await;
        assert_eq!(status, 201, "create the mock provider: {body}");
        stack.start_envoy().await;
        for n in 1..stack.options.envoys {
            let name = format!("envoy-{}", n + 1);
            let (mut gateway_port, mut admin_port) = (free_port(), free_port());
            let mut attempts = 0;
            let proc = loop {
                match stack.spawn_envoy(&name, gateway_port, admin_port).await {
                    Ok(proc) => break proc,
                    Err(PortTaken) if attempts < 3 => (gateway_port, admin_port) = (free_port(), free_port()),
                    Err(PortTaken) => panic!("{name}: its ports were taken three times"),
                }
                attempts += 1;
            };
            stack.fleet.push(FleetEnvoy { gateway_port, admin_port, proc });
        }
        stack
    }

    /// Every Envoy's gateway port, the first one's first.
    pub fn gateway_ports(&self) -> Vec<u16> {
        std::iter::once(self.gateway_port).chain(self.fleet.iter().map(|e| e.gateway_port)).collect()
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Starts `warden serve` (again, after [`Stack::kill_warden`]) on the same ports and data.
    pub async fn start_warden(&mut self) {
        let proc = self.spawn_warden("warden", self.admin_port, self.xds_port).await;
        self.warden = Some(proc);
    }

    async fn spawn_warden(&self, name: &str, admin_port: u16, xds_port: u16) -> Proc {
        let mut cmd = Command::new(warden_bin());
        cmd.args(["serve", "--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .args(["--xds-addr", &format!("127.0.0.1:{xds_port}")])
            .args(["--hub-addr", "127.0.0.1:0"])
            .args(["--gateway-url", &format!("http://127.0.0.1:{}", self.gateway_port)])
            .args(["--mcp-allowed-origin", MCP_ALLOWED_ORIGIN])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--admin-token", ADMIN_TOKEN])
            .arg("--filter-wasm")
            .arg(test_filter_wasm())
            // The test MCP servers listen on 127.0.0.1, and these are the stdio ones they run.
            .arg("--mcp-allow-private-urls");
        for (var, under_tools) in [
            ("WARDEN_MCP_TIME", "venv/bin/mcp-server-time"),
            ("WARDEN_MCP_FILESYSTEM", "mcp-npm/node_modules/.bin/mcp-server-filesystem"),
            ("WARDEN_MCP_EVERYTHING", "mcp-npm/node_modules/.bin/mcp-server-everything"),
        ] {
            cmd.arg("--mcp-stdio-command").arg(crate::mcp_server_bin(var, under_tools));
        }
        if let Some(url) = &self.options.database_url {
            cmd.args(["--database-url", url]);
        }
        if let Some(bound) = self.options.staleness_bound_ms {
            cmd.args(["--staleness-bound-ms", &bound.to_string()]);
        }
        if let Some(admission) = self.options.budget_admission {
            cmd.args(["--budget-admission", admission]);
        }
        let proc = Proc::spawn(name, cmd, self.dir.path());
        let health = format!("http://127.0.0.1:{admin_port}/health");
        self.wait_for(&format!("{name}'s admin API"), Duration::from_secs(20), || async {
            self.http.get(&health).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        proc
    }

    pub fn kill_warden(&mut self) {
        self.warden = None;
    }

    /// Kills further control plane `i` ([`Stack::replicas`]) with SIGKILL and starts it again on
    /// the same ports and database; returns once its admin API answers.
    pub async fn restart_replica(&mut self, i: usize) {
        let (admin_port, xds_port) = (self.replicas[i].admin_port, self.replicas[i].xds_port);
        self.replicas[i].proc.kill();
        self.replicas[i].proc = self.spawn_warden(&format!("warden-{}", i + 2), admin_port, xds_port).await;
    }

    /// Kills further Envoy `i` ([`Stack::fleet`]) with SIGKILL and starts it again on the same
    /// ports; returns once it serves with its filter's policy.
    pub async fn restart_fleet_envoy(&mut self, i: usize) {
        let (gateway_port, admin_port) = (self.fleet[i].gateway_port, self.fleet[i].admin_port);
        self.fleet[i].proc.kill();
        let name = format!("envoy-{}", i + 2);
        let start = Instant::now();
        self.fleet[i].proc = loop {
            match self.spawn_envoy(&name, gateway_port, admin_port).await {
                Ok(proc) => break proc,
                // The killed Envoy's sockets may linger a moment.
                Err(PortTaken) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(PortTaken) => panic!("{name}: its ports stayed taken after its restart"),
            }
        };
    }

    /// Kills `warden` with SIGKILL from a shared reference (the test keeps using the stack).
    pub fn kill_warden_now(&self) {
        if let Some(warden) = &self.warden {
            warden.kill();
        }
    }

    /// Starts Envoy and waits until it is ready, holds the provider keys' secrets and its filter
    /// has heard from the control plane.
    pub async fn start_envoy(&mut self) {
        let mut attempts = 0;
        let proc = loop {
            match self.spawn_envoy("envoy", self.gateway_port, self.envoy_admin_port).await {
                Ok(proc) => break proc,
                Err(PortTaken) if attempts < 3 => {
                    (self.gateway_port, self.envoy_admin_port) = (free_port(), free_port())
                }
                Err(PortTaken) => panic!("Envoy's ports were taken three times"),
            }
            attempts += 1;
        };
        self.envoy = Some(proc);
    }

    /// Starts one Envoy on these ports; `Err` when another process took one of them between
    /// [`free_port`] and Envoy's bind (the caller picks others).
    async fn spawn_envoy(&self, name: &str, gateway_port: u16, admin_port: u16) -> Result<Proc, PortTaken> {
        let bootstrap = self.dir.path().join(format!("{name}.yaml"));
        let xds: Vec<String> = std::iter::once(self.xds_port)
            .chain(self.replicas.iter().map(|r| r.xds_port))
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        // The first Envoy keeps the node id the single-node tests expect.
        let node_id = if name == "envoy" { "e2e-node".to_owned() } else { format!("e2e-{name}") };
        let status = Command::new(warden_bin())
            .args(["bootstrap", "--node-id", &node_id])
            .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
            .args(["--admin", &format!("127.0.0.1:{admin_port}")])
            .args(["--xds", &xds.join(",")])
            .args(["--control-plane", &format!("http://127.0.0.1:{}", self.admin_port), "--admin-token", ADMIN_TOKEN])
            .arg("--tls-dir")
            .arg(self.dir.path().join(format!("{name}-tls")))
            .arg("--out")
            .arg(&bootstrap)
            .status()
            .expect("warden bootstrap");
        assert!(status.success(), "warden bootstrap failed");
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c").arg(&bootstrap).args(["--concurrency", "2", "--use-dynamic-base-id", "-l", "info"]);
        let mut proc = Proc::spawn(name, cmd, self.dir.path());
        let admin = |path: &str| format!("http://127.0.0.1:{admin_port}{path}");
        let start = Instant::now();
        while !self.http.get(admin("/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            // The log gathers every attempt: only this one's end counts.
            if proc.has_exited() && proc.log_tail(5).contains("Address already in use") {
                return Err(PortTaken);
            }
            let logs = self.log_dir();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {name} to be ready; logs in {}",
                logs.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.wait_for("the provider key's secret", Duration::from_secs(10), || async {
            let dump = self.http.get(admin("/config_dump?resource=dynamic_active_secrets")).send().await;
            match dump {
                Ok(resp) => resp.text().await.unwrap_or_default().contains("warden-provider-key/"),
                Err(_) => false,
            }
        })
        .await;
        self.wait_for("the filter's policy", Duration::from_secs(10), || async {
            stat(&self.http, admin_port, "wasmcustom.warden_policy_version").await.is_some_and(|v| v > 0)
        })
        .await;
        Ok(proc)
    }

    /// One section of Envoy's `/config_dump` as text.
    pub async fn config_dump(&self, resource: &str) -> String {
        let url = format!("http://127.0.0.1:{}/config_dump?resource={resource}", self.envoy_admin_port);
        match self.http.get(url).send().await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub fn kill_envoy(&mut self) {
        self.envoy = None;
    }

    pub fn gateway(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_port)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn mock(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.mock_port)
    }

    /// An admin API call; returns the status and the JSON body.
    pub async fn admin_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, self.admin(path)).bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("admin API reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates a key. Without `provider_configs` in `body` it may use any model of the mock
    /// provider (keys deny every provider by default).
    pub async fn create_key(&self, mut body: Value) -> Key {
        if body.get("provider_configs").is_none() {
            body["provider_configs"] =
                json!([{"provider": MOCK_PROVIDER, "weight": 1.0, "allowed_models": ["*"], "key_ids": ["*"]}]);
        }
        let (status, created) =
            self.admin_call(reqwest::Method::POST, "/api/governance/virtual-keys", Some(body)).await;
        assert_eq!(status, 200, "create key: {created}");
        let key = Key {
            id: created["virtual_key"]["id"].as_str().expect("id").to_owned(),
            secret: created["virtual_key"]["value"].as_str().expect("value").to_owned(),
        };
        // Usable at once on the Envoys of the control plane that answered; those of another
        // replica follow within its poll of the store.
        if self.options.control_planes > 1
            && created["virtual_key"]["budgets"].as_array().is_some_and(|b| !b.is_empty())
        {
            self.wait_for_leases(&format!("warden:budget:vk:{}:", key.id)).await;
        }
        key
    }

    /// Waits until Envoy holds a lease of every budget whose counter starts with `prefix`: with
    /// the default fail mode, it refuses to spend a budget before.
    pub async fn wait_for_leases(&self, prefix: &str) {
        let query = format!("/api/leases?counter={prefix}");
        self.wait_for(&format!("leases of {prefix}"), Duration::from_secs(10), || async {
            let (_, body) = self.admin_call(reqwest::Method::GET, &query, None).await;
            let rows = body["leases"].as_array().cloned().unwrap_or_default();
            let nodes: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r["node"].as_str()).collect();
            nodes.len() >= self.options.envoys.max(1) && rows.iter().all(|r| r["granted"].as_u64() > Some(0))
        })
        .await;
        // The control plane stores a lease before it answers; the answer is a round trip away.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pub async fn update_key(&self, id: &str, body: Value) {
        let (status, body) =
            self.admin_call(reqwest::Method::PUT, &format!("/api/governance/virtual-keys/{id}"), Some(body)).await;
        assert_eq!(status, 200, "update key: {body}");
    }

    pub async fn delete_key(&self, id: &str) {
        let (status, body) =
            self.admin_call(reqwest::Method::DELETE, &format!("/api/governance/virtual-keys/{id}"), None).await;
        assert_eq!(status, 200, "delete key: {body}");
    }

    /// A chat completion through Envoy with `key` as a bearer token; returns status and body.
    pub async fn chat(&self, key: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.gateway("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))
            .send()
            .await
            .expect("Envoy reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The status a request with `key` gets, on a fresh connection (so it may land on any
    /// worker).
    pub async fn status_for(&self, key: &str) -> u16 {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
        match client.get(self.gateway("/v1/models")).bearer_auth(key).send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Polls `probe` every 10 ms until it holds; returns how long that took, or fails the test
    /// after `limit` naming `what`.
    pub async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, probe: F) -> Duration
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if probe().await {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "waited {limit:?} for {what}; logs in {}", self.log_dir().display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until requests with `key` get `status` on every try of a few fresh connections.
    pub async fn wait_for_status(&self, key: &str, status: u16, limit: Duration) -> Duration {
        self.wait_for(&format!("status {status}"), limit, || async {
            for _ in 0..4 {
                if self.status_for(key).await != status {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// A counter or gauge from Envoy's `/stats`.
    pub async fn envoy_stat(&self, name: &str) -> Option<u64> {
        stat(&self.http, self.envoy_admin_port, name).await
    }
}

/// A counter or gauge from the `/stats` of the Envoy whose admin listens on `admin_port`.
pub async fn stat(http: &reqwest::Client, admin_port: u16, name: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{admin_port}/stats?filter=^{name}$");
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
}

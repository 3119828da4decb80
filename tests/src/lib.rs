//! Shared helpers of Warden's cross-crate tests: where the built artefacts are, and processes
//! that are children of the test and die with it.

pub mod harness;
pub mod stack;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A built artefact named by an environment variable (set by the Makefile), or its default
/// place under the workspace's target folder. A missing artefact fails the test with the command
/// that builds it: never a silent skip.
pub fn artefact(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join(default)
    });
    assert!(path.exists(), "{} not found ({var}); build it first: `make build tools`", path.display());
    path
}

/// The release build of the filter, as `make run` serves it.
pub fn filter_wasm() -> PathBuf {
    artefact("WARDEN_WASM", "wasm32-wasip1/wasm/warden_filter.wasm")
}

/// The filter with the test-only crash trigger, for end-to-end tests.
pub fn test_filter_wasm() -> PathBuf {
    artefact("WARDEN_TEST_WASM", "wasm32-wasip1/wasm-test/warden_filter.wasm")
}

pub fn warden_bin() -> PathBuf {
    artefact("WARDEN_BIN", "debug/warden")
}

pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/envoy"))
}

/// Held by the tests whose outcome depends on timing under load (a budget spent across Envoys
/// while leases move) and by those that load the machine most (a browser): on two cores the two
/// kinds never overlap.
pub async fn heavy_or_timed() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

pub fn python_bin() -> PathBuf {
    std::env::var_os("WARDEN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python"))
}

/// An MCP server's program installed by `make tools`: `$<var>`, else its place under `.tools/`.
pub fn mcp_server_bin(var: &str, under_tools: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools").join(under_tools))
}

/// A test tool's file in this crate's folder, e.g. `mcp/mcp_client.py`.
pub fn test_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub use warden_test_support::free_port;

/// A child process, killed (by its pid) when dropped. Its output goes to `<dir>/<name>.log`.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        Proc { name: name.to_owned(), child, log }
    }

    /// Sends SIGKILL by pid now (the process is reaped when dropped).
    pub fn kill(&self) {
        let _ = std::process::Command::new("kill").arg("-KILL").arg(self.pid().to_string()).status();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|status| status.is_some())
    }

    /// The last lines of the output, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} (last lines) -----\n{}", self.name, self.log_tail(40));
        }
    }
}

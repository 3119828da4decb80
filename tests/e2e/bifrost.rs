//! A Bifrost user's governance script (`tests/bifrost/flow.py`), plain HTTP in Python, run as
//! it is against Warden.

use std::process::Command;
use warden_tests::python_bin;
use warden_tests::stack::{ADMIN_TOKEN, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bifrost_governance_script_runs_unchanged() {
    let stack = Stack::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bifrost/flow.py");
    let out = Command::new(python_bin())
        .arg(script)
        .env("ADMIN_URL", stack.admin(""))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GATEWAY_URL", stack.gateway(""))
        .output()
        .expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the script failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "bifrost flow: ok");
}

//! Code Mode's worker process, started from the real `warden` binary: a program's tool calls
//! cross the process boundary both ways, and whatever a program (or a broken worker) does, the
//! caller gets a failure to read, never a crash or a hang.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_control_plane::codemode::worker::run_isolated;
use warden_control_plane::codemode::{Failure, Limits, Outcome, ToolCaller};

fn warden() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_warden"))
}

/// `math-add` adds; anything else is refused as the gateway would.
fn tools() -> ToolCaller {
    Arc::new(|name: String, arguments: String| {
        Box::pin(async move {
            let args: serde_json::Value = serde_json::from_str(&arguments).map_err(|e| e.to_string())?;
            match name.as_str() {
                "math-add" => Ok((args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)).to_string()),
                _ => Err(format!("MCP tool '{name}' is not allowed for virtual key 'k'")),
            }
        })
    })
}

async fn run(program: &Path, code: &str, limits: Limits) -> Outcome {
    let servers = vec![("math".to_owned(), vec!["add".to_owned()])];
    run_isolated(program, code.to_owned(), servers, tools(), limits).await
}

fn failure(outcome: &Outcome) -> (Failure, String) {
    outcome.result.clone().expect_err("the program should have failed")
}

#[tokio::test]
async fn tool_calls_cross_to_the_parent_and_their_answers_come_back() {
    let code = "const [a, b] = await Promise.all([math.add({a: 2, b: 3}), math.add({a: 1, b: 1})]);
                console.log('sum', a + b);
                try { await math.secret({}); } catch (e) { console.log(e.message); }
                return a * b;";
    let outcome = run(warden(), code, Limits::default()).await;
    assert_eq!(outcome.result, Ok("10".to_owned()), "{outcome:?}");
    assert_eq!(outcome.console, ["sum 7", "MCP tool 'math-secret' is not allowed for virtual key 'k'"]);
    assert_eq!(outcome.tool_calls, 3);
}

#[tokio::test]
async fn hostile_programs_fail_in_the_worker_and_the_next_one_runs() {
    // The crash: 300,000 `!` (refused by size), then the deepest a 64 KiB program can go.
    for code in ["!".repeat(300_000) + "0", "!".repeat(64_000) + "0", "`${".repeat(16_000) + "0" + &"}`".repeat(16_000)]
    {
        let outcome = run(warden(), &code, Limits::default()).await;
        assert!(outcome.result.is_err() || outcome.result == Ok("null".into()), "{outcome:?}");
    }
    let bomb = run(warden(), "const a = []; while (true) a.push('x'.repeat(1 << 20));", Limits::default()).await;
    assert_eq!(failure(&bomb).0, Failure::Limit, "{bomb:?}");
    let ok = run(warden(), "return await math.add({a: 20, b: 22});", Limits::default()).await;
    assert_eq!(ok.result, Ok("42".to_owned()));
}

/// Runs a stand-in worker. Another test's child forked while the script was open for writing
/// holds it open for a moment (exec then fails with "Text file busy"): that start is retried.
async fn run_script(script: &Path, code: &str, limits: Limits) -> Outcome {
    loop {
        let outcome = run(script, code, limits).await;
        let busy = matches!(&outcome.result, Err((Failure::Runtime, why)) if why.contains("Text file busy"));
        if !busy {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stand-in worker: a shell script the test writes.
fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_worker_that_crashes_is_a_failure_and_sees_none_of_wardens_environment() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("env.txt");
    let crashing = script(dir.path(), &format!("env > '{}'\nkill -SEGV $$", seen.display()));
    // The test's own environment (PATH, HOME, CARGO_*) stands in for warden's secrets.
    let outcome = run_script(&crashing, "return 1;", Limits::default()).await;
    let (kind, why) = failure(&outcome);
    assert_eq!(kind, Failure::Limit);
    assert!(why.contains("signal 11") && why.contains("nothing else was affected"), "{why}");
    let env = std::fs::read_to_string(&seen).unwrap();
    // What the shell itself sets (dash sets PWD; bash as sh also SHLVL and _) is not warden's.
    let shell = ["PWD", "SHLVL", "_", "OLDPWD"];
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).filter(|n| !shell.contains(n)).collect();
    assert_eq!(names, ["MALLOC_ARENA_MAX"], "the worker's environment: {env}");
}

#[tokio::test]
async fn a_worker_that_hangs_is_killed_after_the_programs_time() {
    let dir = tempfile::tempdir().unwrap();
    let hanging = script(dir.path(), "exec sleep 600");
    let limits = Limits { timeout: Duration::from_secs(1), ..Limits::default() };
    // Only the parent's deadline answers Timeout for a worker that never speaks.
    let outcome = run_script(&hanging, "return 1;", limits).await;
    assert_eq!(failure(&outcome).0, Failure::Timeout, "{outcome:?}");
}

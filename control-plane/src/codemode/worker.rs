//! Each program runs in a child process, `warden codemode-worker`, with its own address-space
//! and CPU limits and no environment: a crash, a runaway parser or a stack overflow ends that
//! child, never the control plane, and the next program gets a fresh one.
//!
//! Parent and child speak JSON lines. The parent sends the [`Job`], then an [`Answer`] to each
//! tool call; the child sends [`FromWorker::Call`]s, then its [`FromWorker::Outcome`].

use super::sandbox::{self, Failure, Limits, Outcome, ToolCaller};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, LinesCodec};

/// The subcommand that runs one program.
pub const SUBCOMMAND: &str = "codemode-worker";
/// The child's address space, at most: the program thread's stack is reserved at 1 GiB (only
/// what the parser's recursion touches is resident), QuickJS has 32 MiB, the rest is the binary
/// and its runtime. Past it an allocation fails and the child aborts.
const ADDRESS_SPACE_BYTES: u64 = 2 << 30;
/// A line from the child, at most: a tool call (arguments up to 1 MiB) or the outcome.
const MAX_LINE_BYTES: usize = 4 << 20;
/// Time past the program's own limit before the parent kills the child.
const GRACE: Duration = Duration::from_secs(2);

/// What the parent asks the child to run.
#[derive(Serialize, Deserialize)]
struct Job {
    code: String,
    servers: Vec<(String, Vec<String>)>,
    limits: Limits,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FromWorker {
    Call { id: u64, name: String, arguments: String },
    Outcome(Outcome),
}

/// The parent's answer to one tool call.
#[derive(Serialize, Deserialize)]
struct Answer {
    id: u64,
    result: Result<String, String>,
}

/// Runs `code` in a child started from `program` (this binary): the child's outcome, or the
/// failure its death or silence amounts to.
pub async fn run_isolated(
    program: &Path,
    code: String,
    servers: Vec<(String, Vec<String>)>,
    tools: ToolCaller,
    limits: Limits,
) -> Outcome {
    let failed =
        |failure: Failure, why: String| Outcome { console: Vec::new(), result: Err((failure, why)), tool_calls: 0 };
    let spawned = tokio::process::Command::new(program)
        .arg(SUBCOMMAND)
        .env_clear()
        // Fewer malloc arenas: each reserves address space the limit counts.
        .env("MALLOC_ARENA_MAX", "2")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return failed(Failure::Runtime, format!("the sandbox could not start: {e}")),
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return failed(Failure::Runtime, "the sandbox could not start: no pipes".into());
    };
    // Every wait on the child ends by this deadline, whatever the child does.
    let deadline = tokio::time::Instant::now() + limits.timeout + GRACE;
    let timed_out = || {
        let why = format!("the program did not finish within {} ms", limits.timeout.as_millis());
        failed(Failure::Timeout, why)
    };
    let job = Job { code, servers, limits };
    match tokio::time::timeout_at(deadline, write_line(&mut stdin, &job)).await {
        Ok(Ok(())) => {}
        // It ended before it read its job: how it ended says why.
        Ok(Err(_)) => match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => return died(status.ok(), limits),
            Err(_) => return timed_out(),
        },
        Err(_) => return timed_out(),
    }
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            line = lines.next() => match line.map(|l| l.map(|text| serde_json::from_str::<FromWorker>(&text))) {
                Some(Ok(Ok(FromWorker::Call { id, name, arguments }))) => {
                    let tools = tools.clone();
                    calls.spawn(async move {
                        // A tool call that panicked is answered as failed, not left waiting.
                        let result = AssertUnwindSafe(tools(name, arguments)).catch_unwind().await;
                        Answer { id, result: result.unwrap_or_else(|_| Err("the tool call failed".into())) }
                    });
                }
                Some(Ok(Ok(FromWorker::Outcome(outcome)))) => return outcome,
                Some(Ok(Err(e))) => return failed(Failure::Runtime, format!("the sandbox answered nonsense: {e}")),
                Some(Err(e)) => return failed(Failure::Limit, format!("the sandbox answered too much: {e}")),
                None => match tokio::time::timeout_at(deadline, child.wait()).await {
                    Ok(status) => return died(status.ok(), limits),
                    Err(_) => return timed_out(),
                },
            },
            Some(Ok(answer)) = calls.join_next() => {
                // A child that stopped reading is about to end: its outcome or death says why.
                if tokio::time::timeout_at(deadline, write_line(&mut stdin, &answer)).await.is_err() {
                    return timed_out();
                }
            }
            () = tokio::time::sleep_until(deadline) => return timed_out(),
        }
    }
}

/// The failure a child's end without an outcome amounts to.
fn died(status: Option<std::process::ExitStatus>, limits: Limits) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    let (failure, why) = match status.and_then(|s| s.signal()) {
        Some(SIGXCPU) => (
            Failure::Timeout,
            format!("the program used more than its {} s of CPU and was stopped", cpu_seconds(limits)),
        ),
        // The hard CPU limit, or the system's out-of-memory killer.
        Some(SIGKILL) => (
            Failure::Limit,
            format!("the program's sandbox process was killed (CPU past {} s, or memory)", cpu_seconds(limits)),
        ),
        Some(signal) => (
            Failure::Limit,
            format!(
                "the program's sandbox process ended on signal {signal} (nesting or memory beyond its limits); \
                 nothing else was affected"
            ),
        ),
        None => (Failure::Limit, "the program's sandbox process ended without an answer".to_owned()),
    };
    Outcome { console: Vec::new(), result: Err((failure, why)), tool_calls: 0 }
}

/// CPU a program may use: its wall time, and a second for start-up.
fn cpu_seconds(limits: Limits) -> u64 {
    limits.timeout.as_secs() + 1
}

async fn write_line<W: AsyncWriteExt + Unpin>(out: &mut W, message: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}

/// The child's tool calls waiting for the parent's answer, by id.
type Waiting = HashMap<u64, oneshot::Sender<Result<String, String>>>;

/// The child: reads its job, limits itself, runs the program and writes the outcome.
pub async fn serve() -> anyhow::Result<()> {
    let mut input = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let job: Job = serde_json::from_str(&input.next_line().await?.unwrap_or_default())?;
    limit_self(&job.limits)?;
    let output = Arc::new(tokio::sync::Mutex::new(tokio::io::stdout()));
    let waiting: Arc<Mutex<Waiting>> = Arc::default();
    let answers = waiting.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = input.next_line().await {
            let Ok(answer) = serde_json::from_str::<Answer>(&line) else { continue };
            if let Some(reply) = answers.lock().unwrap_or_else(|p| p.into_inner()).remove(&answer.id) {
                let _ = reply.send(answer.result);
            }
        }
    });
    let next_id = Arc::new(AtomicU64::new(0));
    let calls = output.clone();
    let tools: ToolCaller = Arc::new(move |name: String, arguments: String| {
        let (output, waiting, id) = (calls.clone(), waiting.clone(), next_id.fetch_add(1, Ordering::Relaxed));
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(id, reply);
            let call = FromWorker::Call { id, name, arguments };
            write_line(&mut *output.lock().await, &call).await.map_err(|e| e.to_string())?;
            answer.await.map_err(|_| "the gateway did not answer".to_owned())?
        })
    });
    let outcome = sandbox::execute(job.code, job.servers, tools, job.limits).await;
    write_line(&mut *output.lock().await, &FromWorker::Outcome(outcome)).await?;
    // The answer reader may still wait on stdin: the process ends here, not when it does.
    std::process::exit(0)
}

/// The child's own limits, set before it parses anything: address space, CPU, no core file.
fn limit_self(limits: &Limits) -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let cap = |bound: u64| Rlimit { current: Some(bound), maximum: Some(bound) };
    setrlimit(Resource::As, cap(ADDRESS_SPACE_BYTES))?;
    setrlimit(Resource::Core, cap(0))?;
    // Its pipes, the runtime's own descriptors and a few spare: a program opens nothing.
    setrlimit(Resource::Nofile, cap(64))?;
    // Past the soft limit SIGXCPU ends the child; the hard one a second later is SIGKILL.
    let cpu = cpu_seconds(*limits);
    setrlimit(Resource::Cpu, Rlimit { current: Some(cpu), maximum: Some(cpu + 1) })?;
    Ok(())
}

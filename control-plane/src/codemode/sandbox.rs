//! Runs model-written code: TypeScript (types stripped with oxc) or JavaScript, in a fresh
//! QuickJS runtime per execution with caps on memory, stack, time, tool calls and output. The
//! program sees one object per server (`await fs.read_file({...})`) and a captured `console`;
//! nothing else: no modules, no timers, no network, no file system. Each tool call leaves the
//! sandbox through [`ToolCaller`], which sends it through the gateway like any other call.

use rquickjs::context::EvalOptions;
use rquickjs::function::{Async, Func};
use rquickjs::promise::MaybePromise;
use rquickjs::{AsyncContext, AsyncRuntime, CatchResultExt, CaughtError, Coerced, Ctx, Exception, Function, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one execution may use.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub memory_bytes: usize,
    pub stack_bytes: usize,
    /// Wall time, tool calls included.
    pub timeout: Duration,
    pub max_tool_calls: usize,
    /// Of the returned value and of the console, each.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            stack_bytes: 512 << 10,
            timeout: Duration::from_secs(30),
            max_tool_calls: 100,
            max_output_bytes: 64 << 10,
        }
    }
}

/// Calls one tool (`client-tool`, JSON arguments) for the program: its result as JSON text, or
/// why it failed (thrown in the program as an `Error`).
pub type ToolCaller =
    Arc<dyn Fn(String, String) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Why an execution failed, as the model is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Failure {
    /// The code does not parse (TypeScript is a superset of JavaScript: one parse for both).
    Syntax,
    /// TypeScript the stripper rejected.
    TypeStrip,
    /// An exception the program did not catch.
    Runtime,
    /// Out of time.
    Timeout,
    /// Out of memory, stack, tool calls or output.
    Limit,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Syntax => "syntax",
            Failure::TypeStrip => "type-strip",
            Failure::Runtime => "runtime",
            Failure::Timeout => "timeout",
            Failure::Limit => "limit",
        }
    }
}

/// What an execution produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// `console.*` lines, in order.
    pub console: Vec<String>,
    /// The returned value as JSON, or the failure and its message.
    pub result: Result<String, (Failure, String)>,
    /// Tool calls made.
    pub tool_calls: usize,
}

/// Array methods that loop in C over a length a program can forge (`{length: 2**53}`) without
/// ever reaching the interrupt check: each gets a guard on the length.
const GUARDED_ARRAY_METHODS: &str =
    "join,toString,toLocaleString,indexOf,lastIndexOf,includes,fill,copyWithin,reverse,slice,splice,concat";

/// Names the prelude needs or the language defines: a server by such a name is not bound.
const RESERVED: &[&str] =
    &["console", "JSON", "Promise", "Object", "Array", "Math", "globalThis", "Proxy", "Error", "String"];

/// The program's view of the servers, built before it runs: `server.tool(input)` calls the
/// bridge with `server-tool` and decodes the answer. Any tool name makes a call, so a tool the
/// key may not use fails with the gateway's reason, not "is not a function". The bridge itself
/// is kept in the prelude's closure, out of the program's reach.
fn prelude(servers: &[(String, Vec<String>)]) -> String {
    let mut out = format!(
        r#"(() => {{
  const raw = __callTool, log = __log;
  delete globalThis.__callTool;
  delete globalThis.__log;
  for (const name of "{GUARDED_ARRAY_METHODS}".split(',')) {{
    const original = Array.prototype[name];
    Object.defineProperty(Array.prototype, name, {{ writable: true, configurable: true, value: function (...a) {{
      if (Number(this?.length) > 1e7) throw new RangeError(`Array.prototype.${{name}} on more than 10,000,000 elements`);
      return original.apply(this, a);
    }} }});
  }}
  const fmt = (v) => {{
    if (typeof v === 'string') return v;
    if (v instanceof Error) return `${{v.name}}: ${{v.message}}`;
    try {{ const s = JSON.stringify(v); return s === undefined ? String(v) : s; }} catch {{ return String(v); }}
  }};
  const mk = (level) => (...a) => log(level, a.map(fmt).join(' '));
  globalThis.console = {{ log: mk('log'), info: mk('info'), warn: mk('warn'), error: mk('error'), debug: mk('debug') }};
  const call = async (name, input) => {{
    const out = await raw(name, JSON.stringify(input === undefined ? {{}} : input));
    try {{ return JSON.parse(out); }} catch {{ return out; }}
  }};
  const special = new Set(['then', 'toJSON', 'toString', 'valueOf', 'constructor', 'inspect']);
  const server = (name) => new Proxy({{}}, {{
    get: (_, tool) => (typeof tool === 'string' && !special.has(tool)) ? (input) => call(name + '-' + tool, input) : undefined,
  }});
"#
    );
    for (name, _) in servers.iter().filter(|(name, _)| !RESERVED.contains(&name.as_str())) {
        out.push_str(&format!("  globalThis[{}] = server({0});\n", serde_json::Value::from(name.clone())));
    }
    out.push_str("})();\n");
    out
}

/// The deepest nesting of brackets in `code`, strings and comments aside, roughly: the parser
/// recurses per level, so absurd nesting is refused before it is parsed.
fn nesting(code: &str) -> usize {
    let (mut depth, mut deepest, mut quote) = (0usize, 0usize, None::<char>);
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '/') if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            (None, '(' | '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Deeper than this, a program is refused as a syntax error.
const MAX_NESTING: usize = 256;
/// A program's source, at most. With [`SANDBOX_STACK_BYTES`] it bounds how deep the parser,
/// the transformer and the code generator can recurse, whatever the code nests (brackets,
/// template literals, `!!!…0`, `a = b = …`): a program can fail, never overflow the stack.
pub const MAX_CODE_BYTES: usize = 64 << 10;
/// The stack of a program's thread: room for the deepest recursion a [`MAX_CODE_BYTES`]
/// program can cause (one level per byte at most, a few KiB a level in a debug build). Only the
/// pages a program touches are ever resident.
const SANDBOX_STACK_BYTES: usize = 1 << 30;

/// TypeScript to JavaScript; plain JavaScript passes through unchanged in meaning. Runs on a
/// program's thread (see [`execute`]), whose stack bounds its recursion.
pub fn strip_types(code: &str) -> Result<String, (Failure, String)> {
    if code.len() > MAX_CODE_BYTES {
        let size = code.len();
        return Err((Failure::Syntax, format!("the program is {size} bytes; at most {MAX_CODE_BYTES} are run")));
    }
    if nesting(code) > MAX_NESTING {
        return Err((Failure::Syntax, format!("the code nests brackets more than {MAX_NESTING} levels deep")));
    }
    use oxc::allocator::Allocator;
    use oxc::codegen::Codegen;
    use oxc::parser::Parser;
    use oxc::semantic::SemanticBuilder;
    use oxc::span::SourceType;
    use oxc::transformer::{TransformOptions, Transformer};

    let allocator = Allocator::default();
    // The program's body goes into an async function, so `await` and `return` work at its top.
    let wrapped = format!("async function __main__() {{\n{code}\n}}");
    let parsed = Parser::new(&allocator, &wrapped, SourceType::ts()).parse();
    if parsed.panicked || parsed.diagnostics.has_errors() {
        let why: Vec<String> = parsed.diagnostics.errors().map(|d| d.message.to_string()).collect();
        return Err((Failure::Syntax, why.join("; ")));
    }
    let mut program = parsed.program;
    let semantic = SemanticBuilder::new().with_enum_eval(true).build(&program);
    if semantic.diagnostics.has_errors() {
        let why: Vec<String> = semantic.diagnostics.errors().map(|d| d.message.to_string()).collect();
        return Err((Failure::TypeStrip, why.join("; ")));
    }
    let scoping = semantic.semantic.into_scoping();
    let options = TransformOptions::default();
    let transformed = Transformer::new(&allocator, std::path::Path::new("program.ts"), &options)
        .build_with_scoping(scoping, &mut program);
    if transformed.diagnostics.has_errors() {
        let why: Vec<String> = transformed.diagnostics.errors().map(|d| d.message.to_string()).collect();
        return Err((Failure::TypeStrip, why.join("; ")));
    }
    Ok(Codegen::new().build(&program).code)
}

/// Runs `code` against `servers` (`(server, its tool names)`, already filtered for the caller)
/// on a thread of its own: the QuickJS runtime is not `Send`, a busy program must not hold a
/// worker of the async runtime, and the TypeScript parser recurses per nesting level.
pub async fn execute(code: String, servers: Vec<(String, Vec<String>)>, tools: ToolCaller, limits: Limits) -> Outcome {
    let handle = tokio::runtime::Handle::current();
    let (done, outcome) = tokio::sync::oneshot::channel();
    let started =
        std::thread::Builder::new().name("codemode".into()).stack_size(SANDBOX_STACK_BYTES).spawn(move || {
            let _ = done.send(handle.block_on(run(code, servers, tools, limits)));
        });
    let failed = |why: String| Outcome { console: Vec::new(), result: Err((Failure::Runtime, why)), tool_calls: 0 };
    match started {
        Err(e) => failed(format!("the sandbox could not start: {e}")),
        Ok(_) => outcome.await.unwrap_or_else(|_| failed("the sandbox stopped without an answer".into())),
    }
}

/// At most this much of an error message reaches the model.
const MAX_MESSAGE_BYTES: usize = 4 << 10;

fn cut(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" […]");
    }
    text
}

struct Console {
    lines: Vec<String>,
    bytes: usize,
    max_bytes: usize,
    truncated: bool,
}

async fn run(code: String, servers: Vec<(String, Vec<String>)>, tools: ToolCaller, limits: Limits) -> Outcome {
    let console = Arc::new(Mutex::new(Console {
        lines: Vec::new(),
        bytes: 0,
        max_bytes: limits.max_output_bytes,
        truncated: false,
    }));
    let calls = Arc::new(AtomicUsize::new(0));
    let result = match strip_types(&code) {
        Ok(js) => run_js(js, &servers, tools, limits, console.clone(), calls.clone()).await,
        Err(failure) => Err(failure),
    }
    .map_err(|(failure, message)| (failure, cut(message)));
    let console = std::mem::replace(
        &mut *console.lock().unwrap_or_else(|p| p.into_inner()),
        Console { lines: Vec::new(), bytes: 0, max_bytes: 0, truncated: false },
    );
    let mut lines = console.lines;
    if console.truncated {
        lines.push(format!("[console output cut at {} bytes]", limits.max_output_bytes));
    }
    Outcome { console: lines, result, tool_calls: calls.load(Ordering::Relaxed) }
}

async fn run_js(
    js: String,
    servers: &[(String, Vec<String>)],
    tools: ToolCaller,
    limits: Limits,
    console: Arc<Mutex<Console>>,
    calls: Arc<AtomicUsize>,
) -> Result<String, (Failure, String)> {
    let internal = |e: rquickjs::Error| (Failure::Runtime, format!("the sandbox could not start: {e}"));
    let runtime = AsyncRuntime::new().map_err(internal)?;
    runtime.set_memory_limit(limits.memory_bytes).await;
    runtime.set_max_stack_size(limits.stack_bytes).await;
    let deadline = Instant::now() + limits.timeout;
    runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline))).await;
    let context = AsyncContext::full(&runtime).await.map_err(internal)?;
    let prelude = prelude(servers);
    let program = format!("{js}\n__main__();");
    let work = context.async_with(async move |ctx| {
        register(&ctx, tools, limits, console, calls, deadline).catch(&ctx).map_err(|e| describe(&e, limits))?;
        ctx.eval::<(), _>(prelude).catch(&ctx).map_err(|e| describe(&e, limits))?;
        let mut options = EvalOptions::default();
        options.filename = Some("program.js".to_owned());
        let evaluated: MaybePromise<'_> =
            ctx.eval_with_options(program, options).catch(&ctx).map_err(|e| describe(&e, limits))?;
        let value: Value<'_> =
            evaluated.into_future::<Value<'_>>().await.catch(&ctx).map_err(|e| describe(&e, limits))?;
        let text = match ctx.json_stringify(value).catch(&ctx).map_err(|e| describe(&e, limits))? {
            Some(s) => s.to_string().map_err(|e| (Failure::Runtime, e.to_string()))?,
            None => "null".to_owned(),
        };
        if text.len() > limits.max_output_bytes {
            return Err((
                Failure::Limit,
                format!(
                    "the returned value is {} bytes; at most {} may be returned",
                    text.len(),
                    limits.max_output_bytes
                ),
            ));
        }
        Ok(text)
    });
    // The interrupt handler stops busy code; a program idling on a promise that never settles is
    // stopped here.
    match tokio::time::timeout(limits.timeout + Duration::from_millis(500), work).await {
        Ok(result) => result,
        Err(_) => {
            Err((Failure::Timeout, format!("the program did not finish within {} ms", limits.timeout.as_millis())))
        }
    }
}

fn register<'js>(
    ctx: &Ctx<'js>,
    tools: ToolCaller,
    limits: Limits,
    console: Arc<Mutex<Console>>,
    calls: Arc<AtomicUsize>,
    deadline: Instant,
) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    globals.set(
        "__log",
        Func::from(move |level: String, text: String| {
            let mut console = console.lock().unwrap_or_else(|p| p.into_inner());
            let line = if level == "log" { text } else { format!("[{level}] {text}") };
            if console.bytes + line.len() > console.max_bytes {
                console.truncated = true;
                return;
            }
            console.bytes += line.len();
            console.lines.push(line);
        }),
    )?;
    let call = Function::new(
        ctx.clone(),
        Async(move |ctx: Ctx<'js>, name: String, arguments: String| {
            let tools = tools.clone();
            let made = calls.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                if made > limits.max_tool_calls {
                    let why = format!("limit: at most {} tool calls per execution", limits.max_tool_calls);
                    return Err(Exception::throw_message(&ctx, &why));
                }
                let answer =
                    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), tools(name.clone(), arguments));
                match answer.await {
                    Ok(Ok(text)) => Ok::<String, rquickjs::Error>(text),
                    Ok(Err(why)) => Err(Exception::throw_message(&ctx, &why)),
                    Err(_) => Err(Exception::throw_message(
                        &ctx,
                        &format!("timeout: tool '{name}' outlived the execution's time"),
                    )),
                }
            }
        }),
    )?;
    globals.set("__callTool", call)?;
    Ok(())
}

fn describe(error: &CaughtError<'_>, limits: Limits) -> (Failure, String) {
    match error {
        CaughtError::Exception(exception) => {
            let name = exception.get::<_, Option<String>>("name").ok().flatten().unwrap_or_else(|| "Error".into());
            let message = exception.message().unwrap_or_default();
            if exception.is_uncatchable_error() || message == "interrupted" {
                let why = format!("the program ran longer than {} ms and was stopped", limits.timeout.as_millis());
                return (Failure::Timeout, why);
            }
            if message.contains("out of memory") || message.contains("string too long") {
                return (
                    Failure::Limit,
                    format!("the program used more than {} MiB of memory", limits.memory_bytes >> 20),
                );
            }
            if message.contains("call stack") || message == "stack overflow" {
                return (Failure::Limit, format!("{name}: {message} (recursion too deep)"));
            }
            if message.starts_with("limit: ") {
                return (Failure::Limit, message.trim_start_matches("limit: ").to_owned());
            }
            if name == "SyntaxError" {
                return (Failure::Syntax, message);
            }
            (Failure::Runtime, format!("{name}: {message}"))
        }
        CaughtError::Value(value) => {
            let text = value.get::<Coerced<String>>().map(|c| c.0).unwrap_or_default();
            (Failure::Runtime, format!("Uncaught {text}"))
        }
        CaughtError::Error(rquickjs::Error::Allocation) => {
            (Failure::Limit, format!("the program used more than {} MiB of memory", limits.memory_bytes >> 20))
        }
        CaughtError::Error(e) => (Failure::Runtime, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake gateway: `math-add` adds, `math-slow` waits 100 ms, `math-secret` is refused; it
    /// records the most calls in flight at once.
    fn tools(in_flight: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> ToolCaller {
        Arc::new(move |name: String, arguments: String| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            Box::pin(async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let args: serde_json::Value = serde_json::from_str(&arguments).unwrap_or_default();
                let answer = match name.as_str() {
                    "math-add" => Ok((args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)).to_string()),
                    "math-slow" => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(r#"{"done":true}"#.to_owned())
                    }
                    _ => Err(format!("MCP tool '{name}' is not allowed for virtual key 'k'")),
                };
                in_flight.fetch_sub(1, Ordering::SeqCst);
                answer
            })
        })
    }

    fn servers() -> Vec<(String, Vec<String>)> {
        vec![("math".into(), vec!["add".into(), "slow".into(), "secret".into()])]
    }

    async fn run_with(code: &str, limits: Limits) -> (Outcome, usize) {
        let most = Arc::new(AtomicUsize::new(0));
        let outcome = execute(code.into(), servers(), tools(Arc::default(), most.clone()), limits).await;
        (outcome, most.load(Ordering::SeqCst))
    }

    async fn run(code: &str) -> Outcome {
        run_with(code, Limits::default()).await.0
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn typescript_and_javascript_call_tools_and_return_json() {
        let ts = r#"
            interface Sum { total: number }
            enum Mode { Fast = "fast" }
            const a: number = await math.add({ a: 2, b: 40 });
            const out: Sum = { total: a as number };
            console.log("sum is", a, { mode: Mode.Fast });
            return out;"#;
        let outcome = run(ts).await;
        assert_eq!(outcome.result, Ok(r#"{"total":42}"#.to_owned()));
        assert_eq!(outcome.console, [r#"sum is 42 {"mode":"fast"}"#]);
        assert_eq!(outcome.tool_calls, 1);
        assert_eq!(run("return [1, 2].map((x) => x * 2);").await.result, Ok("[2,4]".into()));
        // Nothing of the outside world: no timers, network, modules or host objects.
        let probe = "return [typeof setTimeout, typeof fetch, typeof require, typeof process, typeof std, typeof os];";
        assert_eq!(
            run(probe).await.result,
            Ok(r#"["undefined","undefined","undefined","undefined","undefined","undefined"]"#.into())
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn programs_that_nest_without_brackets_fail_and_never_take_the_process_down() {
        let syntax = |o: &Outcome| o.result.as_ref().err().map(|(f, m)| (*f, m.clone()));
        // 300,000 `!` once killed `warden serve` with a stack overflow: now too large to run.
        let huge = run(&format!("return {}0;", "!".repeat(300_000))).await;
        let (failure, message) = syntax(&huge).expect("refused");
        assert_eq!(failure, Failure::Syntax);
        assert!(message.contains("at most 65536"), "{message}");
        // As deep as the size allows: parsed and type-stripped on the program's own deep stack,
        // or refused; what is too deep for QuickJS is its RangeError, a limit like the others.
        let deep = MAX_CODE_BYTES - 16;
        let bounded = |o: &Outcome| matches!(&o.result, Ok(_) | Err((Failure::Limit | Failure::Syntax, _)));
        for code in [
            format!("return {}0;", "!".repeat(deep)),
            format!("let a; return {}1;", "a=".repeat(deep / 2)),
            format!("return {}1{};", "`${".repeat(deep / 5), "}`".repeat(deep / 5)),
            format!("return {}1;", "typeof ".repeat(deep / 7)),
        ] {
            let outcome = run(&code).await;
            assert!(bounded(&outcome), "{:?}", outcome.result);
        }
        assert_eq!(run(&format!("return {}0;", "!".repeat(1_000))).await.result, Ok("false".into()));
        assert_eq!(run("return 1 + 1;").await.result, Ok("2".into()), "and the next program runs");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn promise_all_runs_calls_together() {
        let code = "const r = await Promise.all([1, 2, 3, 4, 5].map(() => math.slow({}))); return r.length;";
        let (outcome, most) = run_with(code, Limits::default()).await;
        assert_eq!(outcome.result, Ok("5".into()));
        assert_eq!((outcome.tool_calls, most), (5, 5), "all five were in flight at once");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_denied_tool_throws_inside_the_program() {
        let code = "try { await math.secret({}); } catch (e) { return e.message; }";
        assert_eq!(run(code).await.result, Ok(r#""MCP tool 'math-secret' is not allowed for virtual key 'k'""#.into()));
        // A tool the key's files do not show fails the same way, with the gateway's reason.
        let guessed = run("try { await math.delete_everything({}); } catch (e) { return e.message; }").await;
        assert_eq!(
            guessed.result,
            Ok(r#""MCP tool 'math-delete_everything' is not allowed for virtual key 'k'""#.into())
        );
        let uncaught = run("await math.secret({}); return 1;").await;
        let (failure, message) = uncaught.result.unwrap_err();
        assert_eq!(failure, Failure::Runtime);
        assert!(message.contains("not allowed"), "{message}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn each_limit_trips_with_its_kind_and_the_next_run_is_fine() {
        let kind = |o: &Outcome| o.result.as_ref().err().map(|(f, m)| (*f, m.clone()));
        let quick = Limits { timeout: Duration::from_millis(500), ..Limits::default() };
        let (spin, _) = run_with("while (true) {}", quick).await;
        assert_eq!(kind(&spin).map(|k| k.0), Some(Failure::Timeout), "{spin:?}");
        let (hang, _) = run_with("await new Promise(() => {}); return 1;", quick).await;
        assert_eq!(kind(&hang).map(|k| k.0), Some(Failure::Timeout), "{hang:?}");
        let bomb = run("let s = 'x'; while (true) { s = s + s; } return s.length;").await;
        assert_eq!(kind(&bomb).map(|k| k.0), Some(Failure::Limit), "{bomb:?}");
        let hoard = run("const a = []; while (true) { a.push(new Array(100000).fill(1)); } return a.length;").await;
        assert_eq!(kind(&hoard), Some((Failure::Limit, "the program used more than 32 MiB of memory".into())));
        let deep = run("const f = (n) => f(n + 1) + 1; return f(0);").await;
        assert_eq!(kind(&deep).map(|k| k.0), Some(Failure::Limit), "{deep:?}");
        let calls = run("for (let i = 0; i < 10000; i++) { await math.add({a: i, b: 0}); } return 'done';").await;
        let (failure, message) = kind(&calls).unwrap();
        assert_eq!((failure, calls.tool_calls), (Failure::Limit, 101), "{message}");
        assert!(message.contains("at most 100 tool calls"), "{message}");
        let huge = run("return 'x'.repeat(100 * 1024 * 1024);").await;
        assert_eq!(kind(&huge).map(|k| k.0), Some(Failure::Limit), "{huge:?}");
        let big = run("return 'x'.repeat(1024 * 1024);").await;
        assert!(kind(&big).unwrap().1.contains("at most 65536 may be returned"), "{big:?}");
        let chatty = run("for (let i = 0; i < 100000; i++) console.log('line', i); return 1;").await;
        assert_eq!(chatty.result, Ok("1".into()));
        assert!(chatty.console.last().unwrap().contains("console output cut"), "{:?}", chatty.console.last());
        // Errors of the code itself.
        let syntax = run("return (;").await;
        assert_eq!(kind(&syntax).map(|k| k.0), Some(Failure::Syntax), "{syntax:?}");
        let thrown = run("throw new TypeError('bad input');").await;
        assert_eq!(kind(&thrown), Some((Failure::Runtime, "TypeError: bad input".into())));
        // Loops in C over a forged length are refused before they start.
        let forged = run("return Array.prototype.join.call({length: 2 ** 53 - 1}, '');").await;
        assert!(kind(&forged).unwrap().1.contains("more than 10,000,000 elements"), "{forged:?}");
        // Nesting that would exhaust the parser's stack is refused as a syntax error.
        let nested = format!("return {}1{};", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(kind(&run(&nested).await).map(|k| k.0), Some(Failure::Syntax));
        // The bridge is out of the program's reach.
        assert_eq!(
            run("return [typeof __callTool, typeof __log];").await.result,
            Ok(r#"["undefined","undefined"]"#.into())
        );
        // A huge thrown message reaches the model cut.
        let loud = run("throw new Error('x'.repeat(1 << 20));").await;
        assert!(kind(&loud).unwrap().1.len() < 5_000);
        // The sandbox is fresh each time: nothing leaks from one run into the next.
        run("globalThis.leak = 1; return 1;").await;
        assert_eq!(run("return typeof leak;").await.result, Ok(r#""undefined""#.into()));
    }
}

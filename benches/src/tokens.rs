//! `make bench-codemode`: how many tokens Code Mode saves. A fixed suite of tools (the real MCP
//! servers the tests use, listed live over stdio, plus generated servers shaped like GitHub,
//! Jira, Slack, a calendar, a CRM and a drive) and 20 scripted multi-step tasks. Each task is
//! replayed as the model would see it in two ways:
//! - classic: every tool definition in every request, one tool call per step, every result in
//!   the context;
//! - Code Mode: the four meta-tools; the model lists the files, reads the ones it needs, sends
//!   one program, and gets back only what the program returns.
//!
//! Every request body is built with Warden's own code (the injected definitions, the `.d.ts`
//! files) and counted with o200k_base. Results go to stdout and, with `--doc`, into that document
//! (`docs/benchmarks.md`) between the `codemode:begin`/`codemode:end` markers.

use anyhow::Context;
use clap::Parser;
use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use std::path::PathBuf;
use warden_control_plane::codemode::ToolFiles;
use warden_control_plane::model::BindingLevel;
use warden_policy::codemode;
use warden_policy::mcp::{McpClientRecord, McpTool, ToolShape, exposed_name, function_definition};

#[derive(Parser)]
struct Args {
    /// `mcp-server-everything`, `mcp-server-filesystem` and `mcp-server-time` programs.
    #[arg(long)]
    everything: PathBuf,
    #[arg(long)]
    filesystem: PathBuf,
    #[arg(long)]
    time: PathBuf,
    /// Python with `mcp`, and the edge server script.
    #[arg(long)]
    python: PathBuf,
    #[arg(long)]
    edge_server: PathBuf,
    /// The document whose table to rewrite (`docs/benchmarks.md`).
    #[arg(long)]
    doc: Option<PathBuf>,
}

type Servers = Vec<(String, Vec<McpTool>)>;

async fn listed(name: &str, mut command: tokio::process::Command) -> anyhow::Result<(String, Vec<McpTool>)> {
    command.stderr(std::process::Stdio::null());
    let client = ().serve(TokioChildProcess::new(command)?).await.with_context(|| format!("starting {name}"))?;
    let tools = client.list_all_tools().await?;
    let _ = client.cancel().await;
    let tools = tools
        .into_iter()
        .map(|t| McpTool {
            name: t.name.to_string(),
            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
            output_schema: t.output_schema.map(|o| Value::Object((*o).clone())),
        })
        .collect();
    Ok((name.to_owned(), tools))
}

async fn real_servers(args: &Args, dir: &std::path::Path) -> anyhow::Result<Servers> {
    let command = |program: &PathBuf| tokio::process::Command::new(program);
    let mut filesystem = command(&args.filesystem);
    filesystem.arg(dir);
    let mut time = command(&args.time);
    time.args(["--local-timezone", "UTC"]);
    let mut edge = command(&args.python);
    edge.arg(&args.edge_server).args(["--transport", "stdio"]);
    Ok(vec![
        listed("everything", command(&args.everything)).await?,
        listed("filesystem", filesystem).await?,
        listed("time", time).await?,
        listed("edge", edge).await?,
    ])
}

/// A property: name, JSON type, description, an enum if any.
type Field = (&'static str, &'static str, &'static str, &'static [&'static str]);
/// An entity of a generated server and its fields.
type Entity = (&'static str, &'static [Field]);

fn schema(fields: &[Field], required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, ty, description, values)| {
            let mut p = match *ty {
                "string[]" => json!({"type": "array", "items": {"type": "string"}}),
                ty => json!({"type": ty}),
            };
            p["description"] = json!(description);
            if !values.is_empty() {
                p["enum"] = json!(values);
            }
            (name.to_string(), p)
        })
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// Servers shaped like the SaaS APIs agents are given: per entity, list/get/create/update tools
/// with realistic fields, filters and pagination.
fn generated_servers() -> Servers {
    let page: [Field; 2] = [
        ("per_page", "integer", "Results per page (max 100)", &[]),
        ("cursor", "string", "Opaque cursor from the previous page's next_cursor", &[]),
    ];
    let specs: [(&str, &[Entity]); 6] = [
        (
            "github",
            &[
                (
                    "issue",
                    &[
                        ("repo", "string", "Repository as owner/name", &[]),
                        ("title", "string", "Issue title", &[]),
                        ("body", "string", "Markdown body", &[]),
                        ("state", "string", "Issue state", &["open", "closed"]),
                        ("labels", "string[]", "Label names", &[]),
                        ("assignees", "string[]", "Logins of assignees", &[]),
                    ],
                ),
                (
                    "pull_request",
                    &[
                        ("repo", "string", "Repository as owner/name", &[]),
                        ("title", "string", "Pull request title", &[]),
                        ("head", "string", "Branch with the changes", &[]),
                        ("base", "string", "Branch to merge into", &[]),
                        ("draft", "boolean", "Open as a draft", &[]),
                        ("state", "string", "State", &["open", "closed", "merged"]),
                    ],
                ),
                (
                    "repository",
                    &[
                        ("owner", "string", "User or organisation", &[]),
                        ("name", "string", "Repository name", &[]),
                        ("visibility", "string", "Who can see it", &["public", "private", "internal"]),
                        ("description", "string", "Short description", &[]),
                    ],
                ),
                (
                    "workflow_run",
                    &[
                        ("repo", "string", "Repository as owner/name", &[]),
                        ("workflow", "string", "Workflow file name or id", &[]),
                        ("branch", "string", "Branch", &[]),
                        (
                            "status",
                            "string",
                            "Run status",
                            &["queued", "in_progress", "completed", "failure", "success"],
                        ),
                    ],
                ),
                (
                    "release",
                    &[
                        ("repo", "string", "Repository as owner/name", &[]),
                        ("tag_name", "string", "Tag of the release", &[]),
                        ("name", "string", "Release title", &[]),
                        ("body", "string", "Release notes (Markdown)", &[]),
                        ("prerelease", "boolean", "Mark as a pre-release", &[]),
                    ],
                ),
            ],
        ),
        (
            "jira",
            &[
                (
                    "issue",
                    &[
                        ("project", "string", "Project key, e.g. OPS", &[]),
                        ("summary", "string", "One-line summary", &[]),
                        ("description", "string", "Description (Atlassian wiki markup)", &[]),
                        ("issue_type", "string", "Type", &["Bug", "Task", "Story", "Epic"]),
                        ("priority", "string", "Priority", &["Highest", "High", "Medium", "Low"]),
                        ("assignee", "string", "Account id of the assignee", &[]),
                    ],
                ),
                (
                    "sprint",
                    &[
                        ("board_id", "integer", "Board id", &[]),
                        ("name", "string", "Sprint name", &[]),
                        ("goal", "string", "Sprint goal", &[]),
                        ("state", "string", "State", &["future", "active", "closed"]),
                    ],
                ),
                (
                    "comment",
                    &[
                        ("issue_key", "string", "Issue key, e.g. OPS-12", &[]),
                        ("body", "string", "Comment text", &[]),
                        ("visibility", "string", "Restrict to a role or group", &[]),
                    ],
                ),
                (
                    "worklog",
                    &[
                        ("issue_key", "string", "Issue key", &[]),
                        ("time_spent", "string", "Time spent, e.g. 3h 20m", &[]),
                        ("comment", "string", "What was done", &[]),
                        ("started", "string", "ISO 8601 start", &[]),
                    ],
                ),
            ],
        ),
        (
            "slack",
            &[
                (
                    "message",
                    &[
                        ("channel", "string", "Channel id or #name", &[]),
                        ("text", "string", "Message text (mrkdwn)", &[]),
                        ("thread_ts", "string", "Reply in this thread", &[]),
                        ("unfurl_links", "boolean", "Unfurl links", &[]),
                    ],
                ),
                (
                    "channel",
                    &[
                        ("name", "string", "Channel name", &[]),
                        ("is_private", "boolean", "Private channel", &[]),
                        ("topic", "string", "Channel topic", &[]),
                        ("purpose", "string", "Channel purpose", &[]),
                    ],
                ),
                (
                    "reminder",
                    &[
                        ("text", "string", "What to remind", &[]),
                        ("time", "string", "When, natural language or Unix time", &[]),
                        ("user", "string", "User id", &[]),
                    ],
                ),
            ],
        ),
        (
            "calendar",
            &[
                (
                    "event",
                    &[
                        ("calendar_id", "string", "Calendar id, 'primary' for the user's", &[]),
                        ("summary", "string", "Title", &[]),
                        ("start", "string", "ISO 8601 start", &[]),
                        ("end", "string", "ISO 8601 end", &[]),
                        ("attendees", "string[]", "Attendee e-mail addresses", &[]),
                        ("location", "string", "Where", &[]),
                        ("visibility", "string", "Visibility", &["default", "public", "private"]),
                    ],
                ),
                (
                    "calendar",
                    &[
                        ("summary", "string", "Calendar name", &[]),
                        ("time_zone", "string", "IANA time zone", &[]),
                        ("description", "string", "Description", &[]),
                    ],
                ),
            ],
        ),
        (
            "crm",
            &[
                (
                    "contact",
                    &[
                        ("email", "string", "E-mail address", &[]),
                        ("first_name", "string", "First name", &[]),
                        ("last_name", "string", "Last name", &[]),
                        ("company_id", "string", "Company id", &[]),
                        ("lifecycle_stage", "string", "Stage", &["lead", "mql", "sql", "customer", "evangelist"]),
                    ],
                ),
                (
                    "deal",
                    &[
                        ("name", "string", "Deal name", &[]),
                        ("amount", "number", "Amount in the account currency", &[]),
                        (
                            "stage",
                            "string",
                            "Pipeline stage",
                            &["qualification", "proposal", "negotiation", "won", "lost"],
                        ),
                        ("close_date", "string", "Expected close date (YYYY-MM-DD)", &[]),
                        ("owner_id", "string", "Owner user id", &[]),
                    ],
                ),
                (
                    "company",
                    &[
                        ("name", "string", "Company name", &[]),
                        ("domain", "string", "Web domain", &[]),
                        ("industry", "string", "Industry", &[]),
                        ("employees", "integer", "Head count", &[]),
                    ],
                ),
                (
                    "note",
                    &[
                        ("object_id", "string", "Contact, company or deal id", &[]),
                        ("body", "string", "Note text", &[]),
                        ("pinned", "boolean", "Pin to the record", &[]),
                    ],
                ),
            ],
        ),
        (
            "drive",
            &[
                (
                    "file",
                    &[
                        ("name", "string", "File name", &[]),
                        ("parent_id", "string", "Folder id", &[]),
                        ("mime_type", "string", "MIME type", &[]),
                        ("content", "string", "Text content for new files", &[]),
                        ("starred", "boolean", "Starred", &[]),
                    ],
                ),
                (
                    "permission",
                    &[
                        ("file_id", "string", "File id", &[]),
                        ("email", "string", "Who to share with", &[]),
                        ("role", "string", "Access", &["reader", "commenter", "writer", "owner"]),
                        ("notify", "boolean", "Send an e-mail", &[]),
                    ],
                ),
            ],
        ),
    ];
    specs
        .iter()
        .map(|(server, entities)| {
            let mut tools = Vec::new();
            for (entity, fields) in entities.iter() {
                let id: Field = ("id", "string", "The record's id", &[]);
                let filters: Vec<Field> =
                    fields.iter().filter(|f| f.1 != "boolean").take(3).copied().chain(page).collect();
                let verbs: [(String, String, Vec<Field>, Vec<&str>); 4] = [
                    (
                        format!("list_{entity}s"),
                        format!("List {server} {entity}s matching the filters, newest first, paginated."),
                        filters,
                        vec![],
                    ),
                    (
                        format!("get_{entity}"),
                        format!("Get one {server} {entity} by id, with all its fields."),
                        vec![id],
                        vec!["id"],
                    ),
                    (
                        format!("create_{entity}"),
                        format!("Create a {server} {entity}. Returns the created record with its id."),
                        fields.to_vec(),
                        vec![fields[0].0, fields[1].0],
                    ),
                    (
                        format!("update_{entity}"),
                        format!("Update fields of a {server} {entity}; fields left out are unchanged."),
                        std::iter::once(id).chain(fields.iter().copied()).collect(),
                        vec!["id"],
                    ),
                ];
                for (name, description, props, required) in verbs {
                    tools.push(McpTool {
                        name,
                        description,
                        input_schema: schema(&props, &required),
                        output_schema: None,
                    });
                }
            }
            (server.to_string(), tools)
        })
        .collect()
}

/// One step of a task: a tool call and what it returns.
struct Step {
    server: &'static str,
    tool: String,
    arguments: Value,
    result: Value,
}

struct Task {
    prompt: String,
    steps: Vec<Step>,
    /// What the program returns and the model then answers from.
    summary: Value,
}

/// A list result of `n` records shaped like the API's.
fn records(kind: &str, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("{kind}_{:04}", 1000 + i), "title": format!("{kind} {i}: intermittent failure in the deploy pipeline after the cache change"),
            "state": if i % 3 == 0 { "closed" } else { "open" }, "created_at": format!("2026-11-{:02}T09:{:02}:00Z", 1 + i % 28, i % 60),
            "updated_at": "2026-12-01T12:00:00Z", "author": format!("user{}", i % 7), "labels": ["bug", "ci"], "url": format!("https://example.com/{kind}/{i}"),
            "body": "Steps to reproduce: run the nightly job twice; the second run reuses a stale cache key and fails the integration suite."}))
        .collect();
    json!({"items": items, "next_cursor": null, "total": n})
}

fn step(server: &'static str, tool: &str, arguments: Value, result: Value) -> Step {
    Step { server, tool: tool.to_owned(), arguments, result }
}

fn tasks() -> Vec<Task> {
    let repos = ["acme/api", "acme/web", "acme/infra", "acme/mobile", "acme/docs"];
    let mut tasks = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        tasks.push(Task {
            prompt: format!("Find the open bugs in {repo}, read the two newest, file a Jira task for them and tell #eng-oncall."),
            steps: vec![
                step("github", "list_issues", json!({"repo": repo, "state": "open", "labels": ["bug"], "per_page": 20}), records("issue", 12)),
                step("github", "get_issue", json!({"id": "issue_1000"}), records("issue", 1)["items"][0].clone()),
                step("github", "get_issue", json!({"id": "issue_1001"}), records("issue", 1)["items"][0].clone()),
                step("jira", "create_issue", json!({"project": "OPS", "summary": format!("Bugs in {repo}"), "issue_type": "Task", "priority": "High"}), json!({"id": format!("OPS-{}", 40 + i), "url": "https://jira.example.com/browse/OPS-40"})),
                step("slack", "create_message", json!({"channel": "#eng-oncall", "text": format!("2 new bugs in {repo}, tracked in OPS-{}", 40 + i)}), json!({"ok": true, "ts": "1796271442.000100"})),
            ],
            summary: json!({"jira": format!("OPS-{}", 40 + i), "bugs": ["issue_1000", "issue_1001"], "posted": true}),
        });
        tasks.push(Task {
            prompt: format!("Which workflow runs failed on {repo} this week? Re-check the latest one and note it on the deal record of the customer who reported it."),
            steps: vec![
                step("github", "list_workflow_runs", json!({"repo": repo, "status": "failure", "per_page": 30}), records("run", 15)),
                step("github", "get_workflow_run", json!({"id": "run_1000"}), records("run", 1)["items"][0].clone()),
                step("crm", "list_deals", json!({"name": "Globex renewal", "per_page": 5}), records("deal", 3)),
                step("crm", "create_note", json!({"object_id": "deal_1000", "body": format!("CI failing on {repo}; fix in progress")}), json!({"id": "note_77"})),
            ],
            summary: json!({"failed_runs": 15, "latest": "run_1000", "note": "note_77"}),
        });
    }
    for (i, person) in
        ["ana@example.com", "bo@example.com", "cy@example.com", "di@example.com", "ed@example.com"].iter().enumerate()
    {
        tasks.push(Task {
            prompt: format!("Set up an onboarding for {person}: a CRM contact, a shared folder, a kickoff meeting next Monday and a welcome message."),
            steps: vec![
                step("crm", "create_contact", json!({"email": person, "first_name": "New", "last_name": "Customer", "lifecycle_stage": "customer"}), json!({"id": format!("contact_{i}")})),
                step("drive", "create_file", json!({"name": format!("Onboarding {person}"), "mime_type": "application/vnd.folder"}), json!({"id": format!("file_{i}")})),
                step("drive", "create_permission", json!({"file_id": format!("file_{i}"), "email": person, "role": "commenter", "notify": true}), json!({"id": format!("perm_{i}")})),
                step("calendar", "create_event", json!({"calendar_id": "primary", "summary": "Kickoff", "start": "2026-12-07T10:00:00Z", "end": "2026-12-07T11:00:00Z", "attendees": [person]}), json!({"id": format!("event_{i}"), "html_link": "https://calendar.example.com/e/1"})),
                step("slack", "create_message", json!({"channel": "#customers", "text": format!("Welcome {person}!")}), json!({"ok": true})),
                step("time", "get_current_time", json!({"timezone": "UTC"}), json!({"timezone": "UTC", "datetime": "2026-12-03T04:00:00+00:00", "is_dst": false})),
            ],
            summary: json!({"contact": format!("contact_{i}"), "folder": format!("file_{i}"), "event": format!("event_{i}")}),
        });
    }
    for i in 0..5 {
        tasks.push(Task {
            prompt: format!("Summarise sprint {i} of board 7: list its issues, read the three blocked ones and post the summary to #standup."),
            steps: vec![
                step("jira", "list_sprints", json!({"board_id": 7, "state": "active"}), records("sprint", 2)),
                step("jira", "list_issues", json!({"project": "OPS", "per_page": 50}), records("issue", 25)),
                step("jira", "get_issue", json!({"id": "issue_1003"}), records("issue", 1)["items"][0].clone()),
                step("jira", "get_issue", json!({"id": "issue_1004"}), records("issue", 1)["items"][0].clone()),
                step("jira", "get_issue", json!({"id": "issue_1005"}), records("issue", 1)["items"][0].clone()),
                step("slack", "create_message", json!({"channel": "#standup", "text": "Sprint summary: 25 issues, 3 blocked"}), json!({"ok": true})),
            ],
            summary: json!({"issues": 25, "blocked": ["issue_1003", "issue_1004", "issue_1005"], "posted": true}),
        });
    }
    tasks
}

/// Counts tokens of request bodies.
struct Counter(tiktoken_rs::CoreBPE);

impl Counter {
    fn tokens(&self, value: &Value) -> usize {
        self.0.encode_with_special_tokens(&value.to_string()).len()
    }
}

/// One conversation's token counts.
#[derive(Default, Clone, Copy)]
struct Tokens {
    input: usize,
    output: usize,
    requests: usize,
}

/// Replays a conversation: each request is `messages` so far with `tools`; each reply is an
/// assistant message, followed by the tool result when it calls a tool.
fn replay(counter: &Counter, tools: &[Value], prompt: &str, turns: &[(Value, Option<String>)]) -> Tokens {
    let mut messages = vec![json!({"role": "user", "content": prompt})];
    let mut totals = Tokens::default();
    for (reply, result) in turns {
        let request = json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools});
        totals.input += counter.tokens(&request);
        totals.output += counter.tokens(reply);
        totals.requests += 1;
        messages.push(reply.clone());
        if let Some(result) = result {
            let id = reply["tool_calls"][0]["id"].clone();
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
        }
    }
    totals
}

fn call(n: usize, name: &str, arguments: &Value) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{n}"), "type": "function",
        "function": {"name": name, "arguments": arguments.to_string()}}]})
}

fn answer(summary: &Value) -> Value {
    json!({"role": "assistant", "content": format!("Done. {summary}")})
}

fn classic(counter: &Counter, definitions: &[Value], task: &Task) -> Tokens {
    let mut turns: Vec<(Value, Option<String>)> = task
        .steps
        .iter()
        .enumerate()
        .map(|(n, s)| (call(n, &exposed_name(s.server, &s.tool), &s.arguments), Some(s.result.to_string())))
        .collect();
    turns.push((answer(&task.summary), None));
    replay(counter, definitions, &task.prompt, &turns)
}

fn code_mode(counter: &Counter, files: &ToolFiles, task: &Task) -> Tokens {
    let meta = codemode::definitions(ToolShape::Chat);
    let mut turns = vec![(call(0, codemode::LIST_TOOL_FILES, &json!({})), Some(files.list()))];
    let mut read: Vec<&str> = Vec::new();
    for s in &task.steps {
        if !read.contains(&s.server) {
            read.push(s.server);
            let file = format!("servers/{}.d.ts", s.server);
            let content = files.read(&file, None, None).unwrap_or_default();
            turns.push((call(turns.len(), codemode::READ_TOOL_FILE, &json!({"fileName": file})), Some(content)));
        }
    }
    let mut program = String::new();
    for (n, s) in task.steps.iter().enumerate() {
        program.push_str(&format!("const r{n} = await {}.{}({});\n", s.server, s.tool, s.arguments));
    }
    program.push_str(&format!("return {};", task.summary));
    let result = format!("Execution completed successfully.\nReturn value: {}", task.summary);
    turns.push((call(turns.len(), codemode::EXECUTE_TOOL_CODE, &json!({"code": program})), Some(result)));
    turns.push((answer(&task.summary), None));
    replay(counter, &meta, &task.prompt, &turns)
}

fn percent(before: usize, after: usize) -> String {
    format!("−{:.1} %", 100.0 * (before as f64 - after as f64) / before as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("warden-codemode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut servers = real_servers(&args, &dir).await?;
    let _ = std::fs::remove_dir_all(&dir);
    servers.extend(generated_servers());
    let count: usize = servers.iter().map(|(_, t)| t.len()).sum();
    let counter = Counter(tiktoken_rs::o200k_base()?);
    let definitions: Vec<Value> = servers
        .iter()
        .flat_map(|(server, tools)| {
            let client = McpClientRecord {
                name: server.clone(),
                tools_to_execute: vec!["*".into()],
                allow_by_default: false,
                is_code_mode_client: true,
                tools_to_auto_execute: vec![],
                tool_pricing: Default::default(),
                tools: vec![],
            };
            tools.iter().map(move |t| function_definition(&client, t, ToolShape::Chat)).collect::<Vec<_>>()
        })
        .collect();
    let files = ToolFiles::new(&servers, BindingLevel::Server);
    let mut table = format!(
        "{count} tools on {} servers (everything, filesystem, time, edge listed live; {} generated), 20 tasks, o200k_base.\n\n\
         | task | steps | classic input | Code Mode input | input saved | classic output | Code Mode output |\n|---|---|---|---|---|---|---|\n",
        servers.len(),
        servers.iter().skip(4).map(|(s, t)| format!("{s} {}", t.len())).collect::<Vec<_>>().join(", "),
    );
    let (mut before, mut after) = (Tokens::default(), Tokens::default());
    for (n, task) in tasks().iter().enumerate() {
        let c = classic(&counter, &definitions, task);
        let m = code_mode(&counter, &files, task);
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            n + 1,
            task.steps.len(),
            c.input,
            m.input,
            percent(c.input, m.input),
            c.output,
            m.output
        ));
        before = Tokens {
            input: before.input + c.input,
            output: before.output + c.output,
            requests: before.requests + c.requests,
        };
        after = Tokens {
            input: after.input + m.input,
            output: after.output + m.output,
            requests: after.requests + m.requests,
        };
    }
    table.push_str(&format!(
        "| **all** | | **{}** | **{}** | **{}** | {} | {} |\n\nRequests to the model: {} classic, {} Code Mode.\n",
        before.input,
        after.input,
        percent(before.input, after.input),
        before.output,
        after.output,
        before.requests,
        after.requests
    ));
    print!("{table}");
    if let Some(doc) = &args.doc {
        let text = std::fs::read_to_string(doc)?;
        let (begin, end) = ("<!-- codemode:begin -->", "<!-- codemode:end -->");
        let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
            anyhow::bail!("no codemode markers in {}", doc.display())
        };
        let updated = format!("{}{begin}\n{table}{}", &text[..b], &text[e..]);
        std::fs::write(doc, updated)?;
    }
    Ok(())
}

use serde_json::json;
use std::process::Command;
use std::time::Duration;
use warden_tests::python_bin;
use warden_tests::stack::Stack;

const SCRIPT: &str = r#"
import sys, openai
base, good, bad = sys.argv[1:]
client = openai.OpenAI(base_url=base + "/v1", api_key=good, max_retries=0)
reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
print("completion", reply.choices[0].message.content, reply.usage.total_tokens)
chunks = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], stream=True)
print("stream", "".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
try:
    openai.OpenAI(base_url=base + "/v1", api_key=bad, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
    print("no error")
except openai.AuthenticationError as e:
    print("AuthenticationError", e.status_code, e.body["type"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_works_through_envoy() {
    let stack = Stack::start().await;
    let key = stack.create_key(json!({"name": "python"})).await;
    stack.wait_for_status(&key.secret, 200, Duration::from_secs(5)).await;

    let out = Command::new(python_bin())
        .args(["-c", SCRIPT, &stack.gateway(""), &key.secret, "sk-bf-00000000-0000-4000-8000-000000000000"])
        .output()
        .expect("the venv's python (make tools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "completion Hello from the Warden mock provider (gpt-4o-mini). 9");
    assert_eq!(lines[1], "stream Hello from the Warden mock provider (gpt-4o-mini).");
    assert_eq!(lines[2], "AuthenticationError 401 virtual_key_not_found");
}

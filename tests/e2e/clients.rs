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
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    print("no error")
except openai.PermissionDeniedError as e:
    print("PermissionDeniedError", e.status_code, e.body["type"])
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
    print("no error")
except openai.RateLimitError as e:
    print("RateLimitError", e.status_code, e.body["type"], e.response.headers["retry-after"] != "")
models = sorted(m.id for m in client.models.list())
print("models", models)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_works_through_envoy() {
    let stack = Stack::start().await;
    // Two requests a minute, gpt-4o-mini only: the third request is rate limited.
    let key = stack
        .create_key(json!({
            "name": "python",
            "provider_configs": [{"provider": "mock", "weight": 1, "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"]}],
            "rate_limit": {"request_max_limit": 2, "request_reset_duration": "1m"},
        }))
        .await;
    // `/v1/models` is answered by the filter and counts against no limit.
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
    assert_eq!(lines[3], "PermissionDeniedError 403 model_blocked");
    assert_eq!(lines[4], "RateLimitError 429 request_limited True");
    assert_eq!(lines[5], "models ['mock/gpt-4o-mini']");
}

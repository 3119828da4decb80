use crate::*;

const A: &str = "sk-bf-aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "sk-bf-bbbbbbbb-0000-4000-8000-000000000002";

fn two_keys() -> (Proxy, Vm, u32) {
    with_keys(&[(A, record("id-a", true, None)), (B, record("id-b", true, None))])
}

#[test]
fn header_precedence_follows_bifrost() {
    let (_proxy, mut vm, _) = two_keys();
    let bearer_b = format!("Bearer {B}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("authorization", bearer_b.as_str()), ("x-bf-vk", A)], "id-a"),
        (vec![("x-api-key", A), ("authorization", bearer_b.as_str())], "id-b"),
        (vec![("x-goog-api-key", B), ("x-api-key", A)], "id-a"),
        (vec![("api-key", A), ("x-goog-api-key", B)], "id-b"),
        (vec![("api-key", B)], "id-b"),
        (vec![("authorization", "Bearer sk-proj-provider"), ("x-api-key", A)], "id-a"),
    ];
    for (headers, id) in cases {
        let out = chat(&mut vm, &headers).unwrap();
        assert!(out.forwarded, "{headers:?}: {:?}", out.reply);
        assert_eq!(out.header("x-warden-vk-id").as_deref(), Some(id), "{headers:?}");
    }
}

#[test]
fn every_refusal_has_its_status_type_and_code() {
    let expiring = "sk-bf-cccccccc-0000-4000-8000-000000000003";
    let inactive = "sk-bf-dddddddd-0000-4000-8000-000000000004";
    let (proxy, mut vm, _) = with_keys(&[
        (A, record("id-a", true, None)),
        (expiring, record("id-c", true, Some(T0 + 1_000))),
        (inactive, record("id-d", false, Some(T0 + 1_000))),
    ]);
    let cases = [
        (vec![], 401, "virtual_key_required", "virtual_key_required"),
        (vec![("authorization", "Basic dXNlcjpwYXNz")], 401, "virtual_key_required", "virtual_key_required"),
        (vec![("x-bf-vk", "sk-bf-unknown")], 401, "virtual_key_not_found", "virtual_key_not_found"),
        (vec![("x-bf-vk", inactive)], 403, "virtual_key_blocked", "virtual_key_inactive"),
    ];
    for (headers, status, kind, code) in cases {
        let out = chat(&mut vm, &headers).unwrap();
        let reply = out.reply.unwrap_or_else(|| panic!("{headers:?} was let through"));
        assert_eq!(out.action, 1);
        assert_eq!(reply.status, status, "{headers:?}");
        assert!(reply.headers.contains(&("content-type".into(), "application/json".into())));
        let body = reply.json();
        assert_eq!((body["type"].as_str(), body["error"]["code"].as_str()), (Some(kind), Some(code)), "{body}");
        assert_eq!(body["status_code"], status);
    }
    assert!(chat(&mut vm, &[("x-bf-vk", expiring)]).unwrap().forwarded);
    proxy.advance_ms(1_000);
    let reply = chat(&mut vm, &[("x-bf-vk", expiring)]).unwrap().reply.unwrap();
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (403, Some("virtual_key_expired")));
    assert_eq!(proxy.metric("warden_requests_denied"), 5);
    // Admissions reach Envoy's counter at the VM's next tick.
    assert_eq!(proxy.metric("warden_requests_admitted"), 0);
    vm.tick().unwrap();
    assert_eq!(proxy.metric("warden_requests_admitted"), 1);
}

#[test]
fn no_policy_and_stale_policy_are_refused_never_allowed() {
    let proxy = Proxy::load(&warden_tests::filter_wasm());
    proxy.set_now_ms(T0);
    let (mut vm, _) = proxy.vm(SETTINGS).unwrap();
    let reply = chat(&mut vm, &[("x-bf-vk", A)]).unwrap().reply.unwrap();
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (503, Some("policy_missing")));

    let (proxy, mut vm, token) = two_keys();
    proxy.advance_ms(10_000);
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded, "at the bound: still fresh");
    proxy.advance_ms(1);
    let reply = chat(&mut vm, &[("x-bf-vk", A)]).unwrap().reply.unwrap();
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (503, Some("policy_stale")));
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("10001 ms (bound 10000 ms)"));
    vm.tick().unwrap();
    assert_eq!(proxy.metric("warden_policy_age_ms"), 10_001, "the age is exported before requests fail");
    vm.deliver(token, &heartbeat("42")).unwrap();
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded, "a heartbeat makes it fresh again");
    vm.tick().unwrap();
    assert_eq!((proxy.metric("warden_policy_version"), proxy.metric("warden_policy_age_ms")), (42, 0));
}

#[test]
fn client_warden_headers_and_the_key_never_go_upstream() {
    let (_proxy, mut vm, _) = two_keys();
    let bearer = format!("Bearer {A}");
    let out = chat(
        &mut vm,
        &[
            ("authorization", bearer.as_str()),
            ("x-warden-vk-id", "forged"),
            ("x-warden-provider", "forged"),
            ("x-request-id", "kept"),
        ],
    )
    .unwrap();
    assert!(out.forwarded);
    let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).filter(|n| !n.starts_with(':')).collect();
    assert_eq!(names, ["x-request-id", "x-warden-vk-id", "x-warden-cluster"]);
    assert_eq!(out.header("x-warden-vk-id").as_deref(), Some("id-a"));

    // A second virtual key in a lower-precedence header does not leak either; a provider key
    // (no `sk-bf-` prefix) is left for the credential injector to overwrite.
    let out = chat(&mut vm, &[("x-bf-vk", A), ("x-api-key", B), ("x-goog-api-key", "AIza-provider")]).unwrap();
    assert!(out.forwarded);
    let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).filter(|n| !n.starts_with(':')).collect();
    assert_eq!(names, ["x-goog-api-key", "x-warden-vk-id", "x-warden-cluster"]);

    // A denied request is stripped too.
    let out = chat(&mut vm, &[("x-warden-vk-id", "forged")]).unwrap();
    assert!(out.headers.iter().all(|(n, _)| n.starts_with(':')), "{:?}", out.headers);
}

#[test]
fn hostile_headers_never_crash_the_vm() {
    let (_proxy, mut vm, _) = two_keys();
    let huge = vec![b'a'; 1 << 20];
    let many: Vec<(String, Vec<u8>)> = (0..2_000).map(|i| (format!("x-h-{i}"), vec![b'v'; 32])).collect();
    let mut cases: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("x-bf-vk", b"\xff\xfe\x00\x01")],
        vec![("authorization", b"Bearer sk-bf-\xc3\x28")],
        vec![("authorization", b"Bearer")],
        vec![("authorization", b"")],
        vec![("x-api-key", &huge)],
        vec![("x-bf-vk", &huge)],
        vec![("", b"")],
    ];
    cases.push(many.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect());
    for headers in cases {
        let out = vm.request(&headers).unwrap();
        let status = out.reply.map(|r| r.status);
        assert!(matches!(status, Some(401)), "{:?}", status);
    }
    // Still serving.
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded);
}

/// A body that ends with trailers is decided when the trailers arrive: never let through
/// undecided.
#[test]
fn a_body_ending_in_trailers_is_governed() {
    let (_proxy, mut vm, _) = two_keys();
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-bf-vk", A)];
    let trailers = [("x-checksum", "abc")];
    let modelless = Exchange::request(&headers, br#"{"messages":[]}"#).with_trailers(&trailers);
    let refused = vm.exchange(modelless).unwrap();
    assert!(!refused.forwarded);
    assert_eq!(refused.status(), 400, "{:?}", refused.reply);
    let fine = Exchange::request(&headers, CHAT_BODY.as_bytes()).with_trailers(&trailers).respond(
        200,
        "application/json",
        vec![USAGE_BODY.as_bytes().to_vec()],
    );
    let served = vm.exchange(fine).unwrap();
    assert!(served.forwarded);
    assert_eq!(served.header("x-warden-cluster").as_deref(), Some("warden-provider/mock/main"));
}

/// A bounded fuzz pass through the real `.wasm`: garbage request bodies on every governed route
/// and garbage answers, JSON and SSE. The VM never traps, a refusal is a 4xx, and it keeps
/// serving (`policy/tests/fuzz.rs` does the same for each parser alone).
#[test]
fn garbage_bodies_and_answers_never_trap_the_filter() {
    let (_proxy, mut vm, _) = two_keys();
    const PIECES: [&str; 24] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\u",
        "d800",
        "\"model\"",
        "\"gpt-4o-mini\"",
        "\"stream\"",
        "true",
        "\"usage\"",
        "\"prompt_tokens\"",
        "1e999",
        "null",
        "\"messages\"",
        "\"jsonrpc\"",
        "\"method\"",
        "\"tools/call\"",
        "data: ",
        "\n\n",
        "\u{ff}",
    ];
    // A fixed xorshift: the same 600 cases on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let garbage = |next: &mut dyn FnMut() -> u64| -> Vec<u8> {
        let n = next() % 48;
        let mut out = Vec::new();
        for _ in 0..n {
            match next() % 4 {
                0 => out.push((next() & 0xff) as u8),
                _ => out.extend(PIECES[(next() % PIECES.len() as u64) as usize].as_bytes()),
            }
        }
        out
    };
    let routes = ["/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/mcp/tool/execute", "/mcp"];
    let (mut refused, mut forwarded) = (0, 0);
    for case in 0..600 {
        // One case in three is a valid chat, so that garbage answers are read too.
        let valid = case % 3 == 0;
        let body = match garbage(&mut next) {
            _ if valid => br#"{"model":"gpt-4o-mini","messages":[]}"#.to_vec(),
            b if b.is_empty() => b"{".to_vec(),
            b => b,
        };
        let answer = garbage(&mut next);
        let path = if valid { routes[0] } else { routes[case % routes.len()] };
        let headers = [(":method", "POST"), (":path", path), ("x-bf-vk", A), ("content-type", "application/json")];
        let kind = if case % 2 == 0 { "application/json" } else { "text/event-stream" };
        let exchange = Exchange::request(&headers, &body).respond(200, kind, vec![answer]);
        let out = vm.exchange(exchange).unwrap_or_else(|e| panic!("case {case} trapped: {e}"));
        match out.reply.as_ref().map(|r| r.status) {
            Some(status) => {
                assert!((400..500).contains(&status), "case {case}: {status} for {:?}", String::from_utf8_lossy(&body));
                refused += 1;
            }
            None => forwarded += 1,
        }
    }
    assert!(refused > 0 && forwarded > 0, "{refused} refused, {forwarded} forwarded");
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded, "still serving");
}

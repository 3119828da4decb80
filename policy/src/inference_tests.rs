use super::*;

#[test]
fn endpoints() {
    assert_eq!(Endpoint::of(b"POST", b"/v1/chat/completions?x=1"), Some(Endpoint::ChatCompletions));
    assert_eq!(Endpoint::of(b"GET", b"/v1/models/"), Some(Endpoint::Models));
    assert_eq!(Endpoint::of(b"GET", b"/v1/chat/completions"), None);
    assert_eq!(Endpoint::of(b"POST", b"/v2/chat/completions"), None);
}

#[test]
fn bad_bodies_say_what_is_wrong() {
    let msg = |b: &[u8]| InferenceBody::parse(b).unwrap_err().message();
    assert!(msg(b"{not json").starts_with("the request body is not valid JSON"));
    assert_eq!(msg(b"[1]"), "the request body must be a JSON object");
    assert_eq!(msg(br#"{"messages":[]}"#), "the request body has no 'model'");
    assert_eq!(msg(br#"{"model":3}"#), "'model' must be a non-empty string");
    assert_eq!(InferenceBody::parse(b"{").unwrap_err().status(), 400);
}

#[test]
fn rewrite_renames_and_asks_streams_for_usage() {
    let body = InferenceBody::parse(br#"{"model":"openai/gpt-4o","messages":[]}"#).unwrap();
    let out: Value =
        serde_json::from_slice(&body.rewrite(Endpoint::ChatCompletions, "gpt-4o", Vec::new()).unwrap().unwrap())
            .unwrap();
    assert_eq!(out["model"], "gpt-4o");
    assert!(out.get("stream_options").is_none());
    let untouched = InferenceBody::parse(br#"{"model":"gpt-4o"}"#).unwrap();
    assert_eq!(untouched.rewrite(Endpoint::ChatCompletions, "gpt-4o", Vec::new()), Ok(None));
    let stream = InferenceBody::parse(br#"{"model":"gpt-4o","stream":true}"#).unwrap();
    assert!(stream.hide_usage_chunk(Endpoint::ChatCompletions));
    let out: Value =
        serde_json::from_slice(&stream.rewrite(Endpoint::ChatCompletions, "gpt-4o", Vec::new()).unwrap().unwrap())
            .unwrap();
    assert_eq!(out["stream_options"]["include_usage"], true);
    let asked =
        InferenceBody::parse(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
    assert!(!asked.hide_usage_chunk(Endpoint::ChatCompletions));
    assert_eq!(asked.rewrite(Endpoint::ChatCompletions, "m", Vec::new()), Ok(None));
    let responses = InferenceBody::parse(br#"{"model":"m","stream":true}"#).unwrap();
    assert_eq!(
        responses.rewrite(Endpoint::Responses, "m", Vec::new()),
        Ok(None),
        "the responses API always reports usage"
    );
}

#[test]
fn the_estimate_counts_every_answer_asked_for() {
    let usage = |b: &[u8]| InferenceBody::parse(b).unwrap().estimated_usage(4096, 0).output_tokens;
    assert_eq!(usage(br#"{"model":"m","max_tokens":100}"#), 100);
    assert_eq!(usage(br#"{"model":"m","max_tokens":100,"n":3}"#), 300);
    assert_eq!(usage(br#"{"model":"m","n":2}"#), 8192);
    assert_eq!(usage(br#"{"model":"m","max_tokens":100,"n":1000000}"#), 12_800, "n is capped");
    assert_eq!(usage(br#"{"model":"m","max_tokens":18446744073709551615,"n":5}"#), u64::MAX, "saturating");
}

#[test]
fn a_body_that_must_change_but_cannot_be_read_whole_is_refused() {
    let deep = format!(r#"{{"model":"m","stream":true,"x":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    let lone_surrogate = br#"{"model":"m","stream":true,"messages":[{"content":"\ud800"}]}"#.to_vec();
    let raw_ff = [&br#"{"model":"m","stream":true,"messages":[{"content":""#[..], &[0xff], br#""}]}"#].concat();
    for bytes in [deep.into_bytes(), lone_surrogate, raw_ff] {
        // Its few fields read (the rest is skipped), so it is routed; a stream needs
        // include_usage added, and that needs the whole body.
        let body = InferenceBody::parse(&bytes).unwrap();
        let refused = body.rewrite(Endpoint::ChatCompletions, "m", Vec::new()).unwrap_err();
        assert_eq!(refused.status(), 400, "{}", String::from_utf8_lossy(&bytes));
        assert!(refused.message().contains("cannot be read whole"), "{}", refused.message());
    }
}

#[test]
fn json_usage_shapes() {
    let total = |b: &[u8]| json_usage(b).map(|u| u.total());
    assert_eq!(total(br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#), Some(7));
    assert_eq!(total(br#"{"usage":{"input_tokens":3,"output_tokens":4}}"#), Some(7));
    assert_eq!(total(br#"{"usage":{"prompt_tokens":5}}"#), Some(5));
    assert_eq!(total(br#"{"usage":{"prompt_tokens":5,"total_tokens":5}}"#), Some(5));
    let cached = json_usage(
        br#"{"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":8}}}"#,
    );
    assert_eq!(cached, Some(Usage { input_tokens: 10, cached_input_tokens: 8, output_tokens: 2 }));
    assert_eq!(json_usage(br#"{"id":"x"}"#), None);
    assert_eq!(json_usage(b"garbage"), None);
    assert_eq!(json_usage(br#"{"usage":null}"#), None);
    // Found from the tail: a cut-off head, a "usage" inside a string, one nested earlier.
    let tail =
        br#"ntent":"say \"usage\": {\"prompt_tokens\":99}"}],"usage": {"prompt_tokens":3,"completion_tokens":4}}"#;
    assert_eq!(total(tail), Some(7));
    let nested = br#"{"x":{"usage":{"prompt_tokens":50}},"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    assert_eq!(total(nested), Some(2));
    let then_a_value = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1},"object":"usage"}"#;
    assert_eq!(total(then_a_value), Some(3), "a \"usage\" value after the key is skipped");
    assert_eq!(total(br#"{"usage":{"prompt_tokens":1,"completion"#), None, "a cut-off usage is no usage");
}

const STREAM: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
    "data: [DONE]\n\n",
);

fn run(hide: bool, sizes: usize) -> (String, Option<u64>) {
    let mut sse = SseUsage::new(hide);
    let bytes = STREAM.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(sizes).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let end = i + 1 == chunks.len();
        match sse.feed(chunk, end) {
            Some(replaced) => out.extend(replaced),
            None => out.extend_from_slice(chunk),
        }
    }
    (String::from_utf8(out).unwrap(), sse.usage.map(|u| u.total()))
}

#[test]
fn sse_usage_found_across_any_chunking_and_hidden_when_not_asked() {
    for size in [1, 2, 7, 50, 1000] {
        let (out, tokens) = run(false, size);
        assert_eq!((out.as_str(), tokens), (STREAM, Some(11)), "size {size}");
        let (out, tokens) = run(true, size);
        assert_eq!(tokens, Some(11), "size {size}");
        assert!(!out.contains("prompt_tokens"), "size {size}: {out}");
        assert!(out.contains("\"Hel\"") && out.contains("\"lo\"") && out.ends_with("data: [DONE]\n\n"));
    }
}

#[test]
fn responses_api_completed_event() {
    let mut sse = SseUsage::new(false);
    let event = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":4,\"output_tokens\":6,\"total_tokens\":10}}}\n\n";
    assert_eq!(sse.feed(event, true), None);
    assert_eq!(sse.usage.map(|u| u.total()), Some(10));
}

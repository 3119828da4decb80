//! Micro-benchmarks of the per-request decision, natively: what `policy/` costs before any
//! proxy-wasm overhead.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;
use warden_policy::{KeyHash, PolicyHealth, SyncStatus, VirtualKeyRecord, admit};

fn decision(c: &mut Criterion) {
    let secret = "sk-bf-0b8f4a52-2c8e-4c39-9d7c-5e1f6a7b8c9d";
    let record = VirtualKeyRecord { id: "id".into(), name: "name".into(), is_active: true, expires_at_ms: None };
    let json = serde_json::to_vec(&record).unwrap();
    let table: HashMap<KeyHash, Vec<u8>> = HashMap::from([(KeyHash::of(secret.as_bytes()), json)]);
    let status = SyncStatus { heard_at_ms: 1_000, version: "1".into() };
    let bearer = format!("Bearer {secret}");
    let headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", b"/v1/chat/completions"),
        ("content-type", b"application/json"),
        ("user-agent", b"OpenAI/Python 1.0"),
        ("authorization", bearer.as_bytes()),
    ];
    let health = PolicyHealth { bound_ms: 300_000 };

    c.bench_function("hash a virtual key (SHA-256)", |b| b.iter(|| KeyHash::of(black_box(secret.as_bytes()))));
    c.bench_function("admit: find key, hash, look up, parse record, check", |b| {
        b.iter(|| {
            let lookup = |h: &KeyHash| table.get(h).and_then(|j| serde_json::from_slice(j).ok());
            admit(black_box(headers.iter().copied()), health, Some(&status), lookup, 2_000)
        })
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);

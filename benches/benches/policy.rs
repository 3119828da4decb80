//! Micro-benchmarks of the per-request decisions, natively: what `policy/` costs before any
//! proxy-wasm overhead.

use criterion::{Criterion, criterion_group, criterion_main};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use warden_policy::counter::Counters;
use warden_policy::govern;
use warden_policy::inference::Endpoint;
use warden_policy::pricing::Price;
use warden_policy::records::{Limits, ProviderGrant, ProviderRecord, RateLimit};
use warden_policy::records::{Record, Records};
use warden_policy::{KeyHash, PolicyHealth, RecordKind, SyncStatus, VirtualKeyRecord, admit};

/// Records and counters in maps: the decision without shared data.
#[derive(Default)]
struct World {
    providers: Vec<ProviderRecord>,
    counters: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl Records for World {
    fn get<T: Record>(&self, id: &str) -> Option<Arc<T>> {
        let found: Option<Box<dyn Any>> = match T::KIND {
            RecordKind::Provider => self.providers.iter().find(|p| p.name == id).cloned().map(|p| Box::new(p) as _),
            RecordKind::Price => Some(Box::new(Price {
                input_per_mtok: 150_000,
                output_per_mtok: 600_000,
                cached_input_per_mtok: None,
                per_request: 0,
            })),
            _ => None,
        };
        found?.downcast::<T>().ok().map(|record| Arc::new(*record))
    }
}

impl Counters for World {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        self.counters.borrow().get(key).map_or((None, 0), |(v, c)| (Some(v.clone()), *c))
    }
    fn write(&self, key: &str, value: &[u8], _cas: u32) -> bool {
        let mut map = self.counters.borrow_mut();
        let next = map.get(key).map_or(1, |(_, c)| c + 1);
        map.insert(key.to_owned(), (value.to_vec(), next));
        true
    }
}

fn limits() -> RateLimit {
    RateLimit {
        request_max_limit: Some(u64::MAX / 2),
        request_reset_duration: Some("1h".into()),
        token_max_limit: Some(u64::MAX / 2),
        token_reset_duration: Some("1d".into()),
    }
}

fn decision(c: &mut Criterion) {
    let secret = "sk-bf-0b8f4a52-2c8e-4c39-9d7c-5e1f6a7b8c9d";
    let mut record = VirtualKeyRecord::new("id", "name", true);
    record.limits = Limits { rate_limit: Some(limits()), budgets: vec![], calendar_aligned: false, anchor_ms: 0 };
    record.provider_configs = ["mock", "mock-b"]
        .map(|p| ProviderGrant {
            provider: p.into(),
            weight: Some(0.5),
            allowed_models: vec!["gpt-4o".into(), "regex:gpt-4o-mini.*".into()],
            blacklisted_models: vec!["gpt-4o-realtime".into()],
            key_ids: vec!["*".into()],
            rate_limit: Some(limits()),
            budgets: vec![],
        })
        .to_vec();
    let json = serde_json::to_vec(&record).unwrap();
    let table: HashMap<KeyHash, Vec<u8>> = HashMap::from([(KeyHash::of(secret.as_bytes()), json)]);
    let status = SyncStatus { heard_at_ms: 1_000, version: "1".into(), generation: 1 };
    let bearer = format!("Bearer {secret}");
    let headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", b"/v1/chat/completions"),
        ("content-type", b"application/json"),
        ("user-agent", b"OpenAI/Python 1.0"),
        ("authorization", bearer.as_bytes()),
    ];
    let health = PolicyHealth { bound_ms: 300_000 };
    let settings = warden_policy::FilterSettings::for_cluster("warden_xds");
    let world = World {
        providers: ["mock", "mock-b"]
            .map(|name| ProviderRecord {
                name: name.into(),
                models: vec![],
                key_ids: vec!["main".into()],
                base_path: "/v1".into(),
                request_timeout_ms: None,
                limits: Limits::default(),
            })
            .to_vec(),
        ..World::default()
    };
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(900)}]})
        .to_string();

    c.bench_function("hash a virtual key (SHA-256)", |b| b.iter(|| KeyHash::of(black_box(secret.as_bytes()))));
    c.bench_function("admit: find key, hash, look up, parse record, check", |b| {
        b.iter(|| {
            let lookup =
                |h: &KeyHash| table.get(h).and_then(|j| serde_json::from_slice(j).ok()).map(std::sync::Arc::new);
            admit(black_box(headers.iter().copied()), health, Some(&status), lookup, 2_000)
        })
    });
    let include = warden_policy::mcp::IncludeHeaders::default();
    let cx = govern::Context {
        records: &world,
        counters: &world,
        now_ms: 2_000,
        settings: &settings,
        control_plane_up: true,
        include: &include,
    };
    let mut n = 0u64;
    c.bench_function("govern: 1 KiB body, RBAC, weighted route, 4 limits reserved", |b| {
        b.iter(|| {
            n += 1;
            govern::inference(&record, Endpoint::ChatCompletions, "", black_box(body.as_bytes()), n, &cx)
        })
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);

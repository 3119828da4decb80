//! Where policy lives in shared data, the one copy per Envoy process that every worker reads.
//!
//! | key | value |
//! |---|---|
//! | `warden:<kind>:<id>` | a policy record as JSON, under its resource name (see `RecordKind`) |
//! | `warden:rl:<scope>:<req\|tok>` | a rate-limit counter, `"v2 <window start> <count>"` and this Envoy's lease grants (`warden_policy::counter`) |
//! | `warden:inflight:<key id>` | a key's requests in flight |
//! | `warden:budget:<scope>:<reset duration>[@<reset at ms>]` | a budget's micro-dollars spent (and reserved) in the window, and this Envoy's leases of it (`warden_policy::counter`) |
//! | `warden:leased` | the budgets of every record, which the leader keeps leases for (`leases.rs`) |
//! | `warden:ledger:unacked` | usage records reported to the control plane but not yet acknowledged |
//! | `warden:sync` | `SyncStatus::encode`: when the control plane was last heard from |
//! | `warden:leader` | the lease of the VM that holds the policy stream (see `leader.rs`) |
//! | `warden:root-ids` | the last number given out to name a root context, `root<n>` (`leader::allocate_id`) |
//! | `warden:index:<xx>` | names and versions of the records whose name hashes to bucket `xx`, one `name version` per line; lets a new leader tell the control plane what this Envoy already holds |
//!
//! Shared data cannot list or delete keys, so a removed record is written as an empty value.

use crate::host;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use warden_policy::blocks::Blocks;
use warden_policy::counter::Counters;
use warden_policy::records::Record;
use warden_policy::{RecordKind, SyncStatus};

pub const LEADER_KEY: &str = "warden:leader";
/// Usage records reported but not yet acknowledged.
pub const UNACKED_KEY: &str = "warden:ledger:unacked";
const SYNC_KEY: &str = "warden:sync";
const INDEX_BUCKETS: u8 = 64;

fn record_key(name: &str) -> String {
    let mut key = String::with_capacity(7 + name.len());
    key.push_str("warden:");
    key.push_str(name);
    key
}

/// How many parsed records of one kind a VM keeps; beyond it they start afresh.
const PARSED_RECORDS: usize = 4_096;

/// A parsed record (or the knowledge that there is none) and the generation it was read at.
type Parsed = (u64, Option<Arc<dyn Any + Send + Sync>>);

thread_local! {
    // Records parsed by this VM, by kind and id (found with no string built). While the policy
    // generation stays the same, a record is neither read nor parsed again: no hostcall at all.
    static PARSED: RefCell<HashMap<RecordKind, HashMap<String, Parsed>>> = RefCell::new(HashMap::new());
}

/// The record `T` named by `id` at policy `generation` (from this request's sync status), if
/// this Envoy holds a readable one; shared with this VM's cache of parsed records.
pub fn record<T: Record>(id: &str, generation: u64) -> Option<Arc<T>> {
    let kind = T::KIND;
    let cached = PARSED.with(|parsed| {
        let parsed = parsed.borrow();
        let (at, record) = parsed.get(&kind)?.get(id)?;
        (*at == generation).then(|| record.clone().map(|r| r.downcast::<T>().ok()))
    });
    if let Some(hit) = cached {
        return hit.flatten();
    }
    let record: Option<Arc<T>> = host::shared_get(&record_key(&kind.name(id)))
        .0
        .and_then(|value| serde_json::from_slice(&value).ok())
        .map(Arc::new);
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        let of_kind = parsed.entry(kind).or_default();
        if of_kind.len() >= PARSED_RECORDS {
            of_kind.clear();
        }
        let stored = record.clone().map(|r| r as Arc<dyn Any + Send + Sync>);
        of_kind.insert(id.to_owned(), (generation, stored));
    });
    record
}

/// How long a VM trusts the sync status it last read. A change of policy (a revoked key) reaches
/// this VM's requests at most this much later; in exchange a busy worker reads it once per this
/// many milliseconds, not once per request. (At 25 ms, revocation's p50 rose from 4 to 26 ms in
/// `make bench` to save one read of about 2 µs.)
const SYNC_FRESH_MS: u64 = 5;

thread_local! {
    // The sync status this VM last read or wrote, and when.
    static SYNC: RefCell<Option<(u64, Option<SyncStatus>)>> = const { RefCell::new(None) };
}

/// The sync status, as read at most [`SYNC_FRESH_MS`] before `now_ms`.
pub fn sync_status(now_ms: u64) -> Option<SyncStatus> {
    let fresh = SYNC.with(|sync| match &*sync.borrow() {
        Some((at, status)) if now_ms >= *at && now_ms - *at < SYNC_FRESH_MS => Some(status.clone()),
        _ => None,
    });
    fresh.unwrap_or_else(|| reread_sync_status(now_ms))
}

/// The sync status as it is now, whatever this VM read last.
fn reread_sync_status(now_ms: u64) -> Option<SyncStatus> {
    let status = host::shared_get(SYNC_KEY).0.and_then(|v| SyncStatus::decode(&v));
    SYNC.with(|sync| *sync.borrow_mut() = Some((now_ms, status.clone())));
    status
}

/// The sync status as it is now, if its policy generation is not `generation`: a decision taken
/// on the status this VM trusts (up to [`SYNC_FRESH_MS`] old) may be taken again on it.
pub fn newer_sync_status(now_ms: u64, generation: u64) -> Option<SyncStatus> {
    reread_sync_status(now_ms).filter(|status| status.generation != generation)
}

/// Records contact with the control plane; `changed` bumps the generation after the leader
/// has written changed records.
pub fn heard(now_ms: u64, version: String, changed: bool) {
    let held = host::shared_get(SYNC_KEY).0.and_then(|v| SyncStatus::decode(&v));
    let generation = held.map_or(0, |s| s.generation) + u64::from(changed);
    let status = SyncStatus { heard_at_ms: now_ms, version, generation };
    let _ = host::shared_set(SYNC_KEY, &status.encode(), None);
    SYNC.with(|sync| *sync.borrow_mut() = Some((now_ms, Some(status))));
}

/// Stores a validated record. Only the leader writes records, so no CAS is needed.
pub fn put_record(name: &str, json: &[u8]) -> Result<(), host::HostError> {
    host::shared_set(&record_key(name), json, None)
}

pub fn remove_record(name: &str) {
    let _ = host::shared_set(&record_key(name), b"", None);
}

/// Creates a counter that does not exist yet. Only the leader creates counters (creating is
/// not atomic); workers only compare-and-swap them.
pub fn ensure_counter(key: &str) {
    if host::shared_get(key).0.is_none() {
        let _ = host::shared_set(key, b"0 0", None);
    }
}

/// A value, or nothing.
pub fn get(key: &str) -> Vec<u8> {
    host::shared_get(key).0.unwrap_or_default()
}

/// Writes a value unconditionally (only the leader writes the lists it owns).
pub fn put(key: &str, value: &[u8]) {
    let _ = host::shared_set(key, value, None);
}

thread_local! {
    // This VM's blocks of the shared counters (`warden_policy::blocks`), given back each tick.
    static BLOCKS: RefCell<Blocks> = RefCell::new(Blocks::default());
}

/// Shared data as the policy's counter store, with this VM's blocks.
pub struct SharedCounters;

impl Counters for SharedCounters {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        let (value, cas) = host::shared_get(key);
        (value, cas.unwrap_or(0))
    }

    fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
        host::shared_set(key, value, (cas != 0).then_some(cas)).is_ok()
    }

    fn with_blocks<R>(&self, f: impl FnOnce(Option<&mut Blocks>) -> R) -> R {
        BLOCKS.with(|blocks| f(Some(&mut blocks.borrow_mut())))
    }

    fn unreadable(&self, key: &str) {
        log::error!("warden: the counter '{key}' is unreadable; it counts as full until rewritten");
        host::increment(host::counter("warden_counter_unreadable"), 1);
    }
}

fn bucket_of(name: &str) -> String {
    // FNV-1a: a stable spread of names over the buckets.
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("warden:index:{:02x}", hash % u32::from(INDEX_BUCKETS))
}

/// The names and versions of every record this Envoy holds.
pub fn held_versions() -> BTreeMap<String, String> {
    (0..INDEX_BUCKETS).flat_map(|b| read_bucket(&format!("warden:index:{b:02x}"))).collect()
}

fn read_bucket(key: &str) -> BTreeMap<String, String> {
    let Some(bytes) = host::shared_get(key).0 else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Records the versions of changed names (`Some`) and forgets removed ones (`None`), one write
/// per touched bucket.
pub fn update_index<'a>(changes: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) {
    let mut by_bucket: BTreeMap<String, Vec<(&str, Option<&str>)>> = BTreeMap::new();
    for (name, version) in changes {
        by_bucket.entry(bucket_of(name)).or_default().push((name, version));
    }
    for (key, changes) in by_bucket {
        let mut bucket = read_bucket(&key);
        for (name, version) in changes {
            match version {
                Some(v) => bucket.insert(name.to_owned(), v.to_owned()),
                None => bucket.remove(name),
            };
        }
        let text: String = bucket.iter().map(|(n, v)| format!("{n} {v}\n")).collect();
        let _ = host::shared_set(&key, text.as_bytes(), None);
    }
}

//! Where policy lives in shared data, the one copy per Envoy process that every worker reads.
//!
//! | key | value |
//! |---|---|
//! | `warden:vk:<hash>` | a `VirtualKeyRecord` as JSON |
//! | `warden:sync` | `SyncStatus::encode`: when the control plane was last heard from |
//! | `warden:leader` | the lease of the VM that holds the policy stream (see `leader.rs`) |
//! | `warden:index:<xx>` | names and versions of the records whose name starts with `xx`, one `name version` per line; lets a new leader tell the control plane what this Envoy already holds |
//!
//! Shared data cannot list or delete keys, so a removed record is written as an empty value.

use crate::host;
use std::collections::BTreeMap;
use warden_policy::{KeyHash, SyncStatus, VirtualKeyRecord};

pub const LEADER_KEY: &str = "warden:leader";
const SYNC_KEY: &str = "warden:sync";

fn record_key(name: &str) -> String {
    format!("warden:vk:{name}")
}

/// The record of a key hash, if this Envoy holds a readable one.
pub fn virtual_key(hash: &KeyHash) -> Option<VirtualKeyRecord> {
    let (value, _) = host::shared_get(&record_key(&hash.to_hex()));
    serde_json::from_slice(&value?).ok()
}

pub fn sync_status() -> Option<SyncStatus> {
    SyncStatus::decode(&host::shared_get(SYNC_KEY).0?)
}

pub fn set_sync_status(status: &SyncStatus) {
    let _ = host::shared_set(SYNC_KEY, &status.encode(), None);
}

/// Stores a validated record. Only the leader writes, so no CAS is needed.
pub fn put_record(name: &str, json: &[u8]) -> Result<(), host::HostError> {
    host::shared_set(&record_key(name), json, None)
}

pub fn remove_record(name: &str) {
    let _ = host::shared_set(&record_key(name), b"", None);
}

fn bucket_of(name: &str) -> String {
    match name.get(..2) {
        Some(p) if p.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) => {
            format!("warden:index:{p}")
        }
        _ => "warden:index:__".to_owned(),
    }
}

/// The names and versions of every record this Envoy holds.
pub fn held_versions() -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for a in b"0123456789abcdef" {
        for b in b"0123456789abcdef" {
            let prefix = [*a, *b];
            let key = format!("warden:index:{}", String::from_utf8_lossy(&prefix));
            all.extend(read_bucket(&key));
        }
    }
    all.extend(read_bucket("warden:index:__"));
    all
}

fn read_bucket(key: &str) -> BTreeMap<String, String> {
    let Some(bytes) = host::shared_get(key).0 else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| line.split_once(' '))
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

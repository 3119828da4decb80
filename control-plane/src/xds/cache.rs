//! The snapshot every xDS stream serves from. Admin writes go to the store first, then here; no
//! stream ever reads the database.
//!
//! Two kinds of state live here:
//! - Envoy's own resources, served state of the world: the filter (ECDS), the provider
//!   clusters (CDS) and their API keys (SDS), and
//! - the policy records (delta: one resource per virtual key, named by the key's hash). Each
//!   change gets a sequence number, so a stream that has sent everything up to `seq` asks only
//!   for what changed since, in O(changes) rather than a diff of every key.
//!
//! Every change bumps a `watch` generation that wakes all streams.

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::watch;
use warden_policy::lease::LeasedLimit;
use warden_policy::records::record_limits;

/// The filter's ECDS resource and its content version.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    pub name: String,
    pub version: String,
    pub resource: Any,
}

impl FilterConfig {
    fn resource_type_url(&self) -> String {
        <envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig as prost::Name>::type_url()
    }
}

/// One policy record as served: its content version and its JSON body.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    pub version: String,
    pub body: Arc<Vec<u8>>,
}

/// What a stream must send: an added or changed record, or a removal.
#[derive(Debug, Clone)]
pub enum PolicyChange {
    Upsert { name: String, entry: PolicyEntry },
    Remove { name: String },
}

/// Envoy resources of one type, by name.
pub type ResourceSet = BTreeMap<String, Any>;

/// Resources of one type and their content version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Versioned {
    pub version: String,
    pub resources: ResourceSet,
}

#[derive(Default)]
struct State {
    filter: Option<FilterConfig>,
    /// CDS and SDS resources, by type URL.
    envoy: HashMap<String, Versioned>,
    seq: u64,
    records: HashMap<String, PolicyEntry>,
    /// The last change of each name, by sequence number (removals included).
    log: BTreeMap<u64, String>,
    last_change: HashMap<String, u64>,
    /// During [`Cache::begin_sweep`]: the names published since.
    swept: Option<std::collections::HashSet<String>>,
    /// Every limit that spans Envoys, by counter, as the records say (see [`Cache::leased`]).
    leased: HashMap<String, LeasedLimit>,
    /// The counters of each record's such limits.
    leased_by_record: HashMap<String, Vec<String>>,
}

impl State {
    /// Re-reads which limits spanning Envoys a record holds (`None`: it is gone).
    fn index_leased(&mut self, name: &str, body: Option<&[u8]>) {
        for counter in self.leased_by_record.remove(name).unwrap_or_default() {
            self.leased.remove(&counter);
        }
        let Some(body) = body else { return };
        let limits = record_limits(name, body).leased;
        if limits.is_empty() {
            return;
        }
        let counters = limits.iter().map(|l| l.counter.clone()).collect();
        self.leased.extend(limits.into_iter().map(|l| (l.counter.clone(), l)));
        self.leased_by_record.insert(name.to_owned(), counters);
    }
}

/// The shared snapshot. Cheap to clone behind an `Arc`; methods take a short lock.
pub struct Cache {
    state: RwLock<State>,
    generation: watch::Sender<u64>,
}

/// A short content hash: the same record gives the same version across restarts, so a
/// reconnecting Envoy that already holds it is sent nothing.
pub fn content_version(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Default for Cache {
    fn default() -> Self {
        Cache { state: RwLock::default(), generation: watch::Sender::new(0) }
    }
}

impl Cache {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn filter(&self) -> Option<FilterConfig> {
        self.read().filter.clone()
    }

    pub fn set_filter(&self, config: FilterConfig) {
        let changed = {
            let mut state = self.write();
            let changed = state.filter.as_ref() != Some(&config);
            state.filter = Some(config);
            changed
        };
        if changed {
            self.bump();
        }
    }

    /// Replaces every resource of one type (clusters, secrets).
    pub fn set_resources(&self, type_url: &str, resources: ResourceSet) {
        let changed = {
            let mut state = self.write();
            let changed = state.envoy.get(type_url).is_none_or(|v| v.resources != resources);
            let bytes: Vec<u8> = resources.iter().flat_map(|(n, r)| n.bytes().chain(r.value.iter().copied())).collect();
            state.envoy.insert(type_url.to_owned(), Versioned { version: content_version(&bytes), resources });
            changed
        };
        if changed {
            self.bump();
        }
    }

    /// The resources of one type; the filter's ECDS resource is named after the filter.
    pub fn resources(&self, type_url: &str) -> Versioned {
        let state = self.read();
        if let Some(filter) = &state.filter
            && filter.resource_type_url() == type_url
        {
            let resources = BTreeMap::from([(filter.name.clone(), filter.resource.clone())]);
            return Versioned { version: filter.version.clone(), resources };
        }
        state.envoy.get(type_url).cloned().unwrap_or_default()
    }

    /// The policy's version: the sequence number of its last change.
    pub fn policy_seq(&self) -> u64 {
        self.read().seq
    }

    /// How many policy records are served.
    pub fn policy_len(&self) -> usize {
        self.read().records.len()
    }

    /// The body of one policy record, as every filter holds it.
    /// The limit behind a lease counter, as the published records say: the truth a lease is
    /// decided against, whatever an Envoy claims.
    pub fn leased(&self, counter: &str) -> Option<LeasedLimit> {
        self.read().leased.get(counter).cloned()
    }

    pub fn record(&self, name: &str) -> Option<Arc<Vec<u8>>> {
        self.read().records.get(name).map(|e| e.body.clone())
    }

    /// Adds or replaces records; unchanged bodies are not re-sent.
    pub fn upsert(&self, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
        let mut changed = false;
        {
            let mut state = self.write();
            for (name, body) in records {
                if let Some(swept) = &mut state.swept {
                    swept.insert(name.clone());
                }
                let version = content_version(&body);
                if state.records.get(&name).is_some_and(|e| e.version == version) {
                    continue;
                }
                state.next_seq(&name);
                state.index_leased(&name, Some(&body));
                state.records.insert(name, PolicyEntry { version, body: Arc::new(body) });
                changed = true;
            }
        }
        if changed {
            self.bump();
        }
    }

    pub fn remove(&self, name: &str) {
        let removed = {
            let mut state = self.write();
            let removed = state.records.remove(name).is_some();
            if removed {
                state.next_seq(name);
                state.index_leased(name, None);
            }
            removed
        };
        if removed {
            self.bump();
        }
    }

    /// Starts a full republication: [`Cache::end_sweep`] withdraws every record not upserted
    /// in between.
    pub fn begin_sweep(&self) {
        self.write().swept = Some(Default::default());
    }

    /// Ends a republication; with `complete` false (it failed half-way) nothing is withdrawn.
    pub fn end_sweep(&self, complete: bool) {
        let Some(swept) = self.write().swept.take() else { return };
        if !complete {
            return;
        }
        let gone: Vec<String> = self.read().records.keys().filter(|n| !swept.contains(*n)).cloned().collect();
        for name in gone {
            self.remove(&name);
        }
    }

    /// What a new stream must send, given the names and versions the client already holds, and
    /// the sequence number it is then up to date with.
    pub fn initial(&self, held: &HashMap<String, String>) -> (Vec<PolicyChange>, u64) {
        let state = self.read();
        let mut changes: Vec<PolicyChange> = state
            .records
            .iter()
            .filter(|(name, entry)| held.get(*name) != Some(&entry.version))
            .map(|(name, entry)| PolicyChange::Upsert { name: name.clone(), entry: entry.clone() })
            .collect();
        changes.extend(
            held.keys()
                .filter(|name| !state.records.contains_key(*name))
                .map(|name| PolicyChange::Remove { name: name.clone() }),
        );
        (changes, state.seq)
    }

    /// Everything that changed after `seq`, and the sequence number it brings the client to.
    pub fn since(&self, seq: u64) -> (Vec<PolicyChange>, u64) {
        let state = self.read();
        let changes = state
            .log
            .range(seq + 1..)
            .map(|(_, name)| match state.records.get(name) {
                Some(entry) => PolicyChange::Upsert { name: name.clone(), entry: entry.clone() },
                None => PolicyChange::Remove { name: name.clone() },
            })
            .collect();
        (changes, state.seq)
    }
}

impl State {
    /// Gives `name` the next sequence number, dropping its previous log entry.
    fn next_seq(&mut self, name: &str) {
        self.seq += 1;
        if let Some(old) = self.last_change.insert(name.to_owned(), self.seq) {
            self.log.remove(&old);
        }
        self.log.insert(self.seq, name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(changes: &[PolicyChange]) -> Vec<String> {
        let mut v: Vec<String> = changes
            .iter()
            .map(|c| match c {
                PolicyChange::Upsert { name, .. } => format!("+{name}"),
                PolicyChange::Remove { name } => format!("-{name}"),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn since_returns_only_the_latest_change_of_each_name() {
        let cache = Cache::default();
        cache.upsert([("a".into(), b"1".to_vec()), ("b".into(), b"1".to_vec())]);
        let (_, seq) = cache.since(0);
        cache.upsert([("a".into(), b"2".to_vec())]);
        cache.upsert([("a".into(), b"3".to_vec())]);
        cache.remove("b");
        cache.upsert([("c".into(), b"1".to_vec())]);
        let (changes, to) = cache.since(seq);
        assert_eq!(names(&changes), ["+a", "+c", "-b"]);
        assert_eq!(cache.since(to).0.len(), 0);
    }

    #[test]
    fn unchanged_bodies_do_not_wake_streams() {
        let cache = Cache::default();
        let rx = cache.subscribe();
        cache.upsert([("a".into(), b"1".to_vec())]);
        let g = *rx.borrow();
        cache.upsert([("a".into(), b"1".to_vec())]);
        cache.remove("missing");
        assert_eq!(*rx.borrow(), g);
    }

    #[test]
    fn initial_sends_differences_and_removals() {
        let cache = Cache::default();
        cache.upsert([("a".into(), b"1".to_vec()), ("b".into(), b"1".to_vec())]);
        let held: HashMap<String, String> =
            [("a".to_string(), content_version(b"1")), ("gone".to_string(), "x".to_string())].into();
        let (changes, seq) = cache.initial(&held);
        assert_eq!(names(&changes), ["+b", "-gone"]);
        assert_eq!(seq, cache.policy_seq());
    }
}

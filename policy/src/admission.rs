//! The admission decision for one request: key present, policy fresh, key known, key usable.

use crate::{Denial, KeyHash, PolicyHealth, PresentedKey, SyncStatus, VirtualKeyRecord, keys::find_key};
use std::sync::Arc;

/// A request that may proceed, and the key it proceeds as.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// Where the key was found.
    pub key: PresentedKey,
    /// The key's policy record, shared with the adapter's cache of parsed records (a key
    /// record is large: it is not copied per request).
    pub record: Arc<VirtualKeyRecord>,
}

/// Decides whether a request may proceed, in Bifrost's order: a missing key is refused before
/// anything is looked up; then the policy must be present and fresh (refuse rather than allow on
/// outdated policy); then the key must exist, be active and not expired.
///
/// `lookup` returns the record stored under a key hash, or `None` when there is none or it
/// cannot be read (a record that cannot be read denies, it never allows).
pub fn admit<'h, I>(
    headers: I,
    health: PolicyHealth,
    status: Option<&SyncStatus>,
    lookup: impl FnOnce(&KeyHash) -> Option<Arc<VirtualKeyRecord>>,
    now_ms: u64,
) -> Result<Admitted, Denial>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
{
    // `let … else`, not `ok_or`: no refusal is built (and dropped) for an admitted request.
    let Some(key) = find_key(headers) else { return Err(Denial::KeyRequired) };
    health.check(status, now_ms)?;
    let Some(record) = lookup(&key.hash) else { return Err(Denial::KeyNotFound) };
    record.admit(now_ms)?;
    Ok(Admitted { key, record })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTH: PolicyHealth = PolicyHealth { bound_ms: 1_000 };

    fn record(active: bool) -> VirtualKeyRecord {
        VirtualKeyRecord::new("vk1", "team-a", active)
    }

    fn run(
        headers: &[(&str, &str)],
        status: Option<&SyncStatus>,
        stored: Option<VirtualKeyRecord>,
    ) -> Result<Admitted, Denial> {
        let good = KeyHash::of(b"sk-bf-good");
        let lookup = |h: &KeyHash| stored.filter(|_| *h == good).map(Arc::new);
        admit(headers.iter().map(|(n, v)| (*n, v.as_bytes())), HEALTH, status, lookup, 500)
    }

    #[test]
    fn order_of_refusals() {
        let fresh = SyncStatus { heard_at_ms: 400, version: "1".into(), generation: 1 };
        let stale = SyncStatus { heard_at_ms: 0, version: "1".into(), generation: 1 };
        let good = [("x-bf-vk", "sk-bf-good")];
        // No key: refused before the policy is even consulted.
        assert_eq!(run(&[], None, None), Err(Denial::KeyRequired));
        assert_eq!(run(&good, None, Some(record(true))), Err(Denial::PolicyMissing));
        let now_stale = |status| {
            let good = KeyHash::of(b"sk-bf-good");
            let headers = [("x-bf-vk", b"sk-bf-good".as_slice())];
            admit(headers, HEALTH, Some(status), |h| (*h == good).then(|| Arc::new(record(true))), 1_001)
        };
        assert_eq!(now_stale(&stale), Err(Denial::PolicyStale { age_ms: 1_001, bound_ms: 1_000 }));
        assert_eq!(run(&[("x-bf-vk", "sk-bf-other")], Some(&fresh), Some(record(true))), Err(Denial::KeyNotFound));
        assert_eq!(run(&good, Some(&fresh), Some(record(false))), Err(Denial::KeyInactive));
        let ok = run(&good, Some(&fresh), Some(record(true))).unwrap();
        assert_eq!(ok.record.id, "vk1");
        assert_eq!(ok.key.source, crate::KeySource::BifrostHeader);
    }
}

//! A counter as it sits in the compare-and-swap store: its count in one window and, for limits
//! that span Envoys, the shares of the fleet-wide limit the control plane has granted this
//! Envoy (its leases).
//!
//! Stored as `"v2 <window start> <count>"` followed by up to two grants
//! `" <window start> <granted> <free> <version> <max> <others used>"`: the current window's and,
//! fetched ahead, the next one's. A value without the `v2` tag is the first layout, whose grants
//! have only the first four numbers (they read with `max` and `others_used` zero: unknown). Keeping the grant in the same value as the count makes "spend only what is granted"
//! and "give back what is not spent" single compare-and-swaps: no request can slip between a
//! check and a change of the grant.

use crate::window::Window;

/// A counter store with compare-and-swap (shared data in the filter, a map in tests).
pub trait Counters {
    /// The value under `key` and its CAS token (`0` when there is no value).
    fn read(&self, key: &str) -> (Option<Vec<u8>>, u32);
    /// Writes `value` if `key` is still at `cas` (`0`: unconditionally); `false` on a mismatch.
    fn write(&self, key: &str, value: &[u8], cas: u32) -> bool;
    /// Told when the value under `key` cannot be read: the counter then fails closed (it counts
    /// as full and is never written), so the store can count and report it.
    fn unreadable(&self, _key: &str) {}
    /// Runs `f` on this worker's blocks (`crate::blocks`), if it keeps any: the filter's workers
    /// do; a store without them counts every request with a compare-and-swap.
    fn with_blocks<R>(&self, f: impl FnOnce(Option<&mut crate::blocks::Blocks>) -> R) -> R {
        f(None)
    }
}

/// A counter store that reads each key from `inner` once per decision: reading is a crossing in
/// the filter, and one decision looks at some counters more than once (a provider config's
/// limits are checked to draw the provider, then counted). A write, won or lost, forgets the
/// key, so every compare-and-swap is made against a fresh read.
pub struct ReadOnce<'c, C: Counters> {
    inner: &'c C,
    seen: std::cell::RefCell<Vec<Read>>,
}

/// A key, its value and its CAS token, as read.
type Read = (String, Option<Vec<u8>>, u32);

impl<'c, C: Counters> ReadOnce<'c, C> {
    /// A decision's view of `inner`.
    pub fn new(inner: &'c C) -> Self {
        ReadOnce { inner, seen: std::cell::RefCell::default() }
    }
}

impl<C: Counters> Counters for ReadOnce<'_, C> {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
        if let Some((_, value, cas)) = self.seen.borrow().iter().find(|(k, ..)| k == key) {
            return (value.clone(), *cas);
        }
        let (value, cas) = self.inner.read(key);
        self.seen.borrow_mut().push((key.to_owned(), value.clone(), cas));
        (value, cas)
    }

    fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
        self.seen.borrow_mut().retain(|(k, ..)| k != key);
        self.inner.write(key, value, cas)
    }

    fn with_blocks<R>(&self, f: impl FnOnce(Option<&mut crate::blocks::Blocks>) -> R) -> R {
        self.inner.with_blocks(f)
    }

    fn unreadable(&self, key: &str) {
        self.inner.unreadable(key);
    }
}

/// Opens every value in the current layout (see the module's documentation).
const LAYOUT_TAG: &str = "v2 ";

/// How often a CAS is retried before the request is refused rather than counted wrongly.
const CAS_ATTEMPTS: usize = 64;
/// Grants kept per counter: the current window's and the next one's.
const GRANTS_KEPT: usize = 2;

/// This Envoy's share of a fleet-wide limit in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The window it is for.
    pub window_start: u64,
    /// How much of the limit this Envoy may count in that window, in all.
    pub granted: u64,
    /// What the control plane had left to grant to anyone when it answered; `0` means the
    /// fleet has been granted the whole limit.
    pub free: u64,
    /// The control plane's version of this lease: an answer older than the grant held (two
    /// leader VMs' calls crossing) is ignored.
    pub version: u64,
    /// The limit the control plane granted it under; `0` when unknown. A grant under another
    /// limit than the policy's is stale: the limit changed and the leader is asking again.
    pub max: u64,
    /// What the other Envoys had reported spent in the window when the control plane answered:
    /// with this Envoy's count, the fleet's spend that a refusal reports.
    pub others_used: u64,
}

impl Grant {
    /// Whether it was granted under another limit than `max` (the policy changed since).
    pub fn is_stale(&self, max: u64) -> bool {
        self.max != 0 && self.max != max
    }
}

/// A parsed counter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counter {
    window_start: u64,
    count: u64,
    grants: Vec<Grant>,
    /// The stored value could not be read: the counter is full in every window, has no grant,
    /// and is never written (a value read as zero would admit without limit).
    unreadable: bool,
}

impl Counter {
    /// Parses a stored value: none is an empty counter, one that does not parse is unreadable.
    pub fn parse(value: Option<&[u8]>) -> Counter {
        let Some(value) = value else { return Counter::default() };
        std::str::from_utf8(value)
            .ok()
            .and_then(Self::parse_text)
            .unwrap_or(Counter { unreadable: true, ..Counter::default() })
    }

    /// Whether the stored value could not be read.
    pub fn is_unreadable(&self) -> bool {
        self.unreadable
    }

    fn parse_text(text: &str) -> Option<Counter> {
        let (text, tagged) = match text.strip_prefix(LAYOUT_TAG) {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let mut numbers = text.split(' ').map(str::parse::<u64>);
        let mut number = || numbers.next().map(|n| n.ok());
        let window_start = number()??;
        let count = number()??;
        let mut grants = Vec::new();
        while let Some(start) = number() {
            let mut grant = Grant {
                window_start: start?,
                granted: number()??,
                free: number()??,
                version: number()??,
                max: 0,
                others_used: 0,
            };
            if tagged {
                (grant.max, grant.others_used) = (number()??, number()??);
            }
            grants.push(grant);
        }
        Some(Counter { window_start, count, grants, unreadable: false })
    }

    /// The stored form (always the current layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{LAYOUT_TAG}{} {}", self.window_start, self.count);
        for g in &self.grants {
            let Grant { window_start, granted, free, version, max, others_used } = g;
            text.push_str(&format!(" {window_start} {granted} {free} {version} {max} {others_used}"));
        }
        text.into_bytes()
    }

    /// The count in `window` (zero if it was last written in another window; everything if
    /// unreadable).
    pub fn count_in(&self, window: Window) -> u64 {
        match self.window_start == window.start_ms {
            _ if self.unreadable => u64::MAX,
            true => self.count,
            false => 0,
        }
    }

    /// The grant for the window starting at `window_start`.
    pub fn grant_in(&self, window_start: u64) -> Option<Grant> {
        self.grants.iter().find(|g| g.window_start == window_start).copied()
    }

    /// This counter with `count` in `window`, and only the grants still to come.
    fn with_count(&self, window: Window, count: u64) -> Counter {
        let grants = self.grants.iter().filter(|g| g.window_start >= window.start_ms).copied().collect();
        Counter { window_start: window.start_ms, count, grants, unreadable: false }
    }

    /// This counter with `grant` in place of any other for its window, newest windows kept.
    fn with_grant(&self, grant: Grant) -> Counter {
        let mut grants: Vec<Grant> =
            self.grants.iter().filter(|g| g.window_start != grant.window_start).copied().collect();
        grants.push(grant);
        grants.sort_by_key(|g| std::cmp::Reverse(g.window_start));
        grants.truncate(GRANTS_KEPT);
        grants.reverse();
        Counter { window_start: self.window_start, count: self.count, grants, unreadable: false }
    }
}

/// The counter under `key`.
pub fn read(counters: &impl Counters, key: &str) -> Counter {
    let counter = Counter::parse(counters.read(key).0.as_deref());
    if counter.unreadable {
        counters.unreadable(key);
    }
    counter
}

/// What an update saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The count in the window before the update.
    pub count: u64,
    /// This window's grant, if any.
    pub grant: Option<Grant>,
    /// Whether the update was written.
    pub wrote: bool,
}

/// Applies `change` to the count of `key` in `window` with compare-and-swap; `change` sees the
/// count and the window's grant and returns `None` to leave the counter as it is. `None` when
/// the store kept refusing the swap.
pub fn update(
    counters: &impl Counters,
    key: &str,
    window: Window,
    mut change: impl FnMut(u64, Option<Grant>) -> Option<u64>,
) -> Option<Seen> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = counters.read(key);
        let counter = Counter::parse(value.as_deref());
        if counter.unreadable {
            counters.unreadable(key);
            return None;
        }
        let count = counter.count_in(window);
        let grant = counter.grant_in(window.start_ms);
        let Some(next) = change(count, grant) else { return Some(Seen { count, grant, wrote: false }) };
        if counters.write(key, &counter.with_count(window, next).encode(), cas) {
            return Some(Seen { count, grant, wrote: true });
        }
    }
    None
}

/// Stores a grant from the control plane, unless the grant held is as new or newer.
pub fn put_grant(counters: &impl Counters, key: &str, grant: Grant) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = counters.read(key);
        let counter = Counter::parse(value.as_deref());
        if counter.unreadable {
            counters.unreadable(key);
            return false;
        }
        if counter.grant_in(grant.window_start).is_some_and(|held| held.version >= grant.version) {
            return true;
        }
        if counters.write(key, &counter.with_grant(grant).encode(), cas) {
            return true;
        }
    }
    false
}

/// Lowers the grant of `window` to what is counted in it plus `margin`, in one swap, so that
/// nothing more is spent against the rest; returns the lowered grant (the amount to tell the
/// control plane this Envoy keeps), or `None` if there was nothing to give back.
pub fn give_back(counters: &impl Counters, key: &str, window: Window, margin: u64) -> Option<u64> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = counters.read(key);
        let counter = Counter::parse(value.as_deref());
        if counter.unreadable {
            counters.unreadable(key);
            return None;
        }
        let grant = counter.grant_in(window.start_ms)?;
        let keep = counter.count_in(window).saturating_add(margin);
        if grant.granted <= keep {
            return None;
        }
        let lowered = counter.with_grant(Grant { granted: keep, ..grant });
        if counters.write(key, &lowered.encode(), cas) {
            return Some(keep);
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A counter store in a map, for tests.
    #[derive(Default)]
    pub struct Map(pub RefCell<HashMap<String, (Vec<u8>, u32)>>);

    impl Counters for Map {
        fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
            self.0.borrow().get(key).map_or((None, 0), |(v, c)| (Some(v.clone()), *c))
        }
        fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
            let mut map = self.0.borrow_mut();
            let current = map.get(key).map_or(0, |(_, c)| *c);
            if cas != 0 && cas != current {
                return false;
            }
            map.insert(key.to_owned(), (value.to_vec(), current + 1));
            true
        }
    }

    /// A grant whose limit and others' spend are unknown.
    pub fn grant(window_start: u64, granted: u64, free: u64, version: u64) -> Grant {
        Grant { window_start, granted, free, version, max: 0, others_used: 0 }
    }

    const W1: Window = Window { start_ms: 1_000, end_ms: 2_000 };
    const W2: Window = Window { start_ms: 2_000, end_ms: 3_000 };

    #[test]
    fn the_plain_form_reads_as_before_and_grants_round_trip() {
        assert_eq!(Counter::parse(Some(b"1000 7")).count_in(W1), 7);
        assert_eq!(Counter::parse(Some(b"1000 7")).count_in(W2), 0);
        assert!(Counter::parse(Some(b"garbage")).is_unreadable());
        assert!(!Counter::parse(None).is_unreadable());
        // The first layout: grants of four numbers, their limit and the others' spend unknown.
        let c = Counter::parse(Some(b"1000 7 1000 50 900 1 2000 20 880 2"));
        assert_eq!(c.grant_in(1_000), Some(grant(1_000, 50, 900, 1)));
        assert_eq!(c.grant_in(2_000).map(|g| g.granted), Some(20));
        assert_eq!(Counter::parse(Some(&c.encode())), c);
        // The current layout keeps both.
        let full = Grant { max: 5_000, others_used: 1_200, ..grant(1_000, 50, 900, 3) };
        let c = Counter::parse(Some(b"v2 1000 7 1000 50 900 3 5000 1200"));
        assert_eq!((c.count_in(W1), c.grant_in(1_000)), (7, Some(full)));
        assert_eq!(c.encode(), b"v2 1000 7 1000 50 900 3 5000 1200");
        assert!(full.is_stale(6_000) && !full.is_stale(5_000) && !grant(0, 1, 0, 1).is_stale(6_000));
        // A truncated grant is unreadable, never half-read.
        assert!(Counter::parse(Some(b"1000 7 1000 50 900")).is_unreadable());
        assert!(Counter::parse(Some(b"v2 1000 7 1000 50 900 3 5000")).is_unreadable());
        assert!(Counter::parse(Some(b"v2 1000 7 1000 50 900 1")).is_unreadable());
    }

    #[test]
    fn counts_keep_grants_and_a_new_window_finds_the_grant_fetched_ahead() {
        let map = Map::default();
        assert!(put_grant(&map, "k", grant(1_000, 10, 5, 1)));
        assert!(put_grant(&map, "k", grant(2_000, 4, 1, 2)));
        let seen = update(&map, "k", W1, |n, g| (n + 3 <= g?.granted).then_some(n + 3)).unwrap();
        assert_eq!((seen.count, seen.wrote, seen.grant.map(|g| g.granted)), (0, true, Some(10)));
        // The next window starts from zero with its own grant; the old one is dropped.
        let seen = update(&map, "k", W2, |n, g| (n + 3 <= g?.granted).then_some(n + 3)).unwrap();
        assert_eq!((seen.count, seen.grant.map(|g| g.granted)), (0, Some(4)));
        let c = read(&map, "k");
        assert_eq!((c.count_in(W2), c.grant_in(1_000)), (3, None));
        // Only two grants are kept: the newest.
        put_grant(&map, "k", grant(3_000, 1, 0, 3));
        put_grant(&map, "k", grant(4_000, 1, 0, 4));
        let c = read(&map, "k");
        assert_eq!((c.grant_in(2_000), c.grant_in(3_000).is_some(), c.grant_in(4_000).is_some()), (None, true, true));
    }

    #[test]
    fn give_back_lowers_the_grant_to_the_count() {
        let map = Map::default();
        put_grant(&map, "k", grant(1_000, 10, 5, 1));
        update(&map, "k", W1, |n, _| Some(n + 4));
        assert_eq!(give_back(&map, "k", W1, 2), Some(6), "keeping a margin");
        assert_eq!(give_back(&map, "k", W1, 0), Some(4));
        assert_eq!(read(&map, "k").grant_in(1_000).map(|g| g.granted), Some(4));
        assert_eq!(give_back(&map, "k", W1, 0), None, "nothing left to give");
        assert_eq!(give_back(&map, "k", W2, 0), None, "no grant in that window");
    }

    /// Counts the reads that reach the store.
    struct Counting<'m>(&'m Map, std::cell::Cell<u32>);

    impl Counters for Counting<'_> {
        fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
            self.1.set(self.1.get() + 1);
            self.0.read(key)
        }
        fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
            self.0.write(key, value, cas)
        }
    }

    #[test]
    fn an_unreadable_counter_is_full_and_never_written() {
        let map = Map::default();
        map.write("k", b"12 not a count", 0);
        let unreadable = read(&map, "k");
        assert_eq!((unreadable.count_in(W1), unreadable.count_in(W2)), (u64::MAX, u64::MAX), "full in every window");
        assert_eq!(update(&map, "k", W1, |n, _| Some(n + 1)), None, "refused, not counted from zero");
        assert!(!put_grant(&map, "k", grant(1_000, 5, 0, 1)));
        assert_eq!(give_back(&map, "k", W1, 0), None);
        assert_eq!(map.read("k").0.as_deref(), Some(&b"12 not a count"[..]), "left as it was");
    }

    #[test]
    fn read_once_reads_a_key_once_until_it_is_written() {
        let map = Map::default();
        let store = Counting(&map, std::cell::Cell::new(0));
        let once = ReadOnce::new(&store);
        assert_eq!(read(&once, "k").count_in(W1), 0);
        assert_eq!(read(&once, "k").count_in(W1), 0);
        assert_eq!(store.1.get(), 1, "the second read is remembered");
        update(&once, "k", W1, |n, _| Some(n + 2)).unwrap();
        assert_eq!(store.1.get(), 1, "the update swaps against the read it remembers");
        assert_eq!(read(&once, "k").count_in(W1), 2, "a write is read afresh");
        assert_eq!(store.1.get(), 2);
        // A swap lost to another worker is retried against a fresh read, never the stale one.
        let stale = ReadOnce::new(&map);
        assert_eq!(read(&stale, "k").count_in(W1), 2);
        update(&map, "k", W1, |n, _| Some(n + 1)).unwrap();
        update(&stale, "k", W1, |n, _| Some(n + 1)).unwrap();
        assert_eq!(read(&map, "k").count_in(W1), 4);
    }

    #[test]
    fn an_answer_older_than_the_grant_held_is_ignored() {
        let map = Map::default();
        put_grant(&map, "k", grant(1_000, 10, 5, 3));
        put_grant(&map, "k", grant(1_000, 90, 5, 2));
        assert_eq!(read(&map, "k").grant_in(1_000).map(|g| g.granted), Some(10));
        put_grant(&map, "k", grant(1_000, 20, 5, 4));
        assert_eq!(read(&map, "k").grant_in(1_000).map(|g| g.granted), Some(20));
    }
}

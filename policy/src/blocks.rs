//! Blocks: what one worker takes from a shared counter ahead of its requests, so that a warm
//! request counts with no crossing at all.
//!
//! A block is counted in the shared counter the moment it is taken: the other workers see it as
//! spent, so no cap is ever passed. A block is [`BLOCK_REQUESTS`] requests' worth of what is
//! asked, taken only while at least [`ROOM_BLOCKS`] blocks' worth is left under the cap: the
//! last stretch of every limit is counted request by request, and the cap is reached exactly.
//! Every tick the worker gives back what its blocks still hold, so capacity idles in a block for
//! at most a tick.

use crate::counter::{self, Counters, Grant, Seen};
use crate::window::Window;

/// Requests' worth of what is asked that one block holds.
pub const BLOCK_REQUESTS: u64 = 16;
/// Blocks' worth that must be left under a cap before a block is taken.
pub const ROOM_BLOCKS: u64 = 64;
/// How long a counter seen below its cap is taken to still be, for the weighted draw (which
/// only leaves out what is full; the counting itself is exact).
const OPEN_FOR_MS: u64 = 25;

/// One worker's blocks, and the counters it saw open lately.
#[derive(Debug, Default)]
pub struct Blocks {
    held: Vec<Block>,
    open: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone)]
struct Block {
    key: String,
    window_start: u64,
    /// What is left of it.
    left: u64,
    /// The shared count just after it was taken.
    count: u64,
    /// The window's fleet grant, as it was then.
    grant: Option<Grant>,
}

/// Whether two counter keys are the same. They share long prefixes and differ at the end
/// (`…:req`, `…:tok`): compared from the end, a miss costs a byte or two, not a prefix-long
/// memcmp, and every warm request looks several blocks up.
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().rev().eq(b.bytes().rev())
}

impl Blocks {
    fn find(&mut self, key: &str, window_start: u64) -> Option<&mut Block> {
        self.held.iter_mut().find(|b| b.window_start == window_start && same_key(&b.key, key))
    }

    /// What the block of `key` in this window holds.
    fn left(&mut self, key: &str, window_start: u64) -> u64 {
        self.find(key, window_start).map_or(0, |b| b.left)
    }

    /// Takes `need` from the block, if it holds that much.
    fn take(&mut self, key: &str, window_start: u64, need: u64) -> Option<Seen> {
        let block = self.find(key, window_start).filter(|b| b.left >= need && b.left > 0)?;
        let used = block.count - block.left;
        block.left -= need;
        Some(Seen { count: used, grant: block.grant, wrote: true })
    }

    /// Adds `n` back to the block of `key` in this window; `false` when there is none.
    fn put_back(&mut self, key: &str, window_start: u64, n: u64) -> bool {
        self.find(key, window_start).map(|b| b.left = b.left.saturating_add(n)).is_some()
    }

    /// Replaces the block of `key` (a window's block replaces the last window's).
    fn hold(&mut self, block: Block) {
        self.held.retain(|b| !same_key(&b.key, &block.key));
        if block.left > 0 {
            self.held.push(block);
        }
    }

    /// Whether the counter `key` holds room in this window, by what this worker knows: a block
    /// with something left, or a read below the cap at most [`OPEN_FOR_MS`] ago.
    pub fn looks_open(&mut self, key: &str, window_start: u64, now_ms: u64) -> bool {
        self.left(key, window_start) > 0
            || self
                .open
                .iter()
                .any(|(k, w, at)| *w == window_start && same_key(k, key) && now_ms.saturating_sub(*at) < OPEN_FOR_MS)
    }

    /// Notes a read that found `key` below its cap.
    pub fn saw_open(&mut self, key: &str, window_start: u64, now_ms: u64) {
        self.open.retain(|(k, ..)| !same_key(k, key));
        self.open.push((key.to_owned(), window_start, now_ms));
    }
}

/// What is used of `key` in this window and its grant, by this worker's block of it, when it
/// holds one with something left: then the counter is known to be below its cap, unread.
pub fn held_view(counters: &impl Counters, key: &str, window_start: u64) -> Option<(u64, Option<Grant>)> {
    counters.with_blocks(|b| {
        let block = b?.find(key, window_start).filter(|b| b.left > 0)?;
        Some((block.count - block.left, block.grant))
    })
}

/// Whether this worker knows `key` to have room in this window without reading it (see
/// [`Blocks::looks_open`]).
pub fn looks_open(counters: &impl Counters, key: &str, window_start: u64, now_ms: u64) -> bool {
    counters.with_blocks(|b| b.is_some_and(|b| b.looks_open(key, window_start, now_ms)))
}

/// Notes a read that found `key` below its cap.
pub fn saw_open(counters: &impl Counters, key: &str, window_start: u64, now_ms: u64) {
    counters.with_blocks(|b| b.map(|b| b.saw_open(key, window_start, now_ms)));
}

/// What to take ahead of a request that needs `need`, with `room` left under the cap after it.
fn ahead(need: u64, room: u64) -> u64 {
    let block = need.max(1).saturating_mul(BLOCK_REQUESTS);
    if room >= block.saturating_mul(ROOM_BLOCKS) { block } else { 0 }
}

/// Takes `need` from the count of `key` in `window` when `count < limit` and
/// `count + need <= limit`, where `limit(count, grant)` is this worker's cap (`None`: nothing
/// may be taken). From the worker's block when it holds enough; else with a compare-and-swap,
/// which also takes a block ahead while far from the cap. `Seen::count` is the count before
/// this request; `None` when the store kept refusing the swap.
pub fn take(
    counters: &impl Counters,
    key: &str,
    window: Window,
    need: u64,
    limit: impl Fn(u64, Option<Grant>) -> Option<u64>,
) -> Option<Seen> {
    if let Some(seen) = counters.with_blocks(|b| b?.take(key, window.start_ms, need)) {
        return Some(seen);
    }
    let keeps_blocks = counters.with_blocks(|b| b.is_some());
    // What a block already holds is counted: only the rest comes from the counter.
    let leftover = counters.with_blocks(|b| b.map_or(0, |b| b.left(key, window.start_ms)));
    let from_counter = need - leftover.min(need);
    let mut extra = 0;
    let seen = counter::update(counters, key, window, |count, grant| {
        let limit = limit(count, grant)?;
        let fits = count < limit && count.saturating_add(from_counter) <= limit;
        let room = limit.saturating_sub(count).saturating_sub(from_counter);
        extra = if keeps_blocks { ahead(need, room) } else { 0 };
        fits.then(|| count + from_counter + extra)
    })?;
    if seen.wrote && keeps_blocks {
        let block = Block {
            key: key.to_owned(),
            window_start: window.start_ms,
            left: extra,
            count: seen.count + from_counter + extra,
            grant: seen.grant,
        };
        counters.with_blocks(|b| b.map(|b| b.hold(block)));
    }
    Some(Seen { count: seen.count.saturating_sub(leftover), ..seen })
}

/// Adds `n` to the count of `key` in `window`, whatever the cap: from the worker's block as far
/// as it goes, the rest with a compare-and-swap that also takes a block ahead while `max` (or
/// the window's grant, when lower) leaves room for one.
pub fn add(counters: &impl Counters, key: &str, window: Window, n: u64, max: Option<u64>) {
    if n == 0 {
        return;
    }
    let from_block = counters.with_blocks(|b| {
        let block = b?.find(key, window.start_ms)?;
        let taken = block.left.min(n);
        block.left -= taken;
        Some(taken)
    });
    let rest = n - from_block.unwrap_or(0);
    if rest == 0 {
        return;
    }
    let keeps_blocks = counters.with_blocks(|b| b.is_some());
    let mut extra = 0;
    let seen = counter::update(counters, key, window, |count, grant| {
        let cap = max.map(|m| grant.map_or(m, |g| g.granted.min(m)));
        let room = cap.map_or(0, |cap| cap.saturating_sub(count).saturating_sub(rest));
        extra = if keeps_blocks { ahead(rest, room) } else { 0 };
        Some(count.saturating_add(rest).saturating_add(extra))
    });
    if let Some(seen) = seen.filter(|s| s.wrote && extra > 0) {
        let count = seen.count + rest + extra;
        let block = Block { key: key.to_owned(), window_start: window.start_ms, left: extra, count, grant: seen.grant };
        counters.with_blocks(|b| b.map(|b| b.hold(block)));
    }
}

/// Takes `n` off the count of `key` in the window starting at `window_start` (a refund): into
/// the worker's block when it holds one, else with a compare-and-swap. A window that has rolled
/// over since needs no refund.
pub fn refund(counters: &impl Counters, key: &str, window_start: u64, n: u64) {
    if n == 0 || counters.with_blocks(|b| b.is_some_and(|b| b.put_back(key, window_start, n))) {
        return;
    }
    let window = Window { start_ms: window_start, end_ms: u64::MAX };
    let _ = counter::update(counters, key, window, |count, _| (count > 0).then(|| count.saturating_sub(n)));
}

/// Gives back what every block of this worker still holds (each tick).
pub fn give_back_all(counters: &impl Counters) {
    let held = counters.with_blocks(|b| b.map(|b| std::mem::take(&mut b.held))).unwrap_or_default();
    for block in held.into_iter().filter(|b| b.left > 0) {
        let window = Window { start_ms: block.window_start, end_ms: u64::MAX };
        let _ = counter::update(counters, &block.key, window, |count, _| {
            (count > 0).then(|| count.saturating_sub(block.left))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::tests::Map;
    use std::cell::RefCell;

    /// A worker: the shared map and its own blocks.
    struct Worker<'m>(&'m Map, RefCell<Blocks>);

    impl Counters for Worker<'_> {
        fn read(&self, key: &str) -> (Option<Vec<u8>>, u32) {
            self.0.read(key)
        }
        fn write(&self, key: &str, value: &[u8], cas: u32) -> bool {
            self.0.write(key, value, cas)
        }
        fn with_blocks<R>(&self, f: impl FnOnce(Option<&mut Blocks>) -> R) -> R {
            f(Some(&mut self.1.borrow_mut()))
        }
    }

    const W: Window = Window { start_ms: 0, end_ms: 1_000 };

    fn count(map: &Map) -> u64 {
        counter::read(map, "k").count_in(W)
    }

    #[test]
    fn far_from_the_cap_a_block_is_taken_and_spent_without_a_swap() {
        let map = Map::default();
        let worker = Worker(&map, RefCell::default());
        let seen = take(&worker, "k", W, 1, |_, _| Some(1_000_000)).unwrap();
        assert_eq!((seen.count, seen.wrote), (0, true));
        assert_eq!(count(&map), 1 + BLOCK_REQUESTS, "the block is counted at once");
        let before = map.0.borrow()["k"].1;
        for i in 1..=BLOCK_REQUESTS {
            assert_eq!(take(&worker, "k", W, 1, |_, _| Some(1_000_000)).unwrap().count, i);
        }
        assert_eq!(map.0.borrow()["k"].1, before, "sixteen requests, no write");
        // A refused request's refund goes back into the block; the tick gives the block back.
        refund(&worker, "k", 0, 1);
        give_back_all(&worker);
        assert_eq!(count(&map), BLOCK_REQUESTS, "16 taken, 1 refunded, the rest given back");
    }

    #[test]
    fn near_the_cap_every_request_is_counted_and_the_cap_is_exact() {
        let map = Map::default();
        let workers = [Worker(&map, RefCell::default()), Worker(&map, RefCell::default())];
        let cap = BLOCK_REQUESTS * ROOM_BLOCKS + 40;
        let mut admitted = 0;
        for i in 0..2 * cap {
            let w = &workers[(i % 2) as usize];
            if take(w, "k", W, 1, |_, _| Some(cap)).is_some_and(|s| s.wrote) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, cap, "every request up to the cap, then none");
        assert_eq!(count(&map), cap);
    }

    #[test]
    fn add_spends_the_block_first_and_a_spent_counter_refuses() {
        let map = Map::default();
        let worker = Worker(&map, RefCell::default());
        add(&worker, "k", W, 10, Some(1_000_000));
        assert_eq!(count(&map), 10 + 10 * BLOCK_REQUESTS);
        add(&worker, "k", W, 25, Some(1_000_000));
        assert_eq!(count(&map), 170, "taken from the block");
        give_back_all(&worker);
        assert_eq!(count(&map), 35);
        // Without room for a block, nothing is taken ahead.
        add(&worker, "k", W, 5, Some(40));
        assert_eq!(count(&map), 40);
        assert!(!take(&worker, "k", W, 1, |_, _| Some(40)).unwrap().wrote);
    }
}

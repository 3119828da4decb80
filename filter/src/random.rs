//! Random numbers for weighted routing and ledger ids: xorshift64*, one state per VM, seeded
//! from the host's random source (WASI `random_get`, through std's hasher keys) and the clock.
//! Not for secrets; a draw only has to be uniform and differ between VMs and restarts.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

pub fn next() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            use std::hash::BuildHasher;
            x = std::hash::RandomState::new().hash_one(crate::host::now_ns()) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

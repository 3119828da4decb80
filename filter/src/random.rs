//! Random numbers for weighted routing: xorshift64*, one state per VM, seeded from the clock.
//! Not for secrets; a draw only has to be uniform and differ between VMs.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

pub fn next() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = crate::host::now_ns() | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

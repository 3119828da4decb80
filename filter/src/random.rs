//! Random numbers for weighted routing and ledger ids: one xoshiro256++ stream per VM (`rand`'s
//! `SmallRng`, 256 bits of state), seeded once from the host's random source (WASI
//! `random_get`). A ledger id is its time and 64 of these bits: ids of every VM of every Envoy
//! must not collide, so the seed is the host's, not the clock's. Nothing here needs to be
//! unpredictable (no secret is drawn), only unique and uniform, so no cipher runs per request.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static RNG: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

pub fn next() -> u64 {
    RNG.with(|rng| rng.borrow_mut().get_or_insert_with(seeded).next_u64())
}

fn seeded() -> SmallRng {
    SmallRng::try_from_os_rng().unwrap_or_else(|e| {
        // Not seen in Envoy (its WASI `random_get` reads the OS); a VM must still serve.
        log::error!("warden: the host's random source failed ({e}); seeding from the clock");
        SmallRng::seed_from_u64(crate::host::now_ns())
    })
}

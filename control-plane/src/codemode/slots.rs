//! Who may run a program now: at most [`MAX_PROGRAMS`] on the hub, and at most
//! [`MAX_PROGRAMS_PER_KEY`] of them for one key, so that one key cannot hold every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Programs running at once on this hub, at most: each holds a thread, a core while busy and
/// up to 32 MiB.
pub const MAX_PROGRAMS: usize = 4;
/// Programs one key may run at once, at most.
pub const MAX_PROGRAMS_PER_KEY: usize = 2;

/// The programs running now, by key.
#[derive(Default)]
pub struct ProgramSlots {
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// A program's slot, given back when dropped.
#[derive(Debug)]
pub struct ProgramSlot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl ProgramSlots {
    /// A slot for `key`, or why there is none: the answer the model reads.
    pub fn take(&self, key: &str) -> Result<ProgramSlot, String> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.values().sum::<usize>() >= MAX_PROGRAMS {
            return Err(format!(
                "Execution limit error: {MAX_PROGRAMS} programs are already running on this gateway; retry shortly."
            ));
        }
        let mine = running.entry(key.to_owned()).or_default();
        if *mine >= MAX_PROGRAMS_PER_KEY {
            return Err(format!(
                "Execution limit error: this key already runs {MAX_PROGRAMS_PER_KEY} programs; retry when one ends."
            ));
        }
        *mine += 1;
        Ok(ProgramSlot { running: self.running.clone(), key: key.to_owned() })
    }
}

impl Drop for ProgramSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_cannot_hold_every_slot_and_slots_come_back() {
        let slots = ProgramSlots::default();
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert!(slots.take("a").unwrap_err().contains("this key already runs 2"));
        let _b1 = slots.take("b").unwrap();
        let _b2 = slots.take("b").unwrap();
        assert!(slots.take("c").unwrap_err().contains("4 programs are already running"));
        drop(a1);
        let _c = slots.take("c").expect("a slot came back");
        assert!(slots.take("a").is_err(), "the hub is full again");
    }
}

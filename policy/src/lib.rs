//! Warden's policy: the records the control plane sends to every filter, and the decisions both
//! sides must agree on.
//!
//! Everything here is pure: time, counters and configuration arrive as arguments, nothing does
//! I/O, and nothing depends on proxy-wasm, tokio or a database. The crate builds natively (the
//! control plane, the tests) and for `wasm32-wasip1` (the filter). A decision computed anywhere
//! else is in the wrong room.

pub mod admission;
pub mod blocks;
pub mod budgets;
pub mod codemode;
pub mod counter;
pub mod denial;
pub mod govern;
pub mod inference;
pub mod keys;
pub mod lease;
pub mod ledger;
pub mod limits;
pub mod mcp;
pub mod pricing;
pub mod records;
pub mod routing;
pub mod rpc;
pub mod settings;
pub mod settlement;
pub mod sync;
pub mod text;
pub mod window;

pub use admission::{Admitted, admit};
pub use denial::Denial;
pub use keys::{KeyHash, KeySource, PresentedKey};
pub use records::{RateLimit, RecordKind, VirtualKeyRecord};
pub use settings::{FilterSettings, SettingsError};
pub use sync::{PolicyHealth, SyncStatus};
pub use window::{ResetDuration, Window};

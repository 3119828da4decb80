//! Request, token and concurrency limits, counted exactly across an Envoy's workers.
//!
//! Counters live in a compare-and-swap store ([`Counters`](crate::counter::Counters); shared
//! data in the filter, a map in tests), in the layout of [`crate::counter`]: a count from an
//! older window reads as zero, so windows reset exactly on time with no sweeper. Requests are
//! counted at admission with a check-and-reserve (`count + 1 > max` refuses), rolled back if a
//! later level refuses; tokens are added when the response reports its usage, and a token limit
//! refuses once `used ≥ max`, as Bifrost's do.
//!
//! | file | what |
//! |---|---|
//! | `scopes.rs` | who limits a request: one [`Scope`] per owner, and the counters' keys |
//! | `dimensions.rs` | what a limit counts: the table of [`Dimension`]s |
//! | `reservations.rs` | checking and reserving at admission, charging and giving back after |
//! | `headers.rs` | the `x-ratelimit-*` headers |
//! | `provisioning.rs` | what a record's limits need before it is written (counters, leases) |

mod dimensions;
mod headers;
mod provisioning;
mod reservations;
mod scopes;

pub use dimensions::{DIMENSIONS, Dimension, REQUESTS, TOKENS};
pub(crate) use headers::seconds_until;
pub use headers::{Headroom, RateReport};
pub use provisioning::{RecordLimits, counter_keys};
pub(crate) use reservations::window_of;
pub use reservations::{
    RateKind, RateViolation, Reservation, acquire_slot, charge_tokens, exhausted, release, release_slot, reserve,
};
pub use scopes::{Scope, concurrency_key, counter_key, route_scopes};

#[cfg(test)]
mod tests;

//! The filter's counters, exported by Envoy as `wasmcustom.warden_*` and summed over every VM.

use crate::host;

pub struct Metrics {
    pub admitted: Option<u32>,
    pub denied: Option<u32>,
    pub stream_opened: Option<u32>,
    pub records_applied: Option<u32>,
    pub nacks: Option<u32>,
}

impl Metrics {
    /// Defines the counters; defining an existing name returns the same counter.
    pub fn define() -> Metrics {
        Metrics {
            admitted: host::counter("warden_requests_admitted"),
            denied: host::counter("warden_requests_denied"),
            stream_opened: host::counter("warden_policy_streams_opened"),
            records_applied: host::counter("warden_policy_records_applied"),
            nacks: host::counter("warden_policy_nacks"),
        }
    }
}

//! The filter's metrics, exported by Envoy as `wasmcustom.warden_*`: counters summed over every
//! VM, gauges shared by them.

use crate::host;
use std::cell::Cell;

pub struct Metrics {
    admitted: Option<u32>,
    /// Admissions not yet added to `admitted`: one hostcall a tick instead of one a request.
    admitted_since_tick: Cell<i64>,
    pub denied: Option<u32>,
    pub stream_opened: Option<u32>,
    pub records_applied: Option<u32>,
    pub nacks: Option<u32>,
    /// Usage records the control plane acknowledged, and those dropped because the list of
    /// unacknowledged ones was full (the control plane unreachable for long).
    pub usage_reported: Option<u32>,
    pub usage_dropped: Option<u32>,
    /// Budget decisions taken without a lease from the control plane, by the fail mode alone.
    pub budget_unleased: Option<u32>,
    /// Governed requests judged while the control plane was not heard from (three heartbeats).
    pub without_control_plane: Option<u32>,
    /// Lease calls to the control plane that failed (it was unreachable or refused).
    pub lease_failures: Option<u32>,
    /// The control plane's policy version this Envoy holds (0 = none).
    pub policy_version: Option<u32>,
    /// Milliseconds since this Envoy last heard from the control plane; a stuck Envoy shows here
    /// before its staleness bound turns requests away.
    pub policy_age_ms: Option<u32>,
}

impl Metrics {
    /// Defines the counters; defining an existing name returns the same counter.
    pub fn define() -> Metrics {
        Metrics {
            admitted: host::counter("warden_requests_admitted"),
            admitted_since_tick: Cell::new(0),
            denied: host::counter("warden_requests_denied"),
            stream_opened: host::counter("warden_policy_streams_opened"),
            records_applied: host::counter("warden_policy_records_applied"),
            nacks: host::counter("warden_policy_nacks"),
            usage_reported: host::counter("warden_usage_reported"),
            usage_dropped: host::counter("warden_usage_dropped"),
            budget_unleased: host::counter("warden_budget_unleased_decisions"),
            lease_failures: host::counter("warden_lease_failures"),
            without_control_plane: host::counter("warden_decisions_without_control_plane"),
            policy_version: host::gauge("warden_policy_version"),
            policy_age_ms: host::gauge("warden_policy_age_ms"),
        }
    }

    /// Counts an admitted request; Envoy sees it at this VM's next tick.
    pub fn admit(&self) {
        self.admitted_since_tick.set(self.admitted_since_tick.get() + 1);
    }

    /// Adds what was counted since the last tick to Envoy's counters (each tick).
    pub fn flush(&self) {
        host::increment(self.admitted, self.admitted_since_tick.take());
    }
}

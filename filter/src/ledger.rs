//! The usage ledger's filter side. Every worker appends a record per finished request to an
//! outbox in shared data; the leader VM moves the outbox into an unacknowledged list (also in
//! shared data, so a crashed leader's successor resends it), reports it to the control plane in
//! batches, and drops only what the control plane acknowledges. Both lists are bounded: a
//! record that finds them full is dropped and counted (`warden_usage_dropped`).

use crate::metrics::Metrics;
use crate::{host, shared};
use prost::Message;
use std::time::Duration;
use warden_policy::ledger::{LEDGER_SERVICE, REPORT_METHOD, UsageAck, UsageBatch, UsageRecord};

/// The most bytes waiting in the outbox, and in the unacknowledged list.
const MAX_OUTBOX: usize = 4 << 20;
const MAX_UNACKED: usize = 8 << 20;
/// Records per report.
const BATCH: usize = 500;
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends a record to the outbox; `false` when the outbox is full and the record was dropped.
pub fn record(usage: &UsageRecord) -> bool {
    let encoded = usage.encode_length_delimited_to_vec();
    shared::append(shared::OUTBOX_KEY, &encoded, MAX_OUTBOX)
}

fn decode_all(mut bytes: &[u8]) -> Vec<UsageRecord> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        match UsageRecord::decode_length_delimited(&mut bytes) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
    }
    records
}

/// The leader's reporter: at most one report in flight.
#[derive(Default)]
pub struct Reporter {
    call: Option<u32>,
}

impl Reporter {
    pub fn owns(&self, token: u32) -> bool {
        self.call == Some(token)
    }

    /// Moves the outbox into the unacknowledged list and reports the oldest batch of it.
    pub fn flush(&mut self, cluster: &str) {
        if self.call.is_some() {
            return;
        }
        let unacked = shared::get(shared::UNACKED_KEY);
        if unacked.len() < MAX_UNACKED {
            let taken = shared::take(shared::OUTBOX_KEY);
            if !taken.is_empty() {
                shared::put(shared::UNACKED_KEY, &[unacked.as_slice(), taken.as_slice()].concat());
            }
        }
        let pending = decode_all(&shared::get(shared::UNACKED_KEY));
        if pending.is_empty() {
            return;
        }
        let batch = UsageBatch { records: pending.into_iter().take(BATCH).collect() };
        match host::dispatch_grpc_call(cluster, LEDGER_SERVICE, REPORT_METHOD, &batch.encode_to_vec(), REPORT_TIMEOUT) {
            Ok(token) => self.call = Some(token),
            Err(e) => log::warn!("warden: cannot report usage on cluster '{cluster}': {e:?}"),
        }
    }

    /// Drops what the control plane acknowledged; anything else is resent on the next flush.
    pub fn on_response(&mut self, status: u32, size: usize, metrics: &Metrics) {
        self.call = None;
        if status != 0 {
            log::warn!("warden: usage report failed with gRPC status {status}; resending");
            return;
        }
        let Some(ack) = host::grpc_message(size).and_then(|b| UsageAck::decode(b.as_slice()).ok()) else {
            return;
        };
        let acked: std::collections::HashSet<&str> = ack.ids.iter().map(String::as_str).collect();
        let pending = decode_all(&shared::get(shared::UNACKED_KEY));
        let before = pending.len();
        let kept: Vec<u8> = pending
            .iter()
            .filter(|r| !acked.contains(r.id.as_str()))
            .flat_map(Message::encode_length_delimited_to_vec)
            .collect();
        shared::put(shared::UNACKED_KEY, &kept);
        let written = before - decode_all(&kept).len();
        host::increment(metrics.usage_reported, i64::try_from(written).unwrap_or(i64::MAX));
    }
}

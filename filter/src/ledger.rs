//! The usage ledger's filter side. Every VM keeps the records of its finished requests and puts
//! them on a shared queue as one item per tick (an enqueue wakes the VM that drains the queue,
//! on another thread: once per tick, not once per request). The leader VM drains the queue into
//! an unacknowledged list in shared data (so a crashed leader's successor resends it), reports
//! that list to the control plane in batches, and drops only what the control plane
//! acknowledges. The list is bounded: records that find it full are dropped and counted
//! (`warden_usage_dropped`).

use crate::metrics::Metrics;
use crate::{host, random, shared};
use prost::Message;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use warden_policy::ledger::{LEDGER_SERVICE, REPORT_METHOD, UsageAck, UsageBatch, UsageRecord, record_id};

/// The queue workers put records on; its VM id is the filter's (see the ECDS resource).
const QUEUE: &str = "warden:usage";
const VM_ID: &str = "warden";
/// The most bytes reported but not acknowledged.
const MAX_UNACKED: usize = 8 << 20;
/// Records per report (the control plane takes up to 5,000).
const BATCH: usize = 2_000;
/// A VM's records are enqueued before its tick once they reach this size.
const MAX_HELD: usize = 64 << 10;
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Refusals of requests without a known key are recorded per this long, reason and VM.
const ANONYMOUS_WINDOW_MS: u64 = 60_000;

/// When, how and why anonymous requests were refused: (window start, status, denial).
type AnonymousRefusal = (u64, u32, String);

thread_local! {
    // Anonymous refusals not recorded yet, and how many of each.
    static ANONYMOUS: std::cell::RefCell<BTreeMap<AnonymousRefusal, u32>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
    static QUEUE_ID: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    // This VM's records not yet enqueued, length-delimited.
    static HELD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps a record for the next enqueue; returns how many records were lost (none when a leader
/// has ever run, so there is a queue).
pub fn record(usage: &UsageRecord) -> i64 {
    if queue().is_none() {
        return 1;
    }
    let held = HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.extend(usage.encode_length_delimited_to_vec());
        held.len()
    });
    if held < MAX_HELD { 0 } else { enqueue_held() }
}

/// Counts a refusal of a request that names no known key. A flood of them writes one record
/// per minute and reason (with how many it stands for), not one row each.
pub fn refused_anonymously(now_ms: u64, status: u32, denial: String) {
    let window = now_ms - now_ms % ANONYMOUS_WINDOW_MS;
    ANONYMOUS.with(|all| {
        let mut all = all.borrow_mut();
        let n = all.entry((window, status, denial)).or_default();
        *n = n.saturating_add(1);
    });
}

/// Records the anonymous refusals of the windows that have ended by `now_ms` (of every window
/// when `all`); returns how many records were lost.
pub fn record_anonymous(now_ms: u64, all: bool) -> i64 {
    let ended = ANONYMOUS.with(|pending| {
        let mut pending = pending.borrow_mut();
        let open_from = if all { u64::MAX } else { now_ms - now_ms % ANONYMOUS_WINDOW_MS };
        let still_open = pending.split_off(&(open_from, 0, String::new()));
        std::mem::replace(&mut *pending, still_open)
    });
    ended
        .into_iter()
        .map(|((at_ms, status, denial), repeats)| {
            let id = record_id(at_ms, random::next());
            record(&UsageRecord { id, at_ms, status, denial, repeats, ..UsageRecord::default() })
        })
        .sum()
}

fn queue() -> Option<u32> {
    QUEUE_ID.with(|q| {
        if q.get().is_none() {
            q.set(host::resolve_queue(VM_ID, QUEUE));
        }
        q.get()
    })
}

/// Puts this VM's kept records on the queue as one item (every tick, and when the VM ends);
/// returns how many were lost.
pub fn enqueue_held() -> i64 {
    let held = HELD.with(|held| std::mem::take(&mut *held.borrow_mut()));
    if held.is_empty() || queue().is_some_and(|id| host::enqueue(id, &held)) {
        return 0;
    }
    i64::try_from(decode_all(&held).len()).unwrap_or(i64::MAX)
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

/// The leader's reporter: the records not yet acknowledged, mirrored in shared data, and at
/// most one report in flight.
#[derive(Default)]
pub struct Reporter {
    call: Option<u32>,
    /// Loaded from shared data when this VM becomes the leader, then kept here.
    pending: Option<Vec<UsageRecord>>,
}

impl Reporter {
    pub fn owns(&self, token: u32) -> bool {
        self.call == Some(token)
    }

    /// This VM no longer leads: another VM owns the records now.
    pub fn stop(&mut self) {
        self.pending = None;
        self.call = None;
    }

    /// Drains the queue into the unacknowledged records and reports the oldest batch of them.
    pub fn flush(&mut self, cluster: &str, metrics: &Metrics) {
        // Registering again takes the queue over from a leader that has gone.
        let Some(queue) = host::register_queue(QUEUE) else { return };
        let pending = self.pending.get_or_insert_with(|| decode_all(&shared::get(shared::UNACKED_KEY)));
        let mut bytes: usize = pending.iter().map(Message::encoded_len).sum();
        let mut dropped = 0i64;
        let mut drained = false;
        while let Some(item) = host::dequeue(queue) {
            for record in decode_all(&item) {
                let size = record.encoded_len();
                if bytes + size > MAX_UNACKED {
                    dropped += 1;
                    continue;
                }
                bytes += size;
                pending.push(record);
                drained = true;
            }
        }
        host::increment(metrics.usage_dropped, dropped);
        if drained {
            save(pending);
        }
        self.send(cluster);
    }

    fn send(&mut self, cluster: &str) {
        let Some(pending) = &self.pending else { return };
        if self.call.is_some() || pending.is_empty() {
            return;
        }
        let batch = UsageBatch { records: pending.iter().take(BATCH).cloned().collect() };
        match host::dispatch_grpc_call(cluster, LEDGER_SERVICE, REPORT_METHOD, &batch.encode_to_vec(), REPORT_TIMEOUT) {
            Ok(token) => self.call = Some(token),
            Err(e) => log::warn!("warden: cannot report usage on cluster '{cluster}': {e:?}"),
        }
    }

    /// Drops what the control plane acknowledged and sends the next batch at once; anything
    /// not acknowledged is resent.
    pub fn on_response(&mut self, status: u32, size: usize, cluster: &str, metrics: &Metrics) {
        self.call = None;
        if status != 0 {
            log::warn!("warden: usage report failed with gRPC status {status}; resending");
            return;
        }
        let Some(ack) = host::grpc_message(size).and_then(|b| UsageAck::decode(b.as_slice()).ok()) else {
            return;
        };
        let Some(pending) = self.pending.as_mut() else { return };
        let acked: HashSet<&str> = ack.ids.iter().map(String::as_str).collect();
        let before = pending.len();
        pending.retain(|r| !acked.contains(r.id.as_str()));
        let written = before - pending.len();
        save(pending);
        host::increment(metrics.usage_reported, i64::try_from(written).unwrap_or(i64::MAX));
        self.send(cluster);
    }
}

/// Mirrors the unacknowledged records in shared data, for a successor should this VM die.
fn save(pending: &[UsageRecord]) {
    let bytes: Vec<u8> = pending.iter().flat_map(Message::encode_length_delimited_to_vec).collect();
    shared::put(shared::UNACKED_KEY, &bytes);
}

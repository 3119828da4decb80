//! The store's half for the audit log, composed into [`super::Store`].

use super::StoreError;
use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One audit entry as written: what happened, and the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    /// Who: `admin` (the admin token), `dashboard` (a signed-in dashboard session) or `filter` (a
    /// denial reported by an Envoy).
    pub actor: String,
    /// `POST /api/...`, or a denial type.
    pub action: String,
    /// The entity touched (the request path, or the key id).
    pub target: String,
    pub status: u16,
    /// The change, secrets redacted (JSON).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What a caller hands in; the store numbers, dates and chains it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: u16,
    pub detail: String,
}

/// The hash of the first row's predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of a row: SHA-256 over the previous hash and every field, each
/// length-prefixed so no two rows can be made to collide by moving text between fields.
pub fn chain_hash(prev: &str, seq: i64, at: &str, e: &AuditEvent) -> String {
    let mut h = Sha256::new();
    let status = e.status.to_string();
    let seq = seq.to_string();
    for field in [prev, seq.as_str(), at, &e.actor, &e.action, &e.target, status.as_str(), &e.detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    pub rows: u64,
    /// The first row whose hash or link does not match, if any.
    pub first_broken: Option<i64>,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one entry at the end of the chain.
    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// Entries, newest first.
    async fn audit(&self, limit: u32, offset: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// Recomputes every hash from the first row.
    async fn verify_audit(&self) -> Result<ChainCheck, StoreError>;
}

//! [`AuditStore`] on SQL. Appends are serialised, within the process and across processes
//! sharing the database, so the chain stays linear.

use super::backend::{DbRow, sql};
use super::{SqlStore, backend};
use crate::store::audit::{AuditEntry, AuditEvent, ChainCheck, GENESIS, chain_hash};
use crate::store::{AuditStore, StoreError};
use async_trait::async_trait;

/// The PostgreSQL advisory lock that orders audit appends across replicas ("WARDENAU").
const AUDIT_APPEND_LOCK: i64 = 0x5741_5244_454E_4155;

fn entry(row: &DbRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.get("seq")?,
        at: row.get("at")?,
        actor: row.get("actor")?,
        action: row.get("action")?,
        target: row.get("target")?,
        status: u16::try_from(row.get::<i64>("status")?).unwrap_or(0),
        detail: row.get("detail")?,
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        let _one_at_a_time = self.audit_lock.lock().await;
        let mut tx = self.pool.begin_write().await.map_err(backend)?;
        // Another replica may be appending: read the end of the chain only once it is ours.
        tx.exclusive(AUDIT_APPEND_LOCK).await.map_err(backend)?;
        let last = tx.fetch_optional(sql!("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"));
        let (seq, prev) = match last.await.map_err(backend)? {
            Some(row) => (row.get::<i64>("seq")? + 1, row.get("hash")?),
            None => (1, GENESIS.to_owned()),
        };
        let at = chrono::Utc::now().to_rfc3339();
        let hash = chain_hash(&prev, seq, &at, &e);
        let insert = sql!(
            "INSERT INTO audit_log (seq, at, actor, action, target, status, detail, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            seq,
            at,
            e.actor,
            e.action,
            e.target,
            i64::from(e.status),
            e.detail,
            prev,
            hash,
        );
        tx.execute(insert).await.map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn audit(&self, limit: u32, offset: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let page =
            sql!("SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1 OFFSET $2", i64::from(limit), i64::from(offset));
        self.all(page, entry).await
    }

    async fn verify_audit(&self) -> Result<ChainCheck, StoreError> {
        let entries = self.all(sql!("SELECT * FROM audit_log ORDER BY seq"), entry).await?;
        let rows = entries.len() as u64;
        let mut prev = GENESIS.to_owned();
        for (expected_seq, e) in (1..).zip(entries) {
            let event = AuditEvent {
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: e.target.clone(),
                status: e.status,
                detail: e.detail.clone(),
            };
            let intact =
                e.seq == expected_seq && e.prev_hash == prev && e.hash == chain_hash(&prev, e.seq, &e.at, &event);
            if !intact {
                return Ok(ChainCheck { rows, first_broken: Some(e.seq) });
            }
            prev = e.hash;
        }
        Ok(ChainCheck { rows, first_broken: None })
    }
}

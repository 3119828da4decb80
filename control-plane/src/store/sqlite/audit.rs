//! [`AuditStore`] on SQLite. Appends are serialised so the chain stays linear.

use super::{SqliteStore, backend};
use crate::store::audit::{AuditEntry, AuditEvent, ChainCheck, GENESIS, chain_hash};
use crate::store::{AuditStore, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

fn entry(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    let status: i64 = row.try_get("status").map_err(backend)?;
    Ok(AuditEntry {
        seq: row.try_get("seq").map_err(backend)?,
        at: row.try_get("at").map_err(backend)?,
        actor: row.try_get("actor").map_err(backend)?,
        action: row.try_get("action").map_err(backend)?,
        target: row.try_get("target").map_err(backend)?,
        status: u16::try_from(status).unwrap_or(0),
        detail: row.try_get("detail").map_err(backend)?,
        prev_hash: row.try_get("prev_hash").map_err(backend)?,
        hash: row.try_get("hash").map_err(backend)?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        let _one_at_a_time = self.audit_lock.lock().await;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let (seq, prev) = match last {
            Some(row) => (row.try_get::<i64, _>("seq").map_err(backend)? + 1, row.try_get("hash").map_err(backend)?),
            None => (1, GENESIS.to_owned()),
        };
        let at = chrono::Utc::now().to_rfc3339();
        let hash = chain_hash(&prev, seq, &at, &e);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, target, status, detail, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(&at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(i64::from(e.status))
        .bind(&e.detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn audit(&self, limit: u32, offset: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ? OFFSET ?")
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(entry).collect()
    }

    async fn verify_audit(&self) -> Result<ChainCheck, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq").fetch_all(&self.pool).await.map_err(backend)?;
        let mut prev = GENESIS.to_owned();
        for (expected_seq, row) in (1..).zip(rows.iter()) {
            let e = entry(row)?;
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
                return Ok(ChainCheck { rows: rows.len() as u64, first_broken: Some(e.seq) });
            }
            prev = e.hash;
        }
        Ok(ChainCheck { rows: rows.len() as u64, first_broken: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u16) -> AuditEvent {
        AuditEvent {
            actor: "admin".into(),
            action: format!("PUT /api/x/{n}"),
            target: format!("/api/x/{n}"),
            status: 200,
            detail: format!("{{\"n\":{n}}}"),
        }
    }

    #[tokio::test]
    async fn the_chain_verifies_and_any_tampering_breaks_it() {
        let store = SqliteStore::in_memory().await.unwrap();
        for n in 1..=4 {
            store.append_audit(event(n)).await.unwrap();
        }
        assert_eq!(store.verify_audit().await.unwrap(), ChainCheck { rows: 4, first_broken: None });
        let newest = store.audit(10, 0).await.unwrap();
        assert_eq!(newest[0].seq, 4);
        assert_eq!(newest[1].hash, newest[0].prev_hash);

        sqlx::query("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 2").execute(&store.pool).await.unwrap();
        assert_eq!(store.verify_audit().await.unwrap().first_broken, Some(2));
        // Rewriting the row's own hash does not help: the next row's link breaks instead.
        let tampered = AuditEvent { detail: "{\"n\":99}".into(), ..event(2) };
        let row =
            sqlx::query("SELECT at, prev_hash FROM audit_log WHERE seq = 2").fetch_one(&store.pool).await.unwrap();
        let (at, prev): (String, String) = (row.get("at"), row.get("prev_hash"));
        let rehash = chain_hash(&prev, 2, &at, &tampered);
        sqlx::query("UPDATE audit_log SET hash = ? WHERE seq = 2").bind(rehash).execute(&store.pool).await.unwrap();
        assert_eq!(store.verify_audit().await.unwrap().first_broken, Some(3));

        let fresh = SqliteStore::in_memory().await.unwrap();
        for n in 1..=3 {
            fresh.append_audit(event(n)).await.unwrap();
        }
        sqlx::query("DELETE FROM audit_log WHERE seq = 2").execute(&fresh.pool).await.unwrap();
        assert_eq!(fresh.verify_audit().await.unwrap().first_broken, Some(3), "a removed row is detected");
    }
}

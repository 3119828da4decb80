//! [`LeaseStore`] on SQLite.

use super::{SqliteStore, backend};
use crate::quota::lease::{Holder, decide};
use crate::store::leases::{ENDED_WINDOW_MEMORY_MS, FLEET_MEMORY_MS};
use crate::store::{LeaseRow, LeaseStore, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use warden_policy::lease::{LeaseGrant, LeaseWant};

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn leases(&self, prefix: &str) -> Result<Vec<LeaseRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.counter, l.window_start_ms, w.window_end_ms, w.max_micros, l.node, l.granted, l.used
             FROM leases l JOIN lease_windows w ON w.counter = l.counter AND w.window_start_ms = l.window_start_ms
             WHERE substr(l.counter, 1, length($1)) = $1 ORDER BY l.counter, l.window_start_ms, l.node",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let row = |r: &sqlx::sqlite::SqliteRow| -> Result<LeaseRow, sqlx::Error> {
            Ok(LeaseRow {
                counter: r.try_get("counter")?,
                window_start_ms: unsigned(r.try_get("window_start_ms")?),
                window_end_ms: unsigned(r.try_get("window_end_ms")?),
                max_micros: unsigned(r.try_get("max_micros")?),
                node: r.try_get("node")?,
                granted: unsigned(r.try_get("granted")?),
                used: unsigned(r.try_get("used")?),
            })
        };
        rows.iter().map(row).collect::<Result<_, _>>().map_err(backend)
    }

    async fn lease(&self, node: &str, wants: &[LeaseWant], now_ms: u64) -> Result<Vec<LeaseGrant>, StoreError> {
        // Windows are locked in one order, so two calls never wait on each other in a circle.
        let mut order: Vec<usize> = (0..wants.len()).collect();
        order.sort_by(|&a, &b| {
            (&wants[a].counter, wants[a].window_start_ms).cmp(&(&wants[b].counter, wants[b].window_start_ms))
        });
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Writing first takes the write lock at once: a read first could not upgrade later.
        sqlx::query(
            "INSERT INTO lease_nodes (node, seen_ms) VALUES ($1, $2)
             ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(node)
        .bind(signed(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let ended = signed(now_ms.saturating_sub(ENDED_WINDOW_MEMORY_MS));
        sqlx::query(
            "DELETE FROM leases WHERE (counter, window_start_ms) IN
             (SELECT counter, window_start_ms FROM lease_windows WHERE window_end_ms < $1)",
        )
        .bind(ended)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM lease_windows WHERE window_end_ms < $1")
            .bind(ended)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let fleet: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lease_nodes WHERE seen_ms > $1")
            .bind(signed(now_ms.saturating_sub(FLEET_MEMORY_MS)))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let mut grants = vec![LeaseGrant::default(); wants.len()];
        for i in order {
            let want = &wants[i];
            let (counter, start) = (&want.counter, signed(want.window_start_ms));
            sqlx::query(
                "INSERT INTO lease_windows (counter, window_start_ms, window_end_ms, max_micros) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (counter, window_start_ms) DO NOTHING",
            )
            .bind(counter)
            .bind(start)
            .bind(signed(want.window_end_ms))
            .bind(signed(want.max))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            // The lock, and the budget as the asking Envoy's policy has it now.
            sqlx::query("UPDATE lease_windows SET max_micros = $3 WHERE counter = $1 AND window_start_ms = $2")
                .bind(counter)
                .bind(start)
                .bind(signed(want.max))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let rows =
                sqlx::query("SELECT node, granted, used, version FROM leases WHERE counter = $1 AND window_start_ms = $2")
                    .bind(counter)
                    .bind(start)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(backend)?;
            let mut holders = rows
                .iter()
                .map(|r| {
                    Ok(Holder {
                        node: r.try_get("node")?,
                        granted: unsigned(r.try_get("granted")?),
                        used: unsigned(r.try_get("used")?),
                        version: unsigned(r.try_get("version")?),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(backend)?;
            let grant = decide(want, node, &mut holders, unsigned(fleet));
            sqlx::query(
                "INSERT INTO leases (counter, window_start_ms, node, granted, used, version) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (counter, window_start_ms, node)
                 DO UPDATE SET granted = excluded.granted, used = excluded.used, version = excluded.version",
            )
            .bind(counter)
            .bind(start)
            .bind(node)
            .bind(signed(grant.granted))
            .bind(signed(want.used))
            .bind(signed(grant.version))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            grants[i] = grant;
        }
        tx.commit().await.map_err(backend)?;
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{LeaseStore, SqliteStore};
    use warden_policy::lease::LeaseWant;

    fn want(used: u64) -> LeaseWant {
        LeaseWant {
            counter: "warden:budget:vk:k:1d".into(),
            window_start_ms: 0,
            window_end_ms: 86_400_000,
            max: 1_000_000,
            used,
            more: true,
            keep: None,
            need: 0,
        }
    }

    #[tokio::test]
    async fn envoys_asking_at_once_are_never_granted_more_than_the_budget() {
        let store = std::sync::Arc::new(SqliteStore::in_memory().await.unwrap());
        let mut held = [0u64; 3];
        for _ in 0..60 {
            let calls = (0..3).map(|n| {
                let store = store.clone();
                let used = held[n];
                async move { store.lease(&format!("envoy-{n}"), &[want(used)], 1_000).await.unwrap() }
            });
            for (n, grants) in futures::future::join_all(calls).await.into_iter().enumerate() {
                held[n] = grants[0].granted;
            }
            assert!(held.iter().sum::<u64>() <= 1_000_000, "{held:?}");
        }
        assert_eq!(held.iter().sum::<u64>(), 1_000_000, "the whole budget ends up granted: {held:?}");
        // Each got a part of it worth having, though the first to ask got the most.
        assert!(held.iter().all(|&h| h > 100_000), "{held:?}");
        let rows = store.leases("warden:budget:vk:").await.unwrap();
        let listed: Vec<u64> = rows.iter().map(|r| r.granted).collect();
        assert_eq!(listed, held);
        assert!(rows.iter().all(|r| r.max_micros == 1_000_000 && r.window_end_ms == 86_400_000));
        assert!(store.leases("warden:budget:team:").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_want_names_its_window_and_old_windows_are_forgotten() {
        let store = SqliteStore::in_memory().await.unwrap();
        let grants = store.lease("envoy-0", &[want(0)], 1_000).await.unwrap();
        assert_eq!((grants[0].window_start_ms, grants[0].granted), (0, 500_000), "alone, it gets half");
        // A day and more than an hour later the window is gone: a new call starts it afresh.
        let later = 86_400_000 + 3_600_001;
        let grants = store.lease("envoy-0", &[LeaseWant { more: false, ..want(0) }], later).await.unwrap();
        assert_eq!((grants[0].granted, grants[0].free), (0, 1_000_000));
    }
}

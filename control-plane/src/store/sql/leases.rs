//! [`LeaseStore`] on SQL.

use super::backend::{DbRow, sql};
use super::{SqlStore, backend};
use crate::allocation::{Holder, LeaseWindow, RECLAIM_MS, decide, free, others_used, reclaims};
use crate::store::leases::{ENDED_WINDOW_MEMORY_MS, FLEET_MEMORY_MS};
use crate::store::{LeaseRow, LeaseStore, StoreError};
use async_trait::async_trait;
use warden_policy::lease::{LeaseGrant, LeaseWant};

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lease_from_row(row: &DbRow) -> Result<LeaseRow, StoreError> {
    Ok(LeaseRow {
        counter: row.get("counter")?,
        window_start_ms: row.unsigned("window_start_ms")?,
        window_end_ms: row.unsigned("window_end_ms")?,
        max_micros: row.unsigned("max_micros")?,
        node: row.get("node")?,
        granted: row.unsigned("granted")?,
        used: row.unsigned("used")?,
    })
}

fn holder_from_row(row: &DbRow) -> Result<Holder, StoreError> {
    Ok(Holder {
        node: row.get("node")?,
        granted: row.unsigned("granted")?,
        used: row.unsigned("used")?,
        version: row.unsigned("version")?,
    })
}

#[async_trait]
impl LeaseStore for SqlStore {
    async fn leases(&self, prefix: &str) -> Result<Vec<LeaseRow>, StoreError> {
        let sql = sql!(
            "SELECT l.counter, l.window_start_ms, w.window_end_ms, w.max_micros, l.node, l.granted, l.used
             FROM leases l JOIN lease_windows w ON w.counter = l.counter AND w.window_start_ms = l.window_start_ms
             WHERE substr(l.counter, 1, length($1)) = $1 ORDER BY l.counter, l.window_start_ms, l.node",
            prefix
        );
        self.all(sql, lease_from_row).await
    }

    async fn lease(&self, node: &str, wants: &[LeaseWant], now_ms: u64) -> Result<Vec<LeaseGrant>, StoreError> {
        // Windows are locked in one order, so two calls never wait on each other in a circle.
        let mut order: Vec<usize> = (0..wants.len()).collect();
        order.sort_by(|&a, &b| {
            (&wants[a].counter, wants[a].window_start_ms).cmp(&(&wants[b].counter, wants[b].window_start_ms))
        });
        // A write transaction from the start (SQLite's write lock at once: a read first could not
        // upgrade later). Across processes, each window's row lock orders the grants.
        let mut tx = self.pool.begin_write().await.map_err(backend)?;
        let seen = sql!(
            "INSERT INTO lease_nodes (node, seen_ms) VALUES ($1, $2)
             ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms",
            node,
            signed(now_ms)
        );
        tx.execute(seen).await.map_err(backend)?;
        let ended = signed(now_ms.saturating_sub(ENDED_WINDOW_MEMORY_MS));
        let forget = sql!(
            "DELETE FROM leases WHERE (counter, window_start_ms) IN
             (SELECT counter, window_start_ms FROM lease_windows WHERE window_end_ms < $1)",
            ended
        );
        tx.execute(forget).await.map_err(backend)?;
        tx.execute(sql!("DELETE FROM lease_windows WHERE window_end_ms < $1", ended)).await.map_err(backend)?;
        let fleet = sql!(
            "SELECT COUNT(*) AS n FROM lease_nodes WHERE seen_ms > $1",
            signed(now_ms.saturating_sub(FLEET_MEMORY_MS))
        );
        let fleet = match tx.fetch_optional(fleet).await.map_err(backend)? {
            Some(row) => row.unsigned("n")?,
            None => 0,
        };
        let mut grants = vec![LeaseGrant::default(); wants.len()];
        for i in order {
            let want = &wants[i];
            let (counter, start) = (&want.counter, signed(want.window_start_ms));
            let window = sql!(
                "INSERT INTO lease_windows (counter, window_start_ms, window_end_ms, max_micros) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (counter, window_start_ms) DO NOTHING",
                counter,
                start,
                signed(want.window_end_ms),
                signed(want.max)
            );
            tx.execute(window).await.map_err(backend)?;
            // The lock, and the limit as the published records have it (see `quota::lease`).
            let lock = sql!(
                "UPDATE lease_windows SET max_micros = $3 WHERE counter = $1 AND window_start_ms = $2",
                counter,
                start,
                signed(want.max)
            );
            tx.execute(lock).await.map_err(backend)?;
            let wanted =
                sql!("SELECT wanted_ms FROM lease_windows WHERE counter = $1 AND window_start_ms = $2", counter, start);
            let wanted_ms = match tx.fetch_optional(wanted).await.map_err(backend)? {
                Some(row) => row.unsigned("wanted_ms")?,
                None => 0,
            };
            let holders = sql!(
                "SELECT node, granted, used, version FROM leases WHERE counter = $1 AND window_start_ms = $2",
                counter,
                start
            );
            let holders =
                tx.fetch_all(holders).await.map_err(backend)?.iter().map(holder_from_row).collect::<Result<_, _>>()?;
            let mut window = LeaseWindow { holders, wanted_ms };
            let grant = decide(want, node, &mut window, fleet, now_ms);
            if window.wanted_ms != wanted_ms {
                let wanted = sql!(
                    "UPDATE lease_windows SET wanted_ms = $3 WHERE counter = $1 AND window_start_ms = $2",
                    counter,
                    start,
                    signed(window.wanted_ms)
                );
                tx.execute(wanted).await.map_err(backend)?;
            }
            let lease = sql!(
                "INSERT INTO leases (counter, window_start_ms, node, granted, used, version) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (counter, window_start_ms, node)
                 DO UPDATE SET granted = excluded.granted, used = excluded.used, version = excluded.version",
                counter,
                start,
                node,
                signed(grant.granted),
                signed(want.used),
                signed(grant.version)
            );
            tx.execute(lease).await.map_err(backend)?;
            grants[i] = grant;
        }
        // Windows this Envoy did not mention where another Envoy wants what it holds: it hears so
        // on any call, its heartbeat included.
        let wanted = sql!(
            "SELECT w.counter, w.window_start_ms, w.max_micros, w.wanted_ms FROM lease_windows w
             JOIN leases l ON l.counter = w.counter AND l.window_start_ms = w.window_start_ms
             WHERE l.node = $1 AND l.granted > l.used AND w.wanted_ms > $2",
            node,
            signed(now_ms.saturating_sub(RECLAIM_MS))
        );
        for row in tx.fetch_all(wanted).await.map_err(backend)? {
            let (counter, start): (String, u64) = (row.get("counter")?, row.unsigned("window_start_ms")?);
            if wants.iter().any(|w| w.counter == counter && w.window_start_ms == start) {
                continue;
            }
            let holders = sql!(
                "SELECT node, granted, used, version FROM leases WHERE counter = $1 AND window_start_ms = $2",
                counter.as_str(),
                signed(start)
            );
            let holders: Vec<Holder> =
                tx.fetch_all(holders).await.map_err(backend)?.iter().map(holder_from_row).collect::<Result<_, _>>()?;
            let window = LeaseWindow { holders, wanted_ms: row.unsigned("wanted_ms")? };
            let Some(mine) = window.holders.iter().find(|h| h.node == node) else { continue };
            let max = row.unsigned("max_micros")?;
            grants.push(LeaseGrant {
                counter: counter.clone(),
                window_start_ms: start,
                granted: mine.granted,
                free: free(max, &window.holders),
                version: mine.version,
                reclaim: reclaims(&window, node, now_ms),
                max,
                others_used: others_used(&window.holders, node),
            });
        }
        tx.commit().await.map_err(backend)?;
        Ok(grants)
    }
}

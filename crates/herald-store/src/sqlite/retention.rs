//! Retention on SQLite: each batch is one job on the writer thread, in its
//! own savepoint inside a group commit, and small enough (a few hundred
//! rows) that the ingest jobs sharing that commit barely notice it.
//!
//! Finding old rows costs no index on the hot path. `message` and
//! `idempotency` are rowid tables whose rowids grow with insertion, so a
//! walk in rowid order meets the oldest rows first and stops at the first
//! row too young to prune: a batch reads the rows it prunes, the pending
//! ones it keeps, and one more, never the whole table. Each row's age is
//! still checked on its own, so a clock that stepped back only makes a
//! walk stop early, never prune something young. Payloads are expunged the
//! same way when their message kept the default retention, which stores no
//! expiry; one that set `payloadRetentionPeriod` (5 to 90 days) has its
//! expiry in a partial index (`message_payload_expiry`) that holds only
//! those not yet expunged.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::ttl_ms;
use crate::{ExpungedPayloads, PruneCursor, PrunedMessages, Result, RetentionStore};

/// How many messages one batch may look at, per message it may prune:
/// bounds a batch that meets a run of pending messages it must keep.
const EXAMINE_PER_BATCH: usize = 4;

/// Old messages from `after` on, oldest first, with whether each still has a
/// pending delivery (`delivery_msg` answers that per message).
const WALK_MESSAGES: &str = "SELECT m.rowid, m.id, m.created_at, \
     EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND d.status = 1) \
     FROM message m WHERE m.rowid > ?1 ORDER BY m.rowid";

const WALK_IDEMPOTENCY: &str = "SELECT rowid, created_at FROM idempotency ORDER BY rowid LIMIT ?1";

/// Messages from `after` on, oldest first, each with 0 when its payload is
/// not the walk's to expunge (expunged already, or an explicit expiry the
/// index serves), 1 when it is, 2 when it is but the message is pending.
const WALK_PAYLOADS: &str = "SELECT m.rowid, m.created_at, \
     CASE WHEN m.payload_expires_at IS NULL AND length(m.payload) > 0 \
     THEN 1 + EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND d.status = 1) ELSE 0 END \
     FROM message m WHERE m.rowid > ?1 ORDER BY m.rowid";

const EXPUNGE_PAYLOADS: &str = "UPDATE message SET payload = X'', payload_expires_at = NULL WHERE rowid IN (\
     SELECT m.rowid FROM message m \
     WHERE m.payload_expires_at IS NOT NULL AND m.payload_expires_at <= ?1 \
     AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND d.status = 1) \
     ORDER BY m.payload_expires_at LIMIT ?2)";

#[async_trait::async_trait]
impl RetentionStore for SqliteStore {
    async fn prune_messages(&self, max_age: Duration, batch: usize, from: PruneCursor) -> Result<PrunedMessages> {
        self.writer
            .run(move |ctx| {
                let cutoff = ctx.now()?.saturating_sub(ttl_ms(max_age));
                prune_messages(&ctx.conn, cutoff, batch, from)
            })
            .await
    }

    async fn expunge_payloads(
        &self,
        default_retention: Duration,
        batch: usize,
        from: PruneCursor,
    ) -> Result<ExpungedPayloads> {
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let batch = batch.max(1);
                let explicit = ctx
                    .conn
                    .prepare_cached(EXPUNGE_PAYLOADS)?
                    .execute(params![now, limit(batch)])?;
                if explicit >= batch {
                    return Ok(ExpungedPayloads {
                        payloads: explicit as u64,
                        cursor: from,
                        kept_pending: false,
                        more: true,
                    });
                }
                let cutoff = now.saturating_sub(ttl_ms(default_retention));
                let mut walked = expunge_by_age(&ctx.conn, cutoff, batch - explicit, from)?;
                walked.payloads += explicit as u64;
                Ok(walked)
            })
            .await
    }

    async fn prune_idempotency(&self, max_age: Duration, batch: usize) -> Result<u64> {
        self.writer
            .run(move |ctx| {
                let cutoff = ctx.now()?.saturating_sub(ttl_ms(max_age));
                prune_idempotency(&ctx.conn, cutoff, batch)
            })
            .await
    }

    async fn prune_expired_tokens(&self, batch: usize) -> Result<u64> {
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let n = ctx
                    .conn
                    .prepare_cached(
                        "DELETE FROM api_token WHERE rowid IN \
                         (SELECT rowid FROM api_token WHERE expires_at < ?1 LIMIT ?2)",
                    )?
                    .execute(rusqlite::params![now, limit(batch)])?;
                Ok(n as u64)
            })
            .await
    }
}

fn limit(batch: usize) -> i64 {
    i64::try_from(batch).unwrap_or(i64::MAX)
}

/// Messages created before `cutoff` (Unix ms), from `from` on.
fn prune_messages(conn: &Connection, cutoff: i64, batch: usize, from: PruneCursor) -> Result<PrunedMessages> {
    let batch = batch.max(1);
    let max_examined = batch.saturating_mul(EXAMINE_PER_BATCH);
    let mut doomed: Vec<(i64, String)> = Vec::with_capacity(batch);
    let mut next = None;
    {
        let mut walk = conn.prepare_cached(WALK_MESSAGES)?;
        let mut rows = walk.query([from.position()])?;
        let mut examined = 0;
        while let Some(row) = rows.next()? {
            let (rowid, created_at): (i64, i64) = (row.get(0)?, row.get(2)?);
            if created_at >= cutoff {
                break;
            }
            examined += 1;
            if !row.get::<_, bool>(3)? {
                doomed.push((rowid, row.get(1)?));
            }
            if doomed.len() >= batch || examined >= max_examined {
                next = Some(PruneCursor::at(rowid));
                break;
            }
        }
    }
    // Deleted after the walk's statement is done with the table. History
    // first, through the indexes that name the message.
    let mut attempts = conn.prepare_cached("DELETE FROM attempt WHERE msg_id = ?1")?;
    let mut deliveries = conn.prepare_cached("DELETE FROM delivery WHERE msg_id = ?1")?;
    let mut message = conn.prepare_cached("DELETE FROM message WHERE rowid = ?1")?;
    let mut pruned = PrunedMessages {
        next,
        ..PrunedMessages::default()
    };
    for (rowid, id) in &doomed {
        pruned.attempts += attempts.execute([id])? as u64;
        deliveries.execute([id])?;
        pruned.messages += message.execute([rowid])? as u64;
    }
    Ok(pruned)
}

/// Default-retention payloads of messages created before `cutoff` (Unix
/// ms), from `from` on.
fn expunge_by_age(conn: &Connection, cutoff: i64, batch: usize, from: PruneCursor) -> Result<ExpungedPayloads> {
    let max_examined = batch.saturating_mul(EXAMINE_PER_BATCH);
    let mut doomed: Vec<i64> = Vec::with_capacity(batch);
    let mut out = ExpungedPayloads {
        cursor: from,
        ..ExpungedPayloads::default()
    };
    {
        let mut walk = conn.prepare_cached(WALK_PAYLOADS)?;
        let mut rows = walk.query([from.position()])?;
        let mut examined = 0;
        while let Some(row) = rows.next()? {
            let (rowid, created_at, state): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            if created_at >= cutoff {
                break;
            }
            examined += 1;
            out.cursor = PruneCursor::at(rowid);
            match state {
                1 => doomed.push(rowid),
                2 => out.kept_pending = true,
                _ => {}
            }
            if doomed.len() >= batch || examined >= max_examined {
                out.more = true;
                break;
            }
        }
    }
    let mut expunge = conn.prepare_cached("UPDATE message SET payload = X'' WHERE rowid = ?1")?;
    for rowid in doomed {
        out.payloads += expunge.execute([rowid])? as u64;
    }
    Ok(out)
}

/// Saved responses older than `cutoff` (Unix ms). `INSERT OR REPLACE` gives
/// a replaced key a new rowid, so rowid order is age order here too.
fn prune_idempotency(conn: &Connection, cutoff: i64, batch: usize) -> Result<u64> {
    let mut doomed = Vec::with_capacity(batch);
    {
        let mut walk = conn.prepare_cached(WALK_IDEMPOTENCY)?;
        let mut rows = walk.query([limit(batch)])?;
        while let Some(row) = rows.next()? {
            if row.get::<_, i64>(1)? >= cutoff {
                break;
            }
            doomed.push(row.get::<_, i64>(0)?);
        }
    }
    let mut delete = conn.prepare_cached("DELETE FROM idempotency WHERE rowid = ?1")?;
    let mut n = 0;
    for rowid in doomed {
        n += delete.execute([rowid])? as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    //! The walks read only what they prune: the prune walk's work, counted
    //! by SQLite itself, is the same behind 500 young rows as behind 20,000.

    use rusqlite::StatementStatus;

    use super::super::schema;
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_000 * DAY;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("r.db")).unwrap();
        schema::configure(&conn).unwrap();
        schema::migrate(&mut conn).unwrap();
        (dir, conn)
    }

    /// `old` messages 40 days old, then `young` from today; message `i` has
    /// one delivery with `status(i)` and one attempt.
    fn fill(conn: &Connection, old: usize, young: usize, status: impl Fn(usize) -> i64) {
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..old + young {
            let created = if i < old { NOW - 40 * DAY } else { NOW };
            let id = format!("msg_{i:027}");
            tx.execute(
                "INSERT INTO message (id, app_id, event_type, payload, created_at, payload_expires_at) \
                 VALUES (?1, 'app_1', 'a.b', X'7B7D', ?2, ?3)",
                params![id, created, created + 90 * DAY],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, updated_at) \
                 VALUES (?1, 'ep_1', 'app_1', ?2, 1, ?3, ?3)",
                params![id, status(i), created],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO attempt (id, msg_id, endpoint_id, app_id, delivery_id, url, status_code, response, \
                 duration_ms, status, trigger_type, attempt_number, created_at) \
                 VALUES (?1, ?2, 'ep_1', 'app_1', 1, 'http://x', 200, '', 1, 0, 0, 1, ?3)",
                params![format!("atmpt_{i:027}"), id, created],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// Virtual-machine steps the walk has taken on this connection so far.
    fn walk_steps(conn: &Connection) -> i32 {
        conn.prepare_cached(WALK_MESSAGES)
            .unwrap()
            .get_status(StatementStatus::VmStep)
    }

    /// 30 old messages, every third still pending, behind `young` young
    /// ones, pruned in batches of 8: what went, and the walk's steps.
    fn prune_pass(young: usize) -> (u64, i32) {
        let (_dir, conn) = db();
        fill(&conn, 30, young, |i| if i % 3 == 0 { 1 } else { 0 });
        let cutoff = NOW - 30 * DAY;
        let first = prune_messages(&conn, cutoff, 8, PruneCursor::default()).unwrap();
        assert_eq!((first.messages, first.attempts), (8, 8));
        let mut cursor = first.next.expect("a full batch has more to do");
        let mut total = first.messages;
        loop {
            let p = prune_messages(&conn, cutoff, 8, cursor).unwrap();
            assert!(p.messages <= 8);
            total += p.messages;
            match p.next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        let steps = walk_steps(&conn);
        let left = young as i64 + 10;
        assert_eq!(count(&conn, "message"), left);
        assert_eq!(count(&conn, "attempt"), left);
        assert_eq!(count(&conn, "delivery"), left);
        // A later pass looks at the kept pending ones again, once.
        let again = prune_messages(&conn, cutoff, 100, PruneCursor::default()).unwrap();
        assert_eq!((again.messages, again.next), (0, None));
        (total, steps)
    }

    #[test]
    fn retention_prune_walk_reads_old_rows_only() {
        let (small, small_steps) = prune_pass(500);
        let (large, large_steps) = prune_pass(20_000);
        assert_eq!(
            (small, large),
            (20, 20),
            "the finished old messages go, the pending stay"
        );
        // The walk's work does not grow with the young rows behind the old.
        assert_eq!(small_steps, large_steps);
        assert!(small_steps > 0);
    }

    #[test]
    fn retention_a_run_of_pending_messages_bounds_a_batch() {
        let (_dir, conn) = db();
        fill(&conn, 50, 10, |i| if i < 45 { 1 } else { 2 });
        let cutoff = NOW - 30 * DAY;
        let p = prune_messages(&conn, cutoff, 5, PruneCursor::default()).unwrap();
        assert_eq!(p.messages, 0, "the first 20 looked at are pending");
        let p = prune_messages(&conn, cutoff, 5, p.next.unwrap()).unwrap();
        assert_eq!(p.messages, 0);
        let p = prune_messages(&conn, cutoff, 5, p.next.unwrap()).unwrap();
        assert_eq!(p.messages, 5, "past the pending run");
        assert_eq!(count(&conn, "message"), 55);
    }

    #[test]
    fn retention_expiry_uses_its_partial_index() {
        let (_dir, conn) = db();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {EXPUNGE_PAYLOADS}"))
            .unwrap()
            .query_map(params![NOW, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(plan.iter().any(|l| l.contains("message_payload_expiry")), "{plan:?}");
        assert!(!plan.iter().any(|l| l.starts_with("SCAN m")), "{plan:?}");
    }

    #[test]
    fn retention_idempotency_walk_stops_at_the_first_young_key() {
        let (_dir, conn) = db();
        for i in 0..2_000 {
            let at = if i < 10 { NOW - 2 * DAY } else { NOW };
            conn.execute(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES (?1, 202, X'', ?2)",
                params![format!("k{i}"), at],
            )
            .unwrap();
        }
        assert_eq!(prune_idempotency(&conn, NOW - DAY, 4).unwrap(), 4);
        assert_eq!(prune_idempotency(&conn, NOW - DAY, 100).unwrap(), 6);
        assert_eq!(prune_idempotency(&conn, NOW - DAY, 100).unwrap(), 0);
        assert_eq!(count(&conn, "idempotency"), 1_990);
    }
}

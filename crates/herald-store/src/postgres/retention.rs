//! Retention on PostgreSQL: each batch is one short transaction of a few
//! hundred rows, so ingest on other connections barely notices it.
//!
//! There is no rowid: old messages are walked in `(created_at, id)` order
//! through the `message_created` b-tree, which hands them out oldest first
//! from any time and stops at the cutoff, so a batch reads the rows it
//! looks at and never the rest of the table. (A BRIN index cannot: it
//! answers a range as a bitmap of blocks to read and sort whole.) The walk
//! is fetched from a portal a batch's worth of rows at a time, so a batch
//! that prunes everything it meets reads no more than it prunes.
//!
//! [`PruneCursor`] holds a `created_at` (Unix ms): "every message created
//! before it has been looked at in this pass", and a batch goes on from
//! it inclusively. The cursor cannot tell messages of one millisecond
//! apart (an `i64` has no room for an id as well), so the millisecond it
//! stopped in is walked again, and there the walk shows only what it
//! would act on: a message to prune, a payload to expunge. What it would
//! keep (pending) or has done (expunged) is passed over by the walk's
//! filter, which reads those rows (bounded by one millisecond of ingest)
//! without counting them as looked at; the payload walk still says when
//! it passed over a pending one there. So every batch either moves the
//! cursor past its millisecond or prunes or expunges something in it,
//! and a pass ends.
//!
//! Several nodes may prune at once, and a redelivery may make an old
//! message pending again. A message is therefore locked (`SKIP LOCKED`:
//! someone else is at it, it waits for a later batch) before it is
//! checked, in a statement of its own, for a pending delivery; the
//! redeliveries lock the messages they make pending (`FOR SHARE`), so the
//! check after the lock sees what they committed.

use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PgStore;
use super::rows::{count, db_now_ms, get, ttl_ms};
use crate::{ExpungedPayloads, PruneCursor, PrunedMessages, Result, RetentionStore};

/// How many messages one batch may look at, per message it may prune:
/// bounds a batch that meets a run of pending messages it must keep.
const EXAMINE_PER_BATCH: usize = 4;

/// Whether message `m` has a pending delivery, probed through
/// `delivery_msg` row by row. `OFFSET 0` keeps the planner from turning it
/// into a hashed subplan, which would read every pending delivery there is
/// (a backlog of millions) for a batch of a few hundred messages.
const PENDING: &str = "EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND d.status = 1 OFFSET 0)";

/// Old messages from `$1` (a created_at) up to the cutoff `$2`, oldest
/// first, at most `$3`, with whether each is pending. In the cursor's own
/// millisecond, where earlier batches of the pass may have been, pending
/// ones are not shown: they are kept whether looked at or not.
fn walk_messages() -> String {
    format!(
        "SELECT m.app_id, m.id, m.created_at, {PENDING} FROM message m \
         WHERE m.created_at >= $1 AND m.created_at < $2 AND (m.created_at > $1 OR NOT {PENDING}) \
         ORDER BY m.created_at, m.id LIMIT $3"
    )
}

/// Whether message `m`'s payload is the age walk's to expunge: not
/// expunged already, and no expiry of its own (the partial index serves
/// those).
const BY_AGE: &str = "m.payload_expires_at IS NULL AND octet_length(m.payload) > 0";

/// Messages from `$1` up to `$2`, oldest first, at most `$3`, each with 0
/// when its payload is not the walk's, 1 when it is, 2 when it is but the
/// message is pending. In the cursor's own millisecond only the 1s are
/// shown; [`pending_at`] tells whether it holds a 2.
fn walk_payloads() -> String {
    format!(
        "SELECT m.app_id, m.id, m.created_at, \
         CASE WHEN {BY_AGE} THEN CASE WHEN {PENDING} THEN 2 ELSE 1 END ELSE 0 END::BIGINT FROM message m \
         WHERE m.created_at >= $1 AND m.created_at < $2 AND (m.created_at > $1 OR ({BY_AGE} AND NOT {PENDING})) \
         ORDER BY m.created_at, m.id LIMIT $3"
    )
}

/// Whether the millisecond `$1` (before the cutoff `$2`) holds a payload
/// due by age but kept because its message is pending: the walk does not
/// show those there, yet must say it kept one.
fn pending_at() -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM message m WHERE m.created_at = $1 AND m.created_at < $2 \
         AND {BY_AGE} AND {PENDING})"
    )
}

/// Payloads past their own expiry (`$1`), soonest first, at most `$2`,
/// through `message_payload_expiry`; locked for the expunge.
fn due_explicit() -> String {
    format!(
        "SELECT m.app_id, m.id FROM message m \
         WHERE m.payload_expires_at IS NOT NULL AND m.payload_expires_at <= $1 AND NOT {PENDING} \
         ORDER BY m.payload_expires_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
    )
}

/// Locks the messages `($1, $2)` (app ids, ids) that nobody else holds.
const LOCK_MESSAGES: &str = "SELECT m.app_id, m.id FROM message m \
     JOIN UNNEST($1::text[], $2::text[]) AS u(app_id, id) ON m.app_id = u.app_id AND m.id = u.id \
     ORDER BY m.created_at, m.id FOR UPDATE OF m SKIP LOCKED";

/// Deletes the locked messages `($1, $2)` still not pending, with their
/// deliveries and attempts; answers how many messages and attempts.
fn delete_messages() -> String {
    format!(
        "WITH gone AS ( \
             DELETE FROM message m USING UNNEST($1::text[], $2::text[]) AS u(app_id, id) \
             WHERE m.app_id = u.app_id AND m.id = u.id AND NOT {PENDING} RETURNING m.id), \
         deliveries AS (DELETE FROM delivery WHERE msg_id IN (SELECT id FROM gone)), \
         attempts AS (DELETE FROM attempt WHERE msg_id IN (SELECT id FROM gone) RETURNING 1) \
         SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM attempts)"
    )
}

/// Empties the payloads of the locked messages `($1, $2)` still not
/// pending; `$3` true for those of the default retention, false for those
/// with an expiry of their own.
fn expunge_locked() -> String {
    format!(
        "UPDATE message m SET payload = '\\x'::bytea, payload_expires_at = NULL \
         FROM UNNEST($1::text[], $2::text[]) AS u(app_id, id) \
         WHERE m.app_id = u.app_id AND m.id = u.id AND (m.payload_expires_at IS NULL) = $3 \
         AND octet_length(m.payload) > 0 AND NOT {PENDING}"
    )
}

/// Saved responses older than `$1` ms, oldest first through
/// `idempotency_created`, at most `$2`. A key replaced meanwhile has a new
/// `created_at`, and the lock checks it again on its new version. The keys
/// are gathered into an array first (`= ANY (ARRAY(…))`) so the delete
/// finds them by primary key; as `IN (subquery)` the planner may join them
/// against a scan of the whole table.
const PRUNE_IDEMPOTENCY: &str = "DELETE FROM idempotency WHERE key = ANY (ARRAY( \
     SELECT key FROM idempotency WHERE created_at < (SELECT herald_now_ms() - $1) \
     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))";

/// Tokens past their expiry, at most `$1`, through `api_token_expiry`.
const PRUNE_TOKENS: &str = "DELETE FROM api_token WHERE id = ANY (ARRAY( \
     SELECT id FROM api_token WHERE expires_at < (SELECT herald_now_ms()) LIMIT $1 FOR UPDATE SKIP LOCKED))";

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The rows of `$3`-limited walk `sql` from `from` up to `cutoff`, fetched
/// `chunk` at a time while `take` (called with each row in order) says to
/// go on; answers whether it was `take` that stopped the walk (more may
/// follow) rather than the rows running out.
async fn walk(
    tx: &Transaction<'_>,
    sql: &str,
    from: PruneCursor,
    cutoff: i64,
    examine: usize,
    chunk: usize,
    mut take: impl FnMut(&Row) -> Result<bool>,
) -> Result<bool> {
    let stmt = tx.prepare_cached(sql).await?;
    let portal = tx.bind(&stmt, &[&from.position(), &cutoff, &limit(examine)]).await?;
    let chunk = i32::try_from(chunk.max(1)).unwrap_or(i32::MAX);
    loop {
        let rows = tx.query_portal(&portal, chunk).await?;
        for r in &rows {
            if !take(r)? {
                return Ok(true);
            }
        }
        if rows.len() < chunk as usize {
            return Ok(false);
        }
    }
}

/// The ids in `rows` (app id, id in columns 0 and 1) as two arrays.
fn keys(rows: &[Row]) -> Result<(Vec<String>, Vec<String>)> {
    let mut apps = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for r in rows {
        apps.push(get(r, 0)?);
        ids.push(get(r, 1)?);
    }
    Ok((apps, ids))
}

#[async_trait::async_trait]
impl RetentionStore for PgStore {
    async fn prune_messages(&self, max_age: Duration, batch: usize, from: PruneCursor) -> Result<PrunedMessages> {
        let batch = batch.max(1);
        let max_examined = batch.saturating_mul(EXAMINE_PER_BATCH);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let cutoff = db_now_ms(&tx).await?.saturating_sub(ttl_ms(max_age));
        let (mut apps, mut ids) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
        let (mut examined, mut last_at) = (0, from.position());
        let stopped = walk(&tx, &walk_messages(), from, cutoff, max_examined, batch, |r| {
            examined += 1;
            last_at = get(r, 2)?;
            if !get::<bool>(r, 3)? {
                apps.push(get::<String>(r, 0)?);
                ids.push(get::<String>(r, 1)?);
            }
            Ok(ids.len() < batch && examined < max_examined)
        })
        .await?;
        // From the millisecond it stopped in: the rest of it may still be
        // to look at. That is progress: either the walk got past `from`'s
        // millisecond, or it prunes there (in `from`'s millisecond it shows
        // nothing it would keep).
        let mut pruned = PrunedMessages {
            next: stopped.then(|| PruneCursor::at(last_at)),
            ..PrunedMessages::default()
        };
        if !ids.is_empty() {
            let lock = tx.prepare_cached(LOCK_MESSAGES).await?;
            let (apps, ids) = keys(&tx.query(&lock, &[&apps, &ids]).await?)?;
            let delete = tx.prepare_cached(&delete_messages()).await?;
            let r = tx.query_one(&delete, &[&apps, &ids]).await?;
            pruned.messages = count(&r, 0)?;
            pruned.attempts = count(&r, 1)?;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    async fn expunge_payloads(
        &self,
        default_retention: Duration,
        batch: usize,
        from: PruneCursor,
    ) -> Result<ExpungedPayloads> {
        let batch = batch.max(1);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let now = db_now_ms(&tx).await?;
        let due = tx.prepare_cached(&due_explicit()).await?;
        let (apps, ids) = keys(&tx.query(&due, &[&now, &limit(batch)]).await?)?;
        let expunge = tx.prepare_cached(&expunge_locked()).await?;
        let explicit = if ids.is_empty() {
            0
        } else {
            tx.execute(&expunge, &[&apps, &ids, &false]).await?
        };
        if explicit >= batch as u64 {
            tx.commit().await?;
            return Ok(ExpungedPayloads {
                payloads: explicit,
                cursor: from,
                kept_pending: false,
                more: true,
            });
        }
        let batch = batch - explicit as usize;
        let max_examined = batch.saturating_mul(EXAMINE_PER_BATCH);
        let cutoff = now.saturating_sub(ttl_ms(default_retention));
        let mut out = ExpungedPayloads {
            cursor: from,
            ..ExpungedPayloads::default()
        };
        let (mut apps, mut ids) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
        let mut examined = 0;
        out.more = walk(&tx, &walk_payloads(), from, cutoff, max_examined, batch, |r| {
            examined += 1;
            out.cursor = PruneCursor::at(get(r, 2)?);
            match get::<i64>(r, 3)? {
                1 => {
                    apps.push(get::<String>(r, 0)?);
                    ids.push(get::<String>(r, 1)?);
                }
                2 => out.kept_pending = true,
                _ => {}
            }
            Ok(ids.len() < batch && examined < max_examined)
        })
        .await?;
        if from.position() > 0 && !out.kept_pending {
            let stmt = tx.prepare_cached(&pending_at()).await?;
            out.kept_pending = get(&tx.query_one(&stmt, &[&from.position(), &cutoff]).await?, 0)?;
        }
        if !ids.is_empty() {
            let due = ids.len() as u64;
            let lock = tx.prepare_cached(LOCK_MESSAGES).await?;
            let (apps, ids) = keys(&tx.query(&lock, &[&apps, &ids]).await?)?;
            out.payloads = tx.execute(&expunge, &[&apps, &ids, &true]).await?;
            // One held elsewhere, or made pending meanwhile, kept its
            // payload: a later pass must look at it again.
            out.kept_pending |= out.payloads < due;
        }
        out.payloads += explicit;
        tx.commit().await?;
        Ok(out)
    }

    async fn prune_idempotency(&self, max_age: Duration, batch: usize) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(PRUNE_IDEMPOTENCY).await?;
        Ok(c.execute(&stmt, &[&ttl_ms(max_age), &limit(batch)]).await?)
    }

    async fn prune_expired_tokens(&self, batch: usize) -> Result<u64> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(PRUNE_TOKENS).await?;
        Ok(c.execute(&stmt, &[&limit(batch)]).await?)
    }
}

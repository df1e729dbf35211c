//! Ingest with group commit. Callers hand their message to a committer
//! task, which drains whatever is queued (up to [`MAX_BATCH`]) and commits
//! it as one transaction of a few multi-row statements: one commit (one WAL
//! flush) then serves the whole batch, the PostgreSQL counterpart of the
//! SQLite writer's group commit. [`COMMITTERS`] tasks take turns at the
//! queue, so one batch collects while another commits.
//!
//! Each message fails alone where it can (an unknown application, an
//! endpoint not in it, a duplicate `eventId`); a failure of the batch
//! itself fails every caller in it, and nobody hears Ok before the commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use herald_core::model::{Endpoint, Message, subscribers};
use herald_core::validate::Uid;
use herald_core::{AppId, EndpointId, MessageId};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;

use super::claims::query_batch;
use super::holds::DueBell;
use super::pool_error;
use super::rows::{EP_COLS, EP_SECRET_COL, after, ep_row, from_ms, get, opt_json};
use crate::metrics::{StoreMetrics, Tally};
use crate::{DeliveryJob, EncryptionKey, Ingested, NewMessage, Result, StoreError};

/// The most messages one transaction takes: a burst shares one commit,
/// while one batch's statements stay a few megabytes at most.
const MAX_BATCH: usize = 512;
/// Messages that may wait for a committer before callers wait to queue.
const QUEUE: usize = 8192;
/// Committers taking turns at the queue: while one waits for its commit to
/// be flushed, the next collects and sends its batch.
const COMMITTERS: usize = 2;

struct Job {
    msg: NewMessage,
    reply: oneshot::Sender<Result<Ingested>>,
}

/// What the committers share.
struct Ctx {
    pool: Pool,
    /// Rung when a batch left deliveries for another endpoint holder.
    bell: DueBell,
    key: Arc<EncryptionKey>,
    metrics: Arc<StoreMetrics>,
}

pub(crate) struct Committer {
    /// Taken on close: the committers stop once the queue behind it is empty.
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Committer {
    pub fn spawn(pool: Pool, key: Arc<EncryptionKey>, metrics: Arc<StoreMetrics>, bell: DueBell) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let ctx = Arc::new(Ctx {
            pool,
            bell,
            key,
            metrics,
        });
        let workers = (0..COMMITTERS)
            .map(|_| tokio::spawn(run(rx.clone(), ctx.clone())))
            .collect();
        Self {
            tx: std::sync::Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        }
    }

    /// Queues `msg` for the next group commit and returns once it committed.
    pub async fn submit(&self, msg: NewMessage) -> Result<Ingested> {
        let tx = self
            .tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Job { msg, reply }).await.map_err(|_| StoreError::Closed)?;
        drop(tx);
        // A committer that died with the job drops its reply: the store is
        // going away.
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking messages, lets the committers commit what is queued,
    /// and waits for them.
    pub async fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let workers = std::mem::take(&mut *self.workers.lock().await);
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "an ingest committer failed");
            }
        }
    }
}

async fn run(rx: Arc<Mutex<mpsc::Receiver<Job>>>, ctx: Arc<Ctx>) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (msgs, replies): (Vec<NewMessage>, Vec<_>) = batch.into_iter().map(|j| (j.msg, j.reply)).unzip();
        let results = ingest_all(&ctx, &msgs).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// One answer per message, in order.
async fn ingest_all(ctx: &Ctx, msgs: &[NewMessage]) -> Vec<Result<Ingested>> {
    match ingest_batch(ctx, msgs).await {
        Ok((results, committed)) => {
            ctx.metrics.committed(Tally {
                messages: committed,
                cancelled: 0,
            });
            results
        }
        // Something in the batch broke a statement (not the connection, after
        // which nobody can tell what committed): the messages go again one
        // at a time, so one bad message fails only its own caller.
        Err(e) if msgs.len() > 1 && !matches!(e, StoreError::Unavailable(_) | StoreError::Closed) => {
            tracing::warn!(error = %e, messages = msgs.len(), "an ingest batch failed; committing its messages one by one");
            let mut results = Vec::with_capacity(msgs.len());
            for msg in msgs {
                results.push(match ingest_batch(ctx, std::slice::from_ref(msg)).await {
                    Ok((mut one, committed)) => {
                        ctx.metrics.committed(Tally {
                            messages: committed,
                            cancelled: 0,
                        });
                        one.pop()
                            .unwrap_or(Err(StoreError::Commit("no answer for a message".into())))
                    }
                    Err(e) => Err(e),
                });
            }
            results
        }
        Err(e) => {
            tracing::error!(error = %e, messages = msgs.len(), "ingest group commit failed");
            msgs.iter().map(|_| Err(shared(&e))).collect()
        }
    }
}

/// The batch's error, for each of its callers.
fn shared(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Commit(other.to_string()),
    }
}

/// Applications named by id or uid. Locked against deletion (`KEY SHARE`)
/// until the batch commits: an application deleted meanwhile waits, and
/// then finds this batch's messages to delete with it.
const RESOLVE: &str = "SELECT id, uid FROM application WHERE id = ANY($1) OR uid = ANY($1) FOR KEY SHARE";

/// Every endpoint of those applications, for fan-out, in the SQLite
/// store's order (by id). Read inside the transaction and locked (`SHARE`)
/// until it commits, so an endpoint changed or deleted meanwhile waits for
/// this batch and then sees its deliveries (to cancel them, or to move
/// them in or out of `fifo`), rather than this batch fanning out to what
/// it no longer is.
/// Each endpoint with the owner of its live hold, if any: a delivery to an
/// endpoint held by another owner than the batch's is born unclaimed, for
/// the holder (`holds.rs`). Reading the hold here rather than locking it
/// is enough: a node sends to a held endpoint only while it holds it, so a
/// delivery born claimed just as another node took the hold is handed over.
fn endpoints_sql() -> String {
    let cols = EP_COLS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {cols}, h.owner FROM endpoint e \
         LEFT JOIN endpoint_hold h ON h.endpoint_id = e.id AND h.until > herald_now_ms() \
         WHERE e.app_id = ANY($1) ORDER BY e.app_id, e.id FOR SHARE OF e"
    )
}

const INSERT: &str = "WITH m AS ( \
        INSERT INTO message (id, app_id, event_type, event_id, channels, tags, payload, created_at, payload_expires_at) \
        SELECT t.id, t.app_id, t.event_type, t.event_id, t.channels, t.tags, t.payload, $9, t.expires \
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bigint[]) \
            WITH ORDINALITY AS t(id, app_id, event_type, event_id, channels, tags, payload, expires, ord) \
        ORDER BY t.ord \
        ON CONFLICT DO NOTHING \
        RETURNING id), \
    d AS ( \
        INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, claimed_by, claim_until, \
            fence, updated_at, fifo) \
        SELECT t.msg_id, t.endpoint_id, t.app_id, 1, 0, $9, t.claimed_by, t.claim_until, t.fence, $9, t.fifo \
        FROM UNNEST($10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::bool[]) \
            WITH ORDINALITY AS t(msg_id, endpoint_id, app_id, claimed_by, claim_until, fence, fifo, ord) \
        WHERE t.msg_id IN (SELECT id FROM m) \
        ORDER BY t.ord \
        RETURNING id, msg_id, endpoint_id) \
    SELECT m.id, d.id, d.endpoint_id FROM m LEFT JOIN d ON d.msg_id = m.id";

/// The column after the endpoint's in [`endpoints_sql`] (where an endpoint
/// read with its secret has that): its holder.
const HOLDER_COL: usize = EP_SECRET_COL;

/// How a delivery is born.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Born {
    /// Claimed under the message's lease (unclaimed when it has none).
    Claimed,
    /// Unclaimed, for the node that holds its endpoint.
    ForHolder,
    /// An ordered endpoint's: never born claimed.
    Fifo,
}

/// One message's fan-out, before it is written.
struct Plan {
    id: MessageId,
    app_id: AppId,
    /// Each target, and how its delivery is born.
    targets: Vec<(EndpointId, Born)>,
}

/// The batch in one transaction: answers per message, and how many were
/// written (for the metrics, counted by the caller once this returns).
async fn ingest_batch(ctx: &Ctx, msgs: &[NewMessage]) -> Result<(Vec<Result<Ingested>>, u64)> {
    let mut client = ctx.pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;

    let mut names: Vec<&str> = msgs.iter().map(|m| m.app.0.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let resolve = tx.prepare_cached(RESOLVE).await?;
    let clock = tx.prepare_cached("SELECT herald_now_ms()").await?;
    // Both go out at once: one round trip.
    let (app_rows, now_row) =
        futures_util::future::try_join(tx.query(&resolve, &[&names]), tx.query_one(&clock, &[])).await?;
    let now: i64 = get(&now_row, 0)?;
    let created_at = from_ms(now).ok_or_else(|| StoreError::Corrupt("the database clock is out of range".into()))?;
    let (mut by_id, mut by_uid) = (HashMap::new(), HashMap::new());
    for r in &app_rows {
        let id: String = get(r, 0)?;
        if let Some(uid) = get::<Option<String>>(r, 1)? {
            by_uid.insert(uid, id.clone());
        }
        by_id.insert(id.clone(), id);
    }
    // An id names its application before a uid does, as in `resolve_app`.
    let resolve = |name: &str| by_id.get(name).or_else(|| by_uid.get(name)).cloned();

    let mut endpoints: HashMap<String, Vec<Endpoint>> = HashMap::new();
    let mut holders: HashMap<EndpointId, String> = HashMap::new();
    if !by_id.is_empty() {
        let app_ids: Vec<&str> = by_id.keys().map(String::as_str).collect();
        let stmt = tx.prepare_cached(&endpoints_sql()).await?;
        for r in tx.query(&stmt, &[&app_ids]).await? {
            let ep = ep_row(&r, &ctx.key)?;
            if let Some(owner) = get::<Option<String>>(&r, HOLDER_COL)? {
                holders.insert(ep.id.clone(), owner);
            }
            endpoints.entry(ep.app_id.as_str().to_owned()).or_default().push(ep);
        }
    }
    let mut left_for_holder = false;

    // Fan-out, as the SQLite store does it, and the rows to write.
    let none: Vec<Endpoint> = Vec::new();
    let mut plans: Vec<Result<Plan>> = Vec::with_capacity(msgs.len());
    let mut m_cols = MessageCols::default();
    let mut d_cols = DeliveryCols::default();
    for msg in msgs {
        let Some(app_id) = resolve(&msg.app.0) else {
            plans.push(Err(StoreError::NotFound("application")));
            continue;
        };
        let eps = endpoints.get(&app_id).unwrap_or(&none);
        if let Some(only) = &msg.only_endpoint
            && !eps.iter().any(|ep| &ep.id == only)
        {
            plans.push(Err(StoreError::NotFound("endpoint")));
            continue;
        }
        let targets: Vec<&Endpoint> = match &msg.only_endpoint {
            Some(only) => eps.iter().filter(|ep| &ep.id == only).collect(),
            None => subscribers(eps, msg.event_type.as_str(), msg.channels.as_deref()).collect(),
        };
        let id = MessageId::new();
        m_cols.push(&id, &app_id, msg, now)?;
        // Born claimed (fence 1) when the engine will send from memory; an
        // ordered endpoint's never is: its deliveries go out in order
        // through `claim_fifo`, whoever holds the endpoint's head.
        let (owner, until, fence) = match &msg.lease {
            Some(lease) => (Some(lease.owner.as_str().to_owned()), Some(after(now, lease.ttl)), 1),
            None => (None, None, 0),
        };
        let mut born = Vec::with_capacity(targets.len());
        for ep in &targets {
            let fifo = ep.settings.fifo;
            let elsewhere = holders
                .get(&ep.id)
                .is_some_and(|holder| msg.lease.as_ref().is_none_or(|l| l.owner.as_str() != holder));
            let how = match (fifo, elsewhere) {
                (true, _) => Born::Fifo,
                (false, true) => Born::ForHolder,
                (false, false) => Born::Claimed,
            };
            left_for_holder |= how == Born::ForHolder;
            let claimed = how == Born::Claimed;
            d_cols.msg_id.push(id.as_str().to_owned());
            d_cols.endpoint_id.push(ep.id.as_str().to_owned());
            d_cols.app_id.push(app_id.clone());
            d_cols.claimed_by.push(if claimed { owner.clone() } else { None });
            d_cols.claim_until.push(if claimed { until } else { None });
            d_cols.fence.push(if claimed { fence } else { 0 });
            d_cols.fifo.push(fifo);
            born.push((ep.id.clone(), how));
        }
        plans.push(Ok(Plan {
            id,
            app_id: AppId::from_trusted(app_id),
            targets: born,
        }));
    }

    let mut written: HashSet<String> = HashSet::new();
    let mut delivery_ids: HashMap<(String, String), i64> = HashMap::new();
    if !m_cols.id.is_empty() {
        let (text, int8) = (Type::TEXT_ARRAY, Type::INT8_ARRAY);
        let t: &tokio_postgres::Transaction<'_> = &tx;
        let rows = query_batch(
            t,
            INSERT,
            &[
                (&m_cols.id, text.clone()),
                (&m_cols.app_id, text.clone()),
                (&m_cols.event_type, text.clone()),
                (&m_cols.event_id, text.clone()),
                (&m_cols.channels, text.clone()),
                (&m_cols.tags, text.clone()),
                (&m_cols.payload, Type::BYTEA_ARRAY),
                (&m_cols.expires, int8.clone()),
                (&now, Type::INT8),
                (&d_cols.msg_id, text.clone()),
                (&d_cols.endpoint_id, text.clone()),
                (&d_cols.app_id, text.clone()),
                (&d_cols.claimed_by, text),
                (&d_cols.claim_until, int8.clone()),
                (&d_cols.fence, int8),
                (&d_cols.fifo, Type::BOOL_ARRAY),
            ],
        )
        .await?;
        for r in &rows {
            let msg_id: String = get(r, 0)?;
            if let Some(delivery) = get::<Option<i64>>(r, 1)? {
                let endpoint: String = get(r, 2)?;
                delivery_ids.insert((msg_id.clone(), endpoint), delivery);
            }
            written.insert(msg_id);
        }
    }
    tx.commit().await?;
    if left_for_holder {
        ctx.bell.ring();
    }

    let mut results = Vec::with_capacity(msgs.len());
    for (msg, plan) in msgs.iter().zip(plans) {
        results.push(plan.and_then(|plan| answer(msg, plan, created_at, &written, &delivery_ids)));
    }
    Ok((results, written.len() as u64))
}

/// What a caller hears of its committed (or skipped) message.
fn answer(
    msg: &NewMessage,
    plan: Plan,
    created_at: chrono::DateTime<chrono::Utc>,
    written: &HashSet<String>,
    delivery_ids: &HashMap<(String, String), i64>,
) -> Result<Ingested> {
    if !written.contains(plan.id.as_str()) {
        return Err(StoreError::Conflict(
            "a message with this eventId already exists".into(),
        ));
    }
    let fence = i64::from(msg.lease.is_some());
    let mut deliveries = Vec::new();
    let mut fifo = Vec::new();
    for (endpoint_id, born) in plan.targets {
        match born {
            Born::Fifo => {
                fifo.push((plan.app_id.clone(), endpoint_id));
                continue;
            }
            Born::ForHolder => continue,
            Born::Claimed => {}
        }
        let key = (plan.id.as_str().to_owned(), endpoint_id.as_str().to_owned());
        let delivery_id = *delivery_ids
            .get(&key)
            .ok_or_else(|| StoreError::Corrupt(format!("no delivery id came back for {} to {endpoint_id}", plan.id)))?;
        deliveries.push(DeliveryJob {
            delivery_id,
            fence,
            msg_id: plan.id.clone(),
            app_id: plan.app_id.clone(),
            endpoint_id,
            event_type: msg.event_type.clone(),
            payload: msg.payload.clone(),
            attempts: 0,
            msg_created_at: created_at,
            first_attempt_at: None,
            manual: false,
        });
    }
    Ok(Ingested {
        message: Message {
            id: plan.id,
            app_id: plan.app_id,
            event_type: msg.event_type.clone(),
            event_id: msg.event_id.clone(),
            channels: msg.channels.clone(),
            tags: msg.tags.clone(),
            payload: msg.payload.clone(),
            created_at,
        },
        deliveries,
        fifo,
    })
}

/// The message rows of a batch, column by column (the `UNNEST` arrays).
#[derive(Default)]
struct MessageCols<'a> {
    id: Vec<String>,
    app_id: Vec<String>,
    event_type: Vec<&'a str>,
    event_id: Vec<Option<&'a str>>,
    channels: Vec<Option<String>>,
    tags: Vec<Option<String>>,
    payload: Vec<&'a [u8]>,
    expires: Vec<Option<i64>>,
}

impl<'a> MessageCols<'a> {
    fn push(&mut self, id: &MessageId, app_id: &str, msg: &'a NewMessage, now: i64) -> Result<()> {
        self.id.push(id.as_str().to_owned());
        self.app_id.push(app_id.to_owned());
        self.event_type.push(msg.event_type.as_str());
        self.event_id.push(msg.event_id.as_ref().map(Uid::as_str));
        self.channels.push(opt_json(&msg.channels)?);
        self.tags.push(opt_json(&msg.tags)?);
        self.payload.push(&msg.payload[..]);
        // Only an explicit period is stored: the partial index on it then
        // costs the common message nothing.
        self.expires
            .push(msg.payload_retention.map(|period| after(now, period)));
        Ok(())
    }
}

/// The delivery rows of a batch, column by column.
#[derive(Default)]
struct DeliveryCols {
    msg_id: Vec<String>,
    endpoint_id: Vec<String>,
    app_id: Vec<String>,
    claimed_by: Vec<Option<String>>,
    claim_until: Vec<Option<i64>>,
    fence: Vec<i64>,
    fifo: Vec<bool>,
}

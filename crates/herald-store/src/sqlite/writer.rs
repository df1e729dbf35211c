//! The single writer thread and its group commit.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::AppId;
use herald_core::model::Endpoint;
use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::rows::{EndpointCache, db_now_ms, load_endpoints, resolve_app};
use crate::metrics::{StoreMetrics, Tally};
use crate::{Change, EncryptionKey, Result, StoreError};

/// How many queued writes one transaction may take. Large enough that one
/// fsync serves a burst, small enough to bound how long a commit holds the
/// queued callers.
const MAX_BATCH: usize = 1024;
const QUEUE: usize = 8192;

/// What a write job gets: the connection (inside the open transaction) and
/// the writer's caches.
pub(crate) struct WriterCtx {
    pub conn: Connection,
    /// Unseals what rows read here hold (endpoint credentials).
    pub key: Arc<EncryptionKey>,
    endpoints: EndpointCache,
    /// Application id or uid, as a request named it -> its id.
    apps: HashMap<String, AppId>,
    /// Changes made in the open transaction, announced once it commits.
    changes: Vec<Change>,
    feed: broadcast::Sender<Change>,
    /// The database's clock, read once per transaction.
    now: Option<i64>,
    /// Whether any endpoint hold is live, read once per transaction (and
    /// again after a hold is written in it).
    live_holds: Option<bool>,
    /// What the open transaction did that `/metrics` counts; counted once
    /// it commits.
    pub tally: Tally,
    metrics: Arc<StoreMetrics>,
}

/// Entries each cache may hold before it starts over; past it, a cold entry
/// costs one indexed read.
const CACHE_LIMIT: usize = 10_000;

impl WriterCtx {
    /// The database's now in milliseconds, the same for every job in the
    /// transaction: lease expiry and due times are decided by it.
    pub fn now(&mut self) -> Result<i64> {
        if let Some(now) = self.now {
            return Ok(now);
        }
        let now = db_now_ms(&self.conn)?;
        self.now = Some(now);
        Ok(now)
    }

    /// Whether any endpoint hold is live at `now` (`holds.rs`).
    pub fn any_live_hold(&mut self, now: i64) -> Result<bool> {
        if let Some(any) = self.live_holds {
            return Ok(any);
        }
        let any = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM endpoint_hold WHERE until > ?1)")?
            .query_row([now], |r| r.get(0))?;
        self.live_holds = Some(any);
        Ok(any)
    }

    /// Must be called by every job that writes endpoint holds.
    pub fn holds_changed(&mut self) {
        self.live_holds = None;
    }

    /// Announces `change` to every subscriber once the transaction commits
    /// (never if it rolls back).
    pub fn announce(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// The endpoints of an application, for fan-out.
    pub fn endpoints_of(&mut self, app_id: &AppId) -> Result<Arc<Vec<Endpoint>>> {
        if let Some(eps) = self.endpoints.get(app_id) {
            return Ok(eps.clone());
        }
        let eps = Arc::new(load_endpoints(&self.conn, &self.key, app_id)?);
        if self.endpoints.len() >= CACHE_LIMIT {
            self.endpoints.clear();
        }
        self.endpoints.insert(app_id.clone(), eps.clone());
        Ok(eps)
    }

    /// The application a request names by id or uid: every message ingested
    /// asks, so the answer is kept.
    pub fn resolve_app(&mut self, id_or_uid: &str) -> Result<AppId> {
        if let Some(id) = self.apps.get(id_or_uid) {
            return Ok(id.clone());
        }
        let id = resolve_app(&self.conn, id_or_uid)?;
        if self.apps.len() >= CACHE_LIMIT {
            self.apps.clear();
        }
        self.apps.insert(id_or_uid.to_owned(), id.clone());
        Ok(id)
    }

    /// Must be called by every job that changes an application's endpoints.
    pub fn forget_app(&mut self, app_id: &AppId) {
        self.endpoints.remove(app_id);
    }

    /// Must be called by every job that changes or deletes an application
    /// (a uid may now name another one, or none).
    pub fn forget_app_names(&mut self) {
        self.apps.clear();
    }

    fn forget_everything(&mut self) {
        self.endpoints.clear();
        self.apps.clear();
    }
}

/// How a job left the transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Its changes stay.
    Keep,
    /// Roll back to its savepoint (atomic jobs only).
    Undo,
    /// It failed part-way without a savepoint: the whole batch must roll back.
    Poison,
}

/// Runs inside the transaction; returns its verdict and what to do once the
/// commit's fate is known.
type RunJob = Box<dyn FnOnce(&mut WriterCtx) -> (Verdict, Finish) + Send>;

struct Job {
    atomic: bool,
    run: RunJob,
}
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

pub(crate) struct Writer {
    /// Taken on close; the thread ends once every sender is gone.
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    done: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Writer {
    pub fn spawn(
        conn: Connection,
        key: Arc<EncryptionKey>,
        feed: broadcast::Sender<Change>,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || {
                run(
                    WriterCtx {
                        conn,
                        key,
                        endpoints: EndpointCache::new(),
                        apps: HashMap::new(),
                        changes: Vec::new(),
                        feed,
                        now: None,
                        live_holds: None,
                        tally: Tally::default(),
                        metrics,
                    },
                    rx,
                );
                let _ = done_tx.send(());
            })
            .expect("spawning the SQLite writer thread");
        Self {
            tx: std::sync::Mutex::new(Some(tx)),
            done: tokio::sync::Mutex::new(Some(done_rx)),
        }
    }

    /// Runs `f` in its own savepoint in the next group commit and returns its
    /// result once committed; if `f` fails, its changes are undone and the
    /// rest of the batch commits.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(true, f).await
    }

    /// Like [`Writer::run`] without the savepoint, for the hot paths (ingest,
    /// outcomes, claims): a savepoint makes SQLite copy every page a job
    /// touches. Such a job may fail with `NotFound` or `Conflict` only before
    /// its first write; any other error rolls back the whole batch.
    pub async fn run_fast<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(false, f).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        atomic: bool,
        f: impl FnOnce(&mut WriterCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            atomic,
            run: Box::new(move |ctx| {
                let result = f(ctx);
                let verdict = match &result {
                    Ok(_) => Verdict::Keep,
                    Err(_) if atomic => Verdict::Undo,
                    Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => Verdict::Keep,
                    Err(e) => {
                        tracing::error!(error = %e, "a write failed part-way; rolling back its batch");
                        Verdict::Poison
                    }
                };
                let finish: Finish = Box::new(move |commit_error| {
                    let _ = reply.send(match commit_error {
                        None => result,
                        Some(e) => Err(StoreError::Commit(e.to_owned())),
                    });
                });
                (verdict, finish)
            }),
        };
        let tx = self
            .tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        tx.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking work, lets the thread commit what is queued, and waits for it.
    pub async fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(done) = self.done.lock().await.take() {
            let _ = done.await;
        }
    }
}

fn run(mut ctx: WriterCtx, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut finishers: Vec<Finish> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut ctx, &mut batch, &mut finishers);
    }
    // Fold the WAL back into the main file so a clean stop leaves one file.
    // Failing leaves the WAL beside the database, which the next open
    // replays: worth a warning, not a failed close.
    if let Err(e) = ctx.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "could not fold the WAL back at close");
    }
}

fn commit_batch(ctx: &mut WriterCtx, batch: &mut Vec<Job>, finishers: &mut Vec<Finish>) {
    if let Err(e) = ctx.conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping a job that never ran drops its reply sender: its caller
        // sees the store as unavailable rather than waiting forever.
        tracing::error!(error = %e, "could not begin a write transaction");
        batch.clear();
        return;
    }
    ctx.now = None;
    ctx.live_holds = None;
    ctx.tally = Tally::default();
    let mut poisoned = false;
    for job in batch.drain(..) {
        if !job.atomic {
            let (verdict, finish) = (job.run)(ctx);
            poisoned |= verdict == Verdict::Poison;
            finishers.push(finish);
            continue;
        }
        let savepoint = ctx.conn.execute_batch("SAVEPOINT job");
        let (announced, tally) = (ctx.changes.len(), ctx.tally);
        let (verdict, finish) = (job.run)(ctx);
        let closed = if verdict == Verdict::Keep && savepoint.is_ok() {
            ctx.conn.execute_batch("RELEASE job")
        } else {
            ctx.changes.truncate(announced);
            ctx.tally = tally;
            ctx.conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = closed {
            tracing::error!(error = %e, "closing a savepoint failed");
        }
        finishers.push(finish);
    }
    let committed = if poisoned {
        Err("a write failed part-way; the batch was rolled back".to_owned())
    } else {
        ctx.conn.execute_batch("COMMIT").map_err(|e| e.to_string())
    };
    match committed {
        Ok(()) => {
            ctx.metrics.committed(std::mem::take(&mut ctx.tally));
            // Announced before any caller hears of its write, so whoever
            // learns of a change through the API also finds it in the feed.
            for change in ctx.changes.drain(..) {
                let _ = ctx.feed.send(change);
            }
            finishers.drain(..).for_each(|f| f(None));
        }
        Err(msg) => {
            ctx.changes.clear();
            ctx.tally = Tally::default();
            tracing::error!(error = %msg, "group commit failed");
            match ctx.conn.execute_batch("ROLLBACK") {
                Ok(()) => {}
                // SQLite ended the transaction itself (some errors do).
                Err(_) if ctx.conn.is_autocommit() => {}
                // The next batch would begin inside this one's remains.
                Err(e) => tracing::error!(error = %e, "could not roll back a failed batch"),
            }
            // What the caches learned inside the rolled-back batch may be false.
            ctx.forget_everything();
            finishers.drain(..).for_each(|f| f(Some(&msg)));
        }
    }
}

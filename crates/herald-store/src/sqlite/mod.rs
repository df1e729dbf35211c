//! The embedded SQLite store: what `herald serve` uses with no setup.
//!
//! Every write goes to one writer thread (`writer.rs`), which drains
//! whatever is queued and commits it as one transaction: one fsync
//! (`synchronous=FULL` in WAL mode) then serves hundreds of messages, the
//! group commit the ingest throughput rests on. Reads run on a small pool
//! of read-only connections (`read_pool.rs`), which WAL lets proceed while
//! the writer commits.
//!
//! By concern: `resources.rs` (applications, endpoints, event types, lists),
//! `ingest.rs` (message and fan-out), `queue.rs` (claims under leases,
//! outcomes), `idempotency.rs`, `retention.rs` (pruning in small batches),
//! `rows.rs` (row mapping), `paging.rs`, `history.rs` (one attempt,
//! attempted messages and destinations, stats, expunging), `redeliver.rs`
//! (resend, recover, replay-missing), `targets.rs` (what the engine sends
//! with, secrets and credentials unsealed), `tasks.rs`, `access.rs` (tokens).
//!
//! The SQLite store serves a single node, but implements the multi-node
//! queue contract all the same: claims are owned and fenced, and a node
//! starting up recovers only its own.

mod access;
mod claims;
mod fifo;
mod health;
mod history;
mod holds;
mod idempotency;
mod ingest;
mod outcomes;
mod paging;
mod queue;
mod read_pool;
mod redeliver;
mod resources;
mod retention;
mod rows;
mod schema;
mod targets;
mod tasks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::broadcast;

use crate::{CHANGE_BUFFER, Change, EncryptionKey, Result, Store, StoreError, StoreMetrics};
use read_pool::{ReadPool, open_reader};
use writer::Writer;

const READERS: usize = 4;

pub struct SqliteStore {
    writer: Writer,
    readers: ReadPool,
    key: std::sync::Arc<EncryptionKey>,
    feed: broadcast::Sender<Change>,
    closed: AtomicBool,
    metrics: Arc<StoreMetrics>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path, key: EncryptionKey) -> Result<Self> {
        let mut conn = Self::connect(path)?;
        schema::migrate(&mut conn)?;
        let readers = (0..READERS).map(|_| open_reader(path)).collect::<Result<Vec<_>>>()?;
        let (feed, _) = broadcast::channel(CHANGE_BUFFER);
        let metrics = Arc::new(StoreMetrics::default());
        let key = Arc::new(key);
        Ok(Self {
            writer: Writer::spawn(conn, key.clone(), feed.clone(), metrics.clone()),
            readers: ReadPool::new(readers),
            key,
            feed,
            closed: AtomicBool::new(false),
            metrics,
        })
    }

    /// Applies migrations and returns without starting anything (`herald migrate`).
    pub fn migrate_only(path: &Path) -> Result<()> {
        schema::migrate(&mut Self::connect(path)?)
    }

    fn connect(path: &Path) -> Result<Connection> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        schema::configure(&conn)?;
        Ok(conn)
    }

    /// The database file for a `sqlite://` URL.
    pub fn path_from_url(url: &str) -> Option<PathBuf> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let rest = rest.split('?').next().unwrap_or(rest);
        Some(PathBuf::from(rest))
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.readers.run(f).await
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn changes(&self) -> broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.close().await;
    }
}

//! The PostgreSQL store: several `herald serve` nodes against one database,
//! with nothing else beside it (no Redis, no broker).
//!
//! Connections come from a pool (`deadpool-postgres`); every statement is
//! prepared once per connection (`prepare_cached`). Changes that other nodes
//! must hear are sent with `pg_notify` inside the transaction that makes
//! them, so PostgreSQL delivers them exactly when, and only if, it commits;
//! one listening connection per node (`changes.rs`) turns them back into the
//! store's change feed. Times are Unix milliseconds in `BIGINT` columns, and
//! every time a lease or a due time is compared with comes from the
//! database's clock (`herald_now_ms()`), never a node's.
//!
//! By concern, as in the SQLite store: `schema.rs` (migrations under an
//! advisory lock), `rows.rs` (row mapping), `resources.rs`, `access.rs`,
//! `tasks.rs`, `idempotency.rs`, `ingest.rs` (message and fan-out, group
//! committed), `queue.rs` (claims and outcomes under leases, with
//! `parking.rs`, `fifo.rs` and what they share, `claims.rs`), `history.rs`,
//! `redeliver.rs`, `retention.rs`, `health.rs`, and endpoint holds with the
//! bell that wakes other nodes' loaders, `holds.rs`.

mod access;
mod changes;
mod claims;
mod endpoints;
mod fifo;
mod health;
mod history;
mod holds;
mod idempotency;
mod ingest;
mod paging;
mod parking;
mod queue;
mod redeliver;
mod resources;
mod retention;
mod rows;
mod schema;
mod targets;
mod tasks;
mod test_db;

pub use test_db::{TEST_URL_VAR, TestDatabase, rows_contain};

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

use crate::{CHANGE_BUFFER, Change, EncryptionKey, Result, Store, StoreError, StoreMetrics};

/// Connections a node keeps by default: enough for the API's readers, the
/// engine's claims and outcomes and the ingest committer at once, few
/// enough that ten nodes stay well inside PostgreSQL's default
/// `max_connections` (100).
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How a PostgreSQL store is opened.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The most connections this node holds at once.
    pub pool_size: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

pub struct PgStore {
    pool: Pool,
    key: Arc<EncryptionKey>,
    feed: broadcast::Sender<Change>,
    closed: AtomicBool,
    metrics: Arc<StoreMetrics>,
    listener: changes::Listener,
    /// Ingest's group commit (`ingest.rs`).
    committer: ingest::Committer,
    /// Tells every node of deliveries left due for others (`holds.rs`).
    bell: holds::DueBell,
    /// Stops the bell's task.
    stop: tokio_util::sync::CancellationToken,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`), applies migrations (one node at a
    /// time, under an advisory lock), and starts listening for changes.
    pub async fn open(url: &str, key: EncryptionKey, options: PgOptions) -> Result<Self> {
        Self::open_config(parse_url(url)?, key, options).await
    }

    /// [`PgStore::open`] with the connection settings already parsed.
    pub async fn open_config(config: tokio_postgres::Config, key: EncryptionKey, options: PgOptions) -> Result<Self> {
        schema::migrate(&config).await?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the connection pool: {e}")))?;
        let (feed, _) = broadcast::channel(CHANGE_BUFFER);
        let listener = changes::Listener::spawn(config, feed.clone()).await?;
        let (key, metrics) = (Arc::new(key), Arc::new(StoreMetrics::default()));
        let stop = tokio_util::sync::CancellationToken::new();
        let bell = holds::DueBell::spawn(pool.clone(), stop.clone());
        let committer = ingest::Committer::spawn(pool.clone(), key.clone(), metrics.clone(), bell.clone());
        Ok(Self {
            pool,
            key,
            feed,
            closed: AtomicBool::new(false),
            metrics,
            listener,
            committer,
            bell,
            stop,
        })
    }

    /// Applies migrations and returns without starting anything (`herald migrate`).
    pub async fn migrate_only(url: &str) -> Result<()> {
        schema::migrate(&parse_url(url)?).await
    }

    /// Whether `url` names a PostgreSQL database.
    pub fn is_url(url: &str) -> bool {
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// A pooled connection; fails with [`StoreError::Closed`] after
    /// [`Store::close`], and with [`StoreError::Unavailable`] when the
    /// database cannot be reached.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(pool_error)
    }
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::Refused(format!("--database-url is not a valid PostgreSQL URL: {e}")))
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e.into(),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// SQLSTATE classes that mean the server is going away or not accepting
/// work yet: 08 (connection exception), 57P01-57P03 (admin shutdown, crash
/// shutdown, cannot connect now), 53 (insufficient resources).
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: the error is the connection's (I/O, TLS, a closed
        // socket), not the statement's.
        None => e.as_db_error().is_none(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Postgres(e)
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn changes(&self) -> broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.listener.stop();
        // What was accepted commits before the connections go.
        self.committer.close().await;
        self.stop.cancel();
        self.pool.close();
    }
}

//! Settings for `herald serve` and `herald migrate`: each flag has a
//! `HERALD_*` environment variable, and flags win. Secrets the operator does
//! not provide (admin token, encryption key) are generated once and kept in
//! the data directory.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;
use herald_core::ssrf::PrivateTargets;
use herald_store::{EncryptionKey, Store};
use rand::RngCore;

#[derive(Args, Clone)]
pub struct StorageArgs {
    /// Directory for the embedded database and generated secrets.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://<data-dir>/herald.db`.
    #[arg(long, env = "HERALD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// This node's identity as the owner of delivery leases; generated into
    /// the data dir on first start. It must be stable across restarts (a
    /// node takes back only its own claims) and unique among the nodes that
    /// share one database.
    #[arg(long, env = "HERALD_NODE_ID")]
    pub node_id: Option<String>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address for the API.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8071")]
    pub listen: SocketAddr,
    /// Token with full access; generated on first start when not given.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Allow deliveries to loopback, private, link-local and other
    /// non-public addresses: alone for all, or a list of CIDRs.
    #[arg(long, env = "HERALD_ALLOW_PRIVATE_TARGETS", num_args = 0..=1, default_missing_value = "true", value_name = "CIDRS")]
    pub allow_private_targets: Option<String>,
    /// Refuse endpoint URLs that are not `https://`: on create and update
    /// (422), and at delivery for endpoints saved before.
    #[arg(long, env = "HERALD_REQUIRE_HTTPS")]
    pub require_https: bool,
    /// Key (32 bytes, base64) that encrypts endpoint secrets at rest;
    /// generated and stored in the data dir when not given.
    #[arg(long, env = "HERALD_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Connections to PostgreSQL this node keeps at most (ignored on SQLite).
    /// Every node holds its own pool: keep nodes × pool size inside the
    /// server's `max_connections`.
    #[arg(long, env = "HERALD_DATABASE_POOL_SIZE", default_value_t = herald_store::postgres::DEFAULT_POOL_SIZE)]
    pub database_pool_size: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HERALD_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    pub max_payload_bytes: usize,
    /// Requests in flight at once over all endpoints.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
    /// Requests in flight at once to one endpoint.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT", default_value_t = 64)]
    pub max_in_flight_per_endpoint: usize,
    /// Deliveries held in memory (queued, in flight, or waiting for a retry
    /// due within a minute); the rest wait in the database. Each costs about
    /// 1 KB with a small payload, and 10,000 keep a full-speed engine busy.
    #[arg(long, env = "HERALD_MAX_RESIDENT", default_value_t = 10_000)]
    pub max_resident: usize,
    /// Payload bytes held in memory, however few deliveries carry them:
    /// large payloads wait in the database rather than in RAM. The
    /// deliveries of one message share its payload, counted once.
    #[arg(long, env = "HERALD_MAX_RESIDENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_resident_bytes: usize,
    /// Client connections open at once; at the cap new ones wait in the
    /// listen backlog. Default: the open-file limit (raised to its hard
    /// limit at start) less room for deliveries and the database, at least
    /// 64 and at most 10,000.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64))]
    pub max_connections: Option<u64>,
    /// Seconds a client may take to send a request head, from its first byte.
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds a client may take to send a whole request body (408 after).
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Days of history kept: older messages, their attempts and idempotency
    /// keys are pruned in the background (never a message still pending
    /// delivery). A decimal number, so tests can use a tiny period
    /// (0.0001 is about 9 s); pruning runs every tenth of it, at most hourly.
    #[arg(long, env = "HERALD_RETENTION_DAYS", default_value_t = 30.0, value_name = "DAYS")]
    pub retention_days: f64,
    /// Seconds between counts of the pending deliveries in the database for
    /// `/metrics` (`herald_backlog_deliveries`); a scrape reads the last
    /// count. Each count walks the pending rows' indexes (about 0.1 s of a
    /// core per million pending). A decimal number, positive.
    #[arg(
        long,
        env = "HERALD_BACKLOG_REFRESH_SECS",
        default_value_t = 5.0,
        value_name = "SECS"
    )]
    pub backlog_refresh_secs: f64,
    /// How long a claim on a delivery lasts unless renewed (held claims are
    /// renewed every quarter of it): the time after which the other nodes
    /// sharing a database take over a dead node's deliveries.
    #[arg(long, env = "HERALD_LEASE_SECS", default_value_t = 30.0, value_name = "SECS")]
    pub lease_secs: f64,
    /// Who may show the customer portal (`/portal/`) in a frame: CSP
    /// `frame-ancestors` sources, separated by spaces or commas — `*` (any
    /// origin), `'self'`, `'none'`, or origins such as
    /// `https://app.example.com`. The default is any origin: the portal
    /// keeps no cookie or other ambient credential, so a frame gets nothing
    /// its url does not carry. The operator dashboard (`/ui/`) is never framed.
    #[arg(long, env = "HERALD_PORTAL_FRAME_ANCESTORS", default_value = "*", value_name = "SOURCES",
          value_parser = parse_frame_ancestors)]
    pub portal_frame_ancestors: herald_ui::FrameAncestors,
}

fn parse_frame_ancestors(text: &str) -> Result<herald_ui::FrameAncestors, String> {
    herald_ui::FrameAncestors::parse(text).map_err(|e| e.to_string())
}

/// File descriptors the default connection cap leaves for everything else:
/// two per delivery in flight (the request and a pooled connection), and
/// the database, its WAL, logs and the listener.
fn reserved_fds(max_in_flight: usize) -> u64 {
    2 * max_in_flight as u64 + 256
}

/// Raises the soft open-file limit to the hard one (a server with many
/// clients and deliveries outgrows the usual 1024 soft limit) and returns
/// the limit in force.
pub fn raise_open_file_limit() -> u64 {
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            tracing::info!(before, now, "open-file limit raised to the hard limit");
            now
        }
        Err(e) => {
            let now = before.unwrap_or(1024);
            tracing::warn!(error = %e, now, "could not raise the open-file limit");
            now
        }
    }
}

/// The connection cap and timeouts from the flags; `open_files` sizes the
/// default cap.
pub fn connection_limits(args: &ServeArgs, open_files: u64) -> herald_api::ConnectionLimits {
    let max_connections = args.max_connections.unwrap_or_else(|| {
        open_files
            .saturating_sub(reserved_fds(args.max_in_flight))
            .clamp(64, 10_000)
    });
    herald_api::ConnectionLimits {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
    }
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("invalid --log filter '{filter}' ({e}); using 'info'");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Where the data lives, from `--database-url` (default: SQLite in the data dir).
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL, shared by every node that names it.
    Postgres(String),
}

impl Database {
    pub fn from_args(args: &StorageArgs) -> anyhow::Result<Self> {
        match &args.database_url {
            None => Ok(Self::Sqlite(args.data_dir.join("herald.db"))),
            Some(url) if url.starts_with("sqlite:") => herald_store::sqlite::SqliteStore::path_from_url(url)
                .map(Self::Sqlite)
                .with_context(|| format!("--database-url '{url}' is not a sqlite:// URL")),
            Some(url) if herald_store::postgres::PgStore::is_url(url) => Ok(Self::Postgres(url.clone())),
            Some(url) => bail!("--database-url '{url}' must start with sqlite:// or postgres://"),
        }
    }

    /// Opens the store, applying migrations.
    pub async fn open(&self, key: EncryptionKey, pool_size: usize) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(
                herald_store::sqlite::SqliteStore::open(path, key)
                    .with_context(|| format!("opening database {}", path.display()))?,
            ),
            Self::Postgres(url) => Arc::new(
                herald_store::postgres::PgStore::open(url, key, herald_store::postgres::PgOptions { pool_size })
                    .await
                    .with_context(|| format!("opening database {}", redacted(url)))?,
            ),
        })
    }

    /// Applies migrations and returns (`herald migrate`).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(path) => herald_store::sqlite::SqliteStore::migrate_only(path)?,
            Self::Postgres(url) => herald_store::postgres::PgStore::migrate_only(url).await?,
        }
        Ok(())
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

/// `url` without its password, for logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

pub fn private_targets(args: &ServeArgs) -> anyhow::Result<PrivateTargets> {
    let text = args.allow_private_targets.as_deref().unwrap_or("");
    PrivateTargets::parse(text).map_err(|e| anyhow::anyhow!("--allow-private-targets: {e}"))
}

/// `HERALD_TIME_SCALE=N` divides retry and batching delays by N (a testing aid).
pub fn time_scale() -> anyhow::Result<f64> {
    match std::env::var("HERALD_TIME_SCALE") {
        Err(_) => Ok(1.0),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
            _ => bail!("HERALD_TIME_SCALE must be a positive number, got '{v}'"),
        },
    }
}

/// `--retention-days` as a duration: positive and representable.
pub fn retention(args: &ServeArgs) -> anyhow::Result<Duration> {
    let days = args.retention_days;
    if !(days.is_finite() && days > 0.0) {
        bail!("--retention-days must be a positive number of days, got {days}");
    }
    Duration::try_from_secs_f64(days * 86_400.0).map_err(|_| anyhow::anyhow!("--retention-days {days} is too large"))
}

/// `--backlog-refresh-secs` as a duration: positive, at most a day.
pub fn backlog_refresh(args: &ServeArgs) -> anyhow::Result<Duration> {
    let secs = args.backlog_refresh_secs;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        bail!("--backlog-refresh-secs must be a positive number of seconds, at most 86400, got {secs}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--lease-secs` as a duration: at least a second, at most an hour.
pub fn lease(args: &ServeArgs) -> anyhow::Result<Duration> {
    let secs = args.lease_secs;
    if !(secs.is_finite() && (1.0..=3600.0).contains(&secs)) {
        bail!("--lease-secs must be a number of seconds from 1 to 3600, got {secs}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The admin token: given, or read from the data dir, or generated there.
/// Returns the token and whether it was generated now (so it can be printed once).
pub fn admin_token(args: &ServeArgs) -> anyhow::Result<(String, bool)> {
    if let Some(token) = args.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((token.to_owned(), false));
    }
    let path = args.storage.data_dir.join("admin-token");
    if path.exists() {
        let token = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return Ok((token.trim().to_owned(), false));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "hrld_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    write_private(&path, &token)?;
    Ok((token, true))
}

/// The node id: given, or read from the data dir, or generated there.
pub fn node_id(args: &StorageArgs) -> anyhow::Result<herald_store::NodeId> {
    if let Some(id) = args.node_id.as_deref().map(str::trim) {
        if id.is_empty() || id.len() > 100 {
            bail!("--node-id must be 1 to 100 characters");
        }
        return Ok(herald_store::NodeId::new(id));
    }
    let path = args.data_dir.join("node-id");
    if path.exists() {
        let id = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(herald_store::NodeId::new(id.trim()));
    }
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    let id = format!(
        "node_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    write_private(&path, &id)?;
    Ok(herald_store::NodeId::new(id))
}

pub fn encryption_key(args: &ServeArgs) -> anyhow::Result<EncryptionKey> {
    if let Some(text) = &args.encryption_key {
        return EncryptionKey::parse(text).map_err(|e| anyhow::anyhow!("--encryption-key: {e}"));
    }
    let path = args.storage.data_dir.join("encryption.key");
    if path.exists() {
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return EncryptionKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let key = EncryptionKey::generate();
    write_private(&path, &key.to_base64())?;
    Ok(key)
}

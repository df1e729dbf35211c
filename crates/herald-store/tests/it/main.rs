//! The storage test suite: what every [`Store`] implementation must do.
//!
//! Tests are written against `Arc<dyn Store>` and run once per backend that
//! [`backends`] returns: the embedded SQLite store, each in a fresh
//! temporary directory, and PostgreSQL, each in a fresh database on the
//! server `HERALD_TEST_POSTGRES_URL` names (required under `CI=true`). A new backend joins the suite by adding a [`Kind`]
//! variant: how to open it, reopen it over the same data, and read its stored
//! secrets behind its back. Every test body runs through [`each_backend`],
//! which prefixes any failure with the backend's name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// `assert!(matches!(..))` that shows what the value was.
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)?, $($msg:tt)+) => {
        match $value {
            $pattern $(if $guard)? => {}
            ref other => panic!(
                "{}: expected {}, got {:?}",
                format_args!($($msg)+),
                stringify!($pattern),
                other
            ),
        }
    };
}

mod attempts;
mod changes;
mod credentials;
mod deletes;
mod delivery;
mod durability;
mod endpoints;
mod fifo;
mod health;
mod holds;
mod leases;
mod messages;
mod metrics;
mod paging;
mod parking;
mod resources;
mod retention;
mod svix_tools;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use herald_core::model::{
    Application, Attempt, AttemptErrorKind, DeliveryStatus, Endpoint, EndpointSettings, EventType, Message, Metadata,
    TriggerType,
};
use herald_core::signing::EndpointSecret;
use herald_core::validate::{Channel, EndpointUrl, EventTypeName, Uid};
use herald_core::{AppId, AttemptId, EndpointId, MessageId};
use herald_store::postgres::{PgOptions, PgStore, TestDatabase};
use herald_store::sqlite::SqliteStore;
use herald_store::{
    AppRef, DeliveryJob, DeliveryState, EncryptionKey, Held, Ingested, Lease, LeaseResult, MessageFilter,
    NewApplication, NewEndpoint, NewMessage, NodeId, Order, Outcome, Page, PageRequest, RetryHold, Store,
};

// ---------- backends ----------

/// One store under test, with what the suite needs to look behind it.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    kind: Kind,
}

enum Kind {
    Sqlite {
        dir: Arc<tempfile::TempDir>,
        path: PathBuf,
        key: EncryptionKey,
    },
    Postgres {
        db: Arc<TestDatabase>,
        key: EncryptionKey,
    },
}

/// Every backend the suite runs against, each empty and private to the caller.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![sqlite_backend()];
    if let Some(db) = TestDatabase::create().await {
        all.push(postgres_backend(db).await);
    }
    all
}

async fn postgres_backend(db: TestDatabase) -> Backend {
    let key = EncryptionKey::generate();
    let store = PgStore::open(db.url(), key.clone(), PgOptions::default())
        .await
        .expect("opening a fresh PostgreSQL store");
    Backend {
        name: "postgres",
        store: Arc::new(store),
        kind: Kind::Postgres { db: Arc::new(db), key },
    }
}

fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("herald.db");
    let key = EncryptionKey::generate();
    let store = SqliteStore::open(&path, key.clone()).expect("opening a fresh SQLite store");
    Backend {
        name: "sqlite",
        store: Arc::new(store),
        kind: Kind::Sqlite {
            dir: Arc::new(dir),
            path,
            key,
        },
    }
}

impl Backend {
    /// What must outlive the test: a test body that uses only `store` drops
    /// the rest of the `Backend` early (closures capture disjoint fields).
    fn guard(&self) -> Box<dyn std::any::Any + Send> {
        match &self.kind {
            Kind::Sqlite { dir, .. } => Box::new(dir.clone()),
            Kind::Postgres { db, .. } => Box::new(db.clone()),
        }
    }

    /// A second store over the same data, with the encryption key the first was opened with.
    pub async fn reopen(&self) -> Arc<dyn Store> {
        let key = match &self.kind {
            Kind::Sqlite { key, .. } | Kind::Postgres { key, .. } => key.clone(),
        };
        self.reopen_with_key(key).await
    }

    /// A second store over the same data, opened with `key`.
    pub async fn reopen_with_key(&self, key: EncryptionKey) -> Arc<dyn Store> {
        match &self.kind {
            Kind::Sqlite { path, .. } => Arc::new(
                SqliteStore::open(path, key).unwrap_or_else(|e| panic!("[{}] reopening the store: {e}", self.name)),
            ),
            Kind::Postgres { db, .. } => Arc::new(
                PgStore::open(db.url(), key, PgOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("[{}] reopening the store: {e}", self.name)),
            ),
        }
    }

    /// The `secret` column of every stored endpoint, as raw bytes, read
    /// without going through the store.
    pub async fn raw_endpoint_secrets(&self) -> Vec<(String, Vec<u8>)> {
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                let conn =
                    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
                let mut stmt = conn.prepare("SELECT id, secret FROM endpoint").unwrap();
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap()
            }
            Kind::Postgres { db, .. } => pg_query(db, "SELECT id, secret FROM endpoint")
                .await
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        }
    }

    /// Runs the statement `sql` behind the store's back, on a connection of
    /// its own (to shape rows the store no longer writes).
    pub async fn raw_execute(&self, sql: &str) {
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                conn.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Kind::Postgres { db, .. } => {
                pg_query(db, sql).await;
            }
        }
    }

    /// Whether `needle` occurs anywhere in what the backend stored: its
    /// files on disk (SQLite), or the text of every row of every table
    /// (PostgreSQL, where `bytea` shows as hex).
    pub async fn files_contain(&self, needle: &[u8]) -> bool {
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                let mut names = vec![path.clone()];
                for suffix in ["-wal", "-journal"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    names.push(PathBuf::from(p));
                }
                names
                    .iter()
                    .filter_map(|p| std::fs::read(p).ok())
                    .any(|data| contains(&data, needle))
            }
            Kind::Postgres { db, .. } => herald_store::postgres::rows_contain(db.url(), needle).await,
        }
    }
}

/// Rows of `sql`, read on a connection of their own, behind the store's back.
async fn pg_query(db: &TestDatabase, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
    rows
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs `test` once per backend, each on a fresh store. A failure is
/// reported again with the backend's name in front.
pub async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Backend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for backend in backends().await {
        let name = backend.name;
        let guard = backend.guard();
        let outcome = tokio::spawn(test(backend)).await;
        drop(guard);
        if let Err(e) = outcome {
            let why = if e.is_panic() {
                let payload = e.into_panic();
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(non-string panic)".to_owned())
            } else {
                e.to_string()
            };
            panic!("[{name} backend] {why}");
        }
    }
}

// ---------- fixtures ----------

pub fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

pub fn et(s: &str) -> EventTypeName {
    EventTypeName::parse(s).unwrap()
}

pub fn ch(s: &str) -> Channel {
    Channel::parse(s).unwrap()
}

pub fn chans(list: &[&str]) -> Vec<Channel> {
    list.iter().map(|s| ch(s)).collect()
}

pub fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub fn new_app(name: &str, app_uid: Option<&str>) -> NewApplication {
    NewApplication {
        uid: app_uid.map(uid),
        name: name.to_owned(),
        metadata: Metadata::new(),
        throttle_rate: None,
    }
}

/// Creates an application and returns its id.
pub async fn app(store: &Arc<dyn Store>, name: &str) -> AppId {
    store.create_app(new_app(name, None)).await.unwrap().id
}

/// An enabled endpoint with no filters and a fresh symmetric secret.
pub fn new_endpoint(url: &str) -> NewEndpoint {
    NewEndpoint {
        uid: None,
        settings: EndpointSettings::new(EndpointUrl::parse(url).unwrap()),
        secret: EndpointSecret::generate_symmetric(),
    }
}

/// [`new_endpoint`] with its settings changed by `f`.
pub fn new_endpoint_with(url: &str, f: impl FnOnce(&mut EndpointSettings)) -> NewEndpoint {
    let mut ep = new_endpoint(url);
    f(&mut ep.settings);
    ep
}

/// `ep` with its settings changed by `f`, to hand to `update_endpoint`.
pub fn changed(mut ep: Endpoint, f: impl FnOnce(&mut EndpointSettings)) -> Endpoint {
    f(&mut ep.settings);
    ep
}

/// Creates an endpoint and returns its id.
pub async fn endpoint(store: &Arc<dyn Store>, app_id: &AppId, ep: NewEndpoint) -> EndpointId {
    store.create_endpoint(app_id, ep).await.unwrap().id
}

/// A message for `app` (id or uid) whose deliveries are left unclaimed.
pub fn new_msg(app: &str, event_type: &str, payload: &str) -> NewMessage {
    NewMessage {
        app: AppRef(app.to_owned()),
        event_type: et(event_type),
        event_id: None,
        channels: None,
        tags: None,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        only_endpoint: None,
        lease: None,
        payload_retention: None,
    }
}

pub fn event_type(name: &str) -> EventType {
    let now = Utc::now();
    EventType {
        name: et(name),
        description: format!("the {name} event"),
        archived: false,
        deprecated: false,
        schemas: None,
        feature_flags: None,
        group_name: None,
        created_at: now,
        updated_at: now,
    }
}

pub fn page(limit: usize, order: Order) -> PageRequest {
    PageRequest {
        limit,
        iterator: None,
        order,
    }
}

pub fn page_at(limit: usize, order: Order, iterator: &str) -> PageRequest {
    PageRequest {
        limit,
        iterator: Some(iterator.to_owned()),
        order,
    }
}

/// Every message of `app_id` matching `filter`, walking pages of `limit`.
pub async fn all_messages(
    store: &Arc<dyn Store>,
    app_id: &AppId,
    filter: MessageFilter,
    order: Order,
    limit: usize,
) -> Vec<Message> {
    let mut out = Vec::new();
    let mut iterator = None;
    for _ in 0..10_000 {
        let p: Page<Message> = store
            .list_messages(
                app_id,
                filter.clone(),
                PageRequest {
                    limit,
                    iterator: iterator.clone(),
                    order,
                },
            )
            .await
            .unwrap();
        assert!(p.data.len() <= limit, "a page holds more than its limit");
        out.extend(p.data);
        if p.done {
            return out;
        }
        assert!(p.iterator.is_some(), "a page that is not done has no iterator");
        iterator = p.iterator;
    }
    panic!("listing messages never reached done");
}

pub fn msg_ids(msgs: &[Message]) -> Vec<MessageId> {
    msgs.iter().map(|m| m.id.clone()).collect()
}

// ---------- time ----------

/// `t` cut to whole milliseconds: the precision every backend must keep.
pub fn trunc_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t.timestamp_millis()).unwrap()
}

/// Asserts two times agree to the millisecond (allowing for one backend
/// rounding where another truncates).
pub fn assert_ms_eq(a: DateTime<Utc>, b: DateTime<Utc>, what: &str) {
    let diff = (a.timestamp_millis() - b.timestamp_millis()).abs();
    assert!(diff <= 1, "{what}: {a} and {b} differ by {diff} ms");
}

/// Asserts `t` lies in `[from, to]`, give or take a millisecond.
pub fn assert_between(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>, what: &str) {
    assert!(
        t.timestamp_millis() >= from.timestamp_millis() - 1 && t.timestamp_millis() <= to.timestamp_millis() + 1,
        "{what}: {t} is not between {from} and {to}"
    );
}

/// Lets the clock move on by a few milliseconds, so times on either side of
/// a point differ even at millisecond precision.
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Resources with their times cut to milliseconds, for whole-value comparison.
pub trait AtMs {
    fn at_ms(self) -> Self;
}

impl AtMs for Application {
    fn at_ms(mut self) -> Self {
        self.created_at = trunc_ms(self.created_at);
        self.updated_at = trunc_ms(self.updated_at);
        self
    }
}

impl AtMs for Endpoint {
    fn at_ms(mut self) -> Self {
        self.created_at = trunc_ms(self.created_at);
        self.updated_at = trunc_ms(self.updated_at);
        self
    }
}

impl AtMs for EventType {
    fn at_ms(mut self) -> Self {
        self.created_at = trunc_ms(self.created_at);
        self.updated_at = trunc_ms(self.updated_at);
        self
    }
}

impl AtMs for Message {
    fn at_ms(mut self) -> Self {
        self.created_at = trunc_ms(self.created_at);
        self
    }
}

impl AtMs for Attempt {
    fn at_ms(mut self) -> Self {
        self.created_at = trunc_ms(self.created_at);
        self
    }
}

// ---------- the delivery queue ----------

/// Long enough that no claim lapses during a test unless the test means it to.
pub const LONG: Duration = Duration::from_secs(600);

/// A lease for `owner` lasting `ttl` from the database's now.
pub fn lease(owner: &str, ttl: Duration) -> Lease {
    Lease {
        owner: NodeId::new(owner),
        ttl,
    }
}

/// A lease for `owner` that outlasts the test.
pub fn node(owner: &str) -> Lease {
    lease(owner, LONG)
}

/// Claims everything due under `l`, with no byte budget to speak of.
pub async fn claim(s: &Arc<dyn Store>, l: &Lease) -> Vec<DeliveryJob> {
    s.claim_due(l, 10_000, usize::MAX).await.unwrap()
}

/// Claims under `l` until something comes back or `within` has passed.
pub async fn claim_eventually(s: &Arc<dyn Store>, l: &Lease, within: Duration) -> Vec<DeliveryJob> {
    let deadline = Instant::now() + within;
    loop {
        let jobs = claim(s, l).await;
        if !jobs.is_empty() || Instant::now() >= deadline {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

pub fn ids(jobs: &[DeliveryJob]) -> BTreeSet<i64> {
    jobs.iter().map(|j| j.delivery_id).collect()
}

pub fn delivery_ids(ingested: &[Ingested]) -> BTreeSet<i64> {
    ingested
        .iter()
        .flat_map(|i| i.deliveries.iter().map(|d| d.delivery_id))
        .collect()
}

pub fn held(jobs: &[DeliveryJob]) -> Vec<Held> {
    jobs.iter().map(DeliveryJob::held).collect()
}

/// An application with `n` unfiltered endpoints.
pub async fn app_with_endpoints(s: &Arc<dyn Store>, n: usize) -> (AppId, Vec<EndpointId>) {
    let a = app(s, "A").await;
    let mut eps = Vec::new();
    for i in 0..n {
        eps.push(endpoint(s, &a, new_endpoint(&format!("https://{i}.example/hook"))).await);
    }
    (a, eps)
}

/// A message for `a`, born claimed under `lease` when one is given.
pub fn msg(a: &AppId, lease: Option<Lease>) -> NewMessage {
    NewMessage {
        only_endpoint: None,
        lease,
        ..new_msg(a.as_str(), "thing.happened", "{\"k\":1}")
    }
}

/// What an attempt on `job` would record.
pub fn attempt(job: &DeliveryJob, code: u16, number: u32) -> Attempt {
    let success = (200..300).contains(&code);
    Attempt {
        id: AttemptId::new(),
        msg_id: job.msg_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        app_id: job.app_id.clone(),
        url: format!("https://{}.example/hook", job.endpoint_id),
        response_status_code: code,
        response: format!("response {code} to attempt {number}"),
        response_duration_ms: 10 + u64::from(number),
        status: if success {
            DeliveryStatus::Success
        } else {
            DeliveryStatus::Fail
        },
        error_kind: (!success).then_some(AttemptErrorKind::Status),
        trigger_type: TriggerType::Scheduled,
        attempt_number: number,
        created_at: Utc::now(),
    }
}

pub fn outcome(job: &DeliveryJob, attempt: Option<Attempt>, state: DeliveryState) -> Outcome {
    Outcome {
        held: job.held(),
        attempt,
        state,
    }
}

/// Try again `after` this long, handing the claim back.
pub fn retry(after: Duration) -> DeliveryState {
    DeliveryState::Retry {
        after,
        hold: RetryHold::Release,
    }
}

/// Records `outcomes` under `l` and asserts every one was `Done`.
pub async fn record_all(s: &Arc<dyn Store>, l: &Lease, outcomes: Vec<Outcome>) {
    let n = outcomes.len();
    let results = s.record_outcomes(l, outcomes).await.unwrap();
    assert_eq!(
        results,
        vec![LeaseResult::Done; n],
        "recording outcomes held by {}",
        l.owner
    );
}

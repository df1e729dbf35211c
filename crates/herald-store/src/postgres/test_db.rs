//! Throwaway databases for tests: each test that runs against PostgreSQL
//! gets a fresh database of its own on the server that
//! `HERALD_TEST_POSTGRES_URL` names, dropped when the guard is dropped.
//! Under `CI=true` a missing URL fails the test instead of skipping it.

use std::time::Duration;

use tokio_postgres::NoTls;

/// The variable naming the server (any database on it: the tests connect
/// there to create and drop their own).
pub const TEST_URL_VAR: &str = "HERALD_TEST_POSTGRES_URL";

/// A database created for one test and dropped with this guard.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh database, or `None` when no server is configured outside CI.
    ///
    /// # Panics
    /// When `CI=true` and no server is configured, or when the server
    /// cannot be reached or refuses to create the database: a test that
    /// should run on PostgreSQL never passes by skipping.
    pub async fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var(TEST_URL_VAR) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{TEST_URL_VAR} is not set, and under CI=true the PostgreSQL tests must run"
            );
            return None;
        };
        let name = format!("herald_test_{:016x}", rand::random::<u64>());
        let mut url = url::Url::parse(&admin_url).unwrap_or_else(|e| panic!("{TEST_URL_VAR}: {e}"));
        url.set_path(&name);
        let db = Self {
            admin_url,
            name,
            url: url.to_string(),
        };
        db.admin(&format!("CREATE DATABASE {}", db.name)).await;
        Some(db)
    }

    /// [`TestDatabase::create`] for callers outside a runtime (or inside
    /// one that must not be blocked): runs on a thread of its own.
    pub fn create_blocking() -> Option<Self> {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for creating a test database")
                .block_on(Self::create())
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The URL to open the database with (`--database-url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn admin(&self, sql: &str) {
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(&self.admin_url, NoTls))
                .await
                .unwrap_or_else(|_| panic!("connecting to {TEST_URL_VAR} timed out"))
                .unwrap_or_else(|e| panic!("connecting to {TEST_URL_VAR} ({}): {e}", self.admin_url));
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = driver.await;
    }
}

/// Whether `needle` occurs in any row of any table of the database at
/// `url`, as PostgreSQL prints the row (`bytea` as hex, so the hex of
/// `needle` is looked for too): what a test uses to show that a secret is
/// not stored in clear.
///
/// # Panics
/// When the database cannot be read.
pub async fn rows_contain(url: &str, needle: &[u8]) -> bool {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let driver = tokio::spawn(connection);
    let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
    let contains = |hay: &[u8], n: &[u8]| !n.is_empty() && hay.windows(n.len()).any(|w| w == n);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("listing tables: {e}"));
    let mut found = false;
    'tables: for table in tables.iter().map(|r| r.get::<_, String>(0)) {
        let rows = client
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        for row in rows {
            let text: String = row.get(0);
            if contains(text.as_bytes(), needle) || contains(text.as_bytes(), hex.as_bytes()) {
                found = true;
                break 'tables;
            }
        }
    }
    drop(client);
    let _ = driver.await;
    found
}

impl Drop for TestDatabase {
    /// Drops the database, ending whatever connections still use it, on a
    /// thread of its own (a guard may be dropped inside or outside a
    /// runtime). A failure is reported, not raised: the test's own outcome
    /// is what matters.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = self.admin_url.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await?;
                let driver = tokio::spawn(connection);
                let r = client.batch_execute(&sql).await;
                drop(client);
                let _ = driver.await;
                r
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {done:?}", self.name);
        }
    }
}

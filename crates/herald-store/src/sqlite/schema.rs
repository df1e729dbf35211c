//! Connection settings and schema migrations for the SQLite store.

use rusqlite::Connection;

use crate::Result;

/// WAL lets readers run beside the writer; `synchronous=FULL` makes every
/// commit survive a power cut, not only a process crash, which is what our
/// 202 promises.
pub(crate) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;",
    )?;
    Ok(())
}

/// Each entry moves the schema one version forward; applied in order, once.
const MIGRATIONS: &[&str] = &[
    // 1: the core resources, deliveries and attempts.
    "CREATE TABLE application (
        id TEXT PRIMARY KEY,
        uid TEXT UNIQUE,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL,
        throttle_rate INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE endpoint (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        uid TEXT,
        url TEXT NOT NULL,
        description TEXT NOT NULL,
        metadata TEXT NOT NULL,
        disabled INTEGER NOT NULL,
        filter_types TEXT,
        channels TEXT,
        throttle_rate INTEGER,
        headers TEXT NOT NULL,
        timeout_ms INTEGER NOT NULL,
        secret BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX endpoint_app ON endpoint (app_id, id);
    CREATE UNIQUE INDEX endpoint_app_uid ON endpoint (app_id, uid) WHERE uid IS NOT NULL;
    CREATE TABLE event_type (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        archived INTEGER NOT NULL,
        deprecated INTEGER NOT NULL,
        schemas TEXT,
        feature_flags TEXT,
        group_name TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE message (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        event_id TEXT,
        channels TEXT,
        tags TEXT,
        payload BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX message_app ON message (app_id, id);
    CREATE UNIQUE INDEX message_app_event_id ON message (app_id, event_id) WHERE event_id IS NOT NULL;
    -- One row per (message, endpoint). status: 0 success, 1 pending, 2 fail, 4 canceled.
    -- claim_until is set while a node holds the delivery in memory.
    CREATE TABLE delivery (
        id INTEGER PRIMARY KEY,
        msg_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        claim_until INTEGER,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE status = 1 AND claim_until IS NULL;
    CREATE INDEX delivery_claimed ON delivery (claim_until) WHERE claim_until IS NOT NULL;
    CREATE INDEX delivery_msg ON delivery (msg_id);
    CREATE INDEX delivery_endpoint ON delivery (endpoint_id, status);
    CREATE INDEX delivery_app ON delivery (app_id);
    CREATE TABLE attempt (
        id TEXT PRIMARY KEY,
        msg_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        delivery_id INTEGER NOT NULL,
        url TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        response TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        status INTEGER NOT NULL,
        error_kind TEXT,
        trigger_type INTEGER NOT NULL,
        attempt_number INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX attempt_endpoint ON attempt (endpoint_id, id);
    CREATE INDEX attempt_msg ON attempt (msg_id, id);
    CREATE INDEX attempt_app ON attempt (app_id);
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        status INTEGER NOT NULL,
        body BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );",
];

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

//! Connection settings and schema migrations for the SQLite store.

use rusqlite::Connection;

use crate::Result;

/// WAL lets readers run beside the writer; `synchronous=FULL` makes every
/// commit survive a power cut, not only a process crash, which is what our
/// 202 promises. The page cache is 8 MB: writes touch only the right edges of
/// a few B-trees, and a larger cache mostly fills with cold message pages
/// read while claiming a backlog (16 MB cost ~8 MB of RSS in a 1M backlog).
pub(crate) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -8000;",
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
    // 2: fewer B-trees on the hot path. Every lookup of a message or an
    // attempt also names its application, message or endpoint, so the
    // id-only primary-key indexes go (the (app_id, id), (msg_id, id) and
    // (endpoint_id, id) indexes serve them), and so do the app_id indexes
    // on delivery and attempt, which only application deletion used.
    // Each message then writes 9 B-trees instead of 13.
    "CREATE TABLE message2 (
        id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        event_id TEXT,
        channels TEXT,
        tags TEXT,
        payload BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    INSERT INTO message2 (id, app_id, event_type, event_id, channels, tags, payload, created_at)
        SELECT id, app_id, event_type, event_id, channels, tags, payload, created_at FROM message ORDER BY id;
    DROP TABLE message;
    ALTER TABLE message2 RENAME TO message;
    CREATE UNIQUE INDEX message_app ON message (app_id, id);
    CREATE UNIQUE INDEX message_app_event_id ON message (app_id, event_id) WHERE event_id IS NOT NULL;

    CREATE TABLE attempt2 (
        id TEXT NOT NULL,
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
    INSERT INTO attempt2 SELECT id, msg_id, endpoint_id, app_id, delivery_id, url, status_code, response,
        duration_ms, status, error_kind, trigger_type, attempt_number, created_at FROM attempt ORDER BY id;
    DROP TABLE attempt;
    ALTER TABLE attempt2 RENAME TO attempt;
    CREATE INDEX attempt_endpoint ON attempt (endpoint_id, id);
    CREATE INDEX attempt_msg ON attempt (msg_id, id);

    DROP INDEX delivery_app;",
    // 3: payload templates (SPEC §5), and when each delivery was first
    // tried, which templates can show.
    "ALTER TABLE endpoint ADD COLUMN payload_template TEXT;
    ALTER TABLE delivery ADD COLUMN first_attempt_at INTEGER;",
    // 4: owned, fenced leases. `claimed_by` is the owning node, `fence`
    // grows with every new claim so a stale owner's writes match no row;
    // `parked` marks claims an open circuit holds outside memory.
    // Claims from before had no owner: nobody can hold them now (this runs
    // before any engine starts), so they go back to the pool.
    "ALTER TABLE delivery ADD COLUMN claimed_by TEXT;
    ALTER TABLE delivery ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE delivery ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX delivery_parked ON delivery (endpoint_id, next_attempt_at) WHERE status = 1 AND parked = 1;
    UPDATE delivery SET claim_until = NULL WHERE claim_until IS NOT NULL;",
    // 5: retention. `payload_expires_at` is when the payload is expunged
    // (`payloadRetentionPeriod`); messages from before get Svix's default of
    // 90 days. Expunging empties the payload and clears the time, so the
    // partial index holds only payloads still to expunge and the background
    // walks only those that are due. Pruning by age needs no index: the
    // message and idempotency tables are rowid tables, rowids grow with
    // insertion, so walking them in rowid order reaches the oldest rows first
    // and stops at the first one too young (see `retention.rs`).
    "ALTER TABLE message ADD COLUMN payload_expires_at INTEGER;
    UPDATE message SET payload_expires_at = created_at + 7776000000;
    CREATE INDEX message_payload_expiry ON message (payload_expires_at) WHERE payload_expires_at IS NOT NULL;",
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::rows;
    use super::*;

    fn index_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    /// A database written by version 1 keeps every row through migration 2,
    /// and loses only the indexes that migration drops.
    #[test]
    fn version_1_data_survives_migration_2() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("v1.db")).unwrap();
        configure(&conn).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute_batch(
            "INSERT INTO message VALUES ('msg_1', 'app_1', 'a.b', 'ev1', NULL, NULL, X'7B7D', 10);
             INSERT INTO message VALUES ('msg_2', 'app_1', 'a.b', NULL, '[\"c\"]', NULL, X'7B7D', 11);
             INSERT INTO delivery (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, claim_until, updated_at)
                 VALUES ('msg_1', 'ep_1', 'app_1', 1, 0, 10, NULL, 10);
             INSERT INTO attempt VALUES ('atmpt_1', 'msg_1', 'ep_1', 'app_1', 1, 'http://x', 500, 'no', 3, 2, 'status', 0, 1, 12);",
        )
        .unwrap();
        assert!(index_names(&conn).contains(&"delivery_app".to_owned()));

        migrate(&mut conn).unwrap();

        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        type MessageRow = (String, Option<String>, Option<String>, Vec<u8>);
        let messages: Vec<MessageRow> = conn
            .prepare("SELECT id, event_id, channels, payload FROM message ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            messages,
            vec![
                ("msg_1".into(), Some("ev1".into()), None, b"{}".to_vec()),
                ("msg_2".into(), None, Some("[\"c\"]".into()), b"{}".to_vec()),
            ]
        );
        let attempt: (String, i64, String) = conn
            .query_row("SELECT id, status_code, error_kind FROM attempt", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(attempt, ("atmpt_1".into(), 500, "status".into()));
        let deliveries: i64 = conn
            .query_row("SELECT COUNT(*) FROM delivery", [], |r| r.get(0))
            .unwrap();
        assert_eq!(deliveries, 1);

        let indexes = index_names(&conn);
        for gone in [
            "delivery_app",
            "attempt_app",
            "sqlite_autoindex_message_1",
            "sqlite_autoindex_attempt_1",
        ] {
            assert!(
                !indexes.contains(&gone.to_owned()),
                "{gone} should be gone: {indexes:?}"
            );
        }
        for kept in [
            "message_app",
            "message_app_event_id",
            "attempt_endpoint",
            "attempt_msg",
            "delivery_due",
        ] {
            assert!(indexes.contains(&kept.to_owned()), "{kept} missing: {indexes:?}");
        }
        // The event id stays unique within an application.
        let dup = conn.execute(
            "INSERT INTO message (id, app_id, event_type, event_id, channels, tags, payload, created_at) \
             VALUES ('msg_3', 'app_1', 'a.b', 'ev1', NULL, NULL, X'7B7D', 12)",
            [],
        );
        assert!(rows::is_unique_violation(&dup.unwrap_err()));
        // Messages from before migration 5 keep their payload for Svix's default 90 days.
        let expires: i64 = conn
            .query_row("SELECT payload_expires_at FROM message WHERE id = 'msg_1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(expires, 10 + 90 * 86_400_000);
        assert!(index_names(&conn).contains(&"message_payload_expiry".to_owned()));
    }
}

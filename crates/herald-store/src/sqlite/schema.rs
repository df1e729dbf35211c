//! Connection settings and schema migrations for the SQLite store.

use rusqlite::Connection;

use crate::Result;

/// WAL lets readers run beside the writer; `synchronous=FULL` makes every
/// commit survive a power cut, not only a process crash, which is what our
/// 202 promises. The page cache is 8 MB: writes touch only the right edges of
/// a few B-trees, and a larger cache mostly fills with cold message pages
/// read while claiming a backlog (16 MB cost ~8 MB of RSS in a 1M backlog).
/// Prepared statements each connection keeps: every statement the store
/// runs, with room to spare.
const STATEMENT_CACHE: usize = 128;

pub(crate) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    prepare_once(conn)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -8000;",
    )?;
    Ok(())
}

/// Settings every connection, writer or reader, takes so that a cached
/// statement is parsed once: room for every statement the store runs
/// (rusqlite keeps 16 by default, fewer than the writer cycles through),
/// and the query planner's stability guarantee. Without it SQLite
/// re-prepares a statement on every new binding of a parameter compared
/// with a column that a partial index's WHERE mentions (all of the queue's
/// indexes are partial): parsing each claim and each probe again. The
/// plans stay the same: the queue's statements spell the partial indexes'
/// conditions as literals.
pub(crate) fn prepare_once(conn: &Connection) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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
    // 6: an endpoint's settings become one JSON document (the serde shape
    // of `EndpointSettings`), so a new setting needs no column. Only what a
    // query looks up by stays a column: nothing in SQL filters on `disabled`
    // or any other setting (fan-out matches in Rust). `json()` refuses a
    // stored value that is not JSON, failing the migration rather than
    // losing it; `disabled` becomes a JSON boolean, an absent template null.
    // Keep this migration last when merging branches that add others.
    "CREATE TABLE endpoint2 (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        uid TEXT,
        settings TEXT NOT NULL,
        secret BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    INSERT INTO endpoint2 (id, app_id, uid, settings, secret, created_at, updated_at)
        SELECT id, app_id, uid, json_object(
            'url', url,
            'description', description,
            'metadata', json(metadata),
            'disabled', json(CASE WHEN disabled THEN 'true' ELSE 'false' END),
            'filterTypes', json(filter_types),
            'channels', json(channels),
            'throttleRate', throttle_rate,
            'headers', json(headers),
            'timeoutMs', timeout_ms,
            'payloadTemplate', payload_template
        ), secret, created_at, updated_at FROM endpoint ORDER BY id;
    DROP TABLE endpoint;
    ALTER TABLE endpoint2 RENAME TO endpoint;
    CREATE INDEX endpoint_app ON endpoint (app_id, id);
    CREATE UNIQUE INDEX endpoint_app_uid ON endpoint (app_id, uid) WHERE uid IS NOT NULL;",
    // 7: the Svix API's remaining state. Secrets a rotation replaced keep
    // signing until `expires_at` (sealed like the current one); background
    // tasks (recover, replay-missing) report their state; app-scoped API
    // tokens are kept as SHA-256 digests only, never the token; a saved
    // idempotent response keeps a digest of its request, so the same key
    // with another body is refused rather than answered with the first.
    "CREATE TABLE endpoint_retired_secret (
        endpoint_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        secret BLOB NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX endpoint_retired_secret_ep ON endpoint_retired_secret (endpoint_id, expires_at);
    CREATE TABLE background_task (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX background_task_app ON background_task (app_id, id);
    CREATE TABLE api_token (
        id TEXT PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        app_id TEXT NOT NULL,
        expires_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX api_token_app ON api_token (app_id);
    ALTER TABLE idempotency ADD COLUMN request_digest BLOB;",
    // 8: a delivery whose next attempt was asked for by hand (resend,
    // recover, replay-missing): that attempt is recorded as manual, as Svix
    // records it; its retries after are scheduled again. Expired tokens are
    // found by expiry for the retention task.
    "ALTER TABLE delivery ADD COLUMN manual INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX api_token_expiry ON api_token (expires_at) WHERE expires_at IS NOT NULL;",
    // 9: what an app-scoped token may do (Svix's `readOnly` and
    // `capabilities`). Tokens made before kept every right, and keep it:
    // `capabilities` NULL is no list (everything), otherwise the names
    // separated by commas.
    "ALTER TABLE api_token ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE api_token ADD COLUMN capabilities TEXT;",
    // 10: an endpoint's failure streak, for its disable rule: a row only
    // while it is failing (from its first failed attempt after a success),
    // so a healthy endpoint costs nothing and the streak survives restarts.
    "CREATE TABLE endpoint_health (
        endpoint_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        failing_since INTEGER NOT NULL,
        failed_messages INTEGER NOT NULL
    );
    CREATE INDEX endpoint_health_app ON endpoint_health (app_id);",
    // 11: the secret halves of an endpoint's credentials (the `basicAuth`
    // password, the `verifyToken` token), sealed with the key that seals
    // its secret, as one JSON document (`SecretParts`); NULL when it has
    // none. The rest of those settings (username, pointer) stay in
    // `settings`, which is plain text.
    "ALTER TABLE endpoint ADD COLUMN credentials BLOB;",
    // 12: ordered (`fifo`) endpoints. Their pending deliveries leave the due
    // index the loader walks and are handed out in id order from an index
    // of their own, so a large ordered backlog costs the loader nothing.
    "ALTER TABLE delivery ADD COLUMN fifo INTEGER NOT NULL DEFAULT 0;
    DROP INDEX delivery_due;
    CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE status = 1 AND claim_until IS NULL AND fifo = 0;
    CREATE INDEX delivery_fifo ON delivery (endpoint_id, id) WHERE status = 1 AND fifo = 1;",
    // 13: the node that runs a background task, so a node starting up fails
    // only the tasks its own previous run left running, never those another
    // live node sharing the database is running. Tasks from before have no
    // node (NULL): every node's start fails those still running, as any
    // start did before, when only one node could have been running them.
    // Running tasks have an index of their own, so a start reads only them.
    "ALTER TABLE background_task ADD COLUMN node TEXT;
    CREATE INDEX background_task_running ON background_task (node) WHERE status = 'running';",
    // 14: endpoint holds, as on PostgreSQL (`DeliveryQueue::hold_endpoints`):
    // one node serves a database file, but the queue's contract is the
    // multi-node one on both stores.
    "CREATE TABLE endpoint_hold (
        endpoint_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until INTEGER NOT NULL
    ) WITHOUT ROWID;",
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
#[path = "schema_tests.rs"]
mod tests;

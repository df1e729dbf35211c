//! Schema migrations for the PostgreSQL store, applied at start and by
//! `herald migrate`. Nodes starting together take turns on an advisory
//! lock, so each migration runs once and nobody serves a half-migrated
//! schema.

use tokio_postgres::NoTls;

use crate::Result;

/// The advisory lock key migrations hold: "herald" in ASCII. Any constant
/// works as long as every node uses the same one.
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64;

/// Each entry moves the schema one version forward; applied in order, once,
/// each in its own transaction with its version row.
///
/// Times are Unix milliseconds (`BIGINT`), as in the SQLite store, so both
/// compare lease expiry and due times the same way. Every integer is a
/// `BIGINT` (an `i64` in Rust); flags are `BOOLEAN`. Text compares
/// byte-wise (`COLLATE "C"`), as in SQLite, whatever the database's
/// collation: ids order by age and pages walk them by index.
const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store reached in its twelve migrations.
    r#"CREATE FUNCTION herald_now_ms() RETURNS BIGINT
        LANGUAGE sql VOLATILE
        AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

    CREATE TABLE application (
        id TEXT COLLATE "C" PRIMARY KEY,
        uid TEXT COLLATE "C" UNIQUE,
        name TEXT COLLATE "C" NOT NULL,
        metadata TEXT COLLATE "C" NOT NULL,
        throttle_rate BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );

    -- Settings are one JSON document (the serde shape of EndpointSettings);
    -- only what a query looks up by is a column. The secret and the secret
    -- halves of credentials are sealed with the node's encryption key.
    CREATE TABLE endpoint (
        id TEXT COLLATE "C" PRIMARY KEY,
        app_id TEXT COLLATE "C" NOT NULL,
        uid TEXT COLLATE "C",
        settings TEXT COLLATE "C" NOT NULL,
        secret BYTEA NOT NULL,
        credentials BYTEA,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX endpoint_app ON endpoint (app_id, id);
    CREATE UNIQUE INDEX endpoint_app_uid ON endpoint (app_id, uid) WHERE uid IS NOT NULL;

    CREATE TABLE endpoint_retired_secret (
        endpoint_id TEXT COLLATE "C" NOT NULL,
        app_id TEXT COLLATE "C" NOT NULL,
        secret BYTEA NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX endpoint_retired_secret_ep ON endpoint_retired_secret (endpoint_id, expires_at);

    CREATE TABLE endpoint_health (
        endpoint_id TEXT COLLATE "C" PRIMARY KEY,
        app_id TEXT COLLATE "C" NOT NULL,
        failing_since BIGINT NOT NULL,
        failed_messages BIGINT NOT NULL
    );
    CREATE INDEX endpoint_health_app ON endpoint_health (app_id);

    CREATE TABLE event_type (
        name TEXT COLLATE "C" PRIMARY KEY,
        description TEXT COLLATE "C" NOT NULL,
        archived BOOLEAN NOT NULL,
        deprecated BOOLEAN NOT NULL,
        schemas TEXT COLLATE "C",
        feature_flags TEXT COLLATE "C",
        group_name TEXT COLLATE "C",
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );

    -- Retention walks messages by age, oldest first from a created_at, a
    -- batch at a time: a b-tree on (created_at, id) hands them out in that
    -- order and stops where asked (a BRIN index cannot: it answers with
    -- every block in the range, to read and sort whole). Rows arrive in
    -- time order, so its inserts go to the right edge. payload_expires_at
    -- is set only for a message with its own payloadRetentionPeriod.
    CREATE TABLE message (
        id TEXT COLLATE "C" NOT NULL,
        app_id TEXT COLLATE "C" NOT NULL,
        event_type TEXT COLLATE "C" NOT NULL,
        event_id TEXT COLLATE "C",
        channels TEXT COLLATE "C",
        tags TEXT COLLATE "C",
        payload BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        payload_expires_at BIGINT,
        PRIMARY KEY (app_id, id)
    );
    CREATE UNIQUE INDEX message_app_event_id ON message (app_id, event_id) WHERE event_id IS NOT NULL;
    CREATE INDEX message_created ON message (created_at, id);
    CREATE INDEX message_payload_expiry ON message (payload_expires_at) WHERE payload_expires_at IS NOT NULL;

    -- One row per (message, endpoint). status: 0 success, 1 pending, 2 fail,
    -- 4 canceled. A claim is claimed_by (the owning node) until claim_until
    -- (by the database's clock); fence grows with every new claim, so a
    -- stale owner's writes match no row. parked: an open circuit holds the
    -- claim outside memory. fifo: the endpoint is ordered, and its
    -- deliveries are handed out in id order, never by the due index.
    CREATE TABLE delivery (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        msg_id TEXT COLLATE "C" NOT NULL,
        endpoint_id TEXT COLLATE "C" NOT NULL,
        app_id TEXT COLLATE "C" NOT NULL,
        status BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        claim_until BIGINT,
        claimed_by TEXT COLLATE "C",
        fence BIGINT NOT NULL DEFAULT 0,
        parked BOOLEAN NOT NULL DEFAULT FALSE,
        manual BOOLEAN NOT NULL DEFAULT FALSE,
        fifo BOOLEAN NOT NULL DEFAULT FALSE,
        first_attempt_at BIGINT,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE status = 1 AND claim_until IS NULL AND NOT fifo;
    CREATE INDEX delivery_claimed ON delivery (claim_until) WHERE claim_until IS NOT NULL;
    CREATE INDEX delivery_msg ON delivery (msg_id);
    CREATE INDEX delivery_endpoint ON delivery (endpoint_id, status);
    CREATE INDEX delivery_parked ON delivery (endpoint_id, next_attempt_at) WHERE status = 1 AND parked;
    CREATE INDEX delivery_fifo ON delivery (endpoint_id, id) WHERE status = 1 AND fifo;

    CREATE TABLE attempt (
        id TEXT COLLATE "C" NOT NULL,
        msg_id TEXT COLLATE "C" NOT NULL,
        endpoint_id TEXT COLLATE "C" NOT NULL,
        app_id TEXT COLLATE "C" NOT NULL,
        delivery_id BIGINT NOT NULL,
        url TEXT COLLATE "C" NOT NULL,
        status_code BIGINT NOT NULL,
        -- bytes: a response body may hold NUL, which text cannot.
        response BYTEA NOT NULL,
        duration_ms BIGINT NOT NULL,
        status BIGINT NOT NULL,
        error_kind TEXT COLLATE "C",
        trigger_type BIGINT NOT NULL,
        attempt_number BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX attempt_endpoint ON attempt (endpoint_id, id);
    CREATE INDEX attempt_msg ON attempt (msg_id, id);

    CREATE TABLE idempotency (
        key TEXT COLLATE "C" PRIMARY KEY,
        status BIGINT NOT NULL,
        body BYTEA NOT NULL,
        request_digest BYTEA,
        created_at BIGINT NOT NULL
    );
    -- Pruned oldest first, a batch at a time (see message_created).
    CREATE INDEX idempotency_created ON idempotency (created_at);

    CREATE TABLE background_task (
        id TEXT COLLATE "C" PRIMARY KEY,
        app_id TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        data TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX background_task_app ON background_task (app_id, id);

    -- App-scoped tokens, kept as SHA-256 digests only. capabilities NULL is
    -- no list (every right), otherwise the names separated by commas.
    CREATE TABLE api_token (
        id TEXT COLLATE "C" PRIMARY KEY,
        digest BYTEA NOT NULL UNIQUE,
        app_id TEXT COLLATE "C" NOT NULL,
        expires_at BIGINT,
        read_only BOOLEAN NOT NULL DEFAULT FALSE,
        capabilities TEXT COLLATE "C",
        created_at BIGINT NOT NULL
    );
    CREATE INDEX api_token_app ON api_token (app_id);
    CREATE INDEX api_token_expiry ON api_token (expires_at) WHERE expires_at IS NOT NULL;"#,
    // 2: the node that runs a background task (SQLite's 13), so a node
    // starting up fails only the tasks its own previous run left running,
    // never those another live node is running. Tasks from before have no
    // node (NULL) and every node's start fails those still running, as any
    // start did before: after the upgrade nobody else will. In a rolling
    // upgrade an old node may still be running one; it is shown failed until
    // that node finishes it, since finishing writes the end state whatever
    // the row says. Running tasks have an index of their own, so a start
    // reads only them.
    r#"ALTER TABLE background_task ADD COLUMN node TEXT COLLATE "C";
    CREATE INDEX background_task_running ON background_task (node) WHERE status = 'running';"#,
    // 3: endpoint holds. An endpoint whose policy must hold across nodes (a
    // rateLimit, an open circuit) is sent to by the node holding it, until
    // `until` by the database's clock. No foreign key: a deleted endpoint's
    // hold lapses, and releases prune lapsed rows.
    r#"CREATE TABLE endpoint_hold (
        endpoint_id TEXT COLLATE "C" PRIMARY KEY,
        owner TEXT COLLATE "C" NOT NULL,
        until BIGINT NOT NULL
    );"#,
];

/// The schema version this build applies up to.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Applies every migration not yet applied, on a connection of its own that
/// holds the advisory lock for the whole run.
pub(crate) async fn migrate(config: &tokio_postgres::Config) -> Result<()> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });
    let result = migrate_locked(&mut client).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = apply(client).await;
    // Unlocked explicitly so that an error leaves the lock free for the next
    // node at once; closing the connection would free it too.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    applied?;
    unlocked?;
    Ok(())
}

async fn apply(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS herald_schema (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await?;
    let current: i64 = client
        .query_one("SELECT COALESCE(max(version), 0) FROM herald_schema", &[])
        .await?
        .get(0);
    if current > LATEST {
        // A rolling upgrade migrates first, then replaces nodes one by one:
        // an old node restarting meanwhile must still start. Migrations only
        // add (columns with defaults, tables, indexes), so it can.
        tracing::warn!(
            schema = current,
            build = LATEST,
            "the database's schema is newer than this build knows; finish upgrading the nodes"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i as i64 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO herald_schema (version) VALUES ($1)", &[&version])
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

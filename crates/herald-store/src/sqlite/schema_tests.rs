//! The migrations' tests: upgrades keep rows, indexes and plans as the
//! queue expects.

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

/// A database written by version 4 (endpoint settings in columns) keeps
/// every endpoint value once settings become one JSON document.
#[test]
fn version_4_endpoints_keep_every_setting_in_the_settings_document() {
    use std::time::Duration;

    use herald_core::model::{DEFAULT_ENDPOINT_TIMEOUT, Metadata};

    use crate::sqlite::rows::{EP_COLS, EP_SECRET_COL, ep_row};

    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("v4.db")).unwrap();
    configure(&conn).unwrap();
    // The migrations as they stood when settings were columns; any
    // added since (whatever their number) run in `migrate` below.
    for sql in &MIGRATIONS[..4] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 4").unwrap();
    conn.execute_batch(
        r#"INSERT INTO endpoint (id, app_id, uid, url, description, metadata, disabled, filter_types, channels,
               throttle_rate, headers, timeout_ms, secret, created_at, updated_at, payload_template)
           VALUES ('ep_1', 'app_1', 'billing', 'https://a.example.com/h', 'billing hooks', '{"owner":"team-a"}',
               1, '["invoice.paid","user.created"]', '["eu"]', 25, '{"x-custom":"yes"}', 2500, X'0102',
               10, 20, '{"id": "{{msg.id}}"}');
           INSERT INTO endpoint (id, app_id, uid, url, description, metadata, disabled, filter_types, channels,
               throttle_rate, headers, timeout_ms, secret, created_at, updated_at, payload_template)
           VALUES ('ep_2', 'app_1', NULL, 'https://b.example.com/', '', '{}', 0, NULL, NULL, NULL, '{}',
               15000, X'03', 11, 12, NULL);"#,
    )
    .unwrap();

    migrate(&mut conn).unwrap();
    let key = crate::EncryptionKey::generate();

    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let rows: Vec<(herald_core::model::Endpoint, Vec<u8>)> = conn
        .prepare(&format!("SELECT {EP_COLS}, secret FROM endpoint ORDER BY id"))
        .unwrap()
        .query_map([], |r| Ok((ep_row(r, &key)?, r.get(EP_SECRET_COL)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 2);

    let (full, secret) = &rows[0];
    assert_eq!(secret, &vec![1u8, 2]);
    assert_eq!((full.id.as_str(), full.app_id.as_str()), ("ep_1", "app_1"));
    assert_eq!(full.uid.as_ref().map(|u| u.as_str()), Some("billing"));
    assert_eq!(
        (full.created_at.timestamp_millis(), full.updated_at.timestamp_millis()),
        (10, 20)
    );
    let s = &full.settings;
    assert_eq!(s.url.as_str(), "https://a.example.com/h");
    assert_eq!(s.description, "billing hooks");
    assert_eq!(s.metadata, Metadata::from([("owner".to_owned(), "team-a".to_owned())]));
    assert!(s.disabled);
    assert_eq!(
        s.filter_types
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["invoice.paid", "user.created"]
    );
    assert_eq!(
        s.channels
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["eu"]
    );
    assert_eq!(s.throttle_rate, Some(25));
    assert_eq!(s.headers.get("x-custom").map(String::as_str), Some("yes"));
    assert_eq!(s.timeout, Duration::from_millis(2500));
    assert_eq!(
        s.payload_template.as_ref().map(|t| t.source()),
        Some(r#"{"id": "{{msg.id}}"}"#)
    );

    let (bare, secret) = &rows[1];
    assert_eq!(secret, &vec![3u8]);
    assert_eq!(bare.uid, None);
    let s = &bare.settings;
    assert_eq!((s.url.as_str(), s.description.as_str()), ("https://b.example.com/", ""));
    assert!(!s.disabled && s.metadata.is_empty() && s.headers.is_empty());
    assert_eq!((&s.filter_types, &s.channels, s.throttle_rate), (&None, &None, None));
    assert_eq!(s.timeout, DEFAULT_ENDPOINT_TIMEOUT);
    assert_eq!(s.payload_template, None);

    let indexes = index_names(&conn);
    for kept in ["endpoint_app", "endpoint_app_uid"] {
        assert!(indexes.contains(&kept.to_owned()), "{kept} missing: {indexes:?}");
    }
    // The uid stays unique within an application.
    let dup = conn.execute(
        "INSERT INTO endpoint (id, app_id, uid, settings, secret, created_at, updated_at) \
         VALUES ('ep_3', 'app_1', 'billing', '{}', X'00', 1, 1)",
        [],
    );
    assert!(dup.is_err());
}

/// Endpoints from before migration 11 have no credentials and load as
/// before; settings that name a password with nothing sealed beside them
/// are an error, never an endpoint sent without it.
#[test]
fn version_10_endpoints_load_with_no_credentials_through_migration_11() {
    use crate::sqlite::rows::{EP_COLS, ep_row};

    let mut conn = Connection::open_in_memory().unwrap();
    for sql in &MIGRATIONS[..10] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(
        r#"PRAGMA user_version = 10;
           INSERT INTO endpoint (id, app_id, uid, settings, secret, created_at, updated_at) VALUES
               ('ep_1', 'app_1', NULL, '{"url":"https://a.example.com/","description":"","metadata":{},
                 "disabled":false,"filterTypes":null,"channels":null,"throttleRate":null,"headers":{},
                 "timeoutMs":1000,"payloadTemplate":null}', X'00', 1, 1);"#,
    )
    .unwrap();
    migrate(&mut conn).unwrap();
    let key = crate::EncryptionKey::generate();
    let select = format!("SELECT {EP_COLS} FROM endpoint");
    let ep = conn.query_row(&select, [], |r| ep_row(r, &key)).unwrap();
    assert_eq!(ep.settings.basic_auth, None);
    assert_eq!(ep.settings.verify_token, None);
    assert!(ep.settings.body_encoding.is_json());

    conn.execute_batch(
        r#"UPDATE endpoint SET settings = json_set(settings, '$.basicAuth', json('{"username":"u"}'));"#,
    )
    .unwrap();
    assert!(
        conn.query_row(&select, [], |r| ep_row(r, &key)).is_err(),
        "a basicAuth with no sealed password does not load"
    );
}

/// A token made before migration 9 keeps every right it had: no list,
/// not read-only.
#[test]
fn version_8_tokens_keep_full_rights_through_migration_9() {
    let mut conn = Connection::open_in_memory().unwrap();
    for sql in &MIGRATIONS[..8] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(
        "PRAGMA user_version = 8;
         INSERT INTO api_token (id, digest, app_id, expires_at, created_at) VALUES ('tok_1', X'01', 'app_1', NULL, 1);",
    )
    .unwrap();
    migrate(&mut conn).unwrap();
    let (read_only, caps): (bool, Option<String>) = conn
        .query_row("SELECT read_only, capabilities FROM api_token", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((read_only, caps), (false, None));
}

/// Tasks from before migration 13 name no node: a running one is failed by
/// whichever node starts first (one node at most could have run it), a
/// finished one keeps its state, and the start reads only running tasks.
#[test]
fn version_12_running_tasks_are_failed_by_any_node_after_migration_13() {
    use super::super::tasks::FAIL_INTERRUPTED;

    let mut conn = Connection::open_in_memory().unwrap();
    for sql in &MIGRATIONS[..12] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(
        r#"PRAGMA user_version = 12;
           INSERT INTO background_task VALUES ('qtask_1', 'app_1', 'endpoint.recover', 'running', '{}', 1, 1);
           INSERT INTO background_task VALUES ('qtask_2', 'app_1', 'endpoint.replay', 'finished', '{"messagesSent":1}', 1, 2);"#,
    )
    .unwrap();
    migrate(&mut conn).unwrap();
    let nodes: Vec<Option<String>> = conn
        .prepare("SELECT node FROM background_task ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(nodes, [None, None]);

    let failed = conn.execute(FAIL_INTERRUPTED, rusqlite::params![5, "node-a"]).unwrap();
    assert_eq!(failed, 1);
    let states: Vec<(String, String, i64)> = conn
        .prepare("SELECT status, data, updated_at FROM background_task ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        states,
        [
            (
                "failed".to_owned(),
                r#"{"error":"interrupted by a restart"}"#.to_owned(),
                5
            ),
            ("finished".to_owned(), r#"{"messagesSent":1}"#.to_owned(), 2),
        ]
    );

    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {FAIL_INTERRUPTED}"))
        .unwrap()
        .query_map(rusqlite::params![0, "node-a"], |r| r.get(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        plan.iter()
            .all(|l| !l.contains("SCAN background_task") || l.contains("background_task_running")),
        "{plan:?}"
    );
    assert!(plan.iter().any(|l| l.contains("background_task_running")), "{plan:?}");
}

/// A stored value that is not JSON stops the migration instead of being
/// carried over as something else.
#[test]
fn endpoint_settings_migration_refuses_bad_json() {
    let mut conn = Connection::open_in_memory().unwrap();
    for sql in &MIGRATIONS[..4] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(
        "PRAGMA user_version = 4;
         INSERT INTO endpoint (id, app_id, uid, url, description, metadata, disabled, filter_types, channels,
             throttle_rate, headers, timeout_ms, secret, created_at, updated_at, payload_template)
         VALUES ('ep_1', 'app_1', NULL, 'https://a.example.com/', '', 'not json', 0, NULL, NULL, NULL, '{}',
             1000, X'00', 1, 1, NULL);",
    )
    .unwrap();
    assert!(migrate(&mut conn).is_err());
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM endpoint WHERE metadata = 'not json'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(count, 1, "the failed migration rolled back");
}

/// The backlog gauge walks the partial indexes of pending rows (due,
/// ordered, claimed), never the whole table (which holds every finished
/// delivery too).
#[test]
fn the_backlog_count_reads_only_partial_indexes() {
    let plan = plan_of(super::super::queue::BACKLOG);
    let reads: Vec<&String> = plan.iter().filter(|l| l.contains("delivery")).collect();
    assert_eq!(reads.len(), 3, "{plan:?}");
    assert!(reads[0].contains("INDEX delivery_due"), "{plan:?}");
    assert!(reads[1].contains("INDEX delivery_fifo"), "{plan:?}");
    assert!(reads[2].contains("INDEX delivery_claimed"), "{plan:?}");
}

/// The queue's statements compare parameters with columns that partial
/// indexes mention; SQLite would parse them again for every new
/// binding unless the connection asks for stable plans.
#[test]
fn queue_statements_are_prepared_once_for_any_binding() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("q.db")).unwrap();
    configure(&conn).unwrap();
    migrate(&mut conn).unwrap();
    let statements = [
        "SELECT id, next_attempt_at FROM delivery WHERE status = 1 AND claim_until IS NULL AND fifo = 0 \
         AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2",
        "SELECT id, next_attempt_at, claimed_by, claim_until FROM delivery \
         WHERE endpoint_id = ?1 AND status = 1 AND fifo = 1 ORDER BY id",
        "SELECT id, fence, claim_until FROM delivery WHERE endpoint_id = ?1 AND status = 1 AND parked = 1 \
         AND next_attempt_at <= ?2 AND claimed_by = ?3 ORDER BY next_attempt_at LIMIT ?4",
    ];
    for sql in statements {
        let mut stmt = conn.prepare(sql).unwrap();
        for i in 0..5i64 {
            let values: Vec<i64> = (0..stmt.parameter_count() as i64).map(|k| k + i).collect();
            let mut rows = stmt.query(rusqlite::params_from_iter(values)).unwrap();
            while rows.next().unwrap().is_some() {}
        }
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "re-prepared: {sql}"
        );
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {sql}"),
                rusqlite::params_from_iter(0..stmt.parameter_count() as i64),
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("USING INDEX delivery_"), "no partial index used: {plan}");
    }
}

/// Finding the ordered endpoints' heads probes `delivery_fifo` per
/// endpoint; it never walks the table.
#[test]
fn the_ordered_heads_are_found_through_their_index() {
    let plan = plan_of(super::super::fifo::HEADS);
    let reads: Vec<&String> = plan.iter().filter(|l| l.contains(" delivery")).collect();
    assert!(!reads.is_empty(), "{plan:?}");
    for read in reads {
        assert!(
            read.contains("INDEX delivery_fifo") || read.contains("INTEGER PRIMARY KEY"),
            "{plan:?}"
        );
    }
}

/// The query plan's lines for `sql` on a freshly migrated database.
fn plan_of(sql: &str) -> Vec<String> {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate(&mut conn).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map([], |r| r.get(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

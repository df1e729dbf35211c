//! The listener's history: one SQLite file (`--db`), so requests survive a
//! restart. This is a local tool's own file, not the server's database, so
//! it lives here rather than in herald-store (see ARCHITECTURE.md).
//!
//! At most `max_requests` rows are kept: each insert prunes the oldest
//! beyond that. Calls run on the blocking pool, one at a time on one
//! connection; a listener's traffic is one developer's.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::record::{ForwardResult, Incoming, Source, Stored, Verification, decode_headers, encode_headers};

/// Bumped with each change to the schema; a file from a newer listener is
/// refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the history file was written by a newer herald (schema {found}, this one knows {SCHEMA_VERSION})")]
    NewerSchema { found: i64 },
    #[error("stored request {id} is malformed: {what}")]
    Corrupt { id: i64, what: &'static str },
    #[error("the history task failed: {0}")]
    Task(String),
}

#[derive(Clone)]
pub struct History {
    conn: Arc<Mutex<Connection>>,
    max_requests: usize,
}

impl History {
    pub fn open(path: &Path, max_requests: usize) -> Result<Self, HistoryError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A developer's history: losing the last write in a power cut is fine.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(HistoryError::NewerSchema { found });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS request (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                received_at TEXT NOT NULL,
                source TEXT NOT NULL,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                query TEXT NOT NULL,
                headers BLOB NOT NULL,
                body BLOB NOT NULL,
                verified INTEGER,
                verify_error TEXT,
                forward TEXT,
                replays INTEGER NOT NULL DEFAULT 0
            );",
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            max_requests: max_requests.max(1),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| HistoryError::Task("lock poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| HistoryError::Task(e.to_string()))?
    }

    /// Stores a request and prunes the oldest beyond the cap; returns it as stored.
    pub async fn insert(
        &self,
        request: Incoming,
        verification: Verification,
        received_at: String,
    ) -> Result<Stored, HistoryError> {
        let max = self.max_requests as i64;
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO request (received_at, source, method, path, query, headers, body, verified, verify_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    received_at,
                    request.source.as_str(),
                    request.method,
                    request.path,
                    request.query,
                    encode_headers(&request.headers),
                    request.body.as_ref(),
                    verification.verified(),
                    verification.error(),
                ],
            )?;
            let id = conn.last_insert_rowid();
            conn.execute("DELETE FROM request WHERE id <= ?1", params![id - max])?;
            Ok(Stored {
                id,
                received_at,
                request,
                verification,
                forward: None,
                replays: 0,
            })
        })
        .await
    }

    /// Records the target's answer; a replay also counts one more replay.
    pub async fn set_forward(&self, id: i64, result: ForwardResult, replay: bool) -> Result<(), HistoryError> {
        let json = serde_json::to_string(&result).map_err(|_| HistoryError::Corrupt {
            id,
            what: "forward result does not serialize",
        })?;
        self.run(move |conn| {
            conn.execute(
                "UPDATE request SET forward = ?2, replays = replays + ?3 WHERE id = ?1",
                params![id, json, i64::from(replay)],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, id: i64) -> Result<Option<Stored>, HistoryError> {
        self.run(move |conn| {
            conn.query_row(&format!("{SELECT} WHERE id = ?1"), params![id], row)
                .optional()?
                .transpose()
        })
        .await
    }

    /// The newest `limit` requests, newest first; with `before`, those older
    /// than that id (the next page).
    pub async fn list(&self, limit: usize, before: Option<i64>) -> Result<Vec<Stored>, HistoryError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare(&format!("{SELECT} WHERE id < ?1 ORDER BY id DESC LIMIT ?2"))?;
            let rows = stmt.query_map(params![before.unwrap_or(i64::MAX), limit as i64], row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }
}

const SELECT: &str = "SELECT id, received_at, source, method, path, query, headers, body, verified, verify_error, \
                      forward, replays FROM request";

/// One row back into a [`Stored`]; a value this code never writes is an
/// error, never a default.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Stored, HistoryError>> {
    let id: i64 = r.get(0)?;
    let corrupt = |what| Err(HistoryError::Corrupt { id, what });
    let source: String = r.get(2)?;
    let Some(source) = Source::parse(&source) else {
        return Ok(corrupt("unknown source"));
    };
    let headers: Vec<u8> = r.get(6)?;
    let Some(headers) = decode_headers(&headers) else {
        return Ok(corrupt("headers"));
    };
    let body: Vec<u8> = r.get(7)?;
    let verified: Option<bool> = r.get(8)?;
    let verify_error: Option<String> = r.get(9)?;
    let verification = match (verified, verify_error) {
        (None, None) => Verification::Unchecked,
        (Some(true), None) => Verification::Verified,
        (Some(false), Some(reason)) => Verification::Failed(reason),
        _ => return Ok(corrupt("verification")),
    };
    let forward: Option<String> = r.get(10)?;
    let forward = match forward.map(|f| serde_json::from_str::<ForwardResult>(&f)).transpose() {
        Ok(f) => f,
        Err(_) => return Ok(corrupt("forward result")),
    };
    let replays: i64 = r.get(11)?;
    Ok(Ok(Stored {
        id,
        received_at: r.get(1)?,
        request: Incoming {
            method: r.get(3)?,
            path: r.get(4)?,
            query: r.get(5)?,
            headers,
            body: body.into(),
            source,
        },
        verification,
        forward,
        replays: u32::try_from(replays).unwrap_or(u32::MAX),
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};

    use super::*;

    fn incoming(path: &str) -> Incoming {
        Incoming {
            method: "POST".into(),
            path: path.into(),
            query: "a=1".into(),
            headers: vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("1"))],
            body: bytes::Bytes::from_static(b"\x00\xffbody"),
            source: Source::Local,
        }
    }

    #[tokio::test]
    async fn requests_survive_reopening_and_the_oldest_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let h = History::open(&path, 3).unwrap();
            for i in 0..5 {
                let v = if i % 2 == 0 {
                    Verification::Verified
                } else {
                    Verification::Failed("no signature in the webhook-signature header matches".into())
                };
                h.insert(incoming(&format!("/p{i}")), v, format!("t{i}")).await.unwrap();
            }
        }
        let h = History::open(&path, 3).unwrap();
        let all = h.list(10, None).await.unwrap();
        let paths: Vec<_> = all.iter().map(|s| s.request.path.as_str()).collect();
        assert_eq!(paths, ["/p4", "/p3", "/p2"], "newest first, oldest pruned");
        assert_eq!(all[0].request.body.as_ref(), b"\x00\xffbody");
        assert_eq!(all[1].verification.verified(), Some(false));
        let page = h.list(10, Some(all[1].id)).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].request.path, "/p2");
    }

    #[tokio::test]
    async fn a_forward_result_is_kept_and_replays_counted() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db"), 10).unwrap();
        let s = h
            .insert(incoming("/x"), Verification::Unchecked, "t".into())
            .await
            .unwrap();
        let result = ForwardResult {
            url: "http://127.0.0.1:1/x".into(),
            at: "t".into(),
            duration_ms: 3,
            status: Some(204),
            headers: vec![],
            body: String::new(),
            error: None,
        };
        h.set_forward(s.id, result.clone(), false).await.unwrap();
        h.set_forward(s.id, result.clone(), true).await.unwrap();
        let got = h.get(s.id).await.unwrap().unwrap();
        assert_eq!(got.forward, Some(result));
        assert_eq!(got.replays, 1);
        assert!(h.get(s.id + 1).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            History::open(&path, 1),
            Err(HistoryError::NewerSchema { found: 99 })
        ));
    }
}

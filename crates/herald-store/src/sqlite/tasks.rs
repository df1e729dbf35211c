//! Background task rows.

use herald_core::{AppId, TaskId};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::paging::{Filter, Listing, paginate};
use super::rows::{from_ms, time_at, to_json};
use crate::{NodeId, Page, PageRequest, Result, StoreError, Task, TaskKind, TaskStatus, TaskStore};

const TASK_COLS: &str = "id, app_id, kind, status, data, created_at, updated_at";
const TASKS: Listing = Listing {
    cols: TASK_COLS,
    from: "background_task",
    key: "id",
};

/// Fails one node's running tasks (`?2`) at time `?1`. `node IS NULL`: a
/// task running since before tasks named their node (migration 13), when one
/// node at most could have been running it.
pub(crate) const FAIL_INTERRUPTED: &str = "UPDATE background_task SET status = 'failed', \
     data = json_object('error', 'interrupted by a restart'), updated_at = ?1 \
     WHERE status = 'running' AND (node = ?2 OR node IS NULL)";

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, what.to_owned().into())
}

fn task_row(r: &Row) -> rusqlite::Result<Task> {
    let kind: String = r.get(2)?;
    let status: String = r.get(3)?;
    let data: String = r.get(4)?;
    Ok(Task {
        id: TaskId::from_trusted(r.get(0)?),
        app_id: AppId::from_trusted(r.get(1)?),
        kind: TaskKind::parse(&kind).ok_or_else(|| bad(2, "unknown task kind"))?,
        status: TaskStatus::parse(&status).ok_or_else(|| bad(3, "unknown task status"))?,
        data: serde_json::from_str(&data).map_err(|_| bad(4, "task data is not JSON"))?,
        created_at: time_at(r, 5)?,
        updated_at: time_at(r, 6)?,
    })
}

fn select_task(c: &rusqlite::Connection, id: &str) -> Result<Task> {
    c.prepare_cached(&format!("SELECT {TASK_COLS} FROM background_task WHERE id = ?1"))?
        .query_row([id], task_row)
        .optional()?
        .ok_or(StoreError::NotFound("background task"))
}

#[async_trait::async_trait]
impl TaskStore for SqliteStore {
    async fn create_task(&self, app_id: &AppId, kind: TaskKind, node: &NodeId) -> Result<Task> {
        let app_id = app_id.clone();
        let node = node.clone();
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let at =
                    from_ms(now).ok_or_else(|| StoreError::Corrupt("the database clock is out of range".into()))?;
                let task = Task {
                    id: TaskId::new(),
                    app_id,
                    kind,
                    status: TaskStatus::Running,
                    data: serde_json::json!({}),
                    created_at: at,
                    updated_at: at,
                };
                ctx.conn
                    .prepare_cached(&format!(
                        "INSERT INTO background_task ({TASK_COLS}, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)"
                    ))?
                    .execute(params![
                        task.id.as_str(),
                        task.app_id.as_str(),
                        kind.as_str(),
                        task.status.as_str(),
                        to_json(&task.data)?,
                        now,
                        node.as_str()
                    ])?;
                Ok(task)
            })
            .await
    }

    async fn finish_task(&self, id: &TaskId, status: TaskStatus, data: serde_json::Value) -> Result<Task> {
        let id = id.clone();
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let n = ctx
                    .conn
                    .prepare_cached("UPDATE background_task SET status = ?2, data = ?3, updated_at = ?4 WHERE id = ?1")?
                    .execute(params![id.as_str(), status.as_str(), to_json(&data)?, now])?;
                if n == 0 {
                    return Err(StoreError::NotFound("background task"));
                }
                select_task(&ctx.conn, id.as_str())
            })
            .await
    }

    async fn get_task(&self, id: &TaskId) -> Result<Task> {
        let id = id.clone();
        self.read(move |c| select_task(c, id.as_str())).await
    }

    async fn list_tasks(&self, app_id: Option<&AppId>, page: PageRequest) -> Result<Page<Task>> {
        let app_id = app_id.cloned();
        self.read(move |c| {
            let mut f = Filter::default();
            if let Some(app) = app_id {
                f.push("app_id = ?", [Value::Text(app.to_string())]);
            }
            paginate(c, &TASKS, f, &page, task_row, |t| t.id.to_string())
        })
        .await
    }

    async fn fail_interrupted_tasks(&self, node: &NodeId) -> Result<u64> {
        let node = node.clone();
        self.writer
            .run(move |ctx| {
                let now = ctx.now()?;
                let n = ctx
                    .conn
                    .prepare_cached(FAIL_INTERRUPTED)?
                    .execute(params![now, node.as_str()])?;
                Ok(n as u64)
            })
            .await
    }
}

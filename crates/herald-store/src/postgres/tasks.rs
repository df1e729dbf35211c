//! Background task rows on PostgreSQL. Their times are the database's
//! clock, as on SQLite.

use herald_core::{AppId, TaskId};
use tokio_postgres::Row;

use super::PgStore;
use super::paging::{Filter, Listing, Param, paginate};
use super::rows::{from_ms, get, json_at, time_at, to_json};
use crate::{NodeId, Page, PageRequest, Result, StoreError, Task, TaskKind, TaskStatus, TaskStore};

const TASK_COLS: &str = "id, app_id, kind, status, data, created_at, updated_at";
const TASKS: Listing = Listing {
    cols: TASK_COLS,
    from: "background_task",
    key: "id",
};

fn task_row(r: &Row) -> Result<Task> {
    let kind: &str = get(r, 2)?;
    let status: &str = get(r, 3)?;
    Ok(Task {
        id: TaskId::from_trusted(get(r, 0)?),
        app_id: AppId::from_trusted(get(r, 1)?),
        kind: TaskKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("column kind: unknown task kind {kind}")))?,
        status: TaskStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("column status: unknown task status {status}")))?,
        data: json_at(r, 4)?,
        created_at: time_at(r, 5)?,
        updated_at: time_at(r, 6)?,
    })
}

#[async_trait::async_trait]
impl TaskStore for PgStore {
    async fn create_task(&self, app_id: &AppId, kind: TaskKind, node: &NodeId) -> Result<Task> {
        let c = self.client().await?;
        // One reading of the clock for both times.
        let stmt = c
            .prepare_cached(&format!(
                "INSERT INTO background_task ({TASK_COLS}, node) \
                 SELECT $1, $2, $3, $4, $5, now.t, now.t, $6 FROM (SELECT herald_now_ms() AS t) now \
                 RETURNING created_at"
            ))
            .await?;
        let id = TaskId::new();
        let status = TaskStatus::Running;
        let data = serde_json::json!({});
        let row = c
            .query_one(
                &stmt,
                &[
                    &id.as_str(),
                    &app_id.as_str(),
                    &kind.as_str(),
                    &status.as_str(),
                    &to_json(&data)?,
                    &node.as_str(),
                ],
            )
            .await?;
        let at =
            from_ms(get(&row, 0)?).ok_or_else(|| StoreError::Corrupt("the database clock is out of range".into()))?;
        Ok(Task {
            id,
            app_id: app_id.clone(),
            kind,
            status,
            data,
            created_at: at,
            updated_at: at,
        })
    }

    async fn finish_task(&self, id: &TaskId, status: TaskStatus, data: serde_json::Value) -> Result<Task> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "UPDATE background_task SET status = $2, data = $3, updated_at = herald_now_ms() WHERE id = $1 \
                 RETURNING {TASK_COLS}"
            ))
            .await?;
        c.query_opt(&stmt, &[&id.as_str(), &status.as_str(), &to_json(&data)?])
            .await?
            .map(|r| task_row(&r))
            .transpose()?
            .ok_or(StoreError::NotFound("background task"))
    }

    async fn get_task(&self, id: &TaskId) -> Result<Task> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!("SELECT {TASK_COLS} FROM background_task WHERE id = $1"))
            .await?;
        c.query_opt(&stmt, &[&id.as_str()])
            .await?
            .map(|r| task_row(&r))
            .transpose()?
            .ok_or(StoreError::NotFound("background task"))
    }

    async fn list_tasks(&self, app_id: Option<&AppId>, page: PageRequest) -> Result<Page<Task>> {
        let c = self.client().await?;
        let mut f = Filter::default();
        if let Some(app) = app_id {
            f.push("app_id = $?", [Box::new(app.to_string()) as Param]);
        }
        paginate(&c, &TASKS, f, &page, task_row, |t| t.id.to_string()).await
    }

    async fn fail_interrupted_tasks(&self, node: &NodeId) -> Result<u64> {
        let c = self.client().await?;
        // `node IS NULL`: running since before tasks named their node
        // (migration 2); see there.
        let stmt = c
            .prepare_cached(
                "UPDATE background_task SET status = 'failed', data = $1, updated_at = herald_now_ms() \
                 WHERE status = 'running' AND (node = $2 OR node IS NULL)",
            )
            .await?;
        let data = to_json(&serde_json::json!({"error": "interrupted by a restart"}))?;
        Ok(c.execute(&stmt, &[&data, &node.as_str()]).await?)
    }
}

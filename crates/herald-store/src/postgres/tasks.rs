//! PostgreSQL: TaskStore.

use crate::{Page, PageRequest, Result};
use chrono::{DateTime, Utc};
use herald_core::{AppId, TaskId};

use super::PgStore;
#[allow(unused_imports)]
use crate::*;

#[async_trait::async_trait]
impl crate::TaskStore for PgStore {
    async fn create_task(&self, app_id: &AppId, kind: TaskKind) -> Result<Task> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn finish_task(&self, id: &TaskId, status: TaskStatus, data: serde_json::Value) -> Result<Task> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn get_task(&self, id: &TaskId) -> Result<Task> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn list_tasks(&self, app_id: Option<&AppId>, page: PageRequest) -> Result<Page<Task>> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
    async fn fail_interrupted_tasks(&self) -> Result<u64> {
        Err(StoreError::Refused("not ported to PostgreSQL yet".into()))
    }
}

//! Background tasks (`recover`, `replay-missing`): a row per task that says
//! what it is and how it went, in the shape Svix's `RecoverOut` reports.
//!
//! A task runs inside the node that created it, and its row names that node,
//! so that a node starting up fails the tasks its previous run left behind
//! and none that another live node sharing the database is still running.

use chrono::{DateTime, Utc};
use herald_core::{AppId, TaskId};

use crate::{NodeId, Page, PageRequest, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    EndpointRecover,
    EndpointReplay,
}

impl TaskKind {
    /// Svix's `BackgroundTaskType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndpointRecover => "endpoint.recover",
            Self::EndpointReplay => "endpoint.replay",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "endpoint.recover" => Self::EndpointRecover,
            "endpoint.replay" => Self::EndpointReplay,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Running,
    Finished,
    Failed,
}

impl TaskStatus {
    /// Svix's `BackgroundTaskStatus` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "finished" => Self::Finished,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub app_id: AppId,
    pub kind: TaskKind,
    pub status: TaskStatus,
    /// What the task reports when done (e.g. `{"deliveries": 12}`), or why it failed.
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait TaskStore: Send + Sync {
    /// A new task of `kind`, running on `node` (the node that creates it).
    async fn create_task(&self, app_id: &AppId, kind: TaskKind, node: &NodeId) -> Result<Task>;
    /// Sets the task's end state and what it reports.
    async fn finish_task(&self, id: &TaskId, status: TaskStatus, data: serde_json::Value) -> Result<Task>;
    async fn get_task(&self, id: &TaskId) -> Result<Task>;
    /// Tasks, of one application or of all, newest first by default.
    async fn list_tasks(&self, app_id: Option<&AppId>, page: PageRequest) -> Result<Page<Task>>;
    /// Marks `node`'s tasks still running as failed: run at the node's start,
    /// when no task of its previous run can still be working. Other nodes'
    /// running tasks are left alone; tasks recorded before tasks named their
    /// node (none) are failed by any node's start.
    async fn fail_interrupted_tasks(&self, node: &NodeId) -> Result<u64>;
}
